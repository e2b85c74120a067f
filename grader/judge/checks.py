"""Checks on recorded outputs, each failing with a message a learner can act on.

A message names the function, the quantity, what was wrong, the threshold, and
a hint for the usual cause, e.g.::

    affine_backward: dw has relative error 3.1e-02 (must be < 1e-07) on x of shape (3, 4, 5).
    Hint: dw = x_flat.T @ dout, with x reshaped to (N, D).
"""
from __future__ import annotations

import numpy as np

from .numerics import rel_error
from .protocol import Other, Raised, TensorValue


class Failure(Exception):
    """A hidden test found a problem; ``str(failure)`` is the learner's message."""


def describe(value):
    if isinstance(value, Other):
        return value.type
    if isinstance(value, Raised):
        return f"missing because {value.describe()}"
    if isinstance(value, TensorValue):
        return f"a torch tensor of shape {tuple(value.shape)} ({value.dtype}, on {value.device})"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if value is None:
        return "None"
    return type(value).__name__


def _with_hint(message, hint):
    return f"{message}\nHint: {hint}" if hint else message


def fail_if_raised(item, value, hint=""):
    """Failure naming the learner's error when a ``record_errors`` step raised instead of returning."""
    if isinstance(value, Raised):
        raise Failure(_with_hint(f"{item}: {value.describe()}.", hint))


def expect_array(item, quantity, value, shape, where="", hint=""):
    """``value`` as float64, or Failure if it is not a finite numeric array of exactly ``shape``.

    Shapes are strict: a (1, D) gradient for a (D,) parameter is wrong, because
    adding it to the parameter would silently broadcast to (1, D).
    """
    fail_if_raised(item, value, hint)
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
    fail_if_raised(item, value, hint)
    if isinstance(value, TensorValue):
        raise Failure(_with_hint(f"{item}: {quantity} should be a Python number{where}, but it is "
                                 f"{describe(value)}.", "turn a one-element tensor into a Python number with "
                                 ".item() (it also frees the graph and the GPU memory the tensor holds)."))
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


def expect_close(item, quantity, actual, expected, tol, where="", hint="", floor=1e-8):
    """Failure unless rel_error(actual, expected, floor) < tol."""
    err = rel_error(actual, expected, floor)
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


# --- torch results ------------------------------------------------------------------------------

def expect_tensor(item, quantity, value, shape, where="", hint="", dtype="float64", dtype_hint=""):
    """``value.array`` (float64) of a returned torch tensor, or Failure saying what is wrong with it.

    The order of the checks is the order of the usual mistakes: a NumPy array instead of a tensor, a
    result left on the GPU, a float32 result from float64 inputs, a wrong shape, NaN.
    """
    fail_if_raised(item, value, hint)
    if isinstance(value, np.ndarray):
        raise Failure(_with_hint(f"{item}: {quantity} is a NumPy array{where}, expected a torch tensor.",
                                 "stay in torch (torch operations on the input tensors), or turn the array back "
                                 "with torch.from_numpy(...)."))
    if not isinstance(value, TensorValue):
        raise Failure(_with_hint(f"{item}: {quantity} should be a torch tensor of shape {tuple(shape)}{where}, "
                                 f"but it is {describe(value)}.", hint))
    if value.device != "cpu":
        raise Failure(_with_hint(f"{item}: {quantity} is on {value.device}{where}, but the inputs were on the "
                                 f"CPU: return results on the CPU, the device of the inputs.",
                                 "no hard-coded .cuda() or .to('cuda'): use the device of the input tensors "
                                 "(x.device) or the device argument."))
    if dtype and value.dtype != dtype:
        if dtype_hint:      # the dtype is part of the contract (a dataset's float32 images)
            raise Failure(_with_hint(f"{item}: {quantity}{where} is {value.dtype}, expected {dtype}.", dtype_hint))
        raise Failure(_with_hint(f"{item}: {quantity} is {value.dtype}{where}: keep the input's dtype ({dtype}).",
                                 "a cast to float32 is the usual cause: .float(), .type(torch.FloatTensor), "
                                 "torch.Tensor(...), torch.zeros(...) without dtype=, or torch.from_numpy of a "
                                 "float32 array; create new tensors with the input's dtype (zeros_like, dtype=x.dtype)."))
    if value.shape != tuple(shape):
        extra = ""
        if value.array.size == int(np.prod(shape)):
            extra = " It has the right number of entries: check for a missing reshape or a kept dimension."
        raise Failure(_with_hint(f"{item}: {quantity} has shape {tuple(value.shape)}, expected {tuple(shape)}"
                                 f"{where}.{extra}", hint))
    array = value.array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise Failure(_with_hint(f"{item}: {quantity} contains NaN or infinity{where}.", hint))
    return array


def _index_text(index):
    return f"index {index[0]}" if len(index) == 1 else f"index {index}"


def expect_gradient(item, input_name, value, numerical, tol, where="", hint="", dtype="float64",
                    reference="the numerical gradient", floor=1e-8):
    """Failure unless the gradient ``value`` (a TensorValue from the ``grad`` builtin) for ``input_name``
    matches ``numerical`` (a centered difference of the trusted reference) to relative error < ``tol``.

    A mismatch names the worst entry: "AffineFunction: the gradient for w is wrong at index (2, 1): your
    backward gives 0.512, the numerical gradient is 1.27 (relative error 4.2e-01, must be < 1e-07)."
    ``floor``: the scale a gradient that happens to be near 0 is measured on (see ``rel_error``).
    Returns the relative error.
    """
    fail_if_raised(item, value, hint)
    if value is None:
        raise Failure(_with_hint(f"{item}: the gradient for {input_name} is None{where}: your backward returned "
                                 f"None in its place, so nothing flows back to {input_name}.", hint))
    numerical = np.asarray(numerical, dtype=np.float64)
    got = expect_tensor(item, f"the gradient for {input_name}", value, numerical.shape, where, hint, dtype)
    err = rel_error(got, numerical, floor)
    if not err < tol:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(got - numerical))), numerical.shape))
        raise Failure(_with_hint(
            f"{item}: the gradient for {input_name} is wrong at {_index_text(index) if index else 'its only entry'}"
            f"{where}: your backward gives {got[index]:.4g}, {reference} is {numerical[index]:.4g} "
            f"(relative error {err:.1e}, must be < {tol:.0e}).", hint))
    return err
