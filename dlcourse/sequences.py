"""Chapter 09's learner-side support: toy sentences, generated sequence tasks, explorers and plots.

Everything that needs a recurrent layer or an attention layer takes *your* functions as
arguments (``rnn_step_forward``, ``lstm_step_backward``, ``MultiHeadAttention``, ...): this
module composes them into experiments; it never implements a graded function itself.
"""
from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .runtime import interact

# --- words -----------------------------------------------------------------------------------------

SLOT_SENTENCES = {
    "arrive": ["arrive", "Taipei", "on", "November", "2nd"],
    "leave": ["leave", "Taipei", "on", "November", "2nd"],
}


def vocabulary(*sentences):
    """The sorted list of distinct words of the sentences (a word's index is its position)."""
    return sorted({w for s in sentences for w in s})


def one_hot(words, vocab):
    """(T, V) array: row t is the one-hot vector of words[t] in ``vocab``."""
    out = np.zeros((len(words), len(vocab)))
    out[np.arange(len(words)), [vocab.index(w) for w in words]] = 1.0
    return out


def _box(ax, xy, text, color, w=1.2, h=0.55):
    ax.add_patch(FancyBboxPatch((xy[0] - w / 2, xy[1] - h / 2), w, h, boxstyle="round,pad=0.05", fc=color,
                                ec="black", lw=1))
    ax.text(*xy, text, ha="center", va="center", fontsize=10)


def _arrow(ax, a, b, color="black", rad=0.0, style="-|>"):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=12, color=color,
                                 connectionstyle=f"arc3,rad={rad}", lw=1.3))


def draw_elman_jordan():
    """Two small diagrams: an Elman network feeds back its hidden state, a Jordan network its output."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.2))
    for ax, title, source in zip(axes, ["Elman network: the hidden state is fed back",
                                        "Jordan network: the output is fed back"], ["hidden", "output"]):
        ax.set(xlim=(-1.8, 2.2), ylim=(-0.6, 3.1), title=title)
        ax.axis("off")
        _box(ax, (0, 0), "$x_t$", "#cfe2f3")
        _box(ax, (0, 1.3), "$h_t$", "#fce5cd")
        _box(ax, (0, 2.6), "$y_t$", "#d9ead3")
        _box(ax, (1.6, 1.3), "memory", "#eeeeee", w=1.0)
        _arrow(ax, (0, 0.3), (0, 1.0))
        _arrow(ax, (0, 1.6), (0, 2.3))
        start = (0.6, 1.45) if source == "hidden" else (0.6, 2.6)
        _arrow(ax, start, (1.6, 1.6), color="#cc0000", rad=-0.3)
        _arrow(ax, (1.6, 1.0), (0.6, 1.15), color="#cc0000", rad=-0.3)
        ax.text(1.6, 0.45, "copy of $h_{t-1}$" if source == "hidden" else "copy of $y_{t-1}$", ha="center",
                fontsize=9, color="#cc0000")
    fig.tight_layout()
    return fig


# --- gradients through time ----------------------------------------------------------------------------

def recurrent_matrix(H, spectral_radius, rng=0):
    """An (H, H) matrix with every eigenvalue of modulus ``spectral_radius`` (a scaled random rotation)."""
    rng = np.random.default_rng(rng)
    q, r = np.linalg.qr(rng.normal(size=(H, H)))
    return spectral_radius * q * np.sign(np.diag(r))


def rnn_gradient_norms(rnn_step_forward, rnn_step_backward, Wx, Wh, b, x, h0):
    """Run *your* RNN steps over x (N, T, D), then send a unit gradient back from the last hidden state.

    Returns an array g of length T: g[k] is the norm of dL/dh at step T - 1 - k (k steps back).
    """
    T = x.shape[1]
    h, caches = h0, []
    for t in range(T):
        h, cache = rnn_step_forward(x[:, t], h, Wx, Wh, b)
        caches.append(cache)
    dh = np.ones_like(h) / np.sqrt(h.size)
    norms = []
    for t in reversed(range(T)):
        norms.append(np.linalg.norm(dh))
        _, dh, _, _, _ = rnn_step_backward(dh, caches[t])
    return np.array(norms)


def lstm_gradient_norms(lstm_step_forward, lstm_step_backward, Wx, Wh, b, x, h0, c0):
    """Like ``rnn_gradient_norms`` for *your* LSTM step: g[k] is the norm of dL/dc at step T - 2 - k
    (the last entry is the initial cell state c0).

    The loss reads the last hidden state only (a unit gradient on it); the cell gradient of a step is
    what ``lstm_step_backward`` sends back as dprev_c.
    """
    T = x.shape[1]
    h, c, caches = h0, c0, []
    for t in range(T):
        h, c, cache = lstm_step_forward(x[:, t], h, c, Wx, Wh, b)
        caches.append(cache)
    dh, dc = np.ones_like(h) / np.sqrt(h.size), np.zeros_like(c)
    norms = []
    for t in reversed(range(T)):
        _, dh, dc, _, _, _ = lstm_step_backward(dh, dc, caches[t])
        norms.append(np.linalg.norm(dc))
    return np.array(norms)


def rnn_weights(D, H, spectral_radius, input_scale=1.0, rng=0):
    """Wx (D, H), Wh (H, H) with the given spectral radius, b = 0; inputs of size input_scale keep tanh linear."""
    rng = np.random.default_rng(rng)
    return (rng.normal(0.0, input_scale / np.sqrt(D), size=(D, H)), recurrent_matrix(H, spectral_radius, rng),
            np.zeros(H))


def gradient_explorer(rnn_step_forward, rnn_step_backward, H=32, D=8, N=4):
    """Sliders: spectral radius of Wh, sequence length, input size; the gradient norm against steps back."""
    from ipywidgets import FloatLogSlider, FloatSlider, IntSlider

    def show(spectral_radius=1.0, T=40, input_scale=1e-3):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        rng = np.random.default_rng(0)
        x = rng.normal(size=(N, T, D))
        for rho in sorted({0.8, 0.9, 1.0, 1.1, 1.2, float(spectral_radius)}):
            Wx, Wh, b = rnn_weights(D, H, rho, input_scale, rng=1)
            g = rnn_gradient_norms(rnn_step_forward, rnn_step_backward, Wx, Wh, b, x, np.zeros((N, H)))
            mine = np.isclose(rho, spectral_radius)
            ax1.semilogy(g, lw=2.5 if mine else 1, color="black" if mine else None,
                         label=f"radius {rho:.2f}" + (" (slider)" if mine else ""))
        ax1.set(title="Gradient reaching earlier steps", xlabel="steps back from the loss",
                ylabel=r"$\|\partial L / \partial h_t\|$")
        ax1.legend(fontsize=7)
        ax1.grid(alpha=0.3)
        lengths = np.arange(5, 81, 5)
        Wx, Wh, b = rnn_weights(D, H, spectral_radius, input_scale, rng=1)
        xl = rng.normal(size=(N, lengths[-1], D))
        at_zero = [rnn_gradient_norms(rnn_step_forward, rnn_step_backward, Wx, Wh, b, xl[:, :L],
                                      np.zeros((N, H)))[-1] for L in lengths]
        ax2.semilogy(lengths, at_zero, "o-", color="black")
        ax2.semilogy(lengths, float(spectral_radius) ** (lengths - 1), "--", color="gray",
                     label=r"radius$^{T-1}$ (linear RNN)")
        ax2.set(title=f"Gradient at step 0, radius {spectral_radius:.2f}", xlabel="sequence length T",
                ylabel=r"$\|\partial L / \partial h_0\|$")
        ax2.legend(fontsize=8)
        ax2.grid(alpha=0.3)
        fig.tight_layout()
        plt.show()

    # A redraw runs the RNN forward and backward some twenty times: one redraw per drag, for the value it ends on.
    wide = {"description_width": "initial"}
    return interact(show, spectral_radius=FloatSlider(value=1.1, min=0.5, max=1.5, step=0.05, continuous_update=False,
                                                      description="spectral radius", style=wide),
                    T=IntSlider(value=40, min=5, max=80, step=5, continuous_update=False, style=wide),
                    input_scale=FloatLogSlider(value=1e-3, base=10, min=-4, max=0.5, step=0.25,
                                               continuous_update=False, description="input scale", style=wide))


def plot_rnn_vs_lstm_gradients(rnn_norms, lstm_norms, title_suffix=""):
    """Side by side: gradient norm against steps back for the RNN (dL/dh) and the LSTM (dL/dc)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, curves, title, ylabel in ((axes[0], rnn_norms, "Vanilla RNN", r"$\|\partial L/\partial h_t\|$"),
                                      (axes[1], lstm_norms, "LSTM (cell state)", r"$\|\partial L/\partial c_t\|$")):
        for label, g in curves.items():
            ax.semilogy(g, label=label)
        ax.set(title=title + title_suffix, xlabel="steps back from the loss", ylabel=ylabel)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --- a task where gradients explode -------------------------------------------------------------------------

def remember_first_task(n, T, rng):
    """x (n, T, 1) Gaussian noise, y (n,) = x[:, 0, 0]: the output must remember the very first input."""
    x = rng.normal(size=(n, T, 1))
    return x, x[:, 0, 0].copy()


def train_rnn_regressor(rnn_forward, rnn_backward, clip_gradients=None, max_norm=1.0, *, T=20, H=16, steps=400,
                        batch_size=32, learning_rate=0.1, spectral_radius=1.5, rng=0):
    """SGD on the remember-the-first-input task with *your* RNN, a linear read-out of the last hidden state.

    clip_gradients: your function (grads, max_norm) -> clipped grads, or None for no clipping.
    Returns {"loss": per-step MSE, "grad_norm": per-step global gradient norm before clipping}.
    """
    rng = np.random.default_rng(rng)
    p = {"Wx": rng.normal(size=(1, H)), "Wh": recurrent_matrix(H, spectral_radius, rng), "b": np.zeros(H),
         "w": rng.normal(0.0, 1 / np.sqrt(H), size=H), "c": np.zeros(1)}
    history = {"loss": [], "grad_norm": []}
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            x, y = remember_first_task(batch_size, T, rng)
            h, cache = rnn_forward(x, np.zeros((batch_size, H)), p["Wx"], p["Wh"], p["b"])
            residual = h[:, -1] @ p["w"] + p["c"][0] - y
            history["loss"].append(float(np.mean(residual ** 2)))
            dpred = 2 * residual / batch_size
            dh = np.zeros_like(h)
            dh[:, -1] = np.outer(dpred, p["w"])
            _, _, dWx, dWh, db = rnn_backward(dh, cache)
            grads = {"Wx": dWx, "Wh": dWh, "b": db, "w": h[:, -1].T @ dpred, "c": np.array([dpred.sum()])}
            history["grad_norm"].append(float(np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))))
            if clip_gradients is not None:
                grads = clip_gradients(grads, max_norm)
            for k in p:
                p[k] = p[k] - learning_rate * grads[k]
    return history


def plot_clipping(histories, max_norm):
    """Loss and gradient norm per step for {label: history} of ``train_rnn_regressor``."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, hist in histories.items():
        loss = np.array(hist["loss"])
        ax1.semilogy(np.where(np.isfinite(loss), loss, np.nan), label=label, lw=1)
        ax2.semilogy(hist["grad_norm"], label=label, lw=1)
    ax2.axhline(max_norm, color="black", ls="--", lw=1, label=f"max_norm = {max_norm}")
    ax1.set(title="Training loss (remember the first input)", xlabel="SGD step", ylabel="MSE (log scale)")
    ax2.set(title="Global gradient norm before clipping", xlabel="SGD step", ylabel="norm (log scale)")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
