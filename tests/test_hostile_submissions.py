"""A class of hostile and broken learners, graded together through nbgrader and the sandbox.

Each submission is chapter 01 filled in like a learner would, plus one attack or
fault. One parallel autograde run grades them all (as an instructor would); each
test then checks one learner's outcome: a wrong answer still scores zero,
nothing leaks, nothing outside the sandbox changes, and everyone else is graded.
Bounded: 5 s per cell, 60 s per notebook, 1.5 GiB per process.
"""
from __future__ import annotations

import json
import socket
import textwrap
import threading
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from grader.workflow import course
from grader.isolation import sandbox
from grader.judge.notebooks import graded_items, nb_meta

from conftest import ROOT, answer_sources, learner_notebook, put_submission, solution_notebook

pytestmark = pytest.mark.sandbox
CHAPTER = "01_mlp_xor"
FULL = float(sum(graded_items(nbformat.read(str(solution_notebook(CHAPTER)), as_version=4)).values()))  # 11 points
WRONG_SOFTMAX = "def softmax(x):\n    return np.exp(x) / np.sum(np.exp(x))\n"
OUTSIDE_MARKERS = [Path("/tmp/hostile-was-here"), ROOT / "hostile-was-here"]


def insert_after(nb, grade_id, source):
    """Insert a plain code cell after the cell with ``grade_id`` ('' = after the set-up cell)."""
    index = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code") if not grade_id else \
        next(i for i, c in enumerate(nb.cells) if nb_meta(c).get("grade_id") == grade_id)
    nb.cells.insert(index + 1, new_code_cell(textwrap.dedent(source)))
    return nb


class Listener:
    """A TCP listener on the host's loopback that records whether anyone connected."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def hostile_class(root: Path, listener_port: int):
    """{student: (notebook or raw text or None, file name)} — the submissions of the hostile class."""
    released = root / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    answers = answer_sources(CHAPTER)

    def solved(**replace):
        return learner_notebook(released, answers, {f"{k}_answer": v for k, v in replace.items()})

    def stubs():
        return learner_notebook(released)

    secrets = [str(root / "gradebook.db"), str(ROOT / "solutions" / CHAPTER / f"{CHAPTER}.ipynb"),
               str(ROOT / "grader" / "judge" / "references" / "ch01_mlp_xor.py")]
    subs = {
        "perfect": solved(),
        "patches_allclose": insert_after(solved(softmax=WRONG_SOFTMAX), "", """
            import numpy as np
            np.allclose = lambda *a, **k: True
            np.testing.assert_allclose = lambda *a, **k: None
            np.isclose = lambda a, b, *args, **k: np.ones_like(a, dtype=bool)
            """),
        "patches_harness_function": insert_after(stubs(), "", """
            import course_harness
            course_harness.run_hidden_test = lambda item, namespace: print(item, "passed")
            """),
        "shadows_harness_module": insert_after(stubs(), "", """
            import sys
            fake = '''
            import json, os
            def run_hidden_test(item, namespace):
                d = os.environ.get("COURSE_GRADING_DIR", ".")
                cases = json.load(open(os.path.join(d, "cases", item + ".json")))
                res = {"item": item, "results": [{"error": None, "mutated": [], "outputs": {}} for _ in cases["cases"]]}
                os.makedirs(os.path.join(d, "results"), exist_ok=True)
                json.dump(res, open(os.path.join(d, "results", item + ".json"), "w"))
                import numpy as np; np.savez(os.path.join(d, "results", item + ".npz"))
            '''
            open("course_harness.py", "w").write(fake)
            sys.modules.pop("course_harness", None)
            """),
        "forges_results_files": insert_after(stubs(), "test_DataLoader", """
            import os, json, numpy as np
            d = os.environ.get("COURSE_GRADING_DIR", ".")
            for name in os.listdir(os.path.join(d, "cases")):
                if name.endswith(".json"):
                    item = name[:-5]
                    cases = json.load(open(os.path.join(d, "cases", name)))
                    data = np.load(os.path.join(d, "cases", item + ".npz"))
                    outputs = {r: {"kind": "array", "key": "o." + r} for r in cases["cases"][0]["returns"]}
                    first = data[data.files[0]]
                    arrays = {f"c{i}/o.{r}": first for i in range(len(cases["cases"])) for r in outputs}
                    json.dump({"item": item, "results": [{"error": None, "mutated": [], "outputs": outputs}
                               for _ in cases["cases"]]}, open(os.path.join(d, "results", name), "w"))
                    np.savez(os.path.join(d, "results", item + ".npz"), **arrays)
            """),
        "reads_secrets": insert_after(solved(softmax=WRONG_SOFTMAX), "", f"""
            for path in {secrets!r}:
                try:
                    text = open(path, "rb").read(200)
                    print("LEAK", path, text)
                except Exception as exc:
                    print("blocked", path, type(exc).__name__)
            try:
                import sqlite3
                db = sqlite3.connect({secrets[0]!r})
                db.execute("UPDATE grade SET auto_score = 100")
                db.commit()
            except Exception as exc:
                print("blocked write", type(exc).__name__)
            """),
        "delegates_to_reference": solved(softmax=textwrap.dedent("""
            def softmax(x):
                from grader.judge.references.ch01_mlp_xor import softmax as trusted
                return trusted(x)
            """)),
        "kernel_exits": insert_after(solved(), "test_confusion_matrix", "import os\nos._exit(0)\n"),
        "deletes_its_working_folder": insert_after(solved(), "test_softmax", """
            import os, shutil
            for name in os.listdir("."):
                shutil.rmtree(name, ignore_errors=True) if os.path.isdir(name) else os.remove(name)
            """),
        "breaks_the_recorder": insert_after(solved(), "test_softmax", """
            import course_harness
            course_harness.run_hidden_test = lambda item, namespace: None
            """),
        "loops_forever_in_function": solved(relu="def relu(x):\n    while True:\n        pass\n"),
        "loops_forever_at_top_level": insert_after(solved(), "", "while True:\n    pass\n"),
        "memory_bomb": insert_after(solved(sigmoid="def sigmoid(x):\n    junk = bytearray(8 * 2**30)\n"
                                                   "    return x\n"), "", "hog = bytearray(8 * 2**30)\n"),
        "system_exit": insert_after(solved(relu="def relu(x):\n    import sys\n    sys.exit(3)\n"), "",
                                    "raise SystemExit('bye')\n"),
        "huge_output": insert_after(solved(), "", "for _ in range(2000):\n    print('x' * 20000)\n"),
        "fork_storm": insert_after(solved(), "test_DataLoader", """
            import subprocess
            started = 0
            for _ in range(400):
                try:
                    subprocess.Popen(["sleep", "117.25"])
                    started += 1
                except Exception:
                    break
            print("started", started)
            """),
        "tries_network": insert_after(solved(), "", f"""
            import socket
            try:
                socket.create_connection(("127.0.0.1", {listener_port}), timeout=2)
                print("NETWORK REACHED")
            except OSError as exc:
                print("no network", type(exc).__name__)
            """),
        "writes_outside": insert_after(solved(), "", f"""
            for path in {[str(p) for p in OUTSIDE_MARKERS] + [str(root / 'hostile-was-here')]!r}:
                try:
                    open(path, "w").write("pwned")
                except Exception as exc:
                    print("blocked", path, type(exc).__name__)
            """),
        "mutates_input": solved(relu="def relu(x):\n    x[x < 0] = 0\n    return x\n"),
        "returns_a_string": solved(relu="def relu(x):\n    return 'relu'\n"),
        "fakes_visible_checks": insert_after(solved(softmax=WRONG_SOFTMAX), "", """
            from dlcourse import checks
            checks.check_close = lambda *a, **k: 0.0
            checks.check_shape = lambda *a, **k: None
            """),
        "edits_and_deletes_test_cells": _tamper_with_test_cells(solved(softmax=WRONG_SOFTMAX)),
        "duplicates_cells": _duplicate_cells(solved()),
        "claims_extra_points": _fake_grade_cell(solved()),
        "malformed_json": ('{"cells": [ {"cell_type": "code", "source": "oops', f"{CHAPTER}.ipynb"),
        "empty_file": ("", f"{CHAPTER}.ipynb"),
        "renamed_notebook": (solved(), f"{CHAPTER} (1).ipynb"),
        "missing_notebook": (None, "notes.txt"),
    }
    return subs


def _tamper_with_test_cells(nb):
    for cell in nb.cells:
        grade_id = nb_meta(cell).get("grade_id")
        if grade_id == "test_softmax":
            cell.source = "print('all good')"
    nb.cells = [c for c in nb.cells if nb_meta(c).get("grade_id") != "test_relu"]
    return nb


def _duplicate_cells(nb):
    index = next(i for i, c in enumerate(nb.cells) if nb_meta(c).get("grade_id") == "test_sigmoid")
    nb.cells.insert(index + 1, nbformat.from_dict(json.loads(json.dumps(nb.cells[index]))))
    nb.cells.insert(index + 1, nbformat.from_dict(json.loads(json.dumps(nb.cells[index - 2]))))
    return nb


def _fake_grade_cell(nb):
    cell = new_code_cell("print('I deserve it')")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 100,
                                 "grade_id": "test_bonus", "schema_version": 3}
    nb.cells.append(cell)
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root = base / "course"
    course.init_course(root, cell_timeout=5, notebook_timeout=60, memory_mb=1536)
    course.release_assignment(root, CHAPTER, None)
    listener = Listener()
    try:
        subs = hostile_class(root, listener.port)
        originals = {}
        for student, sub in subs.items():
            content, name = sub if isinstance(sub, tuple) else (sub, None)
            if content is None:
                folder = root / "submitted" / student / CHAPTER
                folder.mkdir(parents=True)
                (folder / name).write_text("I forgot the notebook")
            elif isinstance(content, str):
                put_submission(root, CHAPTER, student, raw=content, name=name)
            else:
                put_submission(root, CHAPTER, student, content, name=name)
            originals[student] = {p: p.read_bytes() for p in (root / "submitted" / student).rglob("*") if p.is_file()}
        runs = {r.student: r for r in course.autograde(root, CHAPTER, list(subs), workers=2)}
    finally:
        listener.close()
    rows = {r.student: r for r in course.results(root, CHAPTER)}
    yield {"root": root, "runs": runs, "rows": rows, "originals": originals, "listener": listener}
    for marker in OUTSIDE_MARKERS:
        marker.unlink(missing_ok=True)


def _autograded_text(graded, student):
    """Everything the learner's cells printed while graded (outputs only, not sources)."""
    path = graded["root"] / "autograded" / student / CHAPTER / f"{CHAPTER}.ipynb"
    if not path.is_file():
        return ""
    nb = nbformat.read(str(path), as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])


def test_every_submission_was_processed_and_the_grader_survived(graded):
    assert all(run.ok for run in graded["runs"].values()), {s: r.error for s, r in graded["runs"].items() if not r.ok}
    assert set(graded["rows"]) >= set(graded["runs"])


def test_a_correct_submission_in_a_hostile_class_gets_full_marks(graded):
    row = graded["rows"]["perfect"]
    assert row.score == FULL and row.status == "graded", row.messages


@pytest.mark.parametrize("student", ["reads_secrets", "edits_and_deletes_test_cells"])
def test_wrong_softmax_scores_zero_whatever_else_the_kernel_does(graded, student):
    row = graded["rows"][student]
    assert row.items["softmax"] == 0, row.items
    assert row.score == FULL - 1, (row.score, row.messages)


@pytest.mark.parametrize("student, patched", [("patches_allclose", "np.allclose"),
                                              ("fakes_visible_checks", "checks.check_close")])
def test_patching_libraries_holds_every_item_for_review(graded, student, patched):
    """Changing a library the grading uses is found in the submitted source: nothing scores until reviewed."""
    row = graded["rows"][student]
    assert row.status == "review" and row.score == 0, (row.status, row.items)
    assert any("held for review" in m and patched in m for m in row.problems), row.problems


@pytest.mark.parametrize("student", ["patches_harness_function", "shadows_harness_module", "forges_results_files"])
def test_attacks_on_the_recording_give_unwritten_stubs_nothing(graded, student):
    assert graded["rows"][student].score == 0, graded["rows"][student].items


def test_secrets_are_invisible_and_the_gradebook_untouched(graded):
    text = _autograded_text(graded, "reads_secrets")
    assert "LEAK" not in text and text.count("blocked") >= 3, text[:2000]
    assert all(r.score is None or r.score <= r.max_score for r in graded["rows"].values())


def test_delegating_to_the_trusted_reference_does_not_score(graded):
    row = graded["rows"]["delegates_to_reference"]
    assert row.items["softmax"] == 0 and row.score == FULL - 1
    assert any("softmax" in m and ("ModuleNotFoundError" in m or "ImportError" in m) for m in row.failures), row.failures


def _cell_number(nb_path, grade_id):
    nb = nbformat.read(str(nb_path), as_version=4)
    return next(i for i, c in enumerate(nb.cells) if nb_meta(c).get("grade_id") == grade_id) + 1


def test_code_that_removes_its_working_folder_is_named_and_costs_nothing(graded):
    row = graded["rows"]["deletes_its_working_folder"]
    assert row.score == FULL, (row.items, row.messages)      # the grading files were put back
    assert row.status == "problems", (row.status, row.messages)
    damaged = _cell_number(graded["root"] / "submitted" / "deletes_its_working_folder" / CHAPTER /
                           f"{CHAPTER}.ipynb", "test_softmax") + 1
    assert any(f"removed or changed the grading files in its working folder in cell {damaged}" in m
               for m in row.problems), row.problems


def test_code_that_breaks_the_recorder_is_told_so(graded):
    row = graded["rows"]["breaks_the_recorder"]
    assert row.status == "grading problem", (row.status, row.messages)
    assert any("nothing was recorded" in m and "DataLoader" in m for m in row.problems), row.problems
    # reaching into course_harness is in the submitted source: every item is held for review too
    assert row.score == 0 and any("held for review" in m and "course_harness" in m for m in row.problems), row.problems


def test_kernel_death_keeps_the_points_earned_before_it(graded):
    row = graded["rows"]["kernel_exits"]
    assert row.items["DataLoader"] == 0 and row.score == FULL - 2, row.items
    assert any("kernel died" in m for m in row.problems), row.problems


def test_an_infinite_loop_in_a_function_costs_only_that_function(graded):
    row = graded["rows"]["loops_forever_in_function"]
    assert row.items["relu"] == 0 and row.score == FULL - 1, row.items
    assert any("interrupted" in m for m in row.problems), row.problems
    assert any(m.startswith("relu") and "time limit" in m and "harness" not in m for m in row.failures), row.failures


def test_an_infinite_loop_at_top_level_is_interrupted_and_grading_goes_on(graded):
    row = graded["rows"]["loops_forever_at_top_level"]
    assert row.score == FULL, row.messages


def test_memory_bombs_fail_only_where_they_go_off(graded):
    row = graded["rows"]["memory_bomb"]
    assert row.items["sigmoid"] == 0 and row.score == FULL - 1, (row.items, row.messages)


def test_system_exit_is_a_clear_failure_not_a_crash(graded):
    row = graded["rows"]["system_exit"]
    assert row.items["relu"] == 0 and row.score == FULL - 1, row.items
    assert any("relu" in m and "SystemExit" in m for m in row.failures), row.failures


def test_huge_output_is_capped_and_grading_goes_on(graded):
    row = graded["rows"]["huge_output"]
    assert row.score == FULL, row.messages
    assert len(_autograded_text(graded, "huge_output")) < 2_000_000


def test_a_process_storm_is_contained(graded):
    assert graded["rows"]["fork_storm"].score == FULL
    import subprocess

    left = subprocess.run(["pgrep", "-f", "sleep 117.25"], capture_output=True, text=True).stdout.split()
    assert not left, f"processes outlived the sandbox: {left}"


def test_no_network_from_learner_code(graded):
    if sandbox.detect_isolation().mode == "none":
        pytest.skip("no network isolation without namespaces")
    assert graded["listener"].connections == 0
    assert "NETWORK REACHED" not in _autograded_text(graded, "tries_network")
    assert graded["rows"]["tries_network"].score == FULL


def test_nothing_is_written_outside_the_scratch_folder(graded):
    for marker in OUTSIDE_MARKERS + [graded["root"] / "hostile-was-here"]:
        assert not marker.exists(), f"learner code wrote {marker}"
    assert graded["rows"]["writes_outside"].score == FULL


def test_mutating_an_input_loses_that_function_with_a_message(graded):
    row = graded["rows"]["mutates_input"]
    assert row.items["relu"] == 0 and row.score == FULL - 1
    assert any("changed its input" in m for m in row.failures), row.failures


def test_a_wrong_return_type_gets_a_clear_message(graded):
    row = graded["rows"]["returns_a_string"]
    assert row.items["relu"] == 0 and any("relu" in m and "str" in m for m in row.failures), row.failures


def test_deleted_and_edited_test_cells_are_restored(graded):
    row = graded["rows"]["edits_and_deletes_test_cells"]
    assert row.items["relu"] == 1 and row.items["softmax"] == 0


def test_duplicated_cells_are_graded_once_with_a_note(graded):
    row = graded["rows"]["duplicates_cells"]
    assert row.score == FULL and any("copy of cell" in m for m in row.problems), row.messages


def test_a_cell_claiming_extra_points_gains_nothing(graded):
    row = graded["rows"]["claims_extra_points"]
    assert row.score == FULL and row.max_score == FULL


@pytest.mark.parametrize("student,reason", [("malformed_json", "not a readable notebook"),
                                            ("empty_file", "not a readable notebook"),
                                            ("missing_notebook", "missing from the submission")])
def test_unreadable_or_missing_notebooks_score_zero_with_the_reason(graded, student, reason):
    row = graded["rows"][student]
    assert row.score == 0 and row.status == "problems" and any(reason in m for m in row.problems), row.messages


def test_a_renamed_notebook_is_graded_under_its_expected_name(graded):
    row = graded["rows"]["renamed_notebook"]
    assert row.score == FULL and any("in its place" in m for m in row.problems), row.messages


def test_submissions_are_never_modified_and_regrading_is_idempotent(graded):
    root = graded["root"]
    for student, files in graded["originals"].items():
        for path, content in files.items():
            assert path.read_bytes() == content, f"{path} was modified"
    before = {s: r.score for s, r in graded["rows"].items() if s in ("perfect", "mutates_input", "malformed_json")}
    course.autograde(root, CHAPTER, list(before), workers=2)
    after = {r.student: r.score for r in course.results(root, CHAPTER) if r.student in before}
    assert after == before


def test_recorded_results_are_read_without_following_links(tmp_path):
    import os

    from grader.judge.protocol import read_results

    (tmp_path / "secret.json").write_text('{"item": "relu", "results": []}')
    os.symlink(tmp_path / "secret.json", tmp_path / "relu.json")
    (tmp_path / "relu.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="cannot be opened safely"):
        read_results(tmp_path, "relu")
    os.mkfifo(tmp_path / "sigmoid.json")
    (tmp_path / "sigmoid.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="not a regular file"):
        read_results(tmp_path, "sigmoid")
