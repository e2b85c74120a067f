"""Visible checks for torch code: tensor type, dtype, device and shape first, then the numbers.

The same style as ``dlcourse.checks`` (which these build on): a failure names the function, what is
wrong and a hint. Grading uses separate hidden tests on fresh random inputs.
"""
from __future__ import annotations

import numpy as np
import torch

from .checks import CheckFailed, check_close


def _fail(function, message, hint=""):
    raise CheckFailed(f"{function}: {message}" + (f"\nHint: {hint}" if hint else ""))


def check_tensor(function, name, value, expected, tol=1e-7, dtype=torch.float64, hint=""):
    """``value`` must be a torch tensor of ``dtype`` on the CPU, shaped like and close to ``expected``."""
    expected = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else np.asarray(expected)
    if isinstance(value, np.ndarray):
        _fail(function, f"{name} is a NumPy array; expected a torch tensor.",
              hint or "stay in torch, or convert back with torch.from_numpy(...).")
    if not isinstance(value, torch.Tensor):
        _fail(function, f"{name} should be a torch tensor, got {type(value).__name__}.", hint)
    if value.device.type != "cpu":
        _fail(function, f"{name} is on {value.device}, but the inputs were on the CPU.",
              "return results on the device of the inputs (x.device).")
    if dtype is not None and value.dtype != dtype:
        _fail(function, f"{name} is {value.dtype}; expected {dtype} (the dtype of the inputs).",
              "torch.tensor(...)/torch.zeros(...) without dtype= and .float() give float32; use zeros_like or "
              "dtype=x.dtype.")
    return check_close(function, name, value.detach().numpy(), expected, tol, hint)


def check_gradcheck(function, apply, inputs, hint=""):
    """torch.autograd.gradcheck on float64 inputs, with a readable message instead of a Jacobian dump."""
    for k, t in enumerate(inputs):
        if isinstance(t, torch.Tensor) and t.requires_grad and t.dtype != torch.float64:
            _fail(function, f"gradcheck needs float64 inputs, but input {k} is {t.dtype}: in float32 a numerical "
                            f"Jacobian is mostly round-off.", "make the inputs with dtype=torch.float64 (or .double()).")
    try:
        ok = torch.autograd.gradcheck(apply, inputs, eps=1e-6, atol=1e-6, rtol=1e-5, raise_exception=True)
    except Exception as exc:  # noqa: BLE001 - gradcheck raises GradcheckError or the learner's own error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        _fail(function, f"torch.autograd.gradcheck failed: {first}", hint)
    if ok:
        names = ", ".join(f"{tuple(t.shape)}" for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad)
        print(f"{function}: gradcheck passed (analytic backward = numerical Jacobian) on inputs of shape {names}.")
