"""The instructor workflow end to end, through nbgrader and the sandbox.

These are the slow tests (each autograde starts a kernel); the in-process tests
in test_chNN_items.py prove the individual hidden tests in milliseconds.
"""
import csv

import nbformat
import pytest

from grader.workflow import course, earlier_chapters

from conftest import answer_sources, learner_notebook, nbgrader_as_learner, put_submission

pytestmark = pytest.mark.workflow
CHAPTERS = course.chapters()


def _row(root, chapter, student):
    return next(r for r in course.results(root, chapter) if r.student == student)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_submitted_as_a_learner_scores_full_marks(released_course, chapter, grading_cluster):
    root = released_course["root"]
    released = root / "release" / chapter / f"{chapter}.ipynb"
    put_submission(root, chapter, "perfect", learner_notebook(released, answer_sources(chapter)))
    [run] = course.autograde(root, chapter, ["perfect"], cluster=grading_cluster)
    assert run.ok, run.error
    row = _row(root, chapter, "perfect")
    assert row.score == row.max_score > 0, row.messages
    assert row.status == "graded", row.messages


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_released_notebook_runs_top_to_bottom_and_scores_zero(released_course, chapter, grading_cluster):
    root = released_course["root"]
    released = root / "release" / chapter / f"{chapter}.ipynb"
    put_submission(root, chapter, "untouched", nbformat.read(str(released), as_version=4))
    [run] = course.autograde(root, chapter, ["untouched"], cluster=grading_cluster)
    assert run.ok, run.error
    row = _row(root, chapter, "untouched")
    assert row.score == 0 and all(points == 0 for points in row.items.values()), row.items
    assert row.status == "graded", f"the untouched notebook did not run cleanly: {row.problems}"
    assert all("NotImplementedError" in m for m in row.failures), row.failures
    executed = nbformat.read(str(root / "autograded" / "untouched" / chapter / f"{chapter}.ipynb"), as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error" and o.ename != "HiddenTestFailed"]
    unexpected = [f"{o.ename}: {o.evalue}" for o in errors
                  if o.ename not in ("NotImplementedError", "CheckFailed") and "NotImplementedError" not in o.evalue]
    assert not unexpected, f"the released notebook fails for reasons other than unwritten stubs: {unexpected}"


GIVEN_CODE_CHAPTERS = [ch for ch in CHAPTERS if earlier_chapters.generate(ch) is not None]


@pytest.mark.parametrize("chapter", GIVEN_CODE_CHAPTERS[:1])
def test_a_learner_copy_of_the_earlier_chapters_code_is_replaced_at_grading(released_course, chapter, grading_cluster):
    """A submission whose earlier_chapters.py was broken (or left out of the zip) is graded with the course's copy."""
    root = released_course["root"]
    released = root / "release" / chapter / f"{chapter}.ipynb"
    path = put_submission(root, chapter, "tinkerer", learner_notebook(released, answer_sources(chapter)))
    (path.parent / "earlier_chapters.py").write_text("raise ImportError('edited by the learner')\n")
    [run] = course.autograde(root, chapter, ["tinkerer"], cluster=grading_cluster)
    assert run.ok, run.error
    row = _row(root, chapter, "tinkerer")
    assert row.score == row.max_score > 0, row.messages


def test_fake_class_release_submit_collect_autograde_feedback_export(released_course, tmp_path, grading_cluster):
    """Three learners through the exchange: one perfect, one partly wrong, one with a broken notebook."""
    root, exchange = released_course["root"], released_course["exchange"]
    chapter = "02_backprop"
    answers = answer_sources(chapter)
    wrong_mse = "def mse_loss(pred, y):\n    return np.mean((pred - y) ** 2), (pred - y) / pred.size\n"
    learners = {
        "alice": lambda nb_path: nbformat.writes(learner_notebook(nb_path, answers)),
        "bob": lambda nb_path: nbformat.writes(learner_notebook(nb_path, answers,
                                                                {"mse_loss_answer": wrong_mse})),
        "carol": lambda nb_path: '{"cells": [ this is not json',
    }
    for student, make in learners.items():
        home = tmp_path / student
        nbgrader_as_learner(home, exchange, "fetch_assignment", chapter)
        nb_path = home / chapter / f"{chapter}.ipynb"
        nb_path.write_text(make(nb_path))
        nbgrader_as_learner(home, exchange, "submit", chapter, f"--student={student}")

    report = course.collect_from_exchange(root, chapter)
    assert {"alice", "bob", "carol"} <= set(report.collected)
    original_carol = (root / "submitted" / "carol" / chapter / f"{chapter}.ipynb").read_bytes()

    runs = {r.student: r for r in course.autograde(root, chapter, ["alice", "bob", "carol"], cluster=grading_cluster)}
    assert all(r.ok for r in runs.values()), {s: r.error for s, r in runs.items()}

    alice, bob, carol = (_row(root, chapter, s) for s in ("alice", "bob", "carol"))
    assert alice.score == alice.max_score and alice.status == "graded"
    assert bob.items["mse_loss"] == 0
    assert bob.score == bob.max_score - 1 and all(v > 0 for k, v in bob.items.items() if k != "mse_loss")
    assert any("mse_loss: dpred has relative error" in m for m in bob.failures), bob.failures
    assert carol.score == 0 and carol.status == "problems"
    assert any("not a readable notebook" in m for m in carol.problems), carol.problems
    assert (root / "submitted" / "carol" / chapter / f"{chapter}.ipynb").read_bytes() == original_carol

    feedback = course.generate_feedback(root, chapter)
    html = (feedback / "bob" / chapter / f"{chapter}.html").read_text()
    assert "mse_loss: dpred has relative error" in html and "Hint:" in html
    for secret in ("BEGIN HIDDEN TESTS", "run_hidden_test", "course_harness"):
        assert secret not in html, f"feedback shows hidden test source ({secret})"
    assert (exchange / course.COURSE_ID / "feedback").is_dir(), "feedback was not returned through the exchange"

    out = course.export_grades(root, chapter, tmp_path / "grades.csv")
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    assert rows["alice"]["score"] == rows["alice"]["max_score"]
    assert rows["bob"]["mse_loss"] == "0" and rows["bob"]["affine_backward"] != "0"
    assert rows["carol"]["status"] == "problems" and "not a readable notebook" in rows["carol"]["messages"]


def test_lms_zip_collection_reports_broken_zips_and_keeps_the_rest(released_course, tmp_path):
    import zipfile

    root = released_course["root"]
    chapter = "01_mlp_xor"
    released = root / "release" / chapter / f"{chapter}.ipynb"
    zips = tmp_path / "zips"
    zips.mkdir()
    with zipfile.ZipFile(zips / "dave_attempt1.zip", "w") as zf:
        zf.writestr(f"{chapter}/{chapter}.ipynb", released.read_text())
        zf.writestr("../../escape.txt", "outside")
    (zips / "erin.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    (zips / "frank.zip").write_bytes(b"")
    report = course.collect_from_zips(root, chapter, zips)
    assert report.collected == ["dave"]
    assert set(report.problems) == {"erin.zip", "frank.zip"}
    assert (root / "submitted" / "dave" / chapter / f"{chapter}.ipynb").is_file()
    assert not (root / "escape.txt").exists() and not (root / "submitted" / "escape.txt").exists()


def test_cli_status_and_export_read_the_same_results(released_course, tmp_path, capsys):
    from grader.workflow import cli

    root = released_course["root"]
    released = root / "release" / "02_backprop" / "02_backprop.ipynb"
    put_submission(root, "02_backprop", "zoe", nbformat.read(str(released), as_version=4))
    assert cli.main(["--course", str(root), "status", "02_backprop"]) == 0
    table = capsys.readouterr().out
    assert "student" in table and "zoe" in table
    out = tmp_path / "cli.csv"
    assert cli.main(["--course", str(root), "export", "02_backprop", "--out", str(out)]) == 0
    assert out.read_text().startswith("student,chapter,score,max_score,status")
    assert cli.main(["--course", str(tmp_path / "nowhere"), "autograde", "02_backprop"]) in (1, 2)
    assert cli.main(["--course", str(root), "status", "99_unknown"]) == 2
    assert "unknown chapter" in capsys.readouterr().err


def _hostile_cells(label):
    """The learner's cell of one of tests/test_torch_hostile.py's submissions."""
    import textwrap

    from test_torch_hostile import HOSTILE

    return textwrap.dedent(next(h.cells for h in HOSTILE if h.label == label))


PATCHED_SGD = _hostile_cells("no zero_grad, the optimizer patched to clear gradients")
AUTOGRAD_BACKWARD = _hostile_cells("backward hands its work to torch.autograd.grad")


def test_delegation_and_tampering_are_held_for_review_in_status_csv_and_feedback(released_course, tmp_path, grading_cluster):
    """Through nbgrader and the sandbox: a patched optimizer holds every item, autograd in a hand-written
    backward holds its own; the instructor sees status `review` with the line, the learner the rule."""
    chapter = "07_pytorch"
    root = released_course["root"]
    released = root / "release" / chapter / f"{chapter}.ipynb"
    answers = answer_sources(chapter)
    put_submission(root, chapter, "patches_sgd",
                   learner_notebook(released, answers, {"train_one_epoch_answer": PATCHED_SGD}))
    put_submission(root, chapter, "autograd_backward",
                   learner_notebook(released, answers, {"AffineFunction_answer": AUTOGRAD_BACKWARD}))
    runs = course.autograde(root, chapter, ["patches_sgd", "autograd_backward"], cluster=grading_cluster)
    assert all(run.ok for run in runs), [run.error for run in runs]
    patcher, delegator = _row(root, chapter, "patches_sgd"), _row(root, chapter, "autograd_backward")
    assert patcher.status == "review" and patcher.score == 0, (patcher.status, patcher.items)
    assert any("torch.optim.SGD.step" in m for m in patcher.problems), patcher.problems
    assert delegator.status == "review" and delegator.items["AffineFunction"] == 0, delegator.items
    assert delegator.score == delegator.max_score - 2, delegator.items     # only AffineFunction is held
    export = course.export_grades(root, chapter, tmp_path / "grades.csv")
    rows = {r["student"]: r for r in csv.DictReader(open(export))}
    assert rows["patches_sgd"]["status"] == "review" and "held for review" in rows["patches_sgd"]["messages"]
    feedback = course.generate_feedback(root, chapter)
    html = (feedback / "autograd_backward" / chapter / f"{chapter}.html").read_text()
    assert "held for review" in html and "autograd" in html


def test_one_learners_hidden_test_marker_never_fails_the_class_feedback(released_course, grading_cluster):
    """A learner whose code holds nbgrader's hidden-test marker text gets a page of verdicts; everyone else
    gets nbgrader's feedback; the command reports the problem instead of failing."""
    chapter = "01_mlp_xor"
    root = released_course["root"]
    released = root / "release" / chapter / f"{chapter}.ipynb"
    answers = answer_sources(chapter)
    marker = answers["sigmoid_answer"] + "\n# ### BEGIN HIDDEN TESTS\n"
    put_submission(root, chapter, "marker", learner_notebook(released, answers, {"sigmoid_answer": marker}))
    put_submission(root, chapter, "plain", learner_notebook(released, answers))
    runs = course.autograde(root, chapter, ["marker", "plain"], cluster=grading_cluster)
    assert all(run.ok for run in runs), [run.error for run in runs]
    problems = {}
    feedback = course.generate_feedback(root, chapter, problems)
    assert (feedback / "plain" / chapter / f"{chapter}.html").is_file()
    page = (feedback / "marker" / chapter / f"{chapter}.html").read_text()
    assert "marker" in problems and "sigmoid" in page, problems
