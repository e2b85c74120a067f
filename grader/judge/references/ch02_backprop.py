"""Trusted reference implementations for chapter 02 (backprop).

Used only by hidden tests, in the grader's process; never shipped inside a
learner notebook. Written plainly so a TA can audit them in a minute. Forward
functions are all the hidden tests need: gradients are checked against
centered differences of these forwards (see ``grader/judge/numerics.py``).
"""
from __future__ import annotations

import numpy as np

from ..numerics import numerical_gradient, numerical_gradient_array  # noqa: F401 - the references for those items
from .ch01_mlp_xor import sigmoid, softmax


def graph_example(x):
    """f(x) = 2 / sin(exp(-x)) and df/dx, the chapter's worked example."""
    a = np.exp(-x)
    b = np.sin(a)
    f = 2.0 / b
    dfdx = (-2.0 / b ** 2) * np.cos(a) * (-a)
    return f, dfdx


def affine_forward(x, w, b):
    return x.reshape(x.shape[0], -1) @ w + b


def relu_forward(x):
    return np.maximum(0.0, x)


def leaky_relu_forward(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


def sigmoid_forward(x):
    return sigmoid(x)


def tanh_forward(x):
    return np.tanh(x)


def softmax_loss(x, y):
    """Mean cross-entropy of row-wise softmax(x) against integer labels y."""
    p = softmax(x)
    return float(-np.mean(np.log(p[np.arange(x.shape[0]), y])))


def bce_loss(p, y):
    """Mean binary cross-entropy of probabilities p against 0/1 targets y (all elements)."""
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def mse_loss(pred, y):
    return float(np.mean((pred - y) ** 2))


def l1_loss(pred, y):
    return float(np.mean(np.abs(pred - y)))


# --- derivatives at the kinks, as the contracts state them -----------------------------------
# A centered difference straddles a kink and is wrong exactly there, so the hidden tests' kink cases
# compare with these instead (elsewhere they equal the true derivative).

def relu_backward_contract(dout, x):
    """dx of ReLU: dout where x > 0 and 0 elsewhere, so 0 at x = 0 exactly (as PyTorch)."""
    return np.where(x > 0, dout, 0.0)


def leaky_relu_backward_contract(dout, x, slope=0.01):
    """dx of leaky ReLU: dout where x > 0 and slope * dout elsewhere, so slope * dout at x = 0 exactly."""
    return np.where(x > 0, dout, slope * dout)


def l1_loss_gradient_contract(pred, y):
    """dpred of the mean absolute error: sign(pred - y) / pred.size, so 0 where pred == y exactly."""
    return np.sign(pred - y) / pred.size
