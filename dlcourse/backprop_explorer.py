"""Interactive experiments of chapter 02 (backprop). Every layer used here is passed in:
the explorers run *your* forward and backward functions.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, NullFormatter

from . import graph_drawing, runtime


def add_multiply_explorer():
    """Sliders for x, y, z in f = (x + y) * z; the graph shows how each gradient is routed."""
    def show(x=1.5, y=-4.0, z=3.0):
        graph_drawing.draw_add_multiply(x, y, z)
        plt.show()

    slider = dict(min=-5.0, max=5.0, step=0.5, continuous_update=False)
    return runtime.interact(show, x=widgets.FloatSlider(value=1.5, **slider),
                            y=widgets.FloatSlider(value=-4.0, **slider), z=widgets.FloatSlider(value=3.0, **slider))


def chain_explorer(stages, your_function=None, value_names=None, x_range=(-1.0, 2.0), x0=1.0, title="f(x)",
                   step=0.05):
    """A slider for x0 redraws the chain with its forward values and gradients.

    stages: [(label, forward, local_derivative)] as for ``graph_drawing.trace_chain``.
    your_function: optional callable x -> (f, dfdx) on arrays (e.g. your graph_example);
    its values at x0 are printed under the graph for comparison.
    """
    def show(x0=x0):
        heading = f"{title} at x = {x0:.2f}"
        if your_function is not None:
            f, dfdx = your_function(np.array([x0]))
            heading += (f"\nyour function gives f = {float(np.ravel(f)[0]):.4g}, "
                        f"df/dx = {float(np.ravel(dfdx)[0]):.4g}")
        graph_drawing.draw_traced_chain(x0, stages, title=heading, value_names=value_names)
        plt.show()

    return runtime.interact(show, x0=widgets.FloatSlider(value=x0, min=x_range[0], max=x_range[1], step=step,
                                                         continuous_update=False, description="x",
                                                         readout_format=".3f", layout={"width": "480px"}))


def gradient_norms_through_depth(depth, weight_scale, activation, affine, width=64, batch=32, rng=0):
    """Mean |dL/dx| at the input of every layer of a deep stack (affine -> activation) x depth.

    activation: (forward, backward) pair, e.g. (sigmoid_forward, sigmoid_backward).
    affine: (affine_forward, affine_backward). Weights are Gaussian with std
    weight_scale / sqrt(width). The upstream gradient at the top is Gaussian noise.
    Returns an array of length depth; entry 0 is the layer nearest the input.
    """
    act_forward, act_backward = activation
    aff_forward, aff_backward = affine
    rng = np.random.default_rng(rng)
    h = rng.normal(size=(batch, width))
    caches = []
    for _ in range(depth):
        w = rng.normal(0.0, weight_scale / np.sqrt(width), size=(width, width))
        a, aff_cache = aff_forward(h, w, np.zeros(width))
        h, act_cache = act_forward(a)
        caches.append((aff_cache, act_cache))
    dh = rng.normal(size=h.shape)
    norms = []
    for aff_cache, act_cache in reversed(caches):
        da = act_backward(dh, act_cache)
        dh, _, _ = aff_backward(da, aff_cache)
        norms.append(float(np.mean(np.abs(dh))))
    return np.array(norms[::-1])


def plot_gradient_norms(norms_by_name, ax=None, title="Gradient size per layer"):
    """One line per activation: mean |dL/dx| at each layer's input (log scale) against layer index."""
    ax = ax or plt.subplots(figsize=(5.5, 3.6))[1]
    for name, norms in norms_by_name.items():
        ax.plot(np.arange(1, len(norms) + 1), norms, marker="o", ms=3, label=name)
    ax.set_yscale("log")
    ax.set(title=title, xlabel="layer (1 = nearest the input)", ylabel="mean |gradient| at its input")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax


def vanishing_gradient_explorer(activations, affine, depth=10, weight_scale=1.0):
    """Sliders for depth and weight scale; plots gradient size per layer for each activation.

    activations: {name: (forward, backward)}; affine: (affine_forward, affine_backward).
    """
    def show(depth=depth, weight_scale=weight_scale):
        norms = {name: gradient_norms_through_depth(depth, weight_scale, pair, affine)
                 for name, pair in activations.items()}
        plot_gradient_norms(norms, title=f"{depth} layers, weights ~ N(0, ({weight_scale:.2f}/√64)²)")
        plt.show()

    return runtime.interact(
        show,
        depth=widgets.IntSlider(value=depth, min=2, max=30, continuous_update=False, description="depth",
                                style={"description_width": "initial"}),
        weight_scale=widgets.FloatSlider(value=weight_scale, min=0.25, max=4.0, step=0.25, continuous_update=False,
                                         description="weight scale", style={"description_width": "initial"}))


def learning_rate_explorer(train, learning_rate=0.5, title="Training loss"):
    """A logarithmic learning-rate slider; ``train(learning_rate) -> history`` (with "loss") is rerun and plotted."""
    def show(learning_rate=learning_rate):
        history = train(learning_rate)
        ax = plt.subplots(figsize=(5.5, 3.5))[1]
        losses = np.asarray(history["loss"], dtype=float)
        ax.plot(np.arange(1, len(losses) + 1), losses, lw=1)
        ax.set(title=f"{title}, learning rate {learning_rate:.3g}", xlabel="SGD step", ylabel="minibatch loss")
        finite = losses[np.isfinite(losses)]
        if finite.size and finite.max() > 0:
            ax.set_ylim(0, min(finite.max(), 3 * finite[0]) * 1.05)
        ax.grid(alpha=0.3)
        plt.show()

    return runtime.interact(show, learning_rate=widgets.FloatLogSlider(value=learning_rate, base=10, min=-3, max=1,
                                                                       step=0.25, continuous_update=False,
                                                                       description="learning rate",
                                                                       style={"description_width": "initial"}))



def loglog_slope(sizes, times, last=3):
    """Least-squares slope of log(time) against log(n) over the ``last`` largest sizes."""
    sizes, times = np.asarray(sizes[-last:], dtype=float), np.asarray(times[-last:], dtype=float)
    return float(np.polyfit(np.log(sizes), np.log(times), 1)[0])


def plot_gradient_costs(sizes, costs, ax=None, title="Cost of one gradient", ylabel="seconds"):
    """Log-log plot of {method: times} against the number of inputs n, with slope-1 and slope-2 guides."""
    ax = ax or plt.subplots(figsize=(5.5, 3.8))[1]
    markers = ["o", "s", "^", "D"]
    for k, (name, values) in enumerate(costs.items()):
        ax.loglog(sizes, values, marker=markers[k % len(markers)], label=name)
    top = max(values[-1] for values in costs.values())
    n = np.asarray(sizes, dtype=float)
    for power, ls in ((1, ":"), (2, "-.")):
        ax.loglog(n, top * (n / n[-1]) ** power, color="gray", ls=ls, lw=1, label=f"slope {power} (time ∝ n^{power})")
    ax.set(title=title, xlabel="number of inputs n", ylabel=ylabel)
    ax.set_xticks(list(sizes), [str(size) for size in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(bottom=min(min(values) for values in costs.values()) / 3)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    return ax


def plot_fused_bce(scores, chained, fused, y):
    """Loss and gradient w.r.t. the score s of BCE(sigmoid(s), y), computed in two steps vs fused.

    chained, fused: dicts with "loss" and "grad" arrays over ``scores``; where the two-step values are not
    finite, the band is shaded.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, ylabel in ((left, "loss", "per-sample loss"), (right, "grad", "dL/ds")):
        ax.plot(scores, fused[key], color="black", lw=2, label="fused: softplus, σ(s) − y")
        values = np.asarray(chained[key], dtype=float)
        ok = np.isfinite(values)
        ax.plot(scores[ok], values[ok], color="tab:orange", ls="--", lw=1.5, label="two steps: sigmoid, then BCE")
        if (~ok).any():
            ax.axvspan(scores[~ok].min(), scores[~ok].max(), color="tab:red", alpha=0.12,
                       label="two steps: inf or nan")
        ax.set(xlabel="score s (logit)", ylabel=ylabel)
        ax.grid(alpha=0.3)
    left.set_title(f"BCE of σ(s), target y = {y:g}", fontsize=10)
    right.set_title("Its gradient with respect to s", fontsize=10)
    left.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig
