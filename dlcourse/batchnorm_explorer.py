"""Experiments of chapter 04 (batch normalization). Every layer and network used here is passed in:
the helpers run *your* forward and backward functions and *your* network's loss function.

A network's loss function has the signature the chapter writes::

    net_loss(params, X, y=None, norm=None, norm_params=None, after_relu=False)

returning class scores when ``y`` is None and ``(loss, grads)`` otherwise; ``norm`` is a
``(forward, backward)`` pair such as ``(batchnorm_forward, batchnorm_backward_alt)`` or None, and
``norm_params`` holds one parameter dict (``bn_param`` / ``ln_param``) per hidden layer.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from . import runtime, training
from .runtime import budget

HIDDEN_DIMS = (64, 64, 64, 64, 64)


def init_deep_net(input_dim, hidden_dims, num_classes, weight_scale, normalized=False, rng=0):
    """Parameters W1, b1, ..., W{L+1}, b{L+1} of affine layers with Gaussian weights of std ``weight_scale``.

    With ``normalized``, every hidden layer i also gets gamma{i} = 1 and beta{i} = 0 (shape (H_i,)).
    """
    rng = np.random.default_rng(rng)
    dims = [input_dim, *hidden_dims, num_classes]
    params = {}
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:]), start=1):
        params[f"W{i}"] = rng.normal(0.0, weight_scale, size=(d_in, d_out))
        params[f"b{i}"] = np.zeros(d_out)
        if normalized and i < len(dims) - 1:
            params[f"gamma{i}"] = np.ones(d_out)
            params[f"beta{i}"] = np.zeros(d_out)
    return params


def _set_mode(norm_params, mode):
    for p in norm_params:
        p["mode"] = mode


def accuracy(net_loss, params, X, y, norm=None, norm_params=None, after_relu=False):
    """Accuracy of the network on (X, y) in test mode (batch norm then uses its running averages)."""
    if norm_params:
        _set_mode(norm_params, "test")
    try:
        with np.errstate(all="ignore"):
            scores = net_loss(params, X, None, norm=norm, norm_params=norm_params, after_relu=after_relu)
        return float(np.mean(np.argmax(scores, axis=1) == y))
    finally:
        if norm_params:
            _set_mode(norm_params, "train")


def train_deep_net(net_loss, data, norm=None, after_relu=False, weight_scale=0.1, hidden_dims=HIDDEN_DIMS,
                   learning_rate=0.1, epochs=10, batch_size=64, rng=0, progress=False, desc="training"):
    """Train a fresh network ``net_loss`` on ``data = (X_train, y_train, X_val, y_val)``.

    Returns {"history": training history (with "val_acc" per epoch), "params", "norm_params",
    "final_loss": mean training loss of the last epoch (inf if training diverged), "train_acc", "val_acc"}.
    Every minibatch is full (``drop_last``): a last batch of a handful of examples would give batch norm
    very noisy statistics (try it: section 7 of the chapter).
    """
    X_train, y_train, X_val, y_val = data
    rng = np.random.default_rng(rng)
    params = init_deep_net(X_train.shape[1], hidden_dims, int(y_train.max()) + 1, weight_scale,
                           normalized=norm is not None, rng=rng)
    norm_params = [{"mode": "train"} for _ in hidden_dims] if norm is not None else None
    kw = dict(norm=norm, norm_params=norm_params, after_relu=after_relu)

    def loss_and_grads(p, X, y):
        return net_loss(p, X, y, **kw)

    with np.errstate(all="ignore"):       # a badly scaled network without normalization may overflow: that is the point
        history = training.train(loss_and_grads, params, X_train, y_train, learning_rate=learning_rate,
                                 epochs=epochs, batch_size=batch_size, drop_last=True, rng=rng,
                                 progress=progress, desc=desc,
                                 evaluate=lambda p: {"val_acc": accuracy(net_loss, p, X_val, y_val, **kw)})
    final = history["epoch_loss"][-1]
    return {"history": history, "params": params, "norm_params": norm_params,
            "final_loss": float(final) if np.isfinite(final) else float("inf"),
            "train_acc": accuracy(net_loss, params, X_train, y_train, **kw), "val_acc": history["val_acc"][-1]}


def weight_scale_sweep(net_loss, variants, data, weight_scales, **train_kwargs):
    """{variant name: [result of train_deep_net for each weight scale]}; variants: {name: dict(norm=..., ...)}."""
    return {name: [train_deep_net(net_loss, data, weight_scale=float(ws), **dict(train_kwargs, **variant))
                   for ws in weight_scales]
            for name, variant in variants.items()}


def plot_weight_scale_sweep(weight_scales, results, title="Final training loss and accuracy vs weight scale"):
    """Two panels against the weight scale (log x): final training loss and validation accuracy."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    top = 0.0
    for name, runs in results.items():
        losses = np.array([r["final_loss"] for r in runs])
        top = max(top, np.max(losses[np.isfinite(losses)], initial=0.0))
    cap = 1.15 * top if top > 0 else 3.0
    for name, runs in results.items():
        losses = np.array([r["final_loss"] for r in runs])
        line, = axes[0].semilogx(weight_scales, np.where(np.isfinite(losses), losses, np.nan), marker="o", ms=4,
                                 label=name)
        diverged = ~np.isfinite(losses)
        if diverged.any():
            axes[0].semilogx(np.asarray(weight_scales)[diverged], np.full(diverged.sum(), cap), "x",
                             color=line.get_color(), ms=8, label=f"{name}: diverged")
        axes[1].semilogx(weight_scales, [r["val_acc"] for r in runs], marker="o", ms=4, label=name)
    axes[0].set(title="Final training loss", xlabel="weight scale (std of the initial weights)",
                ylabel="mean cross-entropy, last epoch", ylim=(0, cap * 1.05))
    axes[1].set(title="Validation accuracy", xlabel="weight scale (std of the initial weights)",
                ylabel="accuracy", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def plot_batch_size_sweep(batch_sizes, results, title="Batch norm vs layer norm across batch sizes"):
    """Two panels against the batch size (log x): final training loss and validation accuracy (test mode).

    results: {variant name: [result of train_deep_net for each batch size]}.
    """
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    for k, (name, runs) in enumerate(results.items()):
        style = dict(marker="os^D"[k % 4], ls=("-", "--", "-.", ":")[k % 4], ms=5)
        losses = np.array([r["final_loss"] for r in runs])
        axes[0].semilogx(batch_sizes, np.where(np.isfinite(losses), losses, np.nan), label=name, **style)
        axes[1].semilogx(batch_sizes, [r["val_acc"] for r in runs], label=name, **style)
    axes[0].set(title="Final training loss", xlabel="batch size", ylabel="mean cross-entropy, last epoch", ylim=(0, None))
    axes[1].set(title="Validation accuracy (test mode)", xlabel="batch size", ylabel="accuracy", ylim=(0, 1.02))
    for ax in axes:
        ax.set_xticks(list(batch_sizes), [str(b) for b in batch_sizes])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


# --- distributions of pre-activations ----------------------------------------------------------

def preactivations(affine_forward, relu_forward, batchnorm_forward, X, weight_scale, depth=5, width=64, rng=0):
    """Pre-activations of two deep affine-ReLU stacks sharing the same weights, one without and one with BN.

    Returns {"without BN": [z_1, ..., z_depth], "with BN, before BN": [...], "with BN, after BN": [...]}:
    z_i is the output of affine layer i (N, width), and for the BN network also that of its batch norm.
    """
    rng = np.random.default_rng(rng)
    dims = [X.shape[1]] + [width] * depth
    weights = [rng.normal(0.0, weight_scale, size=(a, b)) for a, b in zip(dims[:-1], dims[1:])]
    out = {"without BN": [], "with BN, before BN": [], "with BN, after BN": []}
    h_plain, h_bn = X, X
    with np.errstate(all="ignore"):
        for w in weights:
            b = np.zeros(w.shape[1])
            z, _ = affine_forward(h_plain, w, b)
            out["without BN"].append(z)
            h_plain, _ = relu_forward(z)
            z, _ = affine_forward(h_bn, w, b)
            out["with BN, before BN"].append(z)
            z_hat, _ = batchnorm_forward(z, np.ones(w.shape[1]), np.zeros(w.shape[1]), {"mode": "train"})
            out["with BN, after BN"].append(z_hat)
            h_bn, _ = relu_forward(z_hat)
    return out


def plot_preactivations(values, title="Pre-activations layer by layer"):
    """A grid of histograms: one row per series of ``preactivations``, one column per layer, std in each title."""
    rows = list(values)
    depth = len(values[rows[0]])
    fig, axes = plt.subplots(len(rows), depth, figsize=(9.5, 1.75 * len(rows) + 0.7), squeeze=False)
    colors = ["tab:gray", "tab:blue", "tab:orange"]
    for r, name in enumerate(rows):
        for c, z in enumerate(values[name]):
            ax = axes[r, c]
            z = np.ravel(z)
            z = z[np.isfinite(z)]
            std = float(np.std(z)) if z.size else float("nan")
            if z.size and std > 0:
                # One filled outline instead of 40 bar patches: the same picture, drawn several times faster.
                counts, edges = np.histogram(z, bins=40)
                ax.stairs(counts, edges, fill=True, color=colors[r % len(colors)])
            ax.set_title(f"layer {c + 1}: std {std:.2g}", fontsize=8)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_major_locator(MaxNLocator(3, symmetric=True))
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
            ax.set_yticks([])
            ax.xaxis.get_offset_text().set_fontsize(6)
            if c == 0:
                ax.set_ylabel(name.replace(", ", ",\n"), fontsize=8)
        axes[r, depth // 2].set_xlabel("pre-activation value" if r == len(rows) - 1 else "", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def preactivation_explorer(affine_forward, relu_forward, batchnorm_forward, X, weight_scale=0.02):
    """A logarithmic weight-scale slider redraws ``plot_preactivations`` for your layers."""
    def show(weight_scale=weight_scale):
        values = preactivations(affine_forward, relu_forward, batchnorm_forward, X, weight_scale)
        plot_preactivations(values, title=f"Pre-activations of 5 affine-ReLU layers, weight scale {weight_scale:.3g} "
                                          f"(x axes differ: read the std)")
        plt.show()

    return runtime.interact(show, weight_scale=widgets.FloatLogSlider(
        value=weight_scale, base=10, min=-3, max=0.5, step=0.25, continuous_update=False, description="weight scale", style={"description_width": "initial"}))


# --- where to put the normalization --------------------------------------------------------------

def plot_variant_curves(results, title="Training loss"):
    """Two panels: training loss per epoch and validation accuracy per epoch, one line per variant."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    finite_max = 0.0
    for name, r in results.items():
        h = r["history"]
        losses = np.asarray(h["epoch_loss"], dtype=float)
        finite_max = max(finite_max, np.max(losses[np.isfinite(losses)], initial=0.0))
        epochs = np.arange(1, len(losses) + 1)
        axes[0].plot(epochs, losses, marker="o", ms=3, label=name)
        axes[1].plot(epochs, h["val_acc"], marker="o", ms=3, label=f"{name} ({h['val_acc'][-1]:.0%})")
    axes[0].set(title=title, xlabel="epoch", ylabel="mean cross-entropy", ylim=(0, min(finite_max, 5.0) * 1.05 or 1))
    axes[1].set(title="Validation accuracy (test mode)", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def placement_explorer(train_variant, variants, weight_scale=0.1, learning_rate=0.1):
    """Sliders for the weight scale and the learning rate; ``train_variant(name, weight_scale, learning_rate)
    -> result of train_deep_net`` is rerun for every name in ``variants`` and the curves are compared."""
    def show(weight_scale=weight_scale, learning_rate=learning_rate):
        results = {name: train_variant(name, weight_scale, learning_rate) for name in variants}
        plot_variant_curves(results, title=f"Training loss (weight scale {weight_scale:.3g}, lr {learning_rate:.3g})")
        plt.show()

    log_slider = dict(base=10, step=0.25, continuous_update=False)
    return runtime.interact(
        show,
        weight_scale=widgets.FloatLogSlider(value=weight_scale, min=-3, max=0.5, description="weight scale", style={"description_width": "initial"},
                                            **log_slider),
        learning_rate=widgets.FloatLogSlider(value=learning_rate, min=-3, max=0.5, description="learning rate", style={"description_width": "initial"},
                                             **log_slider))


# --- one example, many batches -------------------------------------------------------------------

def outputs_across_batches(norm_forward, X, batch_size, example=0, feature=0, trials=300, rng=0):
    """The normalized value of X[example, feature] when X[example] sits in ``trials`` random batches.

    norm_forward(x_batch) -> out, e.g. lambda x: batchnorm_forward(x, gamma, beta, {"mode": "train"})[0].
    Returns an array of ``trials`` values (all equal for a per-example normalization).
    """
    rng = np.random.default_rng(rng)
    others = np.delete(np.arange(len(X)), example)
    values = []
    for _ in range(trials):
        idx = np.concatenate([[example], rng.choice(others, size=batch_size - 1, replace=False)])
        values.append(float(norm_forward(X[idx])[0, feature]))
    return np.array(values)


def batch_dependence_explorer(norms, X, example=0, feature=0, batch_size=8):
    """A batch-size slider; histograms of ``outputs_across_batches`` for each of ``norms`` ({name: forward})."""
    def show(batch_size=batch_size):
        ax = plt.subplots(figsize=(5.5, 3.6))[1]
        for name, forward in norms.items():
            values = outputs_across_batches(forward, X, batch_size, example=example, feature=feature,
                                            trials=budget(full=300, autograde=20))
            if np.ptp(values) < 1e-9:
                ax.axvline(values[0], lw=2.5, color="tab:orange", label=f"{name}: always {values[0]:.3f}")
            else:
                ax.hist(values, bins=30, alpha=0.7, label=f"{name}: spread (std) {values.std():.3f}")
        ax.set(title=f"Normalized value of one example, batch size {batch_size}",
               xlabel=f"output for example {example}, feature {feature}", ylabel="number of random batches")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)  # below the data
        ax.figure.tight_layout()
        plt.show()

    return runtime.interact(show, batch_size=widgets.IntSlider(value=batch_size, min=2, max=128, step=1,
                                                               continuous_update=False, description="batch size", style={"description_width": "initial"}))


# --- timing -------------------------------------------------------------------------------------
