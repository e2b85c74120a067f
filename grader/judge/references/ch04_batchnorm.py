"""Trusted reference implementations for chapter 04 (batch normalization).

Used only by hidden tests, in the grader's process; never shipped inside a
learner notebook. Written plainly so a TA can audit them in a minute. Only
forwards are needed: gradients are checked against centered differences of
these forwards (see ``grader/judge/numerics.py``).

Conventions (the same as the chapter and CS231n):
- statistics are over the batch axis 0 for batch norm, over the feature axis 1
  for layer norm;
- the variance is the biased one (divide by N, numpy's default ddof=0);
- eps is added to the variance inside the square root;
- running averages: ``running = momentum * running + (1 - momentum) * batch``,
  so ``momentum`` weights the OLD value (PyTorch's ``momentum=0.1`` weights the
  new batch instead, and PyTorch keeps an unbiased running variance).
"""
from __future__ import annotations

import numpy as np


def batchnorm_train_forward(x, gamma, beta, eps=1e-5):
    """Batch norm with the batch's own mean and biased variance, x of shape (N, D)."""
    mean = x.mean(axis=0)
    var = x.var(axis=0)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return gamma * x_hat + beta


def batchnorm_test_forward(x, gamma, beta, running_mean, running_var, eps=1e-5):
    """Batch norm at test time: the running statistics, not the batch's."""
    x_hat = (x - running_mean) / np.sqrt(running_var + eps)
    return gamma * x_hat + beta


def running_stats_update(running_mean, running_var, x, momentum=0.9):
    """One training step's update of the running mean and (biased) variance."""
    new_mean = momentum * running_mean + (1 - momentum) * x.mean(axis=0)
    new_var = momentum * running_var + (1 - momentum) * x.var(axis=0)
    return new_mean, new_var


def layernorm_forward(x, gamma, beta, eps=1e-5):
    """Layer norm: each row normalized over its D features, x of shape (N, D)."""
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    x_hat = (x - mean) / np.sqrt(var + eps)
    return gamma * x_hat + beta
