"""Grader-side half of the hidden tests: describe calls, read back what the kernel recorded.

A *case* is a tiny call program ("call affine_forward(x, w, b), keep (out, cache);
call affine_backward(dout, cache), keep (dx, dw, db)") plus the arrays it uses.
It is written as JSON + .npz for ``course_harness`` to run inside the sandboxed
kernel; the outputs come back the same way and are decoded here without ever
unpickling anything a learner produced, and with every size bound checked before
anything is allocated (``load_arrays``).

**The rule: the kernel only records numbers, the grader decides.** Learner code runs in the
kernel and can rebind anything there, ``course_harness`` included, so nothing the kernel reports
about itself is a fact a verdict may rest on. Every fact that grants points is established here:

- from numbers checked against trusted references computed in this process, in float64 on the
  CPU, on inputs drawn fresh in this process (a forged recording must contain the right numbers,
  and computing them is the exercise);
- or from the submitted source, which the grader reads itself (``grader.judge.review``: delegation to
  torch's own solution and tampering with the grading hold an item for review; ``Item.source_problem``:
  a fact only the code shows, such as ``evaluate`` running under ``torch.no_grad()``).

What the kernel says about itself (a tensor's dtype, device or requires_grad, the probe's log of
grad and training modes, the attention call counters) may fail an item, never pass one: it is a
second layer for honest mistakes. Hand-written ``autograd.Function``s are judged by calling their
``forward`` and ``backward`` directly (``function``: a context the harness makes, grad mode off, an
upstream gradient the grader chose), so no autograd graph or hook stands between the formula and the
numbers. Random functions are judged on their distribution over many draws.

What a hostile learner can do: make the recorder write any numbers and any dtype, device or mode
they like; patch torch, NumPy or the trusted objects a case hands over; read the cases' inputs. What
that gains: nothing the numbers do not already allow (the right numbers on inputs nobody saw before
need the computation), and the patching itself is in the submitted source, where ``grader.judge.review``
finds it and holds the item for review (it is shown to the instructor with the line). What remains
possible: code that defeats the review by means it does not know (an obfuscation that names no
grading machinery and calls nothing dynamic), which still has to produce the right numbers.

Torch items (chapters 07-09) use the same path: ``tensor`` / ``module`` / ``trusted`` specs build
float64 CPU tensors, the learner's nn.Module with the case's state_dict, and trusted objects
(a Sequential model, a probe that logs grad and training mode, a loader, an optimizer); ``Call``
may name ``"AffineFunction.apply"``, call an earlier result (``on_ref``: ``"model"``,
``"model.state_dict"``) or a builtin (``function``: forward and backward called directly; ``grad``:
``torch.autograd.grad`` through the learner's graph; ``value``; ``getitem``). A step with
``record_errors`` turns a learner error into a ``Raised`` value of its outputs (later steps are
skipped), so the item's check can report it with its hint (``checks.fail_if_raised``). Tensors come
back as ``TensorValue`` (CPU float64 array + dtype, device, requires_grad), judged with
``checks.expect_tensor`` and ``checks.expect_gradient``. A step's ``label`` names it in messages; give
a learner call the item's own name as label, so that an in-place change it makes is charged to the
item itself.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import course_harness

MAX_RESULT_JSON_BYTES = 8 * 2**20
MAX_RESULT_NPZ_BYTES = 80 * 2**20


# --- Argument specs (JSON) ------------------------------------------------------

def arr(name, mutable=False):
    """A case array, copied afresh for every call and checked for in-place changes unless ``mutable``."""
    return {"a": name, "mutable": True} if mutable else {"a": name}


def lit(value):
    """A JSON literal (int, float, str, bool, None, list)."""
    return {"v": value}


def ref(name):
    """Something an earlier call of the same case returned, passed on untouched (a cache)."""
    return {"ref": name}


def dict_of(mutable=False, **specs):
    """A dict of specs; ``mutable`` dicts may be changed in place (bn_param's running stats)."""
    return {"d": specs, "mutable": mutable}


def state(name, **specs):
    """A mutable dict (bn_param) kept under ``name``: pass it on with ``ref(name)``, list it in ``returns``
    to read back what the calls left in it (running averages)."""
    return {"d": specs, "mutable": True, "keep": name}


def list_of(*specs):
    """A list of specs, e.g. a list of weight matrices."""
    return {"l": list(specs)}


def test_function(name, **params):
    """One of ``course_harness.TEST_FUNCTIONS``, built from case arrays."""
    return {"fn": name, "params": params}


def rng(seed):
    return {"rng": int(seed)}


def dataset(x_name, y_name):
    return {"dataset": [x_name, y_name]}


# --- torch specs (course_harness imports torch only when a case uses one of these) -----------------

def tensor(name, requires_grad=False, keep=None):
    """A fresh CPU tensor from case array ``name``: float64 for floats, int64 for integers (labels).

    It is kept under ``keep`` (default: ``name``) so that a later step can ``ref`` the very same tensor
    (``grad`` needs the leaf), and checked for in-place change after the call, like ``arr``.
    """
    spec = {"tensor": name, "requires_grad": bool(requires_grad)}
    if keep:
        spec["keep"] = keep
    return spec


def module(class_name, args=(), kwargs=None, state=None, train=None):
    """The learner's ``nn.Module``: ``namespace[class_name](*args, **kwargs)``, then ``.double()``, then the
    state_dict {parameter name: case array name} loaded strictly (a missing, extra or misshapen parameter
    is reported by name), then ``.train(train)`` unless ``train`` is None."""
    return {"module": class_name, "args": list(args), "kwargs": dict(kwargs or {}),
            "state": dict(state or {}), "train": train}


def learner(name):
    """The learner's class or function ``name`` itself, as an argument (``function`` calls its forward and
    backward directly)."""
    return {"learner": name}


def trusted(kind, **specs):
    """A trusted torch object built by ``course_harness.TRUSTED[kind]`` from specs: "sequential" (layers,
    state), "probe" (module, train), "loader" (x, y, batch_size), "sgd" (module, lr, momentum,
    weight_decay), "adam" (module, lr), "cross_entropy", "device" (name), "transform" (scale, shift)."""
    return {"trusted": kind, "params": specs}


@dataclass
class Call:
    """One step of a call program: ``save = function(*args, **kwargs)``."""

    function: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    save: str | tuple[str, ...] = "_"
    builtin: bool = False      # len, list, value, getitem, grad or function (course_harness.BUILTINS)
    on_ref: bool = False       # call an earlier result: "model" (forward), "model.state_dict"
    record_errors: bool = False  # a learner error becomes the value of the outputs (a Raised), for check()
    label: str = ""            # the name messages use for this step ("AffineFunction" for ".apply")
    watch: tuple = ()          # torch functions (by __name__) counted during the call, saved as "torch_calls"

    def to_json(self):
        step = {"args": self.args, "kwargs": self.kwargs,
                "save": self.save if isinstance(self.save, str) else list(self.save)}
        if self.on_ref:
            step["on_ref"] = True
        if self.record_errors:
            step["record_errors"] = True
        if self.label:
            step["label"] = self.label
        if self.watch:
            step["watch"] = list(self.watch)
        if self.builtin:
            step["builtin"] = self.function
        else:
            step["call"] = self.function
        return step


@dataclass
class Case:
    """A test case: the call program, its arrays, what to send back, and grader-only context."""

    steps: list[Call]
    arrays: dict[str, np.ndarray]
    returns: tuple[str, ...]
    label: str = ""
    context: dict = field(default_factory=dict)  # never leaves the grader process

    def to_json(self):
        return {"steps": [s.to_json() for s in self.steps], "returns": list(self.returns)}


# --- Results -----------------------------------------------------------------------

@dataclass(frozen=True)
class Other:
    """A returned value that is not a number, array, list or dict (e.g. a string)."""

    type: str


@dataclass(frozen=True)
class TensorValue:
    """A torch tensor the learner returned: its values as a float64 (or int64/bool) CPU array, and
    the dtype ("float32"), device ("cuda:0") and requires_grad the recorder saw.

    The values are judged against references. dtype, device and requires_grad are the kernel's
    testimony: a check may fail an item on them (an honest float32 result), never pass one.
    """

    array: np.ndarray
    dtype: str
    device: str
    requires_grad: bool

    @property
    def shape(self):
        return self.array.shape


@dataclass(frozen=True)
class Raised:
    """A step marked ``record_errors`` raised: learner code failed there (the later steps did not run)."""

    function: str
    type: str
    message: str
    where: str = ""

    def describe(self):
        text = f"{self.function} raised {self.type}" if self.function else f"it raised {self.type}"
        return text + (f": {self.message}" if self.message else "") + (f" ({self.where})" if self.where else "")


@dataclass
class Result:
    """What one case's calls gave back."""

    outputs: dict
    error: dict | None
    mutated: list


def cases_document(item, cases):
    """The JSON and arrays the kernel reads for one item."""
    doc = {"item": item, "cases": [c.to_json() for c in cases]}
    arrays = {f"c{i}/{k}": np.asarray(v) for i, c in enumerate(cases) for k, v in c.arrays.items()}
    return doc, arrays


def write_cases(folder: Path, item, cases):
    folder.mkdir(parents=True, exist_ok=True)
    doc, arrays = cases_document(item, cases)
    with open(folder / f"{item}.npz", "wb") as f:
        np.savez(f, **arrays)
    (folder / f"{item}.json").write_text(json.dumps(doc))


def _decode(desc, arrays):
    kind = desc.get("kind") if isinstance(desc, dict) else None
    if kind == "none":
        return None
    if kind == "bool":
        return bool(desc.get("value"))
    if kind in ("scalar", "array"):
        key = desc.get("key")
        if key not in arrays:
            return Other("missing array")
        value = arrays[key]
        if value.dtype.kind not in "biuf":
            return Other(f"array of dtype {value.dtype}")
        return value[()] if kind == "scalar" else value
    if kind in ("list", "tuple"):
        items = [_decode(d, arrays) for d in desc.get("items", [])]
        return items if kind == "list" else tuple(items)
    if kind == "dict":
        return {str(k): _decode(v, arrays) for k, v in dict(desc.get("items", {})).items()}
    if kind == "tensor":
        key = desc.get("key")
        if key not in arrays or arrays[key].dtype.kind not in "biuf":
            return Other("unreadable tensor")
        return TensorValue(arrays[key], str(desc.get("dtype", "?"))[:40], str(desc.get("device", "?"))[:40],
                           bool(desc.get("requires_grad")))
    if kind == "raised":
        return Raised(*(str(desc.get(k, ""))[:limit] for k, limit in
                        (("function", 200), ("type", 100), ("message", 600), ("where", 400))))
    if kind == "other":
        return Other(str(desc.get("type", "unknown"))[:200])
    return Other("unreadable")


def decode_results(doc, arrays):
    """Turn the kernel's results document into ``Result`` objects (untrusted input)."""
    results = []
    for i, record in enumerate(doc.get("results", [])):
        prefix = f"c{i}/"
        case_arrays = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        error = record.get("error")
        outputs = {str(k): _decode(v, case_arrays) for k, v in dict(record.get("outputs") or {}).items()}
        mutated = [m for m in record.get("mutated") or [] if isinstance(m, dict)]
        results.append(Result(outputs=outputs, error=error if isinstance(error, dict) else None, mutated=mutated))
    return results


def read_untrusted(path: Path, limit: int) -> bytes | None:
    """Bytes of a file learner code could have written, or None if it is absent.

    Never follows a symbolic link and only reads regular files (a FIFO would hang
    the grader, a link could point at the grader's own secrets), at most ``limit``.
    """
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"{Path(path).name} cannot be opened safely ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{Path(path).name} is not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{Path(path).name} is larger than {limit} bytes")
    return data


def load_arrays(raw: bytes, limit: int = MAX_RESULT_NPZ_BYTES) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` written by ``np.savez`` (untrusted bytes), within ``limit`` bytes in memory.

    Every bound is checked before anything is allocated: entries must be stored uncompressed (so the
    arrays take no more memory than the file), each ``.npy`` header must describe a numeric array whose
    size fits in what its entry holds, and the total stays under ``limit``. Anything else is refused
    with ValueError (never a pickle, never a decompression).
    """
    import io
    import zipfile

    from numpy.lib import format as npy

    if len(raw) > limit:
        raise ValueError(f"the recorded arrays are larger than {limit} bytes")
    arrays, total = {}, 0
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"{info.filename}: compressed entries are not accepted")
            if not info.filename.endswith(".npy") or info.file_size > limit:
                raise ValueError(f"{info.filename}: not an array entry of a plausible size")
            with archive.open(info) as f:
                version = npy.read_magic(f)
                reader = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
                shape, fortran, dtype = reader(f, max_header_size=10_000)
                if dtype.hasobject or dtype.kind not in "biuf":
                    raise ValueError(f"{info.filename}: dtype {dtype} is not numeric")
                count = 1
                for n in shape:
                    count *= int(n)
                nbytes = count * dtype.itemsize
                total += nbytes
                if nbytes > info.file_size or total > limit:
                    raise ValueError(f"{info.filename}: its header claims more data than it holds")
                data = f.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"{info.filename}: truncated")
            array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
            arrays[info.filename[:-len(".npy")]] = array.copy()
    return arrays


def read_results(folder: Path, item):
    """Results the kernel recorded for ``item``, or None if it recorded none.

    Raises ValueError for a recording that cannot be read safely (too large, compressed, malformed).
    """
    raw_json = read_untrusted(folder / f"{item}.json", MAX_RESULT_JSON_BYTES)
    raw_npz = read_untrusted(folder / f"{item}.npz", MAX_RESULT_NPZ_BYTES)
    if raw_json is None or raw_npz is None:
        return None
    try:
        doc = json.loads(raw_json)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the recorded results are not readable JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or doc.get("item") != item:
        raise ValueError("the recorded results belong to another item")
    arrays = load_arrays(raw_npz)
    try:
        return decode_results(doc, arrays)
    except RecursionError:
        raise ValueError("the recorded results are nested too deeply") from None


def run_in_process(item, cases, namespace):
    """Run cases against ``namespace`` right here, through the same encode/decode path.

    Used by the project's tests (wrong and alternative implementations) and by
    ``course check``; autograding goes through the sandboxed kernel instead.
    """
    import io

    doc, arrays = cases_document(item, cases)
    out_doc, out_arrays = course_harness.run_cases(doc, arrays, namespace)
    buffer = io.BytesIO()
    np.savez(buffer, **out_arrays)
    return decode_results(json.loads(json.dumps(out_doc)), load_arrays(buffer.getvalue()))
