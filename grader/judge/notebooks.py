"""Reading chapter notebooks: which cells answer, which cells grade which item.

Conventions (nbgrader metadata, see README "Writing a chapter"):
- an answer cell has ``nbgrader.solution == true`` and defines one graded function;
- a hidden test cell has ``nbgrader.grade == true``, ``grade_id == "test_<item>"`` and
  ``points``; its hidden part calls ``course_harness.run_hidden_test("<item>", globals())``.
"""
from __future__ import annotations

from pathlib import Path

import nbformat

TEST_PREFIX = "test_"
SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"     # the instructor's source notebooks


def chapter_notebook(chapter) -> Path:
    """The source notebook of a chapter (solutions and hidden tests): the course's own cells."""
    return SOLUTIONS / chapter / f"{chapter}.ipynb"


def nb_meta(cell):
    return cell.get("metadata", {}).get("nbgrader", {})


def read(path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def graded_items(nb) -> dict[str, float]:
    """{item name: points} for every hidden test cell of a notebook, in order."""
    items = {}
    for cell in nb.cells:
        meta = nb_meta(cell)
        if meta.get("grade") and not meta.get("solution") and str(meta.get("grade_id", "")).startswith(TEST_PREFIX):
            items[meta["grade_id"][len(TEST_PREFIX):]] = float(meta.get("points", 0))
    return items
