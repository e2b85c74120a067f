"""Trusted reference implementations for chapter 03 (initialization).

Used only by hidden tests, in the grader's process; never shipped inside a
learner notebook. Written plainly so a TA can audit them in a minute.

The two initializers are random, so the hidden tests do not compare their
arrays with a reference draw: they check shape, use of the ``rng`` argument and
the distribution (mean, standard deviation, Gaussian tails). What they need
from here is the standard deviation each initializer must have.
"""
from __future__ import annotations

import numpy as np

from .ch01_mlp_xor import sigmoid
from .ch02_backprop import softmax_loss


def xavier_std(fan_in, fan_out):
    """Xavier (Glorot) initialization in the course's convention: std 1 / sqrt(fan_in)."""
    return 1.0 / np.sqrt(fan_in)


def he_std(fan_in, fan_out):
    """He (Kaiming) initialization for ReLU: std sqrt(2 / fan_in)."""
    return np.sqrt(2.0 / fan_in)


ACTIVATIONS = {"sigmoid": sigmoid, "tanh": np.tanh, "relu": lambda a: np.maximum(0.0, a)}


def layer_activations(x, weights, activation):
    """[h_1, ..., h_L] with h_0 = x and h_l = act(h_{l-1} @ W_l); the input itself is not included."""
    act = ACTIVATIONS[activation]
    h = x
    outputs = []
    for w in weights:
        h = act(h @ w)
        outputs.append(h)
    return outputs


def two_layer_tanh_loss(X, y, W1, W2):
    """Mean softmax cross-entropy of scores = tanh(X @ W1) @ W2 against integer labels y (no biases)."""
    return softmax_loss(np.tanh(X @ W1) @ W2, y)
