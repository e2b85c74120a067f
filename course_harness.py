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

Standard library and NumPy only, plus torch for the torch chapters (imported
only when a case asks for a tensor or a module, with TF32 switched off, so
graded numbers are float64 on the CPU); it must not import the grader package,
which is invisible inside the grading sandbox.
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


def _torch():
    """torch, imported on first use (NumPy chapters never pay for it), with TF32 off for every graded call."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch


def _as_tensor(array):
    """A fresh CPU tensor: floats as float64, integers as int64, booleans as bool."""
    torch = _torch()
    array = np.array(array, copy=True)
    if array.dtype.kind == "f":
        return torch.from_numpy(array.astype(np.float64))
    if array.dtype.kind in "iu":
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(array)


# --- Trusted torch objects that items hand to learner code (a model to train, a loader, an optimizer).
# The grader builds the very same objects (through these functions) to compute its expectations.

def build_sequential(layers, state=None):
    """nn.Sequential from [["linear", 4, 5], ["batchnorm1d", 5], ["relu"], ["tanh"], ["flatten"]], in float64.

    ``state``: {parameter or buffer name: array}, loaded with strict=True (every parameter given).
    """
    torch = _torch()
    nn = torch.nn
    makers = {"linear": nn.Linear, "batchnorm1d": nn.BatchNorm1d, "relu": nn.ReLU, "tanh": nn.Tanh,
              "flatten": nn.Flatten, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}
    model = nn.Sequential(*[makers[kind](*args) for kind, *args in layers]).double()
    if state is not None:
        current = model.state_dict()
        model.load_state_dict({k: _as_tensor(state[k]) if k in state else current[k] for k in current}, strict=True)
    return model


def build_vae(encoder, decoder, state=None):
    """A VAE with the interface of chapter 08: ``encode(x) -> (mu, logvar)``, ``decode(z) -> x_recon``.

    ``encoder`` and ``decoder`` are layer lists as for ``build_sequential``; the encoder's last layer gives
    2 * latent numbers per example, the first half mu and the second half logvar. ``state``: the state_dict
    ({"encoder.0.weight": ..., "decoder.0.weight": ...}), loaded strictly.
    """
    nn = _torch().nn

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = build_sequential(encoder)
            self.decoder = build_sequential(decoder)

        def encode(self, x):
            mu, logvar = self.encoder(x).chunk(2, dim=1)
            return mu, logvar

        def decode(self, z):
            return self.decoder(z)

    model = VAE().double()
    if state is not None:
        model.load_state_dict({k: _as_tensor(v) for k, v in state.items()}, strict=True)
    return model


def _probe_class():
    nn = _torch().nn

    class Probe(nn.Module):
        """Wraps a trusted model; every forward call logs [grad enabled?, model in training mode?]."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.log = []

        def forward(self, *args, **kwargs):
            self.log.append([bool(_torch().is_grad_enabled()), bool(self.inner.training)])
            return self.inner(*args, **kwargs)

        def records(self):
            return [list(r) for r in self.log]

    return Probe


class _AffineTransform:
    """A dataset transform t -> t * scale + shift (torch ops, so the dtype is kept)."""

    def __init__(self, scale, shift):
        self.scale, self.shift = float(scale), float(shift)

    def __call__(self, t):
        return t * self.scale + self.shift


def _trusted_loader(x, y, batch_size):
    data = _torch().utils.data
    return data.DataLoader(data.TensorDataset(_as_tensor(x), _as_tensor(y)), batch_size=int(batch_size),
                           shuffle=False)


def _trusted_sgd(module, lr, momentum=0.0, weight_decay=0.0):
    return _torch().optim.SGD(module.parameters(), lr=float(lr), momentum=float(momentum),
                              weight_decay=float(weight_decay))


def _trusted_adam(module, lr):
    return _torch().optim.Adam(module.parameters(), lr=float(lr))


def _trusted_probe(module, train=None):
    probe = _probe_class()(module)
    if train is not None:
        probe.train(bool(train))
    return probe


TRUSTED = {
    "sequential": build_sequential,                       # layers (list), state ({name: array})
    "mlp": build_sequential,                              # the same, under the name TORCH_PROTOCOL.md uses
    "vae": build_vae,                                     # encoder, decoder (layer lists), state
    "probe": _trusted_probe,                              # module, train (bool or None)
    "loader": _trusted_loader,                            # x, y, batch_size (no shuffling)
    "sgd": _trusted_sgd,                                  # module, lr, momentum, weight_decay
    "adam": _trusted_adam,                                # module, lr
    "cross_entropy": lambda: _torch().nn.CrossEntropyLoss(),
    "device": lambda name: _torch().device(name),
    "transform": _AffineTransform,                        # scale, shift
}


class CallFailed(Exception):
    """A learner call raised or returned something that cannot be recorded."""

    def __init__(self, record):
        super().__init__(record.get("message", ""))
        self.record = record


class _Raised:
    """What a step marked ``record_errors`` left in place of its results when learner code raised."""

    def __init__(self, record):
        self.record = record


# --- Building arguments -------------------------------------------------------

def _build(spec, arrays, saved, pristine, namespace=None):
    """Turn one argument spec of a call program into a Python value.

    ``pristine`` collects (name, array or tensor handed over, untouched copy) so that
    in-place changes to inputs can be reported after the call.
    """
    build = lambda s, checked=pristine: _build(s, arrays, saved, checked, namespace)  # noqa: E731
    if "tensor" in spec:                 # a fresh float64 (or int64) CPU tensor from a case array
        t = _as_tensor(arrays[spec["tensor"]])
        if spec.get("requires_grad"):
            t.requires_grad_(True)
        pristine.append((spec["tensor"], t, t.detach().numpy().copy()))
        saved[spec.get("keep") or spec["tensor"]] = t
        return t
    if "module" in spec:                 # the learner's nn.Module class, weights from the case
        return _build_module(spec, build, arrays, namespace or {})
    if "learner" in spec:                # a learner's class or function, by name (e.g. for ``function``)
        value = (namespace or {}).get(spec["learner"])
        if value is None:
            raise CallFailed({"type": "NameError", "function": spec["learner"],
                              "message": f"{spec['learner']} is not defined: run the cell that defines it"})
        return value
    if "trusted" in spec:                # a trusted torch object (TRUSTED)
        return TRUSTED[spec["trusted"]](**{k: build(v) for k, v in spec.get("params", {}).items()})
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
        value = {k: build(v, checked) for k, v in spec["d"].items()}
        if spec.get("keep"):             # kept under a name: later calls and the returns see the same dict
            saved[spec["keep"]] = value
        return value
    if "l" in spec:                      # a list of specs
        return [build(v) for v in spec["l"]]
    if "fn" in spec:                     # a test function from TEST_FUNCTIONS
        params = {k: np.array(arrays[v], copy=True) for k, v in spec.get("params", {}).items()}
        return TEST_FUNCTIONS[spec["fn"]](**params)
    if "rng" in spec:
        return np.random.default_rng(int(spec["rng"]))
    if "dataset" in spec:
        X, y = spec["dataset"]
        return _Dataset(np.array(arrays[X], copy=True), np.array(arrays[y], copy=True))
    raise ValueError(f"unknown argument spec {spec!r}")


def _describe_call(name, args, kwargs):
    shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(shown)})"


def _build_module(spec, build, arrays, namespace):
    """``namespace[class](*args, **kwargs)``, made float64, with the case's state_dict loaded strictly."""
    torch = _torch()
    name = spec["module"]
    cls = namespace.get(name)
    if cls is None or not callable(cls):
        raise CallFailed({"type": "NameError", "function": name,
                          "message": f"{name} is not defined: run the cell that defines it"})
    args = [build(a) for a in spec.get("args", [])]
    kwargs = {k: build(v) for k, v in spec.get("kwargs", {}).items()}
    call = _describe_call(name, args, kwargs)
    try:
        model = cls(*args, **kwargs)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any learner fault is a result
        raise CallFailed({"type": type(exc).__name__, "function": name, "message": str(exc)[:MAX_MESSAGE_CHARS],
                          "where": _where(exc.__traceback__)}) from None
    if not isinstance(model, torch.nn.Module):
        raise CallFailed({"type": "TypeError", "function": name,
                          "message": f"{call} is a {type(model).__name__}, not a torch.nn.Module "
                                     f"(subclass nn.Module and call super().__init__() first)"})
    state = {k: _as_tensor(arrays[v]) for k, v in spec.get("state", {}).items()}
    try:
        model.double()
        current = model.state_dict()
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        raise CallFailed({"type": type(exc).__name__, "function": name, "message": str(exc)[:MAX_MESSAGE_CHARS],
                          "where": _where(exc.__traceback__)}) from None
    if state:
        missing = [k for k in state if k not in current]
        unexpected = [k for k in current if k not in state]
        wrong = [f"{k} is {tuple(current[k].shape)}, expected {tuple(state[k].shape)}" for k in state
                 if k in current and tuple(current[k].shape) != tuple(state[k].shape)]
        if missing or unexpected or wrong:
            parts = ([f"it has no {', '.join(missing)}"] if missing else []) + \
                    ([f"it has {', '.join(unexpected)}, which the test does not expect"] if unexpected else []) + wrong
            raise CallFailed({"type": "StateDictMismatch", "function": name,
                              "message": f"the parameters of {call} do not match: " + "; ".join(parts)})
        try:
            model.load_state_dict(state, strict=True)
        except (Exception, SystemExit) as exc:  # noqa: BLE001
            raise CallFailed({"type": type(exc).__name__, "function": name,
                              "message": str(exc)[:MAX_MESSAGE_CHARS]}) from None
    if spec.get("train") is not None:
        model.train(bool(spec["train"]))
    return model


def _grad(out, dout, inputs):
    """``torch.autograd.grad(out, inputs, dout)``: what the learner's backward gives (None for an unused input)."""
    torch = _torch()
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the forward pass returned {type(out).__name__}, not a torch tensor, so no gradient "
                        f"can flow back")
    if not out.requires_grad:
        raise ValueError("the output does not require grad: it is not connected to the inputs' graph")
    upstream = torch.as_tensor(np.asarray(dout), dtype=out.dtype, device=out.device)
    return tuple(torch.autograd.grad(out, list(inputs), grad_outputs=upstream, allow_unused=True))


class FunctionContext:
    """The ``ctx`` a hand-written ``autograd.Function`` gets when its forward and backward are called directly.

    It keeps what forward saves (``save_for_backward`` / ``saved_tensors``, any attribute such as
    ``ctx.cache``) and answers ``needs_input_grad`` with True for every tensor argument.
    """

    def __init__(self, needs_input_grad):
        self.needs_input_grad = tuple(needs_input_grad)
        self.materialize_grads = True
        self._saved = ()

    def save_for_backward(self, *tensors):
        self._saved = tuple(tensors)

    @property
    def saved_tensors(self):
        return self._saved

    def mark_dirty(self, *tensors):
        pass

    def mark_non_differentiable(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        self.materialize_grads = bool(value)


def _call_function(cls, inputs, settings, dout):
    """``cls.forward`` then ``cls.backward`` called as plain functions: (output, gradients as returned).

    Grad mode is off and no input requires grad, so no autograd graph, hook or engine stands between
    the learner's formula and the numbers recorded: what ``backward`` returns for the upstream gradient
    ``dout`` (chosen by the grader) is what the grader judges.
    """
    torch = _torch()
    args = list(inputs) + list(settings)
    ctx = FunctionContext(isinstance(a, torch.Tensor) for a in args)
    with torch.no_grad():
        base = getattr(torch.autograd.Function, "setup_context", None)
        if getattr(cls, "setup_context", base) is not base:      # forward(*args) + setup_context(ctx, ...)
            out = cls.forward(*args)
            cls.setup_context(ctx, tuple(args), out)
        else:
            out = cls.forward(ctx, *args)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"forward returned {type(out).__name__}, not a torch tensor")
        upstream = torch.as_tensor(np.asarray(dout), dtype=out.dtype)
        grads = cls.backward(ctx, upstream)
    if not isinstance(grads, tuple):
        grads = (grads,)
    return out, grads


def _watched(fn, args, kwargs, names):
    """``fn(*args, **kwargs)`` while counting the calls of the torch functions ``names`` (by ``__name__``).

    The count is a record like any other: a chapter that asks learners to write attention themselves reads
    it to tell delegation to a built-in (F.scaled_dot_product_attention, nn.MultiheadAttention) from work.
    """
    from torch.overrides import TorchFunctionMode

    counts = {str(n): 0 for n in names}

    class _Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if name in counts:
                counts[name] += 1
            return func(*args, **(kwargs or {}))

    _torch()
    with _Recorder():
        value = fn(*args, **kwargs)
    return value, counts


def _getitem(obj, index):
    return obj[index]


def _capped_list(iterable):
    items = list(itertools.islice(iter(iterable), MAX_ITEMS_FROM_ITERATOR + 1))
    if len(items) > MAX_ITEMS_FROM_ITERATOR:
        raise ValueError(f"iteration gave more than {MAX_ITEMS_FROM_ITERATOR} items")
    return items


# Operations a call program may apply to what a learner's function returned.
BUILTINS = {"len": len, "list": _capped_list, "value": lambda v: v, "getitem": _getitem, "grad": _grad,
            "function": _call_function}


# --- Recording results ----------------------------------------------------------

def _library_dirs():
    """Folders of the libraries an error may be raised in: the learner's own line is above them."""
    dirs = []
    for name in ("torch", "numpy"):
        module = sys.modules.get(name)
        if getattr(module, "__file__", None):
            dirs.append(os.path.dirname(module.__file__) + os.sep)
    return dirs


def _where(tb):
    """The learner's line where an exception happened: last frame outside this file and torch."""
    skip = _library_dirs()
    frames = [f for f in traceback.extract_tb(tb) if os.path.basename(f.filename) != "course_harness.py"
              and not any(f.filename.startswith(d) for d in skip)]
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
    if isinstance(value, _Raised):
        r = value.record
        return {"kind": "raised", "function": str(r.get("function", "")), "type": str(r.get("type", "Error")),
                "message": str(r.get("message", "")), "where": str(r.get("where", ""))}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, getattr(torch, "Tensor", ())):
        return _encode_tensor(value, key, out_arrays, budget)
    if torch is not None and isinstance(value, getattr(getattr(torch, "nn", None), "Module", ())):
        return {"kind": "other", "type": f"torch module {type(value).__qualname__}"}
    if isinstance(value, (list, tuple)) and depth < 4:
        return {"kind": type(value).__name__,
                "items": [_encode(v, f"{key}.{i}", out_arrays, budget, depth + 1) for i, v in enumerate(value)]}
    if isinstance(value, dict) and depth < 4:
        return {"kind": "dict",
                "items": {str(k): _encode(v, f"{key}.{k}", out_arrays, budget, depth + 1) for k, v in value.items()}}
    return {"kind": "other", "type": type(value).__module__ + "." + type(value).__qualname__}


def _encode_tensor(value, key, out_arrays, budget):
    """A tensor as a CPU array (floats in float64), with its dtype, device and requires_grad beside it."""
    try:
        data = value.detach()
        dtype, device = str(data.dtype).replace("torch.", ""), str(data.device)
        if data.layout != sys.modules["torch"].strided or data.is_complex():
            return {"kind": "other", "type": f"torch tensor ({data.layout}, {dtype})"}
        data = data.cpu()
        if data.dtype.is_floating_point:
            array = data.double().numpy().copy()
        elif data.dtype == sys.modules["torch"].bool:
            array = data.numpy().copy()
        else:
            array = data.long().numpy().copy()
    except Exception as exc:  # noqa: BLE001 - a tensor that cannot be read is described, not recorded
        return {"kind": "other", "type": f"torch tensor that cannot be read ({type(exc).__name__})"}
    budget[0] -= array.nbytes
    if budget[0] < 0:
        return {"kind": "other", "type": "array too large to record"}
    out_arrays[key] = array
    return {"kind": "tensor", "key": key, "dtype": dtype, "device": device,
            "requires_grad": bool(value.requires_grad)}


def _resolve(step, namespace, saved):
    """The callable a step names: a builtin, a name in the namespace ("AffineFunction.apply"),
    or an earlier result (``on_ref``: "model", "model.state_dict")."""
    if "builtin" in step:
        return BUILTINS[step["builtin"]]
    head, *attrs = step["call"].split(".")
    if any(a.startswith("_") for a in attrs):
        raise ValueError(f"call {step['call']!r}: private attributes cannot be called")
    if step.get("on_ref"):
        obj = saved[head]
    else:
        obj = namespace.get(head)
        if obj is None:
            raise CallFailed({"type": "NameError", "function": step.get("label") or step["call"],
                              "message": f"{head} is not defined: run the cell that defines it"})
    for i, attr in enumerate(attrs):
        try:
            obj = getattr(obj, attr)
        except Exception:  # noqa: BLE001
            owner = ".".join([head, *attrs[:i]])
            raise CallFailed({"type": "AttributeError", "function": step.get("label") or step["call"],
                              "message": f"{owner} has no attribute {attr!r}"}) from None
    if not callable(obj):
        raise CallFailed({"type": "NameError", "function": step.get("label") or step["call"],
                          "message": f"{step['call']} is not defined: run the cell that defines it"})
    return obj


def _same(before, kept):
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(before, torch.Tensor):
        try:
            before = before.detach().cpu().numpy()
        except Exception:  # noqa: BLE001
            return False
    return before.shape == kept.shape and np.array_equal(before, kept, equal_nan=True)


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
    raised = None
    for step_index, step in enumerate(case["steps"]):
        function = step.get("label") or step.get("call") or step["builtin"]
        pristine = []
        try:
            fn = _resolve(step, namespace, saved)
            args = [_build(s, arrays, saved, pristine, namespace) for s in step.get("args", [])]
            kwargs = {k: _build(s, arrays, saved, pristine, namespace) for k, s in step.get("kwargs", {}).items()}
            try:
                if step.get("watch"):
                    value, saved["torch_calls"] = _watched(fn, args, kwargs, step["watch"])
                else:
                    value = fn(*args, **kwargs)
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any learner fault is a result
                raise CallFailed({"type": type(exc).__name__, "function": function,
                                  "message": str(exc)[:MAX_MESSAGE_CHARS], "where": _where(exc.__traceback__)})
            saved.update(_unpack(value, step.get("save", "_"), function))
            for name, before, kept in pristine:
                if not _same(before, kept):
                    mutated.append({"function": function, "argument": name,
                                    "tensor": type(before).__module__.startswith("torch")})
        except CallFailed as failed:
            record = dict(failed.record, step=step_index)
            if not step.get("record_errors"):
                return {"error": record, "mutated": mutated, "outputs": {}}, {}
            # The item's check reports it (with its hint); the steps after this one are skipped.
            raised = _Raised(record)
            break
    out_arrays = {}
    budget = [MAX_RETURNED_BYTES]
    outputs = {name: _encode(saved[name] if name in saved else raised, f"o.{name}", out_arrays, budget)
               for name in case["returns"]}
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
