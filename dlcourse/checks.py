"""Visible checks for the "check" cells: instant, specific feedback while you work.

These run in your notebook and are for you; grading uses separate hidden tests
on fresh random inputs. Each failure says what is wrong and how to fix it.
"""
from __future__ import annotations

import numpy as np


class CheckFailed(AssertionError):
    """A visible check failed; the message says what to fix."""


def rel_error(a, b):
    """max|a - b| / max(1e-8, max|a| + max|b|): the course's relative-error measure."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(1e-8, np.max(np.abs(a)) + np.max(np.abs(b))))


def _fail(function, message, hint=""):
    raise CheckFailed(f"{function}: {message}" + (f"\nHint: {hint}" if hint else ""))


def check_shape(function, name, value, shape, hint=""):
    if not isinstance(value, np.ndarray):
        _fail(function, f"{name} should be a NumPy array of shape {tuple(shape)}, got {type(value).__name__}.", hint)
    if value.shape != tuple(shape):
        _fail(function, f"{name} has shape {value.shape}, expected {tuple(shape)}.", hint)


def check_close(function, name, actual, expected, tol=1e-7, hint=""):
    """Shape, finiteness, then relative error of ``actual`` against ``expected``."""
    expected = np.asarray(expected, dtype=np.float64)
    if expected.shape:
        check_shape(function, name, actual, expected.shape, hint)
    elif np.ndim(actual) != 0:
        _fail(function, f"{name} should be a single number, got shape {np.shape(actual)}.", hint)
    if not np.all(np.isfinite(np.asarray(actual, dtype=np.float64))):
        _fail(function, f"{name} contains NaN or infinity.", hint)
    err = rel_error(actual, expected)
    if not err < tol:
        _fail(function, f"{name} has relative error {err:.1e} (must be < {tol:.0e}).", hint)
    return err


def check_gradient(function, name, analytic, numeric, tol=1e-7, hint=""):
    """Compare an analytic gradient with a numerical one and report the relative error."""
    err = check_close(function, name, analytic, numeric, tol, hint)
    print(f"{function}: {name} matches the numerical gradient (relative error {err:.1e}).")
    return err


def passed(function):
    print(f"\u2713 {function}: visible checks passed. Hidden tests on fresh random inputs run at grading time.")
