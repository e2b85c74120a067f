"""Trusted numerics: centered-difference gradients and the relative-error measure.

Everything the hidden tests conclude about a learner's gradient rests on this
module, so it is small, float64 throughout, and never imports learner code.
Chapter 02 asks learners to write ``numerical_gradient`` themselves; the trusted
reference for that item is this function.
"""
from __future__ import annotations

import numpy as np

DEFAULT_H = 1e-5


def numerical_gradient(f, x, h=DEFAULT_H):
    """Centered-difference gradient of a scalar function ``f`` at ``x``.

    f: callable taking an array shaped like ``x`` and returning a scalar.
    x: array of any shape; it is evaluated in float64 and left unchanged.
    Returns an array shaped like ``x`` with df/dx[i] = (f(x + h e_i) - f(x - h e_i)) / 2h.
    """
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = float(f(x))
        x[i] = old - h
        minus = float(f(x))
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def numerical_gradient_array(f, x, df, h=DEFAULT_H):
    """Centered-difference gradient of sum(f(x) * df) for an array-valued ``f``.

    This is the vector-Jacobian product a backward pass computes: ``df`` is the
    upstream gradient, shaped like f(x). Returns an array shaped like ``x``.
    """
    x = np.array(x, dtype=np.float64)
    df = np.asarray(df, dtype=np.float64)
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = np.array(f(x), dtype=np.float64)
        x[i] = old - h
        minus = np.array(f(x), dtype=np.float64)
        x[i] = old
        grad[i] = np.sum((plus - minus) * df) / (2 * h)
    return grad


def rel_error(a, b, floor=1e-8):
    """Relative error ``max|a - b| / max(floor, max|a| + max|b|)``.

    Scale-aware rather than element-wise, so tiny entries of a large gradient
    (where a centered difference has mostly round-off) cannot fail correct code.
    ``floor``: the scale below which a small result is measured against it instead (``pass_scale`` of the
    gradients of the same backward pass, for a gradient that happens to be near 0).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0 and b.size == 0:
        return 0.0
    diff = float(np.max(np.abs(a - b)))
    scale = float(np.max(np.abs(a)) + np.max(np.abs(b)))
    return diff / max(floor, scale)


def pass_scale(gradients, floor=1e-8):
    """The largest entry, in absolute value, of the exact gradients of one backward pass (at least ``floor``).

    A gradient of the pass that happens to be near 0 (batch norm's dgamma of one feature, a loss's gradient
    where the reconstruction equals its target) is measured on this scale: its centered difference carries
    the round-off of the pass's largest quantities, not its own size.
    """
    return max([floor] + [float(np.max(np.abs(g))) for g in gradients if np.size(g)])
