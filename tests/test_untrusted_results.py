"""The grader is safe from the files learner code can write: bounded reading, recordings kept as recorded.

Everything under the grading folder is learner-writable while the notebook runs. The grader reads the
recorded arrays with every size bound checked before anything is allocated (grader.judge.protocol.load_arrays),
and the runner keeps each item's recording as its own hidden test cell left it (notebook_runner.GradingFiles).
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from grader.isolation import notebook_runner
from grader.judge.protocol import MAX_RESULT_NPZ_BYTES, load_arrays, read_results

pytestmark = pytest.mark.grader


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_arrays_written_by_the_recorder_read_back_exactly():
    a, b = np.arange(12.0).reshape(3, 4), np.array([1, 2, 3], dtype=np.int64)
    got = load_arrays(_npz(**{"c0/o.out": a, "c0/o.y": b}))
    assert np.array_equal(got["c0/o.out"], a) and np.array_equal(got["c0/o.y"], b)
    assert got["c0/o.out"].flags.writeable


def test_a_compressed_bomb_is_refused_before_it_is_decompressed():
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros(50_000_000 // 8))      # 50 MB of zeros in a few kB
    raw = buffer.getvalue()
    assert len(raw) < 200_000
    with pytest.raises(ValueError, match="compressed"):
        load_arrays(raw)


def test_a_header_that_claims_a_huge_array_is_refused_before_allocation():
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, 10**6)})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("x.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 64)
    with pytest.raises(ValueError, match="claims more data"):
        load_arrays(buffer.getvalue())


def test_objects_and_oversized_files_are_refused():
    buffer = io.BytesIO()
    np.savez(buffer, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not numeric"):
        load_arrays(buffer.getvalue())
    with pytest.raises(ValueError, match="larger than"):
        load_arrays(b"\0" * 100, limit=50)


def test_an_unreadable_recording_is_an_error_for_that_item_not_a_crash(tmp_path):
    (tmp_path / "softmax.json").write_text(json.dumps({"item": "softmax", "results": []}))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=np.zeros(10))
    (tmp_path / "softmax.npz").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError):
        read_results(tmp_path, "softmax")
    (tmp_path / "relu.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "relu.npz").write_bytes(_npz())
    with pytest.raises(ValueError):
        read_results(tmp_path, "relu")
    assert MAX_RESULT_NPZ_BYTES <= 80 * 2**20


def _grading_folder(tmp_path, monkeypatch):
    (tmp_path / "cases").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "cases" / "softmax.json").write_text("{}")
    monkeypatch.setenv("COURSE_GRADING_DIR", str(tmp_path))
    return notebook_runner.GradingFiles()


def test_a_recording_changed_after_its_hidden_test_is_put_back_and_reported(tmp_path, monkeypatch):
    files = _grading_folder(tmp_path, monkeypatch)
    results = tmp_path / "results"
    (results / "softmax.json").write_text("recorded")
    (results / "softmax.npz").write_bytes(b"arrays")
    assert not files.after_cell("softmax")              # the hidden test cell of softmax recorded these
    (results / "softmax.json").write_text("forged")      # a later cell rewrites them
    assert files.after_cell(None)
    assert (results / "softmax.json").read_text() == "recorded"
    (results / "softmax.npz").unlink()                   # or deletes them
    assert files.after_cell(None)
    assert (results / "softmax.npz").read_bytes() == b"arrays"


def test_a_recording_written_outside_its_own_hidden_test_is_removed(tmp_path, monkeypatch):
    files = _grading_folder(tmp_path, monkeypatch)
    results = tmp_path / "results"
    (results / "relu.json").write_text("forged before relu's hidden test ran")
    assert files.after_cell(None)
    assert not (results / "relu.json").exists()
    (results / "relu.json").write_text("written by softmax's test cell, which is not relu's")
    assert files.after_cell("softmax")
    assert not (results / "relu.json").exists()
