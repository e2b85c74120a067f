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
SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"     # the instructor's source notebooks


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


def _setup_imports(nb) -> str:
    """The top-level import statements of a notebook's first code cell (its set-up cell), given code excepted."""
    import ast

    first = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first is None or nb_meta(first).get("solution"):
        return ""
    source = "\n".join(line for line in first.source.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    keep = [node for node in tree.body if isinstance(node, ast.Import)
            or (isinstance(node, ast.ImportFrom) and node.module != "earlier_chapters")]
    return "\n".join(ast.unparse(node) for node in keep)


def solution_namespace(path) -> dict:
    """Execute only the answer cells of a solution notebook and return their namespace.

    Answer cells are self-contained function definitions (they may use ``np`` and
    what the chapter imports from earlier chapters, generated afresh from their
    solution notebooks), so the project's tests can grade the reference solutions in-process.
    """
    nb = read(path)
    namespace: dict = {}
    exec("import numpy as np", namespace)
    exec(_setup_imports(nb), namespace)     # torch chapters' answers use torch, nn, ... from the set-up cell
    from .earlier_chapters import generate

    given = generate(Path(path).parent.name, Path(path).parent.parent)
    if given:
        exec(compile(given, f"{Path(path).parent.name}/earlier_chapters.py", "exec"), namespace)
    for cell in nb.cells:
        if cell.cell_type == "code" and nb_meta(cell).get("solution"):
            exec(compile(cell.source, f"{Path(path).name}:{nb_meta(cell).get('grade_id')}", "exec"), namespace)
    return namespace
