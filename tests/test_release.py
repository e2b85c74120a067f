"""notebooks/ is exactly what the release step makes from solutions/, and nothing hidden leaks into it."""
import json

import nbformat
import pytest

from grader.workflow import course
from grader.judge.notebooks import graded_items, nb_meta

from conftest import ROOT, SOLUTION_REGION, solution_notebook

pytestmark = pytest.mark.release
CHAPTERS = course.chapters()


def _canonical(path):
    nb = nbformat.read(str(path), as_version=4)
    return json.dumps({"metadata": nb.metadata,
                       "cells": [{"type": c.cell_type, "source": c.source, "metadata": c.metadata} for c in nb.cells]},
                      sort_keys=True)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_committed_notebooks_match_a_fresh_release(released_course, chapter):
    fresh = released_course["notebooks"] / chapter / f"{chapter}.ipynb"
    committed = ROOT / "notebooks" / chapter / f"{chapter}.ipynb"
    assert committed.is_file(), f"{committed} is missing: run `make release`"
    assert _canonical(committed) == _canonical(fresh), \
        f"notebooks/{chapter} is out of date with solutions/{chapter}: run `make release` and commit"
    visible = lambda folder: {p.name for p in folder.iterdir() if not p.name.startswith(".")}  # noqa: E731
    extra = visible(committed.parent) - visible(fresh.parent)
    assert not extra, f"notebooks/{chapter} has files the release does not make: {extra}"
    for name in visible(fresh.parent) - {committed.name}:
        assert (committed.parent / name).is_file(), f"notebooks/{chapter}/{name} is missing: run `make release`"
        assert (committed.parent / name).read_bytes() == (fresh.parent / name).read_bytes(), \
            f"notebooks/{chapter}/{name} is out of date: run `make release` and commit"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_code_from_earlier_chapters_never_includes_the_chapters_own_graded_functions(chapter):
    from grader.workflow.earlier_chapters import given_code_problems
    from grader.judge.items import chapter_items

    problems = given_code_problems(chapter, set(chapter_items(chapter)))
    assert not problems, "\n".join(problems)


def test_given_code_that_would_leak_a_graded_function_is_reported(tmp_path):
    from grader.workflow.earlier_chapters import given_code_problems

    solutions = _fake_solutions(tmp_path, {"01_a": [("def f(x):\n    return x", "f_answer")],
                                           "02_b": [("from earlier_chapters import f", None)]})
    assert given_code_problems("02_b", {"f"}, solutions) == ["02_b would be given its own graded functions ['f']"]
    assert given_code_problems("02_b", {"g"}, solutions) == []


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_learner_notebooks_contain_no_solution_and_no_hidden_test(chapter):
    learner = nbformat.read(str(ROOT / "notebooks" / chapter / f"{chapter}.ipynb"), as_version=4)
    text = "\n".join(c.source for c in learner.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "course_harness"):
        assert marker not in text, f"notebooks/{chapter} contains {marker!r}"
    solution = nbformat.read(str(solution_notebook(chapter)), as_version=4)
    for cell in solution.cells:
        for body in SOLUTION_REGION.findall(cell.source):
            body = body.strip()
            if len(body.splitlines()) >= 2:
                assert body not in text, f"notebooks/{chapter} contains the solution of {nb_meta(cell).get('grade_id')}"
    assert all(not c.get("outputs") for c in learner.cells if c.cell_type == "code"), "committed with outputs"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_notebooks_are_committed_without_outputs(chapter):
    nb = nbformat.read(str(solution_notebook(chapter)), as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_hidden_test_cell_names_a_known_item_and_every_item_is_tested(chapter):
    from grader.judge.items import chapter_items

    in_notebook = graded_items(nbformat.read(str(solution_notebook(chapter)), as_version=4))
    assert set(in_notebook) == set(chapter_items(chapter)), \
        "hidden test cells and grader/judge/items disagree"
    assert all(points > 0 for points in in_notebook.values())


def test_learner_support_library_never_imports_the_grader():
    for path in (ROOT / "dlcourse").rglob("*.py"):
        text = path.read_text()
        assert "import grader" not in text and "from grader" not in text, f"{path} imports the grader"


def test_learner_support_library_defines_no_graded_function():
    from grader.judge.items import chapter_items

    names = {name for chapter in CHAPTERS for name in chapter_items(chapter)}
    for path in (ROOT / "dlcourse").rglob("*.py"):
        text = path.read_text()
        for name in names:
            assert f"def {name}(" not in text and f"class {name}(" not in text and f"class {name}:" not in text, \
                f"{path} defines the graded function {name}"


def _fake_solutions(tmp_path, cells_by_chapter):
    for chapter, cells in cells_by_chapter.items():
        nb = nbformat.v4.new_notebook()
        for source, grade_id in cells:
            cell = nbformat.v4.new_code_cell(source)
            if grade_id:
                cell.metadata["nbgrader"] = {"grade": False, "grade_id": grade_id, "locked": False,
                                             "schema_version": 3, "solution": True}
            nb.cells.append(cell)
        (tmp_path / chapter).mkdir()
        nbformat.write(nb, str(tmp_path / chapter / f"{chapter}.ipynb"))
    return tmp_path


def test_given_code_takes_answers_and_what_they_call_but_nothing_else(tmp_path):
    from grader.workflow.earlier_chapters import generate

    solutions = _fake_solutions(tmp_path, {
        "01_a": [("def helper(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION", "helper_answer"),
                 ("def unused(x):\n    return 0", "unused_answer")],
        "02_b": [("def layer(x):\n    ### BEGIN SOLUTION\n    return helper(x) * 2\n    ### END SOLUTION",
                  "layer_answer")],
        "03_c": [("import numpy as np\nfrom earlier_chapters import layer\n%matplotlib inline", None),
                 ("def mine(x):\n    return layer(x)", "mine_answer")],
    })
    text = generate("03_c", solutions)
    namespace = {}
    exec(text, namespace)
    assert namespace["layer"](1) == 4, "the given layer must call the given helper"
    assert "unused" not in namespace and "mine" not in namespace
    assert "BEGIN SOLUTION" not in text and "# --- from 01_a" in text and "# --- from 02_b" in text
    assert generate("01_a", solutions) is None


def test_given_code_names_an_import_no_earlier_chapter_answers(tmp_path):
    from grader.workflow.earlier_chapters import generate

    solutions = _fake_solutions(tmp_path, {"01_a": [("def f(x):\n    return x", "f_answer")],
                                           "02_b": [("from earlier_chapters import g", None)]})
    with pytest.raises(KeyError, match="no earlier chapter"):
        generate("02_b", solutions)
