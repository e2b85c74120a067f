"""Experiments of chapter 01 (MLP and XOR): lines that fail, features that help, a network you build by hand.

Every function that needs a graded function takes it as an argument, so the
experiments run *your* code: ``hand_built_network(mlp_forward, X, y)``.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from . import plots, runtime
from .runtime import is_autograding


# --- A single linear unit --------------------------------------------------------

def train_perceptron(X, y, epochs=30, learning_rate=0.1, rng=0):
    """Rosenblatt's perceptron rule on 0/1 labels: w += lr * (y_i - step(w.x_i + b)) * x_i.

    X: (N, D), y: (N,) in {0, 1}. One epoch visits every sample once in a random order.
    Returns (w of shape (D,), b, accuracy after every epoch as a list).
    """
    rng = np.random.default_rng(rng)
    w, b = np.zeros(X.shape[1]), 0.0
    accuracy = []
    for _ in range(epochs):
        for i in rng.permutation(len(X)):
            error = y[i] - float(X[i] @ w + b > 0)
            w += learning_rate * error * X[i]
            b += learning_rate * error
        accuracy.append(float(np.mean((X @ w + b > 0) == y)))
    return w, b, accuracy


def show_perceptron(X, y, epochs=30, rng=0, title="A perceptron on XOR"):
    """Train a perceptron, then draw its final boundary and its accuracy after every epoch."""
    w, b, accuracy = train_perceptron(X, y, epochs=epochs, rng=rng)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    plots.plot_decision_boundary(lambda P: (P @ w + b > 0).astype(int), X, y, ax=left,
                                 title=f"{title}: boundary after {epochs} epochs")
    right.plot(np.arange(1, epochs + 1), accuracy, marker="o", ms=3)
    right.axhline(0.75, color="gray", ls="--", lw=1, label="3 of 4 corners right")
    right.set(title="Training accuracy never settles", xlabel="epoch", ylabel="accuracy", ylim=(0, 1.05))
    right.legend(fontsize=8, loc="lower right")
    right.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()
    return w, b, accuracy


def any_line_explorer(X, y):
    """Sliders for the direction and offset of one line; the accuracy of the best side is shown."""
    def show(angle=30.0, offset=0.0):
        normal = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
        side = (X @ normal - offset > 0).astype(int)
        # Either side of the line may be called class 1: keep the better labelling.
        flip = np.mean(side == y) < 0.5
        predict = (lambda P: 1 - (P @ normal - offset > 0).astype(int)) if flip else \
                  (lambda P: (P @ normal - offset > 0).astype(int))
        accuracy = float(np.mean(predict(X) == y))
        ax = plt.subplots(figsize=(4.5, 4))[1]
        plots.plot_decision_boundary(predict, X, y, ax=ax, title=f"One line: accuracy {accuracy:.0%}", resolution=120)
        plt.show()

    return runtime.interact(
        show,
        angle=widgets.FloatSlider(value=30.0, min=0.0, max=180.0, step=5.0, description="angle (deg)",
                                  continuous_update=False, style={"description_width": "initial"}),
        offset=widgets.FloatSlider(value=0.0, min=-1.5, max=1.5, step=0.1, description="offset",
                                   continuous_update=False, style={"description_width": "initial"}))


# --- Basis functions ---------------------------------------------------------------

def show_feature_space(xor_features, X, y, epochs=20):
    """Left: the data in the plane (x1, x1*x2) of your features, where one line separates the classes.
    Right: a perceptron trained on your features, its boundary drawn back in the input plane.
    """
    F = xor_features(X)
    w, b, accuracy = train_perceptron(F, y, epochs=epochs)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    for k, color in enumerate(plots.CLASS_COLORS[:2]):
        left.scatter(F[y == k, 0], F[y == k, 2], s=12, color=color, edgecolor="white", linewidth=0.3,
                     label=f"class {k}")
    left.axhline(0.0, color="black", lw=1.2, label="$x_1 x_2 = 0$")
    left.set(title="Feature space: a line separates", xlabel="$x_1$ (feature 1)", ylabel="$x_1 x_2$ (feature 3)")
    left.legend(fontsize=8, loc="center")
    plots.plot_decision_boundary(lambda P: (xor_features(P) @ w + b > 0).astype(int), X, y, ax=right,
                                 title=f"Input space: perceptron on features, acc {accuracy[-1]:.0%}")
    right.title.set_fontsize(10)
    fig.tight_layout()
    plt.show()
    return w, b


# --- The two-layer network -----------------------------------------------------------

# Unit 1 = relu(x1 - x2 - 0.5), unit 2 = relu(x2 - x1 - 0.5); logits (0, 2 * (unit 1 + unit 2) - 1):
# class 1 wherever |x1 - x2| > 1, a band around the diagonal x1 = x2 is class 0.
HAND_BUILT = {
    "W1": np.array([[1.0, -1.0], [-1.0, 1.0]]),
    "b1": np.array([-0.5, -0.5]),
    "W2": np.array([[0.0, 2.0], [0.0, 2.0]]),
    "b2": np.array([0.0, -1.0]),
}


def hand_built_network(mlp_forward, X, y, params=None):
    """Sliders for W1 and b1 of a 2-2-2 ReLU network; W2 and b2 stay fixed.

    The shading is argmax of *your* mlp_forward; the dashed lines are where each hidden
    unit's pre-activation is zero (the unit is off on one side of its line).
    """
    params = {k: np.array(v, dtype=float) for k, v in (params or HAND_BUILT).items()}
    W2, b2 = params["W2"], params["b2"]

    def show(w11, w21, b1_1, w12, w22, b1_2):
        W1 = np.array([[w11, w12], [w21, w22]])
        b1 = np.array([b1_1, b1_2])

        def predict(P):
            return np.argmax(mlp_forward(P, W1, b1, W2, b2), axis=1)

        accuracy = float(np.mean(predict(X) == y))
        ax = plt.subplots(figsize=(5, 4.2))[1]
        plots.plot_decision_boundary(predict, X, y, ax=ax, title=f"Your mlp_forward: accuracy {accuracy:.0%}",
                                     resolution=120)
        x0, x1 = ax.get_xlim()
        y0, y1 = ax.get_ylim()
        xx, yy = np.meshgrid(np.linspace(x0, x1, 120), np.linspace(y0, y1, 120))
        grid = np.column_stack([xx.ravel(), yy.ravel()])
        styles = [("black", "--"), ("dimgray", ":")]
        for j, (color, ls) in enumerate(styles):
            pre = (grid @ W1[:, j] + b1[j]).reshape(xx.shape)
            if np.ptp(pre) > 0 and pre.min() < 0 < pre.max():
                ax.contour(xx, yy, pre, levels=[0.0], colors=color, linestyles=ls, linewidths=1.5)
            ax.plot([], [], color=color, ls=ls, label=f"hidden unit {j + 1} = 0")
        ax.legend(loc="upper center", fontsize=7, framealpha=0.8)
        plt.show()

    def slider(value, description):
        return widgets.FloatSlider(value=value, min=-2.0, max=2.0, step=0.1, description=description,
                                   continuous_update=False)

    W1, b1 = params["W1"], params["b1"]
    return runtime.interact(show, w11=slider(W1[0, 0], "W1[0,0]"), w21=slider(W1[1, 0], "W1[1,0]"),
                            b1_1=slider(b1[0], "b1[0]"), w12=slider(W1[0, 1], "W1[0,1]"),
                            w22=slider(W1[1, 1], "W1[1,1]"), b1_2=slider(b1[1], "b1[1]"))


# --- Softmax ---------------------------------------------------------------------------

def softmax_temperature(softmax, logits=(2.0, 1.0, 0.2, -1.0)):
    """A slider for the temperature T; bars show *your* softmax(logits / T)."""
    logits = np.asarray(logits, dtype=float)
    names = [f"class {k}" for k in range(len(logits))]

    def show(T=1.0):
        p = np.asarray(softmax(logits[None, :] / T))[0]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        bars = ax.bar(names, p, color=plots.CLASS_COLORS[:len(p)] if len(p) <= len(plots.CLASS_COLORS) else None)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in p], fontsize=8)
        ax.set(title=f"softmax(logits / T) at T = {T:.2g}", ylabel="probability", ylim=(0, 1.1))
        ax.set_xlabel("logits " + ", ".join(f"{v:g}" for v in logits), fontsize=9)
        fig.tight_layout()
        plt.show()

    return runtime.interact(show, T=widgets.FloatLogSlider(value=1.0, base=10, min=-1.5, max=1.5, step=0.05,
                                                           description="T", continuous_update=False))


# --- Training without gradients ---------------------------------------------------------

def _init_params(D, H, C, rng):
    return {"W1": rng.normal(0.0, 1.0 / np.sqrt(D), size=(D, H)), "b1": np.zeros(H),
            "W2": rng.normal(0.0, 1.0 / np.sqrt(H), size=(H, C)), "b2": np.zeros(C)}


def train_without_gradients(mlp_forward, loss_fn, loader, input_dim=2, hidden=16, classes=2, epochs=50,
                            population=20, sigma=0.05, learning_rate=0.03, rng=0, progress=True, desc="ES"):
    """Fit a two-layer ReLU network with an evolution strategy: no backprop, only forward passes.

    For each batch from ``loader`` (an iterable of (X_batch, y_batch), e.g. your DataLoader),
    draw ``population`` random directions e, evaluate loss_fn(mlp_forward(X, params +/- sigma e), y)
    and step (with Adam) along sum_i (L+_i - L-_i) e_i / (2 sigma population): a noisy
    estimate of the gradient of a smoothed loss.

    mlp_forward(X, W1, b1, W2, b2) -> logits; loss_fn(logits, y) -> number.
    Returns (params dict, history {"loss": mean batch loss of every epoch}).
    """
    rng = np.random.default_rng(rng)
    params = _init_params(input_dim, hidden, classes, rng)
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [int(np.prod(s)) for s in shapes]
    theta = np.concatenate([params[k].ravel() for k in names])

    def unpack(vector):
        parts = np.split(vector, np.cumsum(sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, shapes)]

    def loss_at(vector, Xb, yb):
        return float(loss_fn(mlp_forward(Xb, *unpack(vector)), yb))

    m, v, t = np.zeros_like(theta), np.zeros_like(theta), 0
    history = {"loss": []}
    for Xb, yb in loader:  # an unwritten function fails here, before a progress bar is drawn
        loss_at(theta, Xb, yb)
        break
    bar = tqdm(range(epochs), desc=desc, disable=not progress or is_autograding(), leave=False)
    for _ in bar:
        losses = []
        for Xb, yb in loader:
            t += 1
            directions = rng.normal(size=(population, theta.size))
            # Antithetic pairs on the same batch: the batch's own noise cancels in each difference.
            diffs = np.array([loss_at(theta + sigma * e, Xb, yb) - loss_at(theta - sigma * e, Xb, yb)
                              for e in directions])
            grad = diffs @ directions / (2 * sigma * population)
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad ** 2
            theta -= learning_rate * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
            losses.append(loss_at(theta, Xb, yb))
        history["loss"].append(float(np.mean(losses)))
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    return dict(zip(names, unpack(theta))), history


# --- A fixed sigmoid basis, then a learned linear layer -----------------------------------

def sigmoid_basis(sigmoid, X, offset=5.0):
    """The two fixed features phi(x) = (sigmoid(offset + x1 + x2), sigmoid(offset - x1 - x2)), shape (N, 2)."""
    t = X[:, 0] + X[:, 1]
    return np.column_stack([sigmoid(offset + t), sigmoid(offset - t)])


def fit_logistic_regression(F, y, steps=400, learning_rate=1.0):
    """Logistic regression on features F (N, K) by full-batch gradient descent (a convex problem).

    The features are standardised first (their spread can be tiny); returns predict(F_new) -> 0/1 labels.
    """
    mean, std = F.mean(axis=0), F.std(axis=0) + 1e-12
    Z = (F - mean) / std
    w, b = np.zeros(Z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(Z @ w + b, -30, 30)))
        w -= learning_rate * Z.T @ (p - y) / len(y)
        b -= learning_rate * float(np.mean(p - y))
    return lambda F_new: (((F_new - mean) / std) @ w + b > 0).astype(int)


def sigmoid_basis_accuracy(sigmoid, X, y, offset=5.0):
    """Training accuracy of logistic regression on the fixed sigmoid basis."""
    F = sigmoid_basis(sigmoid, X, offset)
    return float(np.mean(fit_logistic_regression(F, y)(F) == y))


def sigmoid_basis_explorer(sigmoid, X, y, offset=5.0):
    """A slider for the offset c in phi(x) = (sigmoid(c + x1 + x2), sigmoid(c - x1 - x2)).

    Only the output weights are learned (logistic regression on phi). Left: the data in feature space;
    right: the boundary drawn back in the input plane. ``sigmoid`` is yours.
    """
    def show(offset=offset):
        F = sigmoid_basis(sigmoid, X, offset)
        predict = fit_logistic_regression(F, y)
        accuracy = float(np.mean(predict(F) == y))
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.9))
        pad = 0.05 * max(np.ptp(F[:, 0]), np.ptp(F[:, 1]), 1e-3)
        u, v = np.meshgrid(np.linspace(F[:, 0].min() - pad, F[:, 0].max() + pad, 150),
                           np.linspace(F[:, 1].min() - pad, F[:, 1].max() + pad, 150))
        labels = predict(np.column_stack([u.ravel(), v.ravel()])).reshape(u.shape)
        left.contourf(u, v, labels, levels=[-0.5, 0.5, 1.5], colors=plots.CLASS_COLORS[:2], alpha=0.2)
        for k, color in enumerate(plots.CLASS_COLORS[:2]):
            left.scatter(F[y == k, 0], F[y == k, 1], s=10, color=color, edgecolor="white", linewidth=0.3,
                         label=f"class {k}")
        left.set(title="Feature space", xlabel=rf"$\sigma({offset:g} + x_1 + x_2)$",
                 ylabel=rf"$\sigma({offset:g} - x_1 - x_2)$")
        left.legend(fontsize=8, loc="lower left", framealpha=0.8)
        plots.plot_decision_boundary(lambda P: predict(sigmoid_basis(sigmoid, P, offset)), X, y, ax=right,
                                     title=f"Input space: accuracy {accuracy:.0%}", resolution=120)
        fig.suptitle(f"Fixed sigmoid basis, offset c = {offset:g}; only the output layer is learned", fontsize=10)
        fig.tight_layout()
        plt.show()

    return runtime.interact(show, offset=widgets.FloatSlider(value=offset, min=0.0, max=8.0, step=0.5,
                                                             continuous_update=False, description="offset c"))


# --- Universal approximation, width vs depth -----------------------------------------------

def approximation_target(x):
    """The 1-D function the width explorer approximates."""
    return np.sin(2.0 * x) + 0.3 * x


def shallow_relu_fit(relu, x, target, units):
    """One hidden layer of ``units`` ReLUs relu(x - k_j), knots k_j spread over x; output weights by least squares.

    Returns the fitted values at x (a sum of ramps, piecewise linear with ``units`` kinks).
    """
    knots = np.linspace(x.min(), x.max(), units + 1)[:-1]
    H = np.column_stack([relu(x - k) for k in knots] + [np.ones_like(x)])
    coef, *_ = np.linalg.lstsq(H, target, rcond=None)
    return H @ coef


def sawtooth(relu, x, depth):
    """The tent map t(x) = 2 relu(x) - 4 relu(x - 1/2) on [0, 1], composed ``depth`` times (2 ReLUs per layer)."""
    h = x
    for _ in range(depth):
        h = 2.0 * relu(h) - 4.0 * relu(h - 0.5)
    return h


def count_linear_pieces(x, values, tol=1e-6):
    """Number of linear pieces of a piecewise linear function sampled on a fine, even grid ``x``."""
    slopes = np.diff(values) / np.diff(x)
    return 1 + int(np.sum(np.abs(np.diff(slopes)) > tol * max(1.0, np.abs(slopes).max())))


def width_depth_explorer(relu, units=8, depth=3):
    """Left: a one-hidden-layer ReLU net with ``units`` units fitted to a curve (slider: width).
    Right: a sawtooth made by composing ``depth`` layers of 2 ReLUs (slider: depth). ``relu`` is yours.
    """
    x = np.linspace(-3.0, 3.0, 601)
    target = approximation_target(x)
    grid = np.linspace(0.0, 1.0, 4097)          # 2^12 intervals: every kink of depth <= 10 lies on the grid

    def show(units=units, depth=depth):
        fit = shallow_relu_fit(relu, x, target, units)
        teeth = sawtooth(relu, grid, depth)
        pieces = count_linear_pieces(grid, teeth)
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
        left.plot(x, target, color="black", lw=2, label="target")
        left.plot(x, fit, color="tab:red", lw=1.2, label=f"{units} ReLU units")
        left.set(title=f"Width: max error {np.max(np.abs(fit - target)):.3f}", xlabel="x", ylabel="value")
        left.legend(fontsize=8, loc="lower right")
        right.plot(grid, teeth, color="tab:blue", lw=1)
        right.set(title=f"Depth {depth}, {2 * depth} units: {pieces} pieces", xlabel="x", ylabel="output",
                  ylim=(-0.05, 1.25))
        for ax in (left, right):
            ax.grid(alpha=0.3)
        fig.tight_layout()
        plt.show()

    return runtime.interact(
        show,
        units=widgets.IntSlider(value=units, min=1, max=40, continuous_update=False, description="width (units)",
                                style={"description_width": "initial"}),
        depth=widgets.IntSlider(value=depth, min=1, max=8, continuous_update=False, description="depth (layers)",
                                style={"description_width": "initial"}))
