"""What nbgrader's Validate says about your notebook (the button, and `nbgrader validate`).

Validate runs your notebook from the top and reports the graded cells that fail. The
learner copy of each hidden-test cell ends with ``dlcourse.validation.report("<function>")``:
while Validate runs, that line fails when the function is not written yet or its visible
check (the cell just above) does not pass, and names the function and what is wrong. So
"Success" means every visible check passes; the hidden tests, on fresh random inputs, run
only when your notebook is graded. When you run the notebook yourself the line does nothing.
"""
from __future__ import annotations

import os
import textwrap

WIDTH = 84  # nbgrader validate cuts longer lines


def is_validating() -> bool:
    """True while nbgrader validates the notebook (it sets NBGRADER_VALIDATING for the kernel)."""
    return os.environ.get("NBGRADER_VALIDATING") == "1"


class NotValidated(Exception):
    """A graded function is unwritten or fails its visible check; the message names it."""

    def _render_traceback_(self):  # IPython shows these lines instead of a traceback
        lines = []
        for line in str(self).splitlines():
            lines.extend(textwrap.wrap(line, WIDTH, subsequent_indent="  ") or [""])
        return lines


def report(function: str) -> None:
    """Under Validate, fail with what is wrong with ``function``; otherwise do nothing."""
    if not is_validating():
        return
    problem = problem_with(function)
    if problem:
        raise NotValidated(problem)


def problem_with(function: str) -> str | None:
    """What the check cell that ran just before this one says about ``function`` (None: it passed)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - the course always runs in IPython
        return None
    shell = get_ipython()
    if shell is None:
        return None
    if function not in shell.user_ns:
        return f"{function}: not defined: its answer cell has not run."
    if _is_stub(shell.user_ns[function]):
        return f"{function}: not written yet (its answer cell still raises NotImplementedError)."
    last = shell.last_execution_result
    if last is None or f'checks.passed("{function}")' not in (last.info.raw_cell or ""):
        return f"{function}: its visible check (the cell above) did not run just before this cell."
    if last.success:
        return None
    error = last.error_in_exec or last.error_before_exec
    if isinstance(error, NotImplementedError):
        where = _innermost_function(error)
        if where is None or where.split(".")[0] == function:
            return f"{function}: not finished (it still raises NotImplementedError)."
        return f"{function}: its visible check stops in {where}, which raises NotImplementedError: write {where} first."
    if type(error).__name__ == "CheckFailed":  # dlcourse.checks: the message starts with the function's name
        message = str(error)
        return message if message.startswith(f"{function}:") else f"{function}: {message}"
    return f"{function}: its visible check stops with {type(error).__name__}: {error}".rstrip(": ")


def _is_stub(obj) -> bool:
    """The released stub: its body (a class: any of its methods) raises NotImplementedError."""
    codes = [getattr(obj, "__code__", None)]
    if isinstance(obj, type):
        codes = [getattr(member, "__code__", None) for member in vars(obj).values()]
    return any(code is not None and "NotImplementedError" in code.co_names for code in codes)


def _innermost_function(error: BaseException) -> str | None:
    tb = error.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return getattr(code, "co_qualname", code.co_name)
