"""Where the notebook is running: interactively, or under the autograder."""
from __future__ import annotations

import os


def is_autograding() -> bool:
    """True while nbgrader executes the notebook (it sets NBGRADER_EXECUTION)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def budget(full, autograde):
    """``full`` interactively, ``autograde`` under the autograder (training cells shrink there)."""
    return autograde if is_autograding() else full


def interact(show, **controls):
    """``ipywidgets.interact(show, **controls)``, the explorers' one way to put up sliders.

    Under the autograder nobody moves a slider, so ``show`` just runs once with every
    control's starting value: the same picture, without widget traffic to the grader.
    Interactively, a function you have not written yet (or one failing its check) shows
    one line under the sliders, saying what to do, instead of a traceback.
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
        figures = errors.open_figures()
        try:
            return show(**values)
        except (NotImplementedError, CheckFailed) as error:  # one line, not a traceback under the sliders
            errors.close_new_figures(figures)
            print(errors.describe(error))
            return None

    return ipywidgets.interact(show_or_say_why, **controls)
