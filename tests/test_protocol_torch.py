"""The torch half of the call-program protocol: what the kernel builds, records, and what the grader reads back.

Chapters 07-09 grade torch code through these specs (grader/judge/protocol.py), their execution in
course_harness.py, and the checks in grader/judge/checks.py; these tests pin the contract they rely on.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from grader.judge import checks
from grader.workflow import earlier_chapters
from grader.judge.checks import Failure
from grader.judge.protocol import (Call, Case, Other, Raised, TensorValue, arr, learner, list_of, lit, module, ref,
                             run_in_process, tensor, trusted)

pytestmark = pytest.mark.grader


class Affine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w + b

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        return dout @ w.T, x.T @ dout, dout.sum(0)


class BrokenBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b):
        return x @ w + b

    @staticmethod
    def backward(ctx, dout):
        raise RuntimeError("forgot the cache")


class TwoLayer(nn.Module):
    def __init__(self, d, h, c):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, h), nn.Linear(h, c)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def _run(steps, arrays, returns, namespace):
    [result] = run_in_process("probe_item", [Case(steps=steps, arrays=arrays, returns=returns)], namespace)
    return result


def _affine_case(rng):
    arrays = {"x": rng.normal(size=(3, 4)), "w": rng.normal(size=(4, 2)), "b": rng.normal(size=2),
              "dout": rng.normal(size=(3, 2))}
    steps = [Call("Affine.apply", [tensor("x", True), tensor("w", True), tensor("b", True)], save="out",
                  label="Affine", record_errors=True),
             Call("grad", [ref("out"), arr("dout"), list_of(ref("x"), ref("w"), ref("b"))], builtin=True,
                  save=("dx", "dw", "db"), label="Affine", record_errors=True)]
    return steps, arrays


def test_tensors_are_float64_on_the_cpu_and_gradients_come_back_as_tensor_values():
    rng = np.random.default_rng(0)
    steps, a = _affine_case(rng)
    result = _run(steps, a, ("out", "dx", "dw", "db"), {"Affine": Affine})
    assert result.error is None and not result.mutated
    out = result.outputs["out"]
    assert isinstance(out, TensorValue) and (out.dtype, out.device, out.requires_grad) == ("float64", "cpu", True)
    assert np.allclose(out.array, a["x"] @ a["w"] + a["b"], rtol=1e-15)
    dw = checks.expect_gradient("Affine", "w", result.outputs["dw"], a["x"].T @ a["dout"], 1e-12)
    assert dw < 1e-12
    assert result.outputs["dx"].requires_grad is False


def test_integer_arrays_become_int64_tensors():
    result = _run([Call("value", [tensor("y")], builtin=True, save="y_t")], {"y": np.array([3, 1, 2])},
                  ("y_t",), {})
    assert result.outputs["y_t"].dtype == "int64"


def test_a_backward_that_raises_is_recorded_for_the_items_check_and_later_steps_are_skipped():
    rng = np.random.default_rng(1)
    steps, a = _affine_case(rng)
    steps.append(Call("never_called", [], save="z"))
    result = _run(steps, a, ("out", "dx", "z"), {"Affine": BrokenBackward})
    assert result.error is None
    dx = result.outputs["dx"]
    assert isinstance(dx, Raised) and dx.type == "RuntimeError" and "forgot the cache" in dx.message
    assert "in backward" in dx.where, dx.where          # the learner's line, not torch's engine
    assert result.outputs["z"] == dx
    with pytest.raises(Failure, match=r"^Affine: Affine raised RuntimeError: forgot the cache .*\nHint: h$"):
        checks.expect_gradient("Affine", "x", dx, np.zeros((3, 4)), 1e-7, hint="h")


def test_a_gradient_message_names_the_input_the_worst_index_and_both_values():
    value = TensorValue(np.array([[1.0, 2.0], [3.0, 0.5]]), "float64", "cpu", False)
    numerical = np.array([[1.0, 2.0], [3.0, 1.25]])
    with pytest.raises(Failure) as failure:
        checks.expect_gradient("AffineFunction", "w", value, numerical, 1e-7, hint="dw = x.T @ dout")
    assert str(failure.value) == (
        "AffineFunction: the gradient for w is wrong at index (1, 1): your backward gives 0.5, the numerical "
        "gradient is 1.25 (relative error 1.2e-01, must be < 1e-07).\nHint: dw = x.T @ dout")
    with pytest.raises(Failure, match="the gradient for b is None"):
        checks.expect_gradient("AffineFunction", "b", None, np.zeros(2), 1e-7)


@pytest.mark.parametrize("value, fragment", [
    (TensorValue(np.zeros(3), "float32", "cpu", False), "out is float32: keep the input's dtype (float64)"),
    (TensorValue(np.zeros(3), "float64", "cuda:0", False), "out is on cuda:0"),
    (np.zeros(3), "out is a NumPy array, expected a torch tensor"),
    (TensorValue(np.zeros((1, 3)), "float64", "cpu", False), "out has shape (1, 3), expected (3,)"),
    (Other("builtins.str"), "but it is builtins.str"),
])
def test_expect_tensor_names_the_usual_mistakes(value, fragment):
    with pytest.raises(Failure, match=r"^f: ") as failure:
        checks.expect_tensor("f", "out", value, (3,))
    assert fragment in str(failure.value)


def test_a_tensor_where_a_number_is_expected_gets_the_item_hint():
    with pytest.raises(Failure, match=r"\.item\(\)"):
        checks.expect_scalar("evaluate", "the accuracy", TensorValue(np.array(0.5), "float64", "cpu", False))


def test_modules_are_built_from_the_learners_class_with_the_cases_weights():
    rng = np.random.default_rng(2)
    a = {"x": rng.normal(size=(5, 4)), "W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=3),
         "W2": rng.normal(size=(2, 3)), "b2": rng.normal(size=2)}
    state = {"fc1.weight": "W1", "fc1.bias": "b1", "fc2.weight": "W2", "fc2.bias": "b2"}
    steps = [Call("value", [module("TwoLayer", [lit(4), lit(3), lit(2)], state=state, train=False)],
                  builtin=True, save="model"),
             Call("model", [tensor("x")], on_ref=True, save="scores"),
             Call("model.state_dict", on_ref=True, save="state")]
    result = _run(steps, a, ("model", "scores", "state"), {"TwoLayer": TwoLayer})
    assert result.error is None
    assert result.outputs["model"] == Other("torch module TwoLayer")
    expected = np.maximum(a["x"] @ a["W1"].T + a["b1"], 0) @ a["W2"].T + a["b2"]
    assert np.allclose(result.outputs["scores"].array, expected, rtol=1e-13)
    assert np.array_equal(result.outputs["state"]["fc2.bias"].array, a["b2"])


def test_a_module_with_other_parameter_names_or_shapes_is_reported_by_name():
    class Renamed(nn.Module):
        def __init__(self, d, h, c):
            super().__init__()
            self.layer1, self.fc2 = nn.Linear(d, h), nn.Linear(c, c)

    a = {"W1": np.zeros((3, 4)), "b1": np.zeros(3), "W2": np.zeros((2, 3)), "b2": np.zeros(2)}
    state = {"fc1.weight": "W1", "fc1.bias": "b1", "fc2.weight": "W2", "fc2.bias": "b2"}
    steps = [Call("value", [module("TwoLayer", [lit(4), lit(3), lit(2)], state=state)], builtin=True,
                  save="model", record_errors=True)]
    result = _run(steps, a, ("model",), {"TwoLayer": Renamed})
    raised = result.outputs["model"]
    assert isinstance(raised, Raised) and raised.type == "StateDictMismatch"
    assert "it has no fc1.weight, fc1.bias" in raised.message
    assert "layer1.weight" in raised.message and "fc2.weight is (2, 2), expected (2, 3)" in raised.message
    result = _run(steps, a, ("model",), {"TwoLayer": lambda *a: "not a module"})
    assert "is a str, not a torch.nn.Module" in result.outputs["model"].message


def test_the_probe_records_grad_mode_and_training_mode_of_every_forward_call():
    a = {"W": np.ones((2, 2)), "b": np.zeros(2), "x": np.ones((1, 2))}
    steps = [Call("value", [trusted("sequential", layers=lit([["linear", 2, 2]]),
                                    state={"d": {"0.weight": arr("W"), "0.bias": arr("b")}})],
                  builtin=True, save="net"),
             Call("value", [trusted("probe", module=ref("net"), train=lit(False))], builtin=True, save="model"),
             Call("use", [ref("model"), tensor("x")], save="_"),
             Call("model.records", on_ref=True, save="records")]

    def use(model, x):
        model(x)
        model.train()
        with torch.no_grad():
            model(x)

    result = _run(steps, a, ("records",), {"use": use})
    assert result.error is None
    assert result.outputs["records"] == [[True, False], [False, True]]


def test_private_attributes_cannot_be_called():
    with pytest.raises(ValueError, match="private"):
        _run([Call("model._modules", on_ref=True)], {}, (), {})


def test_numpy_chapters_never_import_torch_and_torch_cases_switch_tf32_off():
    code = (
        "import sys, numpy as np\n"
        "import course_harness as h\n"
        "doc = {'item': 'f', 'cases': [{'steps': [{'call': 'f', 'args': [{'a': 'x'}], 'save': 'y'}], "
        "'returns': ['y']}]}\n"
        "h.run_cases(doc, {'c0/x': np.ones(2)}, {'f': lambda x: x * 2})\n"
        "assert 'torch' not in sys.modules, 'a NumPy case imported torch'\n"
        "doc['cases'][0]['steps'][0]['args'] = [{'tensor': 'x'}]\n"
        "h.run_cases(doc, {'c0/x': np.ones(2)}, {'f': lambda x: x * 2})\n"
        "import torch\n"
        "assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_given_torch_code_brings_the_imports_it_needs():
    torch_answer = ("class AffineFunction(torch.autograd.Function):\n"
                    "    @staticmethod\n    def forward(ctx, x):\n        return F.relu(x)\n"
                    "def make():\n    return nn.Sequential(OrderedDict(fc=nn.Linear(2, 2)))\n")
    numpy_answer = "def conv(w):\n    F, C, HH, WW = w.shape\n    return F\n"
    assert earlier_chapters.imports_needed([torch_answer]) == [
        "import torch", "from torch import nn", "import torch.nn.functional as F",
        "from collections import OrderedDict"]
    assert earlier_chapters.imports_needed([numpy_answer]) == []


def test_chapter_07_answers_can_be_given_to_a_later_chapter_and_run(tmp_path):
    import nbformat

    solutions = earlier_chapters._solutions_dir()
    for folder in solutions.iterdir():
        if folder.is_dir() and folder.name <= "07_pytorch":
            (tmp_path / folder.name).symlink_to(folder)
    (tmp_path / "08_later").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from earlier_chapters import TwoLayerNet, train_one_epoch, evaluate, Conv2dFunction")])
    nbformat.write(nb, str(tmp_path / "08_later" / "08_later.ipynb"))
    namespace = {}
    exec(earlier_chapters.generate("08_later", tmp_path), namespace)      # imports torch, nn, progress itself
    from torch.utils.data import DataLoader, TensorDataset

    model = namespace["TwoLayerNet"](4, 3, 2)
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)
    loss = namespace["train_one_epoch"](model, loader, nn.CrossEntropyLoss(),
                                        torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"))
    assert isinstance(loss, float) and 0.0 <= namespace["evaluate"](model, loader, torch.device("cpu")) <= 1.0
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    out = namespace["Conv2dFunction"].apply(x, w, torch.zeros(2, dtype=torch.float64, requires_grad=True), 1, 1)
    assert out.shape == (1, 2, 4, 4)


class AutogradInBackward(Affine):
    """A backward that hands its work to autograd: it has no graph to work on when called directly."""

    @staticmethod
    def backward(ctx, dout):
        x, w = ctx.saved_tensors
        return torch.autograd.grad(x @ w, (x, w), dout) + (dout.sum(0),)


def _direct_case(rng):
    a = {"x": rng.normal(size=(3, 4)), "w": rng.normal(size=(4, 2)), "b": rng.normal(size=2),
         "dout": rng.normal(size=(3, 2))}
    steps = [Call("function", [learner("F"), list_of(tensor("x"), tensor("w"), tensor("b")), list_of(), arr("dout")],
                  builtin=True, save=("out", "grads"), record_errors=True)]
    return steps, a


def test_a_function_is_judged_by_calling_forward_and_backward_directly():
    rng = np.random.default_rng(3)
    steps, a = _direct_case(rng)
    result = _run(steps, a, ("out", "grads"), {"F": Affine})
    out, (dx, dw, db) = result.outputs["out"], result.outputs["grads"]
    assert np.allclose(out.array, a["x"] @ a["w"] + a["b"])
    assert np.allclose(dx.array, a["dout"] @ a["w"].T) and np.allclose(dw.array, a["x"].T @ a["dout"])
    assert np.allclose(db.array, a["dout"].sum(0))
    assert not out.requires_grad, "grad mode is off during the direct call"


def test_a_backward_that_needs_autograd_has_no_graph_when_called_directly():
    steps, a = _direct_case(np.random.default_rng(4))
    result = _run(steps, a, ("out", "grads"), {"F": AutogradInBackward})
    assert isinstance(result.outputs["grads"], Raised), result.outputs["grads"]
    assert "does not require grad" in result.outputs["grads"].message


def test_recorded_tensors_carry_no_testimony_about_their_grad_fn():
    steps, a = _affine_case(np.random.default_rng(3))
    result = _run(steps[:1], a, ("out",), {"Affine": Affine})
    assert not hasattr(result.outputs["out"], "grad_fn")


def test_tensors_that_cannot_be_read_or_are_too_large_are_described_not_recorded(monkeypatch):
    import course_harness

    namespace = {"meta": lambda: torch.empty(3, device="meta"), "big": lambda: torch.zeros(1000, dtype=torch.float64),
                 "net": lambda: nn.Linear(2, 2)}
    monkeypatch.setattr(course_harness, "MAX_RETURNED_BYTES", 4000)
    steps = [Call("meta", save="m"), Call("big", save="b"), Call("net", save="n")]
    result = _run(steps, {}, ("m", "b", "n"), namespace)
    assert result.outputs["m"] == Other("torch tensor that cannot be read (NotImplementedError)")
    assert result.outputs["b"] == Other("array too large to record")
    assert result.outputs["n"] == Other("torch module Linear")


def test_an_error_inside_numpy_or_torch_is_located_at_the_learners_line():
    namespace = {"np": np, "torch": torch}
    exec(compile("def f(x):\n    y = x * 2\n    return np.reshape(y, (7, 7))\n\n"
                 "def g(x):\n    t = torch.from_numpy(x)\n    return t.view(7, 7)\n", "<answer cell>", "exec"), namespace)
    for name, line in (("f", 3), ("g", 7)):
        result = _run([Call(name, [arr("x")], save="out")], {"x": np.zeros((2, 3))}, ("out",), namespace)
        assert result.error and result.error["where"].startswith(f"in {name}, line {line}"), result.error
