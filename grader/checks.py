"""Checks on recorded outputs, each failing with a message a learner can act on.

A message names the function, the quantity, what was wrong, the threshold, and
a hint for the usual cause, e.g.::

    affine_backward: dw has relative error 3.1e-02 (must be < 1e-07) on x of shape (3, 4, 5).
    Hint: dw = x_flat.T @ dout, with x reshaped to (N, D).
"""
from __future__ import annotations

import numpy as np

from .numerics import rel_error
from .protocol import Other


class Failure(Exception):
    """A hidden test found a problem; ``str(failure)`` is the learner's message."""


def describe(value):
    if isinstance(value, Other):
        return value.type
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if value is None:
        return "None"
    return type(value).__name__


def _with_hint(message, hint):
    return f"{message}\nHint: {hint}" if hint else message


def expect_array(item, quantity, value, shape, where="", hint=""):
    """``value`` as float64, or Failure if it is not a finite numeric array of exactly ``shape``.

    Shapes are strict: a (1, D) gradient for a (D,) parameter is wrong, because
    adding it to the parameter would silently broadcast to (1, D).
    """
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise Failure(f"{item}: {quantity} should be a NumPy array of shape {tuple(shape)}{where}, "
                      f"but it is {describe(value)}.")
    if value.shape != tuple(shape):
        extra = ""
        if value.size == int(np.prod(shape)):
            extra = " It has the right number of entries: check for a missing reshape or a kept dimension (keepdims)."
        raise Failure(_with_hint(f"{item}: {quantity} has shape {value.shape}, expected {tuple(shape)}{where}.{extra}",
                                 hint))
    value = value.astype(np.float64)
    if not np.all(np.isfinite(value)):
        raise Failure(_with_hint(f"{item}: {quantity} contains NaN or infinity{where}.", hint))
    return value


def expect_scalar(item, quantity, value, where="", hint=""):
    """``value`` as a float, or Failure unless it is a finite number (Python, NumPy or 0-d array)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(value, Other) or value is None:
        raise Failure(f"{item}: {quantity} should be a single number{where}, but it is {describe(value)}.")
    if isinstance(value, np.ndarray) and value.shape != ():
        raise Failure(f"{item}: {quantity} should be a single number{where}, but it is an array of shape "
                      f"{value.shape}. Hint: reduce it with np.sum or np.mean, or take float(...).")
    if not isinstance(value, (int, float, np.integer, np.floating, np.ndarray)):
        raise Failure(f"{item}: {quantity} should be a single number{where}, but it is {describe(value)}.")
    value = float(value)
    if not np.isfinite(value):
        raise Failure(_with_hint(f"{item}: {quantity} is {value}{where}.", hint))
    return value


def expect_close(item, quantity, actual, expected, tol, where="", hint=""):
    """Failure unless rel_error(actual, expected) < tol."""
    err = rel_error(actual, expected)
    if not err < tol:
        raise Failure(_with_hint(f"{item}: {quantity} has relative error {err:.1e} (must be < {tol:.0e}){where}.",
                                 hint))
    return err


def expect_equal(item, quantity, actual, expected, where="", hint=""):
    if not np.array_equal(np.asarray(actual), np.asarray(expected)):
        raise Failure(_with_hint(f"{item}: {quantity} is {np.asarray(actual).tolist()!r}, "
                                 f"expected {np.asarray(expected).tolist()!r}{where}.", hint))


def shape_phrase(**arrays):
    """' on x of shape (3, 4) and w of shape (4, 5)' for messages."""
    parts = [f"{name} of shape {tuple(np.shape(a))}" for name, a in arrays.items()]
    return " on " + " and ".join(parts) if parts else ""
