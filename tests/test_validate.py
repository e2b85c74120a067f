"""nbgrader's Validate (the button and `nbgrader validate`) tells a learner the truth.

It names every function that is unwritten or fails its visible check, and says Success only
when every visible check passes. The learners' settings come from jupyter/nbgrader_config.py
(`make env` installs it in .venv/etc/jupyter); here JUPYTER_CONFIG_PATH points at it.
"""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.workflow import course
from grader.judge.notebooks import graded_items, nb_meta

from conftest import ROOT, answer_sources, learner_notebook

pytestmark = pytest.mark.release
CHAPTER = "01_mlp_xor"
LEARNER_CONFIG = ROOT / "jupyter"
WRONG_SIGMOID = "def sigmoid(x):\n    return 1 / (1 + np.exp(x))   # the sign of x is wrong\n"


def _learner_notebook(tmp_path, chapter=CHAPTER, fill=(), replace=None):
    """notebooks/<chapter> copied to tmp_path, with the worked answers of ``fill`` ("all": every one) written in."""
    folder = tmp_path / chapter
    folder.mkdir()
    for path in (ROOT / "notebooks" / chapter).iterdir():
        if path.is_file():
            (folder / path.name).write_bytes(path.read_bytes())
    path = folder / f"{chapter}.ipynb"
    answers = {gid: src for gid, src in answer_sources(chapter).items() if fill == "all" or gid in fill}
    nbformat.write(learner_notebook(path, answers, replace), str(path))
    return path


def _env():
    return dict(os.environ, JUPYTER_CONFIG_PATH=str(LEARNER_CONFIG), PYTHONPATH=str(ROOT))


def _validate_cli(path):
    """`nbgrader validate`, run as a learner runs it: in the notebook's folder."""
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "validate", path.name], cwd=path.parent,
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _validate_like_the_button(path, monkeypatch):
    """What the Validate button's server handler computes (nbgrader's validate_assignment handler)."""
    from nbgrader.apps import NbGrader
    from nbgrader.validator import Validator

    for name, value in _env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)  # the handler also reads the folder JupyterLab was started in
    app = NbGrader()
    app.load_config_file()
    return Validator(config=app.config).validate(str(path))


def _items():
    nb = nbformat.read(str(ROOT / "notebooks" / CHAPTER / f"{CHAPTER}.ipynb"), as_version=4)
    return list(graded_items(nb))


def test_validate_on_an_untouched_notebook_names_every_unwritten_function(tmp_path):
    out = _validate_cli(_learner_notebook(tmp_path))
    assert "Success!" not in out
    items = _items()
    assert f"VALIDATION FAILED ON {len(items)} CELL(S)!" in out
    assert "the hidden tests, on fresh random inputs, run when your notebook is graded" in " ".join(out.split()), \
        "the learners' nbgrader_config.py was not read"
    for name in items:
        assert f"{name}: not written yet (its answer cell still raises NotImplementedError)." in " ".join(out.split())


def test_validate_on_a_completed_notebook_says_success(tmp_path):
    out = _validate_cli(_learner_notebook(tmp_path, fill="all"))
    assert out.strip() == "Success! Your notebook passes all the tests."


def test_validate_names_a_wrong_sigmoid_and_nothing_else(tmp_path, monkeypatch):
    path = _learner_notebook(tmp_path, fill="all", replace={"sigmoid_answer": WRONG_SIGMOID})
    out = _validate_cli(path)
    assert "VALIDATION FAILED ON 1 CELL(S)!" in out
    assert "sigmoid: sigmoid(x) has relative error" in out and "Hint: for x far below 0, exp(-x) overflows" in out
    assert out.count("The following cell failed:") == 1

    result = _validate_like_the_button(path, monkeypatch)   # the dialog shows each failed cell's error
    assert list(result) == ["failed"] and len(result["failed"]) == 1
    assert 'dlcourse.validation.report("sigmoid")' in result["failed"][0]["source"]
    assert result["failed"][0]["raw_error"].startswith("sigmoid: sigmoid(x) has relative error")


def test_validate_blames_the_unwritten_helper_a_written_function_calls(tmp_path):
    written = [f"{name}_answer" for name in _items() if name != "relu"]
    mlp_with_relu = "def mlp_forward(X, W1, b1, W2, b2):\n    return relu(X @ W1 + b1) @ W2 + b2\n"
    out = _validate_cli(_learner_notebook(tmp_path, fill=written, replace={"mlp_forward_answer": mlp_with_relu}))
    assert "VALIDATION FAILED ON 2 CELL(S)!" in out
    assert "relu: not written yet" in out
    assert "mlp_forward: its visible check stops in relu, which raises NotImplementedError: write relu first." \
        in " ".join(out.split())


def test_the_validate_line_does_nothing_outside_validate(monkeypatch):
    from dlcourse import validation

    monkeypatch.delenv("NBGRADER_VALIDATING", raising=False)
    assert validation.report("sigmoid") is None


@pytest.mark.parametrize("chapter", course.chapters())
def test_every_released_hidden_test_cell_reports_to_validate_after_its_check(chapter):
    from nbgrader.utils import compute_checksum

    nb = nbformat.read(str(ROOT / "notebooks" / chapter / f"{chapter}.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        meta = nb_meta(cell)
        if not (meta.get("grade") and meta["grade_id"].startswith("test_")):
            continue
        name = meta["grade_id"][len("test_"):]
        assert cell.source.rstrip().endswith(f'dlcourse.validation.report("{name}")'), cell.source
        assert meta["checksum"] == compute_checksum(cell), f"{chapter}: Validate would call {name}'s cell changed"
        check = code[i - 1]
        assert nb_meta(check).get("grade_id") == f"{name}_check", \
            f"{chapter}: the cell before test_{name} must be its check cell (Validate reads how that cell ended)"
        assert f'checks.passed("{name}")' in check.source, f"{chapter}: {name}'s check cell must end with checks.passed"


def test_the_validate_line_never_reaches_the_gradebook(tmp_path):
    """Grading runs the hidden tests in that cell's place: the source nbgrader keeps has no report line."""
    from nbgrader.api import Gradebook

    root = tmp_path / "course"
    course.init_course(root)
    course.release_assignment(root, CHAPTER, tmp_path / "notebooks")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        cell = gb.find_source_cell("test_sigmoid", CHAPTER, CHAPTER)
        assert "run_hidden_test" in cell.source and "dlcourse.validation" not in cell.source
    released = nbformat.read(str(root / "release" / CHAPTER / f"{CHAPTER}.ipynb"), as_version=4)
    assert any('dlcourse.validation.report("sigmoid")' in c.source for c in released.cells), \
        "learners who fetch from the exchange get the same notebook as notebooks/"
