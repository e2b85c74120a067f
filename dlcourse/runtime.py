"""Where the notebook is running (interactively, quickly, or under the autograder), and the explorers' sliders.

``budget`` sizes a cell for where it runs; ``interact`` is the one way an explorer puts up its sliders,
and its docstring states the convention every explorer follows (the browser tests check it).
"""
from __future__ import annotations

import os


def is_autograding() -> bool:
    """True while nbgrader executes the notebook (it sets NBGRADER_EXECUTION)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


_drawing_explorer = False


def progress_hidden() -> bool:
    """True where a progress bar must not show: under the autograder, and while an explorer redraws (a bar
    that closes inside an explorer's output would leave "Error displaying widget" behind)."""
    return is_autograding() or _drawing_explorer


QUICK_ENV = "COURSE_QUICK"


def is_quick() -> bool:
    """True when COURSE_QUICK is set (to anything but 0): every cell runs its small, autograder-sized setting
    while the sliders stay live (a slow laptop, a first look at a chapter, the browser tests)."""
    return os.environ.get(QUICK_ENV, "0") not in ("", "0")


def budget(full, autograde):
    """``full`` interactively, ``autograde`` under the autograder or with COURSE_QUICK set (cells shrink there)."""
    return autograde if is_autograding() or is_quick() else full


# What every explorer's figure carries: the caption drawn under it, and the values it was drawn for, also as
# a PNG text chunk under this key (JSON), so that a test reads what a figure shows without reading pixels.
EXPLORER_PNG_KEY = "dlcourse-explorer"


def control_readout(control, value):
    """``value`` as the control's own readout shows it: the slider's format, or the chosen option's label."""
    if hasattr(control, "options"):                     # SelectionSlider, Dropdown, ToggleButtons, ...
        labels = {v: label for label, v in getattr(control, "_options_full", ())}
        try:
            return str(labels.get(value, control.label))
        except TypeError:                               # an unhashable option value
            return str(control.label)
    fmt = getattr(control, "readout_format", None)
    if fmt and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return format(value, fmt)
        except ValueError:
            pass
    return str(value)


def caption(controls, values):
    """'spectral radius = 0.75   T = 40': every control's value, as its readout shows it, in the order given."""
    return "   ".join(f"{getattr(control, 'description', '') or name} = {control_readout(control, values[name])}"
                      for name, control in controls.items() if name in values)


def _jsonable(value):
    return value if isinstance(value, (bool, int, float, str)) or value is None else repr(value)


class _CaptionedFigures:
    """While active, every matplotlib figure displayed as a PNG gets ``text`` drawn under it and, in the PNG's
    text chunk ``EXPLORER_PNG_KEY``, the caption and ``values``. IPython's own PNG formatter draws the figure
    (same size, dpi and tight bounding box as every other figure); nothing changes outside an IPython kernel
    with the inline backend."""

    def __init__(self, text, values):
        import json

        self.text = text
        self.record = json.dumps({"caption": text, "values": {k: _jsonable(v) for k, v in values.items()}})
        self.formatter = self.previous = self.figure_type = None

    def __enter__(self):
        try:
            from IPython import get_ipython
            from matplotlib.figure import Figure
        except ImportError:  # pragma: no cover - the course always has both
            return self
        shell = get_ipython()
        formatter = getattr(getattr(shell, "display_formatter", None), "formatters", {}).get("image/png")
        previous = formatter.type_printers.get(Figure) if formatter is not None else None
        if previous is None:
            return self

        def png_with_caption(fig):
            # under everything the figure draws, its axis labels included (they may reach below its edge)
            try:
                box = fig.get_tightbbox(fig.canvas.get_renderer())
                x = (box.x0 + box.x1) / 2 / fig.get_figwidth()
                y = box.y0 / fig.get_figheight() - 0.02
            except Exception:  # noqa: BLE001 - a figure we cannot measure still gets its caption
                x, y = 0.5, 0.0
            label = fig.text(x, y, self.text, ha="center", va="top", fontsize=8, color="0.3")
            try:
                return previous(fig, metadata={EXPLORER_PNG_KEY: self.record})
            finally:
                label.remove()

        self.formatter, self.previous, self.figure_type = formatter, previous, Figure
        formatter.for_type(Figure, png_with_caption)
        return self

    def flush(self):
        """Show the figures ``show`` left open while the caption is still in place."""
        if self.formatter is not None:
            from ipywidgets.widgets.interaction import show_inline_matplotlib_plots

            show_inline_matplotlib_plots()

    def __exit__(self, *exc):
        if self.formatter is not None:
            self.formatter.for_type(self.figure_type, self.previous)
        return False


def interact(show, **controls):
    """``ipywidgets.interact(show, **controls)``, the explorers' one way to put up sliders.

    Under the autograder nobody moves a slider, so ``show`` just runs once with every
    control's starting value: the same picture, without widget traffic to the grader.
    Interactively, a function you have not written yet (or one failing its check) shows
    one line under the sliders, saying what to do, instead of a traceback.

    The convention every explorer follows (the browser tests check it for every explorer of
    every chapter, by moving one slider of each):

    - its controls go through this function, and ``show(**values)`` draws with matplotlib
      and returns nothing;
    - every figure it draws states the values it was drawn for: this function writes them
      under the figure (``caption``: each control's description and value, as the control's
      readout shows it) and into the PNG (``EXPLORER_PNG_KEY``), so a figure can never be
      taken for another setting than the one the sliders show;
    - a slow ``show`` (more than a fraction of a second) gives its sliders
      ``continuous_update=False``, so that a drag redraws once, for the value it ends on;
    - the cell shows the widgets and nothing else: this function returns None, so a call on
      a cell's last line prints no ``<function ...>`` under the sliders.
    """
    if is_autograding():
        show(**{name: control.value for name, control in controls.items()})
        return None
    import functools

    import ipywidgets

    from . import errors
    from .checks import CheckFailed

    @functools.wraps(show)
    def show_or_say_why(**values):
        global _drawing_explorer
        figures, _drawing_explorer = errors.open_figures(), True
        try:
            with _CaptionedFigures(caption(controls, values), values) as captioned:
                try:
                    show(**values)
                    captioned.flush()
                except (NotImplementedError, CheckFailed) as error:  # one line, not a traceback under the sliders
                    errors.close_new_figures(figures)
                    print(errors.describe(error))
        finally:
            _drawing_explorer = False
        return None

    ipywidgets.interact(show_or_say_why, **controls)
    return None
