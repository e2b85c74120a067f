"""Experiments of chapter 01 on losses and metrics: losses as likelihoods, hinge vs logistic loss,
cross-entropy = entropy + KL, and the confusion matrix with F1.

Functions that need a graded function take it as an argument (``kl_explorer(softmax)``), so the
pictures run *your* code.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from . import runtime


def gaussian_nll(pred, y, sigma=1.0):
    """Mean negative log-likelihood of targets y under N(pred, sigma^2)."""
    return float(np.mean((pred - y) ** 2 / (2 * sigma ** 2) + 0.5 * np.log(2 * np.pi * sigma ** 2)))


def plot_likelihood_losses(sigmas=(0.5, 1.0, 2.0)):
    """Left: the Gaussian NLL against the residual for a few sigmas (each a scaled, shifted parabola: MSE).
    Right: hinge, logistic and 0-1 losses against the margin y * s of a two-class score (y in {-1, +1}).
    """
    r = np.linspace(-3, 3, 301)
    margin = np.linspace(-3, 3, 601)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for sigma in sigmas:
        left.plot(r, r ** 2 / (2 * sigma ** 2) + 0.5 * np.log(2 * np.pi * sigma ** 2), label=f"σ = {sigma:g}")
    left.set(title="Gaussian NLL = MSE / (2σ²) + const", xlabel=r"residual $\hat y - y$", ylabel="−log p(y)",
             ylim=(-1, 6))
    left.legend(fontsize=8, loc="upper center")
    right.plot(margin, np.maximum(0.0, 1.0 - margin), label="hinge max(0, 1 − m)")
    right.plot(margin, np.logaddexp(0.0, -margin), label="logistic log(1 + e^−m)")
    right.step(margin, (margin <= 0).astype(float), where="mid", color="gray", ls="--", label="0-1 loss")
    right.set(title="Two-class losses of the margin", xlabel=r"margin $m = y\,s$ ($y = \pm 1$)", ylabel="loss",
              ylim=(-0.1, 4))
    right.legend(fontsize=8, loc="upper right")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def entropy(p):
    """H(p) = -sum p log p in nats (0 log 0 = 0)."""
    p = np.asarray(p, dtype=float)
    nz = p > 0
    return float(-np.sum(p[nz] * np.log(p[nz])))


def cross_entropy(p, q):
    """H(p, q) = -sum p log q in nats."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    nz = p > 0
    return float(-np.sum(p[nz] * np.log(q[nz])))


def categorical_kl(p, q):
    """KL(p || q) = sum p log(p / q) in nats."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


def kl_explorer(softmax, p=(0.6, 0.3, 0.1)):
    """Sliders move a model distribution q = softmax((log p + tilt * (1, 0, -1)) / T); bars show p and q.

    The title states H(p), KL(p || q) and H(p, q), and that H(p, q) = H(p) + KL(p || q). ``softmax`` is yours.
    """
    p = np.asarray(p, dtype=float)
    direction = np.linspace(1.0, -1.0, len(p))

    def show(temperature=2.0, tilt=-1.0):
        q = np.asarray(softmax(((np.log(p) + tilt * direction) / temperature)[None, :]))[0]
        h, kl, ce = entropy(p), categorical_kl(p, q), cross_entropy(p, q)
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        k = np.arange(len(p))
        ax.bar(k - 0.2, p, width=0.4, label="p (data)")
        ax.bar(k + 0.2, q, width=0.4, label="q (model)")
        ax.set_xticks(k, [f"class {i}" for i in k])
        ax.set(ylabel="probability", ylim=(0, 1.15),
               title=f"H(p) = {h:.3f}, KL(p‖q) = {kl:.3f}\nH(p, q) = {ce:.3f} = H(p) + KL (sum {h + kl:.3f})")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        plt.show()

    style = {"description_width": "initial"}
    return runtime.interact(
        show,
        temperature=widgets.FloatLogSlider(value=2.0, base=10, min=-0.7, max=1, step=0.05, continuous_update=False,
                                           description="temperature of q", style=style),
        tilt=widgets.FloatSlider(value=-1.0, min=-2.0, max=2.0, step=0.1, continuous_update=False,
                                 description="tilt of q", style=style))


def confusion_counts(y_true, y_pred):
    """2 x 2 counts [[TN, FP], [FN, TP]]: rows are the true class, columns the predicted one."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return np.array([[np.sum((y_true == t) & (y_pred == p)) for p in (0, 1)] for t in (0, 1)])


def f1_from(precision, recall):
    """Harmonic mean of precision and recall (0.0 when both are 0)."""
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def confusion_explorer(classification_metrics, y_true, score, threshold=1.0, confusion_matrix=None):
    """A threshold slider: the confusion matrix of (score > threshold) and F1 against the threshold.

    ``classification_metrics(y_true, y_pred) -> (accuracy, precision, recall)`` is yours, and so is
    ``confusion_matrix(y_true, y_pred, num_classes)`` when given (otherwise the counts are computed here).
    """
    thresholds = np.linspace(score.min(), score.max(), 81)
    f1_curve = np.array([f1_from(*classification_metrics(y_true, (score > t).astype(int))[1:]) for t in thresholds])

    def show(threshold=threshold):
        y_pred = (score > threshold).astype(int)
        accuracy, precision, recall = classification_metrics(y_true, y_pred)
        f1 = f1_from(precision, recall)
        counts = (confusion_counts(y_true, y_pred) if confusion_matrix is None
                  else np.asarray(confusion_matrix(y_true, y_pred, 2)))
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
        left.imshow(counts, cmap="Blues")
        names = [["TN", "FP"], ["FN", "TP"]]
        for i in range(2):
            for j in range(2):
                left.text(j, i, f"{names[i][j]}\n{counts[i, j]}", ha="center", va="center", fontsize=10,
                          color="white" if counts[i, j] > counts.max() / 2 else "black")
        left.set_xticks([0, 1], ["pred 0", "pred 1"])
        left.set_yticks([0, 1], ["true 0", "true 1"])
        left.set_title(f"Threshold {threshold:.2f}", fontsize=10)
        right.plot(thresholds, f1_curve, label="F1")
        right.axvline(threshold, color="gray", ls="--", lw=1, label="this threshold")
        right.set(title=f"acc {accuracy:.3f}, prec {precision:.3f}, rec {recall:.3f}, F1 {f1:.3f}",
                  xlabel="threshold on the score", ylabel="F1", ylim=(-0.05, 1.05))
        right.title.set_fontsize(9)
        right.grid(alpha=0.3)
        right.legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        plt.show()

    return runtime.interact(show, threshold=widgets.FloatSlider(
        value=threshold, min=float(np.round(score.min(), 1)), max=float(np.round(score.max(), 1)), step=0.1,
        continuous_update=False, description="threshold", style={"description_width": "initial"}))
