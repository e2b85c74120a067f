"""Interactive experiments of chapter 03 (initialization).

The activation-histogram experiment of the course notes: 1000 random inputs through a
stack of fully connected layers (100 units each, no biases), with the weights of every
layer drawn by an initializer, and a histogram of every layer's values. Everything the
chapter asks you to write is passed in: the explorers run *your* ``layer_activations``,
*your* initializers, and the layers you wrote in chapter 02.

An initializer here is any callable ``init(fan_in, fan_out, rng) -> W`` of shape
(fan_in, fan_out), such as your ``xavier_init`` and ``he_init``, or ``fixed_std(0.01)``.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from . import runtime
from matplotlib.ticker import MaxNLocator

N_INPUTS, WIDTH, DEPTH = 1000, 100, 5
AUTOGRADE_INPUTS = 200
SLIDER = "std from the slider"


def fixed_std(std):
    """An initializer drawing N(0, std^2) weights whatever the layer's size (the naive choice)."""
    def init(fan_in, fan_out, rng):
        return rng.normal(0.0, std, size=(fan_in, fan_out))
    init.__name__ = f"std {std:g}"
    return init


def experiment_inputs(n=None, width=WIDTH, rng=0):
    """The experiment's data: n inputs of ``width`` features, each N(0, 1).

    n defaults to N_INPUTS, and to AUTOGRADE_INPUTS under the autograder (the same histograms, a little noisier).
    """
    n = runtime.budget(full=N_INPUTS, autograde=AUTOGRADE_INPUTS) if n is None else n
    return np.random.default_rng(rng).normal(size=(n, width))


def draw_weights(init, depth=DEPTH, width=WIDTH, rng=1):
    """``depth`` weight matrices of shape (width, width), each drawn by ``init`` from one generator."""
    rng = np.random.default_rng(rng)
    return [init(width, width, rng) for _ in range(depth)]


def layer_input_gradients(x, weights, activation, affine, rng=2):
    """Backward pass through the stack: the gradient arriving at the input of every layer.

    activation: (forward, backward) pair of chapter 02, e.g. (tanh_forward, tanh_backward).
    affine: (affine_forward, affine_backward). The upstream gradient at the top is N(0, 1) noise.
    Returns a list with one array per layer; entry 0 is dL/dx (layer 1, nearest the input).
    """
    act_forward, act_backward = activation
    aff_forward, aff_backward = affine
    h, caches = x, []
    for w in weights:
        a, aff_cache = aff_forward(h, w, np.zeros(w.shape[1]))
        h, act_cache = act_forward(a)
        caches.append((aff_cache, act_cache))
    dh = np.random.default_rng(rng).normal(size=h.shape)
    grads = []
    for aff_cache, act_cache in reversed(caches):
        dh, _, _ = aff_backward(act_backward(dh, act_cache), aff_cache)
        grads.append(dh)
    return grads[::-1]


# --- plots -----------------------------------------------------------------------------------

def _std_text(values):
    std = float(np.std(values))
    return f"std {std:.2g}" if np.isfinite(std) else "std inf/NaN"


def _hist(ax, values, kind, xlim):
    """One panel: a histogram of ``values`` on ``xlim``; returns a short note on their spread."""
    values = np.asarray(values, dtype=float).ravel()
    finite = values[np.isfinite(values)]
    note = _std_text(values)
    if kind == "relu":
        # Half of a ReLU layer's outputs are exactly 0; a spike there would flatten the rest.
        note += f", {np.mean(finite == 0):.0%} zero"
        finite = finite[finite > 0]
    if finite.size:
        # One filled outline instead of 40 bar patches: the same picture, drawn several times faster.
        counts, edges = np.histogram(finite, bins=40, range=xlim)
        ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.85)
    ax.set_xlim(*xlim)
    ax.set_yticks([])
    ax.tick_params(labelsize=7)
    ticks = {"sigmoid": [0.0, 0.5, 1.0], "tanh": [-1.0, 0.0, 1.0]}
    if kind in ticks:
        ax.set_xticks(ticks[kind])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(3))
    return note


def _row_range(row, kind):
    """x-limits shared by one row of panels: the activation's range, or the row's spread for ReLU/gradients."""
    if kind == "sigmoid":
        return (0.0, 1.0)
    if kind == "tanh":
        return (-1.0, 1.0)
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in row])
    values = np.abs(values[np.isfinite(values)])
    top = float(np.quantile(values, 0.995)) if values.size else 1.0
    top = top if top > 0 else 1.0
    return (0.0, top) if kind == "relu" else (-top, top)


def plot_histogram_grid(rows, kind, title, xlabel="value"):
    """A grid of histograms: one row per setting ({label: [array per layer]}), one column per layer.

    kind: "sigmoid", "tanh" or "relu" (activations, fixed ranges) or "gradient" (symmetric ranges).
    Each panel states the standard deviation of its values. Returns the Figure.
    """
    labels = list(rows)
    depth = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(labels), depth, figsize=(9.5, 1.6 * len(labels) + 0.9), squeeze=False)
    for r, label in enumerate(labels):
        xlim = _row_range(rows[label], kind)
        for c in range(depth):
            ax = axes[r, c]
            if c < len(rows[label]):
                note = _hist(ax, rows[label][c], kind, xlim)
                ax.set_title(f"layer {c + 1}\n{note}" if r == 0 else note, fontsize=8)
            else:
                ax.axis("off")
            if r == len(labels) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_std_per_layer(rows, ax=None, title="Spread of the values per layer", ylabel="standard deviation"):
    """One line per setting: the standard deviation of every layer's values (log scale)."""
    ax = ax or plt.subplots(figsize=(5.5, 3.6))[1]
    for label, values in rows.items():
        stds = [float(np.std(v)) for v in values]
        ax.plot(np.arange(1, len(stds) + 1), stds, marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set(title=title, xlabel="layer (1 = nearest the input)", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return ax


def activation_histograms(layer_activations, initializers, activation, depth=DEPTH, x=None):
    """{initializer name: per-layer activations} of the experiment, using your ``layer_activations``."""
    x = experiment_inputs() if x is None else x
    return {name: layer_activations(x, draw_weights(init, depth, x.shape[1]), activation)
            for name, init in initializers.items()}


def gradient_histograms(initializers, activation, layers, affine, depth=DEPTH, x=None):
    """{initializer name: per-layer input gradients}; ``layers[activation]`` is a (forward, backward) pair."""
    x = experiment_inputs() if x is None else x
    with np.errstate(over="ignore", invalid="ignore"):
        return {name: layer_input_gradients(x, draw_weights(init, depth, x.shape[1]), layers[activation], affine)
                for name, init in initializers.items()}


# --- widgets -----------------------------------------------------------------------------------

def _controls(initializers, activation, depth):
    style = {"description_width": "initial"}
    return dict(
        activation=widgets.Dropdown(options=["sigmoid", "tanh", "relu"], value=activation, description="activation",
                                    style=style),
        initializer=widgets.Dropdown(options=[SLIDER, *initializers], value=SLIDER, description="initializer",
                                     style=style),
        std=widgets.FloatLogSlider(value=1.0, base=10, min=-3, max=1, step=0.125, continuous_update=False,
                                   description="std", readout_format=".3g", style=style),
        depth=widgets.IntSlider(value=depth, min=1, max=10, continuous_update=False, description="depth",
                                style=style))


def _one_setting(initializers, initializer, std):
    if initializer == SLIDER:
        return f"N(0, {std:.3g}²)", fixed_std(std)
    return initializer, initializers[initializer]


def _show_row(values, kind, title, xlabel):
    depth = len(values)
    ncols = min(depth, 5)
    nrows = int(np.ceil(depth / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(9.5, 1.9 * nrows + 0.8), squeeze=False)
    xlim = _row_range(values, kind)
    for k, ax in enumerate(axes.flat):
        if k < depth:
            note = _hist(ax, values[k], kind, xlim)
            ax.set_title(f"layer {k + 1}\n{note}", fontsize=8)
            ax.set_xlabel(xlabel, fontsize=8)
        else:
            ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.show()


def activation_explorer(layer_activations, initializers, activation="tanh", depth=DEPTH):
    """Dropdowns for the activation and initializer, sliders for std and depth: histograms of every layer.

    layer_activations: your function (x, weights, activation) -> [h_1, ..., h_L].
    initializers: {name: init(fan_in, fan_out, rng)}, e.g. {"Xavier": xavier_init, "He": he_init};
    the initializer "std from the slider" draws N(0, std^2) weights.
    """
    x = experiment_inputs()

    def show(activation, initializer, std, depth):
        label, init = _one_setting(initializers, initializer, std)
        values = layer_activations(x, draw_weights(init, depth, x.shape[1]), activation)
        _show_row(values, activation, f"{activation} activations, weights {label}, "
                  f"{x.shape[0]} inputs x {x.shape[1]} units", f"{activation} output")

    return runtime.interact(show, **_controls(initializers, activation, depth))


def gradient_explorer(initializers, layers, affine, activation="tanh", depth=DEPTH):
    """The same controls for the backward pass: histograms of the gradient arriving at every layer's input.

    layers: {"sigmoid": (sigmoid_forward, sigmoid_backward), "tanh": ..., "relu": ...} from chapter 02;
    affine: (affine_forward, affine_backward).
    """
    x = experiment_inputs()

    def show(activation, initializer, std, depth):
        label, init = _one_setting(initializers, initializer, std)
        with np.errstate(over="ignore", invalid="ignore"):
            grads = layer_input_gradients(x, draw_weights(init, depth, x.shape[1]), layers[activation], affine)
        _show_row(grads, "gradient", f"Gradients at each layer's input ({activation}, weights {label})",
                  "dL/d(layer input)")

    return runtime.interact(show, **_controls(initializers, activation, depth))


# --- symmetry ------------------------------------------------------------------------------------

def plot_hidden_weights(snapshots, title="Incoming weights of every hidden unit"):
    """Heat maps of W1 (inputs x hidden units) side by side: {label: W1}. Identical columns = clones."""
    fig, axes = plt.subplots(1, len(snapshots), figsize=(9.5, 3.0), squeeze=False)
    for ax, (label, w) in zip(axes[0], snapshots.items()):
        image = ax.imshow(w, aspect="auto", cmap="coolwarm", vmin=-np.max(np.abs(w)) - 1e-12,
                          vmax=np.max(np.abs(w)) + 1e-12)
        ax.set(title=label, xlabel="hidden unit", ylabel="input feature")
        ax.title.set_fontsize(9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- training deep nets with different initializations -------------------------------------------

def plot_loss_curves(histories_by_panel, title="Training loss of a deep network", ylim=(0.0, 3.0)):
    """One panel per activation, one line per initializer: {panel: {initializer: history}}.

    A loss that blows up to infinity or NaN is drawn up to its last finite value and marked in the legend.
    """
    panels = list(histories_by_panel)
    fig, axes = plt.subplots(1, len(panels), figsize=(9.5, 3.6), squeeze=False, sharey=True)
    for ax, panel in zip(axes[0], panels):
        for label, history in histories_by_panel[panel].items():
            losses = np.asarray(history["epoch_loss"], dtype=float)
            final = losses[-1]
            state = f"final {final:.2f}" if np.isfinite(final) and final < ylim[1] else "diverged"
            ax.plot(np.arange(1, len(losses) + 1), np.where(np.isfinite(losses), losses, np.nan), marker=".",
                    label=f"{label} ({state})")
        ax.set(title=panel, xlabel="epoch", ylim=ylim)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("mean training loss per epoch")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- visible check of an initializer -------------------------------------------------------------

def check_initializer(name, init, expected_std, formula, fan_in=400, fan_out=30):
    """The visible check of an initializer: shape, use of ``rng``, mean, standard deviation, Gaussian tails.

    Draws fan_in * fan_out = 12000 values; the tolerances are the hidden tests' (a correct answer
    fails with probability below 1e-10). Raises CheckFailed with a hint, or prints what it saw.
    """
    import math

    from .checks import CheckFailed

    def fail(message, hint):
        raise CheckFailed(f"{name}: {message}\nHint: {hint}")

    w = init(fan_in, fan_out, np.random.default_rng(0))
    if not isinstance(w, np.ndarray) or w.shape != (fan_in, fan_out):
        got = f"shape {w.shape}" if isinstance(w, np.ndarray) else type(w).__name__
        fail(f"init({fan_in}, {fan_out}, rng) returned {got}, expected an array of shape ({fan_in}, {fan_out}).",
             "the shape is (fan_in, fan_out), so that x @ W works for x of shape (N, fan_in).")
    if not np.array_equal(w, init(fan_in, fan_out, np.random.default_rng(0))):
        fail("two generators made with the same seed gave different arrays.",
             "draw every random number from the rng argument (rng.normal(...)), not from np.random.")
    if np.array_equal(w, init(fan_in, fan_out, np.random.default_rng(1))):
        fail("generators with different seeds gave the same array.", "use the rng argument you are given.")
    n = w.size
    mean, rms = float(np.mean(w)), float(np.sqrt(np.mean(w ** 2)))
    low = math.sqrt(1 - 2 * math.sqrt(25 / n))
    high = math.sqrt(1 + 2 * math.sqrt(25 / n) + 50 / n)
    if abs(mean) > 7 * expected_std / math.sqrt(n):
        fail(f"the mean of the entries is {mean:.3g}, expected 0.", "draw from a Gaussian centred at 0.")
    if not low * expected_std <= rms <= high * expected_std:
        fail(f"the standard deviation is {rms:.4g}, expected {expected_std:.4g} = {formula} for "
             f"fan_in = {fan_in}, fan_out = {fan_out}.", f"the standard deviation is {formula}; it uses fan_in.")
    beyond = float(np.mean(np.abs(w) > 2 * expected_std))
    gaussian = math.erfc(2 / math.sqrt(2))
    if not 0.5 * gaussian < beyond < 1.5 * gaussian:
        fail(f"{beyond:.2%} of the entries lie beyond 2 standard deviations; a Gaussian has {gaussian:.2%}.",
             "use rng.normal (a Gaussian), not rng.uniform.")
    print(f"{name}({fan_in}, {fan_out}, rng): mean {mean:+.4f}, standard deviation {rms:.4f} "
          f"(expected {expected_std:.4f}), {beyond:.1%} beyond 2 std (Gaussian: {gaussian:.1%}).")


def between_unit_share(values):
    """Share of the variance of a layer's values (N, units) that lies between units rather than between inputs.

    1.0: every unit outputs its own constant, whatever the input; 0.0: all units have the same mean.
    """
    values = np.asarray(values, dtype=float)
    total = values.var()
    return float(values.mean(axis=0).var() / total) if total > 0 else 0.0
