"""Plots the chapters share: decision boundaries and training curves."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

CLASS_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def plot_decision_boundary(predict, X, y, ax=None, title="Decision boundary", resolution=200, margin=0.3):
    """Shade the plane by ``predict(points) -> class labels`` and scatter the data on top.

    predict: callable taking an (M, 2) array and returning M integer labels.
    X: (N, 2) inputs, y: (N,) integer labels. Returns the Axes.
    """
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    x_min, y_min = X.min(axis=0) - margin
    x_max, y_max = X.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    labels = np.asarray(predict(np.column_stack([xx.ravel(), yy.ravel()]))).reshape(xx.shape)
    classes = int(max(labels.max(), y.max())) + 1
    colors = CLASS_COLORS[:classes]
    ax.contourf(xx, yy, labels, levels=np.arange(classes + 1) - 0.5, colors=colors, alpha=0.25)
    for k in range(classes):
        ax.scatter(*X[y == k].T, s=12, color=colors[k], edgecolor="white", linewidth=0.3, label=f"class {k}")
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", xlim=(x_min, x_max), ylim=(y_min, y_max))
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    return ax


def plot_curves(curves, ax=None, title="Training", xlabel="step", ylabel="loss", logy=False):
    """One line per entry of ``curves`` ({label: sequence of values}). Returns the Axes."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for label, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), values, label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    if logy:
        ax.set_yscale("log")
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def plot_image_grid(images, titles=None, shape=(8, 8), ncols=8, title=None, cmap="gray_r", title_colors=None):
    """Small images in a grid, e.g. digits with their predicted labels.

    images: (K, H*W) or (K, H, W) array; titles: K short strings (optional);
    title_colors: K colours for the titles (e.g. red for a wrong prediction). Returns the Figure.
    """
    images = np.asarray(images).reshape(len(images), *shape)
    nrows = int(np.ceil(len(images) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.1 * ncols, 1.3 * nrows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            ax.imshow(images[k], cmap=cmap)
            if titles is not None:
                ax.set_title(titles[k], fontsize=9, color=(title_colors[k] if title_colors is not None else "black"))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
