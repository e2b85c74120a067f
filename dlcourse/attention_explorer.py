"""Chapter 09's attention pictures: the sqrt(d) slider, masks as heat maps, positional encodings.

Every function that attends takes *your* ``scaled_dot_product_attention`` as an argument.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from .runtime import interact


def weight_heatmap(ax, weights, title, xlabels=None, ylabels=None):
    """One (Lq, Lk) weight matrix as a heat map with its numbers."""
    w = np.asarray(weights)
    ax.imshow(w, cmap="Blues", vmin=0, vmax=1)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if w[i, j] > 0.6 else "black")
    ax.set_xticks(range(w.shape[1]), xlabels if xlabels is not None else range(w.shape[1]), fontsize=8)
    ax.set_yticks(range(w.shape[0]), ylabels if ylabels is not None else range(w.shape[0]), fontsize=8)
    ax.set(title=title, xlabel="key", ylabel="query")


def saturation_curve(attention, dims, scaled, n_keys=16, n_queries=256, seed=0):
    """Mean largest weight per query for random unit-variance q, k of size d, with or without the 1/sqrt(d).

    Without the scaling the scores have variance d, so the softmax saturates to one-hot as d grows.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for d in dims:
        q = torch.randn(n_queries, 1, d, generator=g, dtype=torch.float64)
        k = torch.randn(n_queries, n_keys, d, generator=g, dtype=torch.float64)
        v = torch.zeros(n_queries, n_keys, 1, dtype=torch.float64)
        # Multiplying q by sqrt(d) cancels the division inside your function: the unscaled scores.
        _, w = attention(q if scaled else q * d ** 0.5, k, v)
        out.append(float(w.max(dim=-1).values.mean()))
    return np.array(out)


def scaling_explorer(attention, n_keys=16):
    """Slider over d: the weights one query gives to 16 keys, with and without dividing by sqrt(d)."""
    from ipywidgets import IntSlider

    dims = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    curves = {s: saturation_curve(attention, dims, s, n_keys) for s in (True, False)}

    def show(log2_d=6):
        d = 2 ** int(log2_d)
        g = torch.Generator().manual_seed(1)
        q = torch.randn(1, d, generator=g, dtype=torch.float64)
        k = torch.randn(n_keys, d, generator=g, dtype=torch.float64)
        v = torch.zeros(n_keys, 1, dtype=torch.float64)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
        for scaled, color in ((True, "tab:blue"), (False, "tab:red")):
            _, w = attention(q if scaled else q * d ** 0.5, k, v)
            label = "q k / sqrt(d)" if scaled else "q k (no scaling)"
            ax1.bar(np.arange(n_keys) + (0.2 if scaled else -0.2), w[0].numpy(), width=0.4, color=color, label=label)
            ax2.semilogx(dims, curves[scaled], "o-", color=color, base=2, label=label)
        ax2.axvline(d, color="gray", ls="--", lw=1)
        ax1.set(title=f"Weights of one query over {n_keys} keys, d = {d}", xlabel="key", ylabel="attention weight",
                ylim=(0, 1))
        ax2.set(title="Mean largest weight (1 = one-hot softmax)", xlabel="d (size of q and k)",
                ylabel="largest weight", ylim=(0, 1.02))
        for ax in (ax1, ax2):
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        plt.show()

    return interact(show, log2_d=IntSlider(value=6, min=0, max=9, description="log2(d)"))


def plot_masks(padding_weights, causal_weights, tokens):
    """Side by side: a padded sentence's weights and a causal (no peeking ahead) attention's weights."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    weight_heatmap(ax1, padding_weights, "Padding mask: nobody attends to <pad>", tokens, tokens)
    weight_heatmap(ax2, causal_weights, "Causal mask: no attention to later words", tokens, tokens)
    fig.tight_layout()
    return fig


def plot_positional_encoding(pe):
    """The (L, d) encoding as an image, and the similarity of every position's encoding with every other's."""
    pe = np.asarray(pe)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    im = ax1.imshow(pe, aspect="auto", cmap="RdBu", vmin=-1, vmax=1)
    ax1.set(title="Sinusoidal positional encoding", xlabel="feature (sin, cos pairs; slower to the right)",
            ylabel="position")
    fig.colorbar(im, ax=ax1)
    sim = pe @ pe.T / pe.shape[1]
    im = ax2.imshow(sim, cmap="viridis")
    ax2.set(title="Dot products PE(s) . PE(t) / d", xlabel="position t", ylabel="position s")
    fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    return fig
