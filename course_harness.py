"""Kernel-side half of the hidden tests: call the learner's functions, record what they return.

Every hidden test cell of a chapter notebook runs::

    import course_harness
    course_harness.run_hidden_test("affine_backward", globals())

While a notebook is being autograded, the grader has written fresh random test
cases into the folder named by ``COURSE_GRADING_DIR``. This module calls the
learner's functions on copies of those inputs, as the case's small call program
says, and writes what came back (arrays only, no pickles) to the same folder.
It decides nothing: the verdict is reached later, in the grader's own process,
by comparing these outputs with trusted references. So nothing a learner does to
this kernel (patching numpy, redefining helpers, replacing this module) can turn
a wrong answer into a right one: the only way to produce the right numbers on
inputs nobody saw before is to compute them.

Outside autograding (a learner or instructor running the notebook) the cell just
says that the hidden test runs at grading time.

Standard library and NumPy only; it must not import the grader package, which
is invisible inside the grading sandbox.
"""
from __future__ import annotations

import itertools
import json
import os
import sys
import traceback

import numpy as np

GRADING_DIR_ENV = "COURSE_GRADING_DIR"
MAX_ITEMS_FROM_ITERATOR = 10_000
MAX_RETURNED_BYTES = 64 * 2**20
MAX_MESSAGE_CHARS = 600


# --- Test functions that some items pass to learner code (e.g. numerical_gradient).
# The grader evaluates the very same definitions to build its expectations.

def _weighted_cubic(a, b):
    return lambda x: float(np.sum(a * x ** 3) + np.sum(b * x))


def _log_cosh(a):
    return lambda x: float(np.sum(np.log(np.cosh(a * x))))


def _tanh_affine(a, b):
    return lambda x: np.tanh(a * x + b)


def _sin_product(a):
    return lambda x: np.sin(x) * a


# Coupled (non-separable) functions: every output depends on every input, so a
# finite difference that leaves earlier entries shifted gives a wrong gradient.
def _log_sum_exp(a):
    return lambda x: float(np.log(np.sum(np.exp(a * x))))


def _tanh_matmul(m):
    return lambda x: np.tanh(np.reshape(x, -1) @ m)


TEST_FUNCTIONS = {
    "weighted_cubic": _weighted_cubic,   # scalar: sum(a x^3) + sum(b x)
    "log_cosh": _log_cosh,               # scalar: sum(log cosh(a x))
    "log_sum_exp": _log_sum_exp,         # scalar: log(sum(exp(a x))), coupled
    "tanh_affine": _tanh_affine,         # array:  tanh(a x + b)
    "sin_product": _sin_product,         # array:  sin(x) * a
    "tanh_matmul": _tanh_matmul,         # array:  tanh(flatten(x) @ m), coupled
}


class _Dataset:
    """The smallest map-style dataset: ``len(ds)`` and ``ds[i] -> (x_i, y_i)``."""

    def __init__(self, X, y):
        self._X, self._y = X, y

    def __len__(self):
        return len(self._X)

    def __getitem__(self, index):
        return self._X[index], self._y[index]


class CallFailed(Exception):
    """A learner call raised or returned something that cannot be recorded."""

    def __init__(self, record):
        super().__init__(record.get("message", ""))
        self.record = record


# --- Building arguments -------------------------------------------------------

def _build(spec, arrays, saved, pristine):
    """Turn one argument spec of a call program into a Python value.

    ``pristine`` collects (name, array handed over, untouched copy) so that
    in-place changes to inputs can be reported after the call.
    """
    if "a" in spec:                      # a fresh copy of a case array
        arr = np.array(arrays[spec["a"]], copy=True)
        if not spec.get("mutable"):      # a "mutable" one may be updated in place (an optimizer's w)
            pristine.append((spec["a"], arr, arr.copy()))
        return arr
    if "v" in spec:                      # a JSON literal
        return spec["v"]
    if "ref" in spec:                    # something an earlier call returned (opaque)
        return saved[spec["ref"]]
    if "d" in spec:                      # a dict; a "mutable" one may be changed in place
        checked = [] if spec.get("mutable") else pristine
        value = {k: _build(v, arrays, saved, checked) for k, v in spec["d"].items()}
        if spec.get("keep"):             # kept under a name: later calls and the returns see the same dict
            saved[spec["keep"]] = value
        return value
    if "l" in spec:                      # a list of specs
        return [_build(v, arrays, saved, pristine) for v in spec["l"]]
    if "fn" in spec:                     # a test function from TEST_FUNCTIONS
        params = {k: np.array(arrays[v], copy=True) for k, v in spec.get("params", {}).items()}
        return TEST_FUNCTIONS[spec["fn"]](**params)
    if "rng" in spec:
        return np.random.default_rng(int(spec["rng"]))
    if "dataset" in spec:
        X, y = spec["dataset"]
        return _Dataset(np.array(arrays[X], copy=True), np.array(arrays[y], copy=True))
    raise ValueError(f"unknown argument spec {spec!r}")


def _capped_list(iterable):
    items = list(itertools.islice(iter(iterable), MAX_ITEMS_FROM_ITERATOR + 1))
    if len(items) > MAX_ITEMS_FROM_ITERATOR:
        raise ValueError(f"iteration gave more than {MAX_ITEMS_FROM_ITERATOR} items")
    return items


# Operations a call program may apply to what a learner's function returned.
BUILTINS = {"len": len, "list": _capped_list}


# --- Recording results ----------------------------------------------------------

def _where(tb):
    """The learner's line where an exception happened: last frame outside this file."""
    frames = [f for f in traceback.extract_tb(tb) if os.path.basename(f.filename) != "course_harness.py"]
    if not frames:
        return ""
    f = frames[-1]
    line = (f.line or "").strip()
    return f"in {f.name}, line {f.lineno}: {line}" if line else f"in {f.name}, line {f.lineno}"


def _encode(value, key, out_arrays, budget, depth=0):
    """Describe ``value`` as JSON, moving numeric arrays into ``out_arrays``."""
    if value is None:
        return {"kind": "none"}
    if isinstance(value, (bool, np.bool_)):
        return {"kind": "bool", "value": bool(value)}
    if isinstance(value, (int, float, np.integer, np.floating)):
        out_arrays[key] = np.asarray(value)
        return {"kind": "scalar", "key": key, "type": type(value).__name__}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return {"kind": "other", "type": f"numpy array of dtype {value.dtype}"}
        budget[0] -= value.nbytes
        if budget[0] < 0:
            return {"kind": "other", "type": "array too large to record"}
        out_arrays[key] = np.array(value, copy=True)
        return {"kind": "array", "key": key}
    if isinstance(value, (list, tuple)) and depth < 4:
        return {"kind": type(value).__name__,
                "items": [_encode(v, f"{key}.{i}", out_arrays, budget, depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, dict) and depth < 4:
        return {"kind": "dict",
                "items": {str(k): _encode(v, f"{key}.{k}", out_arrays, budget, depth + 1) for k, v in value.items()}}
    return {"kind": "other", "type": type(value).__module__ + "." + type(value).__qualname__}


def _unpack(value, save, function):
    """Name what a call returned: one name takes it whole, several unpack a tuple."""
    if isinstance(save, str):
        return {save: value}
    if not isinstance(value, tuple) or len(value) != len(save):
        got = f"{len(value)} values" if isinstance(value, tuple) else f"a single {type(value).__name__}"
        raise CallFailed({"type": "WrongReturn", "function": function,
                          "message": f"{function} should return {len(save)} values ({', '.join(save)}) "
                                     f"as a tuple, but returned {got}"})
    return dict(zip(save, value))


def execute_case(case, arrays, namespace):
    """Run one case's call program against ``namespace``; never raises for learner faults.

    Returns ``(record, out_arrays)`` where ``record`` is JSON-serialisable.
    """
    saved = {}
    mutated = []
    for step_index, step in enumerate(case["steps"]):
        function = step.get("label") or step.get("call") or step["builtin"]
        pristine = []
        try:
            if "builtin" in step:
                fn = BUILTINS[step["builtin"]]
            else:
                fn = namespace.get(step["call"])
                if fn is None or not callable(fn):
                    raise CallFailed({"type": "NameError", "function": function,
                                      "message": f"{function} is not defined: run the cell that defines it"})
            args = [_build(s, arrays, saved, pristine) for s in step.get("args", [])]
            kwargs = {k: _build(s, arrays, saved, pristine) for k, s in step.get("kwargs", {}).items()}
            try:
                value = fn(*args, **kwargs)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any learner fault is a result
                raise CallFailed({"type": type(exc).__name__, "function": function,
                                  "message": str(exc)[:MAX_MESSAGE_CHARS], "where": _where(exc.__traceback__)})
            saved.update(_unpack(value, step.get("save", "_"), function))
            for name, before, kept in pristine:
                if not (before.shape == kept.shape and np.array_equal(before, kept, equal_nan=True)):
                    mutated.append({"function": function, "argument": name})
        except CallFailed as failed:
            record = dict(failed.record, step=step_index)
            return {"error": record, "mutated": mutated, "outputs": {}}, {}
    out_arrays = {}
    budget = [MAX_RETURNED_BYTES]
    outputs = {name: _encode(saved.get(name), f"o.{name}", out_arrays, budget) for name in case["returns"]}
    return {"error": None, "mutated": mutated, "outputs": outputs}, out_arrays


def run_cases(cases_doc, arrays, namespace):
    """Run every case of an item. Returns (results document, arrays to save)."""
    results, all_arrays = [], {}
    for i, case in enumerate(cases_doc["cases"]):
        case_arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"c{i}/")}
        record, out_arrays = execute_case(case, case_arrays, namespace)
        for k, v in out_arrays.items():
            all_arrays[f"c{i}/{k}"] = v
        results.append(record)
    return {"item": cases_doc["item"], "results": results}, all_arrays


def run_hidden_test(item, namespace):
    """Entry point of every hidden test cell."""
    grading_dir = os.environ.get(GRADING_DIR_ENV)
    if not grading_dir:
        print(f"The hidden test for {item} runs when this notebook is autograded.")
        return
    cases_path = os.path.join(grading_dir, "cases", f"{item}.json")
    with open(cases_path) as f:
        cases_doc = json.load(f)
    with np.load(os.path.join(grading_dir, "cases", f"{item}.npz"), allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    doc, out_arrays = run_cases(cases_doc, arrays, namespace)
    results_dir = os.path.join(grading_dir, "results")
    os.makedirs(results_dir, exist_ok=True)
    # Write arrays first and the JSON last, each by rename, so a reader never sees half a result.
    tmp = os.path.join(results_dir, f".{item}.npz.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **out_arrays)
    os.replace(tmp, os.path.join(results_dir, f"{item}.npz"))
    tmp = os.path.join(results_dir, f".{item}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(doc, f, allow_nan=True)
    os.replace(tmp, os.path.join(results_dir, f"{item}.json"))
    failures = sum(1 for r in doc["results"] if r["error"])
    print(f"{item}: answers recorded on {len(doc['results'])} test cases"
          + (f" ({failures} raised an error)" if failures else "") + "; the grader checks them.")
    sys.stdout.flush()
