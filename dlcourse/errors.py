"""How the course's own failures look in your notebook.

A failing visible check (``checks.CheckFailed``) shows its message and hint and one line
saying which cell and line ran the check, instead of a traceback through the course's
library. A function you have not written yet (it still raises ``NotImplementedError``)
says which function to write and in which cell. Any other error keeps IPython's usual
traceback. The outputs stay real errors (same exception name and message), so Validate
and the grader see them as before.

Importing ``dlcourse`` installs this in an IPython kernel; nothing changes elsewhere.
"""
from __future__ import annotations

import sys

RED, BOLD, RESET = "\x1b[0;31m", "\x1b[1m", "\x1b[0m"


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - the course always runs in IPython
        return None
    return get_ipython()


def _cell_label(shell, filename):
    """'In [8]' for a notebook cell's code, None for a file."""
    names = getattr(getattr(shell, "compile", None), "_filename_map", {}) if shell is not None else {}
    number = names.get(filename)
    return None if number is None else f"In [{number}]"


def _frames(tb):
    while tb is not None:
        yield tb.tb_frame, tb.tb_lineno
        tb = tb.tb_next


def _last_cell_frame(shell, tb):
    """The innermost frame that runs notebook code: (cell label, line number, code line, frame)."""
    found = None
    for frame, lineno in _frames(tb):
        label = _cell_label(shell, frame.f_code.co_filename)
        if label is not None:
            found = (label, lineno, frame)
    if found is None:
        return None
    label, lineno, frame = found
    import linecache

    return label, lineno, linecache.getline(frame.f_code.co_filename, lineno).strip(), frame


def unwritten(shell, tb):
    """(function name, cell label, first line of its cell) when ``tb`` ends in a stub written in a cell."""
    innermost = None
    for frame, lineno in _frames(tb):
        innermost = frame
    if innermost is None:
        return None
    code = innermost.f_code
    label = _cell_label(shell, code.co_filename)
    if label is None or code.co_name == "<module>":
        return None
    return getattr(code, "co_qualname", code.co_name), label


def describe(error, tb=None, shell=None) -> str:
    """One line about a course failure: the check's message, or which function to write."""
    shell = shell if shell is not None else _shell()
    tb = tb if tb is not None else error.__traceback__
    if isinstance(error, NotImplementedError):
        stub = unwritten(shell, tb)
        if stub is not None:
            name, label = stub
            return f"{name} is not written yet: write it in its answer cell ({label}), run that cell, then this one."
        return f"NotImplementedError: {error}".rstrip(": ")
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def render(shell, etype, value, tb, tb_offset=None):
    """The lines the notebook shows for a CheckFailed or a NotImplementedError (IPython's custom handler)."""
    name = etype.__name__
    if issubclass(etype, NotImplementedError):
        stub = unwritten(shell, tb)
        if stub is None:  # raised by a library, not by one of your stubs: the usual traceback
            return shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        function, label = stub
        lines = [f"{RED}{name}{RESET}: {BOLD}{function}{RESET} is not written yet.",
                 f"Write it in its answer cell ({label}, the cell that defines {function.split('.')[0]}): replace "
                 "`raise NotImplementedError()` with your code, run that cell, then run this one again."]
        return lines
    message = str(value).splitlines() or [name]
    lines = [f"{RED}{name}{RESET}: {message[0]}"] + message[1:]
    where = _last_cell_frame(shell, tb)
    if where is not None:
        label, lineno, code, _ = where
        lines.append(f"  ({label}, line {lineno}: {code})" if code else f"  ({label}, line {lineno})")
    return lines


def _handler(shell, etype, value, tb, tb_offset=None):
    try:
        stb = render(shell, etype, value, tb, tb_offset)
    except Exception:  # never hide the learner's error behind a failure of ours
        stb = shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
    # IPython 9 leaves showing the lines to the handler; ipykernel sends them as an `error` output.
    shell._showtraceback(etype, value, stb)
    return stb


def install(shell=None) -> bool:
    """Show CheckFailed and unwritten stubs as course messages in this IPython shell (True: installed)."""
    shell = shell if shell is not None else _shell()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    from .checks import CheckFailed

    if getattr(shell, "custom_exceptions", ()) not in ((), (CheckFailed, NotImplementedError)):
        return False  # someone else's handler: leave it alone
    shell.set_custom_exc((CheckFailed, NotImplementedError), _handler)
    return True


def close_new_figures(before):
    """Close the matplotlib figures opened since ``before`` (a set of figure numbers)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for number in set(plt.get_fignums()) - set(before):
        plt.close(number)


def open_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    return set(plt.get_fignums()) if plt is not None else set()
