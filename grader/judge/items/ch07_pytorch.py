"""Hidden tests of chapter 07 (PyTorch).

The kernel only records, the grader decides (shared/DESIGN.md section 6). Cases hand the learner
float64 CPU tensors and modules whose weights come from the case; whatever comes back is recorded
as CPU float64 arrays with its dtype and device (``protocol.TensorValue``) and judged here:

- ``AffineFunction``, ``ReLUFunction``, ``Conv2dFunction``: the forward output against a NumPy
  reference, and the gradients the learner's ``backward`` gives (through ``torch.autograd.grad``)
  against centered differences of that reference in float64, naming the input and the worst index;
- ``TwoLayerNet``: the learner's class built with the case's ``state_dict`` (loaded strictly), its scores;
- ``DigitsDataset``: its length, and items (dtype, shape, values, label type) with and without a transform;
- ``train_one_epoch`` / ``evaluate``: run on a trusted model with batch norm wrapped in a probe that logs,
  per forward call, whether gradients were on and whether the model was in training mode; the weights
  after the epoch, the mean loss and the accuracy are compared with the same loop run here.
"""
from __future__ import annotations

import numpy as np

from ..cases import away_from_kinks, small_dims
from ..checks import (Failure, describe, expect_close, expect_gradient, expect_scalar, expect_tensor, fail_if_raised,
                      shape_phrase)
from ..numerics import numerical_gradient_array
from ..protocol import (Call, Case, Raised, TensorValue, arr, dict_of, learner, list_of, lit, module, ref, tensor,
                        trusted)
from ..references import ch07_pytorch as R
from . import Item, register

CHAPTER = "07_pytorch"
SMOOTH = 1e-7           # float64 gradients against centered differences (DESIGN.md section 6)
FORWARD = 1e-10         # float64 forward values: round-off only
WEIGHTS = 1e-9          # one epoch of SGD, float64, same operations: round-off only
FLOAT32 = 1e-6          # a float32 image against the float32 reference


class FunctionItem(Item):
    """A hand-written ``autograd.Function``, judged twice on every case, both times by its numbers:

    1. ``forward`` and ``backward`` called directly as functions (``course_harness._call_function``): a
       context the harness makes, grad mode off, inputs that do not require grad, and an upstream
       gradient the grader chose. What ``backward`` returns is the learner's formula and nothing else
       (no autograd graph, hook or engine in between), compared with centered differences of the
       reference forward in float64;
    2. ``name.apply`` with inputs that require grad, then ``torch.autograd.grad``: the same numbers must
       come back, which shows the class is wired as an ``autograd.Function`` (forward's arguments and
       backward's return values line up, ``None`` for settings).
    """

    input_names: tuple = ()       # tensor inputs, in the order of forward's arguments
    setting_names: tuple = ()
    hints: dict = {}
    kink = None                   # the input value where the function has a kink (ReLU: 0.0)

    def make_case(self, s, index) -> tuple[dict, list]:
        """(arrays of the tensor inputs, literal settings passed after them)."""
        raise NotImplementedError

    def n_cases(self):
        return 3

    def reference(self, *inputs):
        raise NotImplementedError

    def contract_gradients(self, arrays, settings, dout) -> dict:
        """{input: gradient} the contract defines where a centered difference cannot (at a kink)."""
        raise NotImplementedError

    def cases(self, s):
        cases = []
        for index in range(self.n_cases()):
            arrays, settings = self.make_case(s, index)
            out_shape = self.reference(*[arrays[n] for n in self.input_names], *settings).shape
            arrays["dout"] = s.upstream.normal(size=out_shape)
            at_kink = self.kink is not None and bool(np.any(arrays[self.input_names[0]] == self.kink))
            direct = Call("function", [learner(self.name), list_of(*[tensor(n, keep=f"{n}_direct")
                                                                      for n in self.input_names]),
                                       list_of(*[lit(v) for v in settings]), arr("dout")],
                          builtin=True, save=("direct_out", "direct_grads"), label=self.name, record_errors=True)
            args = [tensor(n, requires_grad=True) for n in self.input_names] + [lit(v) for v in settings]
            steps = [direct,
                     Call(f"{self.name}.apply", args, save="out", label=self.name, record_errors=True),
                     Call("grad", [ref("out"), arr("dout"), list_of(*[ref(n) for n in self.input_names])],
                          builtin=True, save=tuple(f"d{n}" for n in self.input_names), label=f"{self.name}.backward",
                          record_errors=True)]
            label = shape_phrase(**{n: arrays[n] for n in self.input_names})
            if settings:
                label += " with " + ", ".join(f"{k} = {v}" for k, v in zip(self.setting_names, settings))
            if at_kink:
                label += f" (some entries of {self.input_names[0]} exactly {self.kink:g})"
            returns = ("direct_out", "direct_grads", "out") + tuple(f"d{n}" for n in self.input_names)
            cases.append(Case(steps=steps, arrays=arrays, returns=returns,
                              context={"settings": settings, "at_kink": at_kink}, label=label))
        return cases

    def _expected_gradients(self, case):
        inputs = {n: case.arrays[n] for n in self.input_names}
        settings, dout = case.context["settings"], case.arrays["dout"]
        if case.context["at_kink"]:
            return self.contract_gradients(inputs, settings, dout), "the gradient the contract defines"
        expected = {}
        for name in self.input_names:
            def f(v, name=name):
                return self.reference(*dict(inputs, **{name: v}).values(), *settings)
            expected[name] = numerical_gradient_array(f, inputs[name], dout)
        return expected, "the numerical gradient"

    def _raised_hint(self, value):
        """The hint for an error raised by the direct call: by where and what it was."""
        if not isinstance(value, Raised):
            return self.hints["forward"]
        text = f"{value.type} {value.message}"
        if value.type == "AttributeError" and ("forward" in text or "backward" in text):
            return FUNCTION_HINT.format(name=self.name)
        if "dtype" in text and "float" in text.lower():
            return DTYPE_HINT
        return self.hints["backward"] if value.where.startswith("in backward") else self.hints["forward"]

    def check(self, case, out):
        inputs = {n: case.arrays[n] for n in self.input_names}
        settings = case.context["settings"]
        expected = self.reference(*inputs.values(), *settings)
        gradients, source = self._expected_gradients(case)
        where = f"{case.label}, calling {self.name}.forward and .backward directly"
        fail_if_raised(self.name, out["direct_out"], self._raised_hint(out["direct_out"]))
        got = expect_tensor(self.name, "the output of forward", out["direct_out"], expected.shape, where,
                            self.hints["forward"])
        expect_close(self.name, "the output of forward", got, expected, FORWARD, where, self.hints["forward"])
        grads = out["direct_grads"]
        n_args = len(self.input_names) + len(settings)
        if not isinstance(grads, (tuple, list)) or len(grads) != n_args:
            count = f"{len(grads)} values" if isinstance(grads, (tuple, list)) else describe(grads)
            raise Failure(f"{self.name}: backward returned {count}{where}; forward takes {n_args} arguments after "
                          f"ctx ({', '.join(self.input_names + self.setting_names)}).\nHint: {ORDER_HINT}.")
        for position, name in enumerate(self.setting_names, start=len(self.input_names)):
            if grads[position] is not None:
                raise Failure(f"{self.name}: backward returned {describe(grads[position])} for {name}{where}; "
                              f"{name} is not a tensor, so its gradient must be None.\nHint: {ORDER_HINT}.")
        shapes = [tuple(g.shape) if isinstance(g, TensorValue) else None for g in grads[:len(self.input_names)]]
        wanted = [tuple(np.shape(inputs[n])) for n in self.input_names]
        if shapes != wanted and sorted(map(str, shapes)) == sorted(map(str, wanted)):
            raise Failure(f"{self.name}: backward returned gradients shaped {', '.join(map(str, shapes))} for "
                          f"inputs shaped {', '.join(map(str, wanted))}{where}: they are not in the same order as "
                          f"forward's arguments.\nHint: {ORDER_HINT}.")
        for position, name in enumerate(self.input_names):
            expect_gradient(self.name, name, grads[position], gradients[name], SMOOTH, where,
                            self.hints[f"d{name}"], reference=source)
        # The same numbers through .apply and autograd: the class is wired as an autograd.Function.
        where = f"{case.label}, through {self.name}.apply and autograd"
        fail_if_raised(self.name, out["out"], FUNCTION_HINT.format(name=self.name))
        got = expect_tensor(self.name, "the output of apply", out["out"], expected.shape, where,
                            FUNCTION_HINT.format(name=self.name))
        expect_close(self.name, "the output of apply", got, expected, FORWARD, where, FUNCTION_HINT.format(name=self.name))
        for name in self.input_names:
            value = out[f"d{name}"]
            hint = self.hints["backward"] if isinstance(value, Raised) else FUNCTION_HINT.format(name=self.name)
            expect_gradient(self.name, name, value, gradients[name], SMOOTH, where, hint, reference=source)


FUNCTION_HINT = ("{name} must subclass torch.autograd.Function, with @staticmethod forward(ctx, ...) and "
                 "@staticmethod backward(ctx, dout): autograd calls your backward when {name}.apply(...) is used.")
DTYPE_HINT = ("a cast to float32 is the usual cause (.float(), .type(torch.FloatTensor), torch.Tensor(...), "
              "torch.from_numpy of a float32 array): keep the inputs' dtype, float64 here.")
ORDER_HINT = ("backward(ctx, dout) returns one gradient per argument of forward, in the same order, each shaped "
              "like its argument")


@register(CHAPTER)
class AffineFunction(FunctionItem):
    name = "AffineFunction"
    input_names = ("x", "w", "b")
    hints = {"forward": "out has one row per example: flatten each example of x to a row first; keep what backward "
                        "needs with ctx.save_for_backward.",
             "backward": f"{ORDER_HINT}: dx, dw, db. Read back what forward saved from ctx.saved_tensors.",
             "dx": "dx has x's original shape (N, d1, ..., dk): compute it for the flattened x, then reshape.",
             "dw": "dw has w's shape (D, M): it pairs every input feature with every output's upstream gradient, "
                   "summed over the batch.",
             "db": "db has b's shape (M,): the bias was added to every row of the batch, so its gradient sums "
                   "over the batch axis."}

    def reference(self, x, w, b):
        return R.affine_forward(x, w, b)

    def n_cases(self):
        return 4

    def make_case(self, s, index):
        # N, D, M all different, so that gradients in the wrong order cannot have the right shapes;
        # case 3 is the degenerate one: one example, one output unit.
        N, M = [(4, 3), (3, 5), (6, 2), (1, 1)][index]
        dims = [(7,), (2, 3), (2, 2, 2), (3,)][index]
        D = int(np.prod(dims))
        x = s.inputs.normal(size=(N, *dims))
        return {"x": x, "w": s.inputs.normal(size=(D, M)), "b": s.inputs.normal(size=M)}, []


@register(CHAPTER)
class ReLUFunction(FunctionItem):
    name = "ReLUFunction"
    input_names = ("x",)
    kink = 0.0
    hints = {"forward": "a new tensor with the negative entries replaced by 0 (x itself stays unchanged); save what "
                        "backward needs.",
             "backward": f"{ORDER_HINT}: here just dx. Read back what forward saved from ctx.saved_tensors.",
             "dx": "the gradient passes where the input was strictly positive and is 0 elsewhere, including where "
                   "x is exactly 0 (the convention torch uses)."}

    def reference(self, x):
        return R.relu_forward(x)

    def contract_gradients(self, arrays, settings, dout):
        return {"x": dout * (arrays["x"] > 0)}

    def n_cases(self):
        return 4

    def make_case(self, s, index):
        shape = [small_dims(s.inputs, (3, 6), (2, 5)), small_dims(s.inputs, (2, 3), (2, 3), (2, 4)), (7,), (1, 5)][index]
        x = away_from_kinks(s.inputs, shape, kinks=(0.0,), margin=1e-2)
        if index == 3:           # entries exactly at the kink: dx there is 0 by the contract
            x.reshape(-1)[s.inputs.choice(x.size, size=2, replace=False)] = 0.0
        return {"x": x}, []


@register(CHAPTER)
class Conv2dFunction(FunctionItem):
    name = "Conv2dFunction"
    input_names = ("x", "w", "b")
    setting_names = ("stride", "pad")
    hints = {"forward": "run your chapter 06 im2col convolution on the inputs as NumPy arrays, keep its cache on ctx "
                        "(save_for_backward is for tensors only), and return the output as a tensor.",
             "backward": f"{ORDER_HINT}: dx, dw, db as tensors, then one None for each of stride and pad (they "
                         "are not tensors, so they get no gradient).",
             "dx": "dx comes from your chapter 06 im2col backward, as a tensor shaped like x, first of the values.",
             "dw": "dw is shaped like w (F, C, HH, WW), second of the values backward returns.",
             "db": "db is shaped like b (F,), third of the values backward returns."}

    def reference(self, x, w, b, stride, pad):
        return R.conv2d_forward(x, w, b, stride, pad)

    def n_cases(self):
        return 4

    def make_case(self, s, index):
        N, C, F = small_dims(s.inputs, (1, 2), (1, 3), (2, 3))
        H, W = small_dims(s.inputs, (4, 6), (4, 6))
        HH, WW = [(3, 3), (2, 3), (3, 2), (1, 1)][index]
        stride, pad = [(1, 1), (2, 0), (1, 0), (1, 0)][index]
        if index == 3:           # one image, one channel, one filter, a 1x1 kernel
            N, C, F = 1, 1, 1
        arrays = {"x": s.inputs.normal(size=(N, C, H, W)), "w": s.inputs.normal(size=(F, C, HH, WW)),
                  "b": s.inputs.normal(size=F)}
        return arrays, [stride, pad]


# --- nn.Module ----------------------------------------------------------------------------------

def _linear_state(s, prefix, n_in, n_out):
    bound = 1.0 / np.sqrt(n_in)
    return {f"{prefix}.weight": s.inputs.uniform(-bound, bound, size=(n_out, n_in)) * 2,
            f"{prefix}.bias": s.inputs.uniform(-bound, bound, size=n_out)}


@register(CHAPTER)
class TwoLayerNet(Item):
    name = "TwoLayerNet"
    hint = ("two nn.Linear layers as attributes named fc1 and fc2 (the names are part of the contract), created "
            "in __init__ after the base class's own __init__, sized input_dim -> hidden_dim -> num_classes; "
            "forward flattens each example to a row of input_dim numbers, then fc1, a ReLU and fc2, and returns "
            "raw scores: no softmax.")

    def cases(self, s):
        cases = []
        for shape in [None, (1, 3, 4), (2, 2, 2)]:
            N, H, C = small_dims(s.inputs, (3, 7), (4, 9), (2, 5))
            dims = shape or (int(s.inputs.integers(3, 8)),)
            D = int(np.prod(dims))
            state = {**_linear_state(s, "fc1", D, H), **_linear_state(s, "fc2", H, C)}
            arrays = {"x": s.inputs.normal(size=(N, *dims)), **{k.replace(".", "_"): v for k, v in state.items()}}
            spec = module(self.name, [lit(D), lit(H), lit(C)], state={k: k.replace(".", "_") for k in state})
            steps = [Call("value", [spec], builtin=True, save="model", label=self.name, record_errors=True),
                     Call("model", [tensor("x")], on_ref=True, save="scores", label=self.name,
                          record_errors=True)]
            cases.append(Case(steps=steps, arrays=arrays, returns=("scores",), context={"state": state},
                              label=f" built as {self.name}({D}, {H}, {C}){shape_phrase(x=arrays['x'])}"))
        return cases

    def check(self, case, out):
        st = case.context["state"]
        expected = R.two_layer_net_forward(case.arrays["x"], st["fc1.weight"], st["fc1.bias"], st["fc2.weight"],
                                           st["fc2.bias"])
        got = expect_tensor(self.name, "the scores", out["scores"], expected.shape, case.label, self.hint)
        expect_close(self.name, "the scores", got, expected, FORWARD, case.label, self.hint)


# --- Dataset ------------------------------------------------------------------------------------

@register(CHAPTER)
class DigitsDataset(Item):
    name = "DigitsDataset"
    hints = {"len": "len(dataset) is the number of images given to the constructor, one item per image.",
             "image": "__getitem__(i) returns image i as a float32 tensor with a channel axis in front, shape "
                      "(1, H, W) (ask for float32 explicitly: an array of float64 stays float64 as a tensor), then "
                      "the transform if one was given.",
             "label": "return the label as an integer class index, a Python int or an int64 tensor: "
                      "CrossEntropyLoss needs int64 class indices, not floats.",
             "transform": "apply self.transform to the image tensor (after adding the channel axis) when it is not "
                          "None; leave the label alone."}

    def cases(self, s):
        cases = []
        for with_transform in (False, True, False):
            N, H, W = int(s.inputs.integers(5, 12)), int(s.inputs.integers(3, 9)), int(s.inputs.integers(3, 9))
            images = np.round(s.inputs.uniform(0, 16, size=(N, H, W))) / 16.0
            labels = s.inputs.integers(0, 10, size=N)
            indices = sorted({0, N - 1, int(s.inputs.integers(1, N - 1))})
            kwargs, context = {}, {"indices": indices, "scale": None, "shift": None}
            if with_transform:
                scale, shift = float(np.round(s.inputs.uniform(1.5, 3.0), 3)), float(np.round(s.inputs.uniform(-1, -0.2), 3))
                kwargs = {"transform": trusted("transform", scale=lit(scale), shift=lit(shift))}
                context.update(scale=scale, shift=shift)
            steps = [Call(self.name, [arr("images"), arr("labels")], kwargs, save="ds", record_errors=True),
                     Call("len", [ref("ds")], builtin=True, save="n", label=f"len({self.name})", record_errors=True)]
            steps += [Call("getitem", [ref("ds"), lit(i)], builtin=True, save=(f"x{i}", f"y{i}"),
                           label=f"{self.name}.__getitem__", record_errors=True) for i in indices]
            returns = ("n",) + tuple(f"{v}{i}" for i in indices for v in "xy")
            label = f" on {N} images of {H}x{W}" + (f" with transform t * {scale} + ({shift})" if with_transform else "")
            cases.append(Case(steps=steps, arrays={"images": images, "labels": labels}, returns=returns,
                              context=context, label=label))
        return cases

    def check(self, case, out):
        images, labels, ctx = case.arrays["images"], case.arrays["labels"], case.context
        n = expect_scalar(self.name, "len(dataset)", out["n"], case.label, self.hints["len"])
        if n != len(images):
            raise Failure(f"{self.name}: len(dataset) is {n:g}, expected {len(images)}{case.label}.\n"
                          f"Hint: {self.hints['len']}")
        for i in ctx["indices"]:
            where = f" for dataset[{i}]{case.label}"
            expected = R.dataset_item(images, i, ctx["scale"], ctx["shift"])
            hint = self.hints["transform"] if ctx["scale"] is not None else self.hints["image"]
            got = expect_tensor(self.name, "the image", out[f"x{i}"], expected.shape, where, self.hints["image"],
                                dtype="float32", dtype_hint=self.hints["image"])
            expect_close(self.name, "the image", got, expected, FLOAT32, where, hint)
            self._check_label(out[f"y{i}"], labels[i], where)

    def _check_label(self, value, expected, where):
        fail_if_raised(self.name, value, self.hints["label"])
        if isinstance(value, TensorValue):
            if value.dtype not in ("int64", "int32") or value.shape != ():
                raise Failure(f"{self.name}: the label is a tensor of dtype {value.dtype} and shape "
                              f"{tuple(value.shape)}{where}, expected a single int64 class index.\n"
                              f"Hint: {self.hints['label']}")
            got = value.array[()]
        elif isinstance(value, np.integer):
            got = value
        else:
            kind = "a float" if isinstance(value, np.floating) else describe(value)
            raise Failure(f"{self.name}: the label is {kind}{where}, expected an integer class index.\n"
                          f"Hint: {self.hints['label']}")
        if int(got) != int(expected):
            raise Failure(f"{self.name}: the label is {int(got)}, expected {int(expected)}{where}.\n"
                          f"Hint: dataset[i] pairs image i with labels[i].")


# --- the epoch loop and evaluation ---------------------------------------------------------------

def _mlp(s, D, H, C, running_stats=False):
    """Layers and a state for linear - batch norm - ReLU - linear (batch norm makes train/eval matter)."""
    layers = [["linear", D, H], ["batchnorm1d", H], ["relu"], ["linear", H, C]]
    state = {"0.weight": s.inputs.normal(0, 1 / np.sqrt(D), size=(H, D)), "0.bias": s.inputs.normal(0, 0.1, size=H),
             "1.weight": s.inputs.uniform(0.5, 1.5, size=H), "1.bias": s.inputs.normal(0, 0.1, size=H),
             "3.weight": s.inputs.normal(0, 1 / np.sqrt(H), size=(C, H)), "3.bias": s.inputs.normal(0, 0.1, size=C)}
    if running_stats:       # far from what a batch gives, so that batch statistics change the predictions
        state["1.running_mean"] = s.inputs.normal(0, 1.0, size=H)
        state["1.running_var"] = s.inputs.uniform(0.2, 3.0, size=H)
    return layers, state


def _setup_steps(layers, state, train, x="X", y="y", batch_size=4):
    spec_state = dict_of(**{k: arr(f"state:{k}") for k in state})
    return [Call("value", [trusted("sequential", layers=lit(layers), state=spec_state)], builtin=True, save="net"),
            Call("value", [trusted("probe", module=ref("net"), train=lit(train))], builtin=True, save="model"),
            Call("value", [trusted("loader", x=arr(x), y=arr(y), batch_size=lit(batch_size))], builtin=True,
                 save="loader"),
            Call("value", [trusted("device", name=lit("cpu"))], builtin=True, save="device")]


def _check_records(item, records, want_grad, want_train, where, hints):
    if not isinstance(records, list) or not records:
        raise Failure(f"{item}: the model was never called{where}.\nHint: {hints['loop']}")
    for grad_on, training in records:
        if bool(training) != want_train:
            key = "train" if want_train else "eval"
            state = "evaluation" if want_train else "training"
            raise Failure(f"{item}: the model ran in {state} mode{where}.\nHint: {hints[key]}")
        if bool(grad_on) != want_grad:
            key = "grad" if want_grad else "no_grad"
            state = "off" if want_grad else "on"
            raise Failure(f"{item}: the forward pass ran with gradients {state}{where}.\nHint: {hints[key]}")


@register(CHAPTER)
class TrainOneEpoch(Item):
    name = "train_one_epoch"
    hints = {"loop": "per batch of the loader, in this order: move x and y to device, reset the gradients, the loss "
                     "of the model's output, backward, then the optimizer's step.",
             "train": "call model.train() at the start: the model may come from evaluate() in eval mode, and "
                      "batch norm and dropout behave differently in training.",
             "grad": "do not wrap the training step in torch.no_grad(): backward needs the graph.",
             "zero_grad": "call optimizer.zero_grad() before every loss.backward(): otherwise the gradients of "
                          "all earlier batches are added into .grad and every step uses their sum.",
             "loss": "return the mean over the batches of loss.item() (a Python float, not a tensor).",
             "weights": "one optimizer step per batch, after the gradients were reset and the batch's loss "
                        "backpropagated, in this order: the expected weights are one epoch of such steps."}

    def cases(self, s):
        cases = []
        for momentum in (0.9, 0.0):
            D, H, C = small_dims(s.inputs, (4, 7), (5, 8), (3, 5))
            batch_size, batches = int(s.inputs.integers(4, 7)), int(s.inputs.integers(3, 5))
            layers, state = _mlp(s, D, H, C)
            X, y = s.inputs.normal(size=(batch_size * batches, D)), s.inputs.integers(0, C, size=batch_size * batches)
            lr = float(np.round(s.inputs.uniform(0.05, 0.3), 3))
            steps = _setup_steps(layers, state, train=False, batch_size=batch_size)
            steps += [Call("value", [trusted("sgd", module=ref("net"), lr=lit(lr), momentum=lit(momentum))],
                           builtin=True, save="optimizer"),
                      Call("value", [trusted("cross_entropy")], builtin=True, save="loss_fn"),
                      Call(self.name, [ref("model"), ref("loader"), ref("loss_fn"), ref("optimizer"), ref("device")],
                           save="loss", record_errors=True),
                      Call("model.records", on_ref=True, save="records"),
                      Call("net.state_dict", on_ref=True, save="state")]
            arrays = {"X": X, "y": y, **{f"state:{k}": v for k, v in state.items()}}
            cases.append(Case(steps=steps, arrays=arrays, returns=("loss", "records", "state"),
                              context={"layers": layers, "state": state, "batch_size": batch_size, "lr": lr,
                                       "momentum": momentum},
                              label=f" on {len(X)} examples in batches of {batch_size} (a linear - batch norm - "
                                    f"ReLU - linear model, SGD with lr = {lr}, momentum = {momentum})"))
        return cases

    def check(self, case, out):
        ctx, X, y = case.context, case.arrays["X"], case.arrays["y"]
        fail_if_raised(self.name, out["loss"], self.hints["loop"])
        _check_records(self.name, out["records"], True, True, case.label, self.hints)
        args = (ctx["layers"], ctx["state"], X, y, ctx["batch_size"], ctx["lr"], ctx["momentum"])
        mean_loss, expected = R.train_one_epoch(*args)
        state = out["state"]
        for name, want in expected.items():
            if name.endswith("num_batches_tracked"):
                continue
            got = expect_tensor(self.name, f"the model's {name} after the epoch", state.get(name), want.shape,
                                case.label, self.hints["weights"])
            if not np.allclose(got, want, rtol=WEIGHTS, atol=WEIGHTS):
                _, no_zero = R.train_one_epoch(*args, zero_grad=False)
                hint = self.hints["zero_grad"] if np.allclose(got, no_zero[name], rtol=1e-7, atol=1e-9) \
                    else self.hints["weights"]
                raise Failure(f"{self.name}: after the epoch the model's {name} differs from one epoch of SGD "
                              f"(relative error {float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-12)):.1e})"
                              f"{case.label}.\nHint: {hint}")
        loss = expect_scalar(self.name, "the returned mean loss", out["loss"], case.label, self.hints["loss"])
        expect_close(self.name, "the returned mean loss", loss, mean_loss, WEIGHTS, case.label, self.hints["loss"])


@register(CHAPTER)
class Evaluate(Item):
    name = "evaluate"
    hints = {"loop": "every batch of the loader on device: the prediction is the class with the largest score (the "
                     "argmax over the class axis); count the correct ones.",
             "eval": "call model.eval() first: batch norm must use its running averages and dropout must be off.",
             "no_grad": "run the forward passes with gradient recording switched off (torch.no_grad, as a context "
                        "manager or a decorator): no graph is needed to evaluate, and it saves memory and time.",
             "accuracy": "return the fraction of all examples of the loader predicted right, a Python float in "
                         "[0, 1] (not a percentage, not a tensor: use .item() or float(...)); the last batch may be "
                         "smaller, so count examples rather than averaging the batches' accuracies."}

    def cases(self, s):
        cases = []
        for _ in range(2):
            D, H, C = small_dims(s.inputs, (4, 7), (5, 8), (3, 6))
            batch_size = int(s.inputs.integers(4, 7))
            N = batch_size * int(s.inputs.integers(2, 4)) + int(s.inputs.integers(2, batch_size))  # a short last batch (>= 2: batch norm)
            for _ in range(50):      # a model whose eval-mode and training-mode predictions differ somewhere
                layers, state = _mlp(s, D, H, C, running_stats=True)
                X = s.inputs.normal(size=(N, D))
                predicted = R.predictions(layers, state, X)
                in_training = R.predictions_in_training_mode(layers, state, X, batch_size)
                differ = predicted != in_training
                if differ.any():
                    break
            else:
                raise RuntimeError("evaluate: no model found whose modes differ (a grader bug)")
            # Labels partly agree with the model; where the two modes disagree they follow eval mode, so that
            # a missing model.eval() shows in the accuracy itself.
            right = s.inputs.random(N) < s.inputs.uniform(0.4, 0.8)
            y = np.where(right, predicted, (predicted + s.inputs.integers(1, C, size=N)) % C)
            y[differ] = predicted[differ]
            steps = _setup_steps(layers, state, train=True, batch_size=batch_size)
            steps += [Call(self.name, [ref("model"), ref("loader"), ref("device")], save="accuracy",
                           record_errors=True),
                      Call("model.records", on_ref=True, save="records")]
            arrays = {"X": X, "y": y, **{f"state:{k}": v for k, v in state.items()}}
            cases.append(Case(steps=steps, arrays=arrays, returns=("accuracy", "records"),
                              context={"expected": float(np.mean(predicted == y)),
                                       "in_training_mode": float(np.mean(in_training == y))},
                              label=f" on {N} examples in batches of {batch_size} (a model with batch norm, "
                                    f"handed over in training mode)"))
        return cases

    def check(self, case, out):
        fail_if_raised(self.name, out["accuracy"], self.hints["loop"])
        accuracy = expect_scalar(self.name, "the accuracy", out["accuracy"], case.label, self.hints["accuracy"])
        expected = case.context["expected"]
        if abs(accuracy - case.context["in_training_mode"]) <= 1e-12:
            raise Failure(f"{self.name}: the accuracy is {accuracy:.6g}, what the model gives in training mode "
                          f"(eval mode gives {expected:.6g}){case.label}.\nHint: {self.hints['eval']}")
        if not abs(accuracy - expected) <= 1e-12:
            raise Failure(f"{self.name}: the accuracy is {accuracy:.6g}, expected {expected:.6g}{case.label}.\n"
                          f"Hint: {self.hints['accuracy']}")
        # A second layer: what the probe saw in the kernel can fail the item, never pass it.
        _check_records(self.name, out["records"], False, False, case.label, self.hints)

    def source_problem(self, source):
        """Whether evaluate's loop runs without a graph is a fact of the code, read from the source."""
        if not runs_without_grad(source, self.name):
            return (f"{self.name}: your evaluate does not run its forward passes under torch.no_grad() "
                    f"(read from your code).\nHint: {self.hints['no_grad']}")
        return None


def runs_without_grad(source, name):
    """True when the definition of ``name`` in ``source`` (or its only function) has a ``with torch.no_grad()``
    (or inference_mode) block, or such a decorator."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    guards = ("no_grad", "inference_mode")

    def is_guard(node):
        node = node.func if isinstance(node, ast.Call) else node
        return (isinstance(node, ast.Attribute) and node.attr in guards) or \
            (isinstance(node, ast.Name) and node.id in guards)

    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    chosen = [d for d in defs if d.name == name] or defs[:1]
    if not chosen:
        return False
    node = chosen[-1]
    if any(is_guard(d) for d in node.decorator_list):
        return True
    return any(isinstance(n, ast.With) and any(is_guard(i.context_expr) for i in n.items) for n in ast.walk(node))
