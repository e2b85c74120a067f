"""Learner-side support for the course notebooks: data, plots, training loops, visible checks.

Nothing here solves a graded function, and nothing here imports the grader.
"""

from . import errors as _errors

_errors.install()  # in a notebook: failing checks and unwritten stubs read as course messages
