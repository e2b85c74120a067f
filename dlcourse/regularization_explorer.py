"""Plots and sliders of chapter 05 (dropout, optimizers, regularization).

Everything that trains or updates is passed in: the explorers run *your* update rules and
*your* training function, and only draw what comes back.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from . import runtime
from matplotlib.colors import Normalize

# --- dropout at train and test time ---------------------------------------------------------------

def plot_expected_activation(results, ax=None, title="Mean activation: train vs test"):
    """Bars of the mean activation at train time and at test time for each dropout variant.

    results: {variant name: (mean at train time, mean at test time)}; the input's mean is drawn as a line
    via the special key "input" (a number) if present.
    """
    results = dict(results)
    reference = results.pop("input", None)
    ax = ax or plt.subplots(figsize=(5.5, 3.6))[1]
    names = list(results)
    pos = np.arange(len(names))
    ax.bar(pos - 0.18, [results[n][0] for n in names], width=0.36, label="train time (mean over many masks)")
    ax.bar(pos + 0.18, [results[n][1] for n in names], width=0.36, label="test time")
    if reference is not None:
        ax.axhline(reference, color="gray", ls="--", lw=1, label="mean of the input x")
    ax.set_xticks(pos, names, fontsize=8)
    ax.set(title=title, ylabel="mean of the layer's output")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)  # below the bars
    ax.grid(alpha=0.3, axis="y")
    ax.figure.tight_layout()
    return ax


# --- update rules on a 2-D loss surface -------------------------------------------------------------

def ravine(w, angle_degrees=30.0):
    """Loss and gradient of an elongated bowl, 0.5 * (0.1 * u0**2 + 10 * u1**2), with u = w rotated by
    ``angle_degrees`` (30 by default; at 0 the ravine's axes are the coordinate axes)."""
    angle = np.deg2rad(angle_degrees)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    curv = np.array([0.1, 10.0])
    u = rot.T @ w
    return 0.5 * float(np.sum(curv * u ** 2)), rot @ (curv * u)


def run_update_rule(update, config, start, steps, loss_and_grad=ravine):
    """The path of ``update(w, dw, config) -> (next_w, config)`` from ``start``: an array (steps + 1, 2)."""
    w = np.array(start, dtype=np.float64)
    path = [w.copy()]
    config = dict(config or {})
    for _ in range(steps):
        _, dw = loss_and_grad(w)
        w, config = update(w.copy(), dw, config)
        w = np.array(w, dtype=np.float64)
        path.append(w.copy())
        if not np.all(np.isfinite(w)) or np.abs(w).max() > 1e6:
            break
    return np.array(path)


MARKERS = ("o", "s", "^", "D", "v", "P")
STYLES = ("-", "--", "-.", ":", "-", "--")


def path_losses(path, loss_and_grad=ravine):
    """The loss at every point of a path (inf where it diverged)."""
    return np.array([loss_and_grad(w)[0] if np.all(np.isfinite(w)) else np.inf for w in path])


def plot_paths(paths, loss_and_grad=ravine, axes=None, title="Update rules on a ravine", extent=(-5.5, 5.5, -4, 4)):
    """Two panels: contours of the loss with one path per update rule ({name: (steps + 1, 2) array}), each
    with its own marker and line style, and the loss per step on a log scale (where overlapping paths part)."""
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(9.5, 3.9), layout="constrained")[1]   # never raises, unlike tight_layout
    ax, ax_loss = axes
    x0, x1, y0, y1 = extent
    xx, yy = np.meshgrid(np.linspace(x0, x1, 160), np.linspace(y0, y1, 120))
    zz = np.array([loss_and_grad(np.array([a, b]))[0] for a, b in zip(xx.ravel(), yy.ravel())]).reshape(xx.shape)
    ax.contour(xx, yy, zz, levels=np.geomspace(0.01, zz.max(), 14), colors="lightgray", linewidths=0.8)
    for k, (name, path) in enumerate(paths.items()):
        losses = path_losses(path, loss_and_grad)
        style = dict(marker=MARKERS[k % 6], ls=STYLES[k % 6], ms=4, lw=1.2, markevery=max(1, len(path) // 15))
        line, = ax.plot(path[:, 0], path[:, 1], label=name, **style)
        ax_loss.semilogy(np.arange(len(losses)), np.maximum(losses, 1e-12), color=line.get_color(),
                         label=f"{name} ({losses[-1]:.2g})", **style)
    ax.plot(0, 0, marker="*", color="black", ms=10, ls="none")
    ax.set(title=title, xlabel="$w_0$", ylabel="$w_1$", xlim=(x0, x1), ylim=(y0, y1))
    ax.title.set_fontsize(9)
    ax_loss.set(title="loss per step (log scale), final in brackets", xlabel="step", ylabel="loss")
    ax_loss.title.set_fontsize(9)
    ax_loss.grid(alpha=0.3, which="both")
    ax_loss.legend(fontsize=7, loc="lower left")
    return axes


def update_rule_explorer(rules, start=(-4.6, -2.1), steps=60, angle_degrees=30.0):
    """Sliders for the learning rate (shared by every rule), the number of steps and the ravine's rotation.

    rules: {name: (update, config)}; every rule runs with the slider's learning rate and its own other settings.
    """
    def show(learning_rate=0.1, steps=steps, angle_degrees=angle_degrees):
        loss = lambda w: ravine(w, angle_degrees)           # noqa: E731
        paths = {name: run_update_rule(update, dict(config, learning_rate=learning_rate), start, steps, loss)
                 for name, (update, config) in rules.items()}
        print(f"learning rate {learning_rate:.3g} for every rule, ravine rotated by {angle_degrees:g} degrees; "
              "loss after the last step: " + ", ".join(f"{n} {path_losses(p, loss)[-1]:.2g}" for n, p in paths.items()))
        axes = plot_paths(paths, loss, title=f"{steps} steps, learning rate {learning_rate:.2g}, "
                                             f"rotated {angle_degrees:g} deg")
        plt.show()

    style = {"description_width": "initial"}
    return runtime.interact(
        show,
        learning_rate=widgets.FloatLogSlider(value=0.1, base=10, min=-2, max=-0.5, step=0.1, continuous_update=False,
                                             description="learning rate", style=style),
        steps=widgets.IntSlider(value=steps, min=5, max=200, step=5, continuous_update=False, description="steps",
                                style=style),
        angle_degrees=widgets.SelectionSlider(options=[0.0, 15.0, 30.0, 45.0], value=angle_degrees,
                                              continuous_update=False, description="rotation (degrees)", style=style))


# --- L2 penalty vs decoupled weight decay --------------------------------------------------------------

def plot_l2_vs_decay(differences, ax=None, title="L2 penalty vs decoupled weight decay"):
    """max |w_L2 - w_decay| after every step, one line per optimizer ({name: sequence}), log scale."""
    ax = ax or plt.subplots(figsize=(5.5, 3.6))[1]
    for name, diff in differences.items():
        diff = np.maximum(np.asarray(diff, dtype=float), 1e-18)    # exact zeros would vanish from a log plot
        ax.semilogy(np.arange(1, len(diff) + 1), diff, marker="o", ms=3, label=name)
    ax.axhline(1e-15, color="gray", ls=":", lw=1, label="float64 round-off")
    ax.set(title=title, xlabel="step", ylabel="max |w (L2) - w (decay)|", ylim=(1e-18, None))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax


# --- training curves, early stopping ---------------------------------------------------------------------

def early_stopping_epochs(val_scores, patience):
    """(best epoch, stop epoch), both 1-based: the best validation score, and the epoch at which training would
    stop after ``patience`` epochs without improvement (the last epoch if it never stops)."""
    best, best_epoch = -np.inf, 0
    for epoch, score in enumerate(val_scores, start=1):
        if score > best:
            best, best_epoch = score, epoch
        elif epoch - best_epoch >= patience:
            return best_epoch, epoch
    return best_epoch, len(val_scores)


def plot_history(history, axes=None, title="", patience=None):
    """Two panels: loss (train, validation) and accuracy (train, validation) per epoch, best epoch marked.

    history: the dict ``training.train`` returns, with "epoch_loss" plus the "train_acc", "val_acc" and
    "val_loss" your evaluate function added.
    """
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(9.5, 3.6))[1]
    epochs = np.arange(1, len(history["epoch_loss"]) + 1)
    best, stop = early_stopping_epochs(history["val_acc"], patience or len(epochs) + 1)
    axes[0].plot(epochs, history["epoch_loss"], label="train (mean over minibatches)")
    axes[0].plot(epochs, history["val_loss"], label="validation")
    axes[1].plot(epochs, history["train_acc"], label="train")
    axes[1].plot(epochs, history["val_acc"], label="validation")
    for ax in axes:
        ax.axvline(best, color="tab:green", ls="--", lw=1,
                   label=f"best validation epoch ({best})" if ax is axes[1] else None)
        if patience and stop < len(epochs):
            ax.axvline(stop, color="tab:red", ls=":", lw=1,
                       label=f"early stop, patience {patience} ({stop})" if ax is axes[1] else None)
        ax.grid(alpha=0.3)
    axes[1].plot(best, history["val_acc"][best - 1], marker="*", ms=10, color="tab:green")
    axes[0].set(title=f"Loss {title}".strip(), xlabel="epoch", ylabel="softmax cross-entropy")
    axes[1].set(title=f"Accuracy {title}".strip(), xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7, loc="lower right")
    return axes


def plot_sweep(histories, key="val_acc", ax=None, title="Validation accuracy", ylabel="validation accuracy",
               train_key="train_acc"):
    """One line per run ({label: history}): ``key`` solid, ``train_key`` dashed in the same colour."""
    ax = ax or plt.subplots(figsize=(5.5, 3.6))[1]
    for label, history in histories.items():
        line, = ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=label)
        if train_key:
            ax.plot(np.arange(1, len(history[train_key]) + 1), history[train_key], ls="--", lw=0.8,
                    color=line.get_color())
    ax.set(title=title + (" (dashed: train)" if train_key else ""), xlabel="epoch", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def regularization_explorer(run, dropout_rates, weight_decays, patience=20):
    """Sliders for the dropout rate and the weight decay; ``run(p, weight_decay) -> history`` is plotted.

    Results are remembered, so moving back to a setting you tried is instant.
    """
    memory = {}

    def show(dropout_p=dropout_rates[0], weight_decay=weight_decays[0]):
        key = (dropout_p, weight_decay)
        if key not in memory:
            memory[key] = run(dropout_p, weight_decay)
        history = memory[key]
        axes = plot_history(history, title=f"(p = {dropout_p}, weight decay = {weight_decay:g})", patience=patience)
        best, _ = early_stopping_epochs(history["val_acc"], len(history["val_acc"]) + 1)
        print(f"final validation accuracy {history['val_acc'][-1]:.1%}, best {history['val_acc'][best - 1]:.1%} "
              f"at epoch {best}; final train accuracy {history['train_acc'][-1]:.1%}")
        axes[0].figure.tight_layout()
        plt.show()

    return runtime.interact(
        show,
        dropout_p=widgets.SelectionSlider(options=list(dropout_rates), value=dropout_rates[0],
                                          continuous_update=False, description="dropout p", style={"description_width": "initial"}),
        weight_decay=widgets.SelectionSlider(options=list(weight_decays), value=weight_decays[0],
                                             continuous_update=False, description="weight decay", style={"description_width": "initial"}))


# --- hyperparameter search ------------------------------------------------------------------------------------

def plot_search(results, axes=None, xlabel="learning rate", ylabel="weight decay", score="validation accuracy"):
    """One panel per search method: where it sampled (log-log) and how good each point was (colour).

    results: {method: list of (x, y, score)}. The best point of each method is starred.
    """
    if axes is None:
        axes = plt.subplots(1, len(results), figsize=(9.5, 3.8), sharex=True, sharey=True)[1]
    axes = np.atleast_1d(axes)
    scores = np.concatenate([[r[2] for r in rows] for rows in results.values()])
    # The colour scale spans the best 10 points of score; anything worse shows as the darkest colour.
    norm = Normalize(vmin=max(float(np.min(scores)), float(np.max(scores)) - 0.1), vmax=float(np.max(scores)))
    for ax, (method, rows) in zip(axes, results.items()):
        xs, ys, zs = (np.array(col, dtype=float) for col in zip(*rows))
        sc = ax.scatter(xs, ys, c=zs, cmap="viridis", norm=norm, s=45, edgecolor="black", linewidth=0.4)
        k = int(np.argmax(zs))
        ax.plot(xs[k], ys[k], marker="*", ms=16, color="tab:red", markeredgecolor="black", ls="none",
                label=f"best: {zs[k]:.1%}")
        for x in np.unique(xs) if len(np.unique(xs)) <= 6 else []:
            ax.axvline(x, color="gray", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(title=f"{method}: {len(rows)} runs, {len(np.unique(xs))} distinct {xlabel}s", xlabel=xlabel)
        ax.legend(fontsize=8, loc="lower left")
        ax.title.set_fontsize(9)
    axes[0].set_ylabel(ylabel)
    fig = axes[0].figure
    fig.colorbar(sc, ax=list(axes), label=score + " (darkest: worse)", shrink=0.9, extend="min")
    return axes
