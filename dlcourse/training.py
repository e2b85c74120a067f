"""A generic minibatch training loop: you bring the model (a loss-and-gradients function), it brings the loop.

The loop knows nothing about layers. A model is a dict of parameter arrays and a
function ``loss_and_grads(params, X_batch, y_batch) -> (loss, grads)`` whose
``grads`` dict has the same keys and shapes as ``params``. How a parameter moves
is an *update rule* ``update(w, dw, config) -> (next_w, config)``: plain gradient
descent by default, or one you write in chapter 05 (momentum, Adam, ...).
"""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from .runtime import is_autograding


def minibatches(n, batch_size, rng, drop_last=False):
    """Index arrays covering range(n) once in a random order, ``batch_size`` at a time.

    The last one may be short, unless ``drop_last`` (then every batch is full and the
    few examples left over sit out this epoch; the next shuffle gives them their turn).
    """
    order = rng.permutation(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def gradient_step(w, dw, config):
    """The plain update w - learning_rate * dw (the default rule of ``train``)."""
    return w - config["learning_rate"] * dw, config


def train(loss_and_grads, params, X, y, *, learning_rate=0.1, epochs=10, batch_size=64, lr_decay=1.0,
          update=None, config=None, evaluate=None, drop_last=False, rng=0, progress=True, desc="training"):
    """Train ``params`` in place with minibatches.

    loss_and_grads: callable (params, X_batch, y_batch) -> (loss, grads), grads keyed like params.
    params: {name: array}; every array is overwritten in place with its updated value.
    X: (N, ...) inputs, y: (N,) targets.
    update: update rule (w, dw, config) -> (next_w, config); default: plain gradient descent.
    config: dict of settings shared by every parameter's first config (each parameter then keeps
        its own copy, so momentum or Adam moments are per parameter); ``learning_rate`` is set from
        the argument and multiplied by ``lr_decay`` after every epoch.
    evaluate: optional callable params -> {name: number}, called after every epoch (e.g. validation
        accuracy); its values are appended to the history under the same names.
    drop_last: skip the last, incomplete minibatch of every epoch (batch norm wants full batches).
    Returns the history {"loss": loss of every step, "epoch_loss": mean loss of every epoch, ...}.
    """
    rng = np.random.default_rng(rng)          # a seed, or a Generator passed through as it is
    update = update or gradient_step
    configs = {name: dict(config or {}, learning_rate=learning_rate) for name in params}
    history = {"loss": [], "epoch_loss": []}
    bar = tqdm(range(epochs), desc=desc, disable=not progress or is_autograding(), leave=False)
    for _ in bar:
        losses = []
        for idx in minibatches(len(X), batch_size, rng, drop_last):
            loss, grads = loss_and_grads(params, X[idx], y[idx])
            missing = set(params) - set(grads)
            if missing:
                raise KeyError(f"loss_and_grads returned no gradient for {sorted(missing)}")
            for name, p in params.items():
                next_p, configs[name] = update(p, grads[name], configs[name])
                p[...] = next_p
            losses.append(float(loss))
        history["loss"].extend(losses)
        history["epoch_loss"].append(float(np.mean(losses)))
        for key, value in (evaluate(params) if evaluate else {}).items():
            history.setdefault(key, []).append(float(value))
        bar.set_postfix(loss=f"{history['epoch_loss'][-1]:.3f}")
        for c in configs.values():
            c["learning_rate"] *= lr_decay
    bar.close()
    return history


def init_two_layer(input_dim, hidden_dim, num_classes, weight_scale=0.1, rng=0):
    """Parameters of an affine - ReLU - affine network: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,).

    Weights are Gaussian with standard deviation ``weight_scale`` (a number, or a pair
    for the first and second layer); biases start at 0. Chapter 03 is about choosing it well.
    """
    rng = np.random.default_rng(rng)          # a seed, or a Generator passed through as it is
    scale1, scale2 = (weight_scale, weight_scale) if np.isscalar(weight_scale) else weight_scale
    return {"W1": rng.normal(0.0, scale1, size=(input_dim, hidden_dim)), "b1": np.zeros(hidden_dim),
            "W2": rng.normal(0.0, scale2, size=(hidden_dim, num_classes)), "b2": np.zeros(num_classes)}
