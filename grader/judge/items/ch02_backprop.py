"""Hidden tests of chapter 02 (backprop).

Forward passes are compared with the trusted references; every gradient is
compared with a centered-difference gradient of the trusted reference forward,
in float64, at relative error < 1e-7 (smooth layers) or < 1e-5 where the layer
has a kink (inputs are drawn away from kinks, so correct code never fails).

On every seed the cases also hold the degenerate sizes the contracts allow (a batch
of N = 1, a feature or output size of 1), so a ``squeeze()`` or code that only works
for N > 1 loses its item; and a layer with a kink (ReLU, leaky ReLU, |x|) gets one case
with inputs EXACTLY at the kink, judged against the contract's derivative there (ReLU's
gradient at 0 is 0, leaky ReLU's is the slope, L1's is sign(0) = 0) from the references'
``*_contract`` helpers: a centered difference straddles the kink and is wrong there.
A backward item is charged only for its own outputs: the learner's forward, which its
cases call first, costs the forward's item when it is wrong (see ``BackwardItem``).
"""
from __future__ import annotations

import numpy as np

from ..cases import at_kinks, away_from_kinks, small_dims
from ..checks import Failure, expect_array, expect_close, expect_scalar, shape_phrase
from ..numerics import numerical_gradient, numerical_gradient_array, pass_scale, rel_error
from ..protocol import Call, Case, arr, lit, ref, test_function
from ..references import ch02_backprop as R
from . import Item, known_mistake, register

CHAPTER = "02_backprop"
SMOOTH = 1e-7
KINKED = 1e-5


# --- numerical gradients and the worked example -------------------------------------

@register(CHAPTER)
class NumericalGradient(Item):
    name = "numerical_gradient"
    hint = ("use the centered difference (f(x + h) - f(x - h)) / (2h) for one entry at a time, "
            "restore that entry, and loop over every index (np.ndindex(x.shape) visits all of them).")

    def cases(self, s):
        cases = []
        # log_sum_exp couples all entries: it catches an entry that was never restored, even on a copy.
        # The last case has a single entry: x of shape (1, 1).
        for i, fn in enumerate(["weighted_cubic", "log_cosh", "weighted_cubic", "log_sum_exp", "weighted_cubic"]):
            shape = [(3, 4), (5,), (2, 3, 2), (3, 3), (1, 1)][i]
            x = s.inputs.normal(size=shape)
            a = s.inputs.uniform(0.5, 2.0, size=shape)
            b = s.inputs.normal(size=shape)
            if x.size == 1:
                # One entry: the relative error has no larger entry to scale by, so its exact gradient
                # 3 a x^2 + b must stay away from 0 (b >= 0.5), or a correct centered difference could fail.
                b = s.inputs.uniform(0.5, 2.0, size=shape)
            params = {"a": "a", "b": "b"} if fn == "weighted_cubic" else {"a": "a"}
            kwargs = {"h": lit(1e-6)} if i == 2 else {}
            cases.append(Case(steps=[Call("numerical_gradient", [test_function(fn, **params), arr("x")], kwargs,
                                          save="grad")],
                              arrays={"x": x, "a": a, "b": b}, returns=("grad",),
                              context={"fn": fn}, label=shape_phrase(x=x)))
        return cases

    def check(self, case, out):
        x, a, b = case.arrays["x"], case.arrays["a"], case.arrays["b"]
        if case.context["fn"] == "weighted_cubic":
            exact = 3 * a * x ** 2 + b
        elif case.context["fn"] == "log_sum_exp":
            e = np.exp(a * x - np.max(a * x))
            exact = a * e / e.sum()
        else:
            exact = a * np.tanh(a * x)
        grad = expect_array(self.name, "the gradient", out["grad"], x.shape, case.label, self.hint)
        expect_close(self.name, "the gradient", grad, exact, SMOOTH, case.label, self.hint)


@register(CHAPTER)
class NumericalGradientArray(Item):
    name = "numerical_gradient_array"
    hint = ("for each entry i of x: (sum(f(x + h e_i) * df) - sum(f(x - h e_i) * df)) / (2h); "
            "df weights every output of f.")

    def cases(self, s):
        cases = []
        for shape in [(4, 3), (6,), (1, 1)]:          # (1, 1): a single entry
            x = s.inputs.normal(size=shape)
            a = s.inputs.uniform(0.5, 1.5, size=shape)
            b = s.inputs.normal(size=shape)
            if x.size == 1:
                # One entry: keep tanh off its flat tails (|a x + b| <= 0.5), or its exact gradient is so small
                # that the centered difference's round-off alone exceeds the relative tolerance.
                b = s.inputs.uniform(-0.5, 0.5, size=shape) - a * x
            df = s.upstream.normal(size=shape)
            cases.append(Case(steps=[Call("numerical_gradient_array",
                                          [test_function("tanh_affine", a="a", b="b"), arr("x"), arr("df")],
                                          save="grad")],
                              arrays={"x": x, "a": a, "b": b, "df": df}, returns=("grad",), label=shape_phrase(x=x)))
        # A coupled f whose output has another shape than x: every output depends on every input.
        x = s.inputs.normal(size=(2, 3))
        m = s.inputs.normal(0.0, 0.5, size=(6, 4))
        df = s.upstream.normal(size=(4,))
        cases.append(Case(steps=[Call("numerical_gradient_array", [test_function("tanh_matmul", m="m"), arr("x"),
                                                                   arr("df")], save="grad")],
                          arrays={"x": x, "m": m, "df": df}, returns=("grad",), context={"fn": "tanh_matmul"},
                          label=shape_phrase(x=x) + " with f(x) of shape (4,)"))
        return cases

    def check(self, case, out):
        x, df = case.arrays["x"], case.arrays["df"]
        if case.context.get("fn") == "tanh_matmul":
            m = case.arrays["m"]
            exact = (m @ (df * (1 - np.tanh(x.reshape(-1) @ m) ** 2))).reshape(x.shape)
        else:
            a, b = case.arrays["a"], case.arrays["b"]
            exact = df * a * (1 - np.tanh(a * x + b) ** 2)
        grad = expect_array(self.name, "the gradient", out["grad"], x.shape, case.label, self.hint)
        expect_close(self.name, "the gradient", grad, exact, SMOOTH, case.label, self.hint)


@register(CHAPTER)
class GraphExample(Item):
    name = "graph_example"
    hints = {"f": "f = 2 / sin(exp(-x)); build it node by node: a = exp(-x), b = sin(a), f = 2 / b.",
             "dfdx": "multiply the local derivatives backwards: df/db = -2 / b**2, db/da = cos(a), da/dx = -a."}

    def cases(self, s):
        x = s.inputs.uniform(-1.0, 2.0, size=(int(s.inputs.integers(3, 8)),))
        single = s.inputs.uniform(-1.0, 2.0, size=(1,))          # a single entry
        return [Case(steps=[Call("graph_example", [arr("x")], save=("f", "dfdx"))], arrays={"x": v},
                     returns=("f", "dfdx"), label=shape_phrase(x=v)) for v in (x, single)]

    def check(self, case, out):
        x = case.arrays["x"]
        f_ref, _ = R.graph_example(x)
        dfdx_ref = numerical_gradient_array(lambda v: R.graph_example(v)[0], x, np.ones_like(x))
        for name, expected in (("f", f_ref), ("dfdx", dfdx_ref)):
            got = expect_array(self.name, name, out[name], x.shape, case.label, self.hints[name])
            expect_close(self.name, name, got, expected, SMOOTH, case.label, self.hints[name])


# --- layers: a forward item and a backward item per layer ------------------------------

class ForwardItem(Item):
    """``name(*inputs, **kwargs) -> (out, cache)``; only ``out`` is checked, the cache is opaque."""

    reference = None
    input_names: tuple = ()
    hint = ""

    def make_inputs(self, s) -> tuple[dict, dict]:
        """(arrays, literal kwargs) for one random case."""
        raise NotImplementedError

    def inputs_for_case(self, s, index) -> tuple[dict, dict]:
        """Inputs of case ``index`` (0, 1, 2); override to make sure a situation is always covered."""
        return self.make_inputs(s)

    def edge_inputs(self, s) -> list[tuple[dict, dict]]:
        """(arrays, kwargs) of the degenerate sizes the contract allows (N = 1, a size of 1), on every seed."""
        return []

    def kink_inputs(self, s) -> list[tuple[dict, dict]]:
        """(arrays, kwargs) with entries EXACTLY at the layer's kink; the backward item judges them against
        the contract's derivative there (``BackwardItem.contract``)."""
        return []

    def extra_inputs(self, s) -> list[tuple[dict, dict, bool]]:
        """(arrays, kwargs, at a kink?) of every case after the three random ones."""
        return [(a, k, False) for a, k in self.edge_inputs(s)] + [(a, k, True) for a, k in self.kink_inputs(s)]

    def forward_call(self, kwargs) -> Call:
        """The forward call ``name(*inputs, **kwargs) -> (out, cache)``; the reference takes the same arguments.

        Override where the contract passes settings another way (a conv_param dict in position).
        """
        return Call(self.name, [arr(n) for n in self.input_names], {k: lit(v) for k, v in kwargs.items()},
                    save=("out", "cache"))

    def label(self, arrays, kwargs) -> str:
        return shape_phrase(**{n: arrays[n] for n in self.input_names})

    def cases(self, s):
        cases = []
        inputs = [self.inputs_for_case(s, index) + (False,) for index in range(3)] + self.extra_inputs(s)
        for arrays, kwargs, kink in inputs:
            cases.append(Case(steps=[self.forward_call(kwargs)], arrays=arrays, returns=("out",),
                              context={"kwargs": kwargs, "kink": kink}, label=self.label(arrays, kwargs)))
        return cases + self.probe_cases(s)

    def mistakes(self, case) -> list:
        """(function computing a typical mistake's out, its hint): a matching wrong out gets that hint."""
        return []

    def check(self, case, out):
        inputs = [case.arrays[n] for n in self.input_names]
        expected = type(self).reference(*inputs, **case.context["kwargs"])
        got = expect_array(self.name, "out", out["out"], expected.shape, case.label, self.hint)
        try:
            expect_close(self.name, "out", got, expected, SMOOTH, case.label, self.hint)
        except Failure:
            hint = known_mistake(got, self.mistakes(case))
            if hint is None:
                raise
            expect_close(self.name, "out", got, expected, SMOOTH, case.label, hint)


class BackwardItem(Item):
    """``forward -> (out, cache)`` then ``name(dout, cache) -> grads``, each grad checked numerically.

    Who is charged for what (the rule of ``grader.judge.items.Item``): every gradient is compared with a
    centered-difference gradient of the TRUSTED reference forward at the case's inputs, so the learner's
    forward never enters the expected values. A backward whose gradients are right scores its points even
    when the learner's forward changed its input in place or returned a wrong ``out`` (that costs the
    forward's item, on its own cases). A backward whose gradients are wrong scores 0; if in that case the
    learner's forward raised, changed its input or returned an ``out`` that differs from the reference,
    the message says "fix <forward> first" instead of blaming the backward. No pairing games: an
    identity forward with a pass-through backward gives dx = dout, which is not the reference gradient.
    """

    forward: ForwardItem = None
    grad_names: tuple = ()          # e.g. ("dx", "dw", "db"), in the order the function returns them
    tolerance = SMOOTH
    hints: dict = {}
    # Layers with a kink: the contract's derivative there, and what a message and its hint say about it.
    contract = None                 # (dout, **inputs, **kwargs) -> dx, e.g. R.relu_backward_contract
    kink_rule = ""                  # "dx = dout where x > 0 and 0 elsewhere, so 0 where x = 0"
    kink_hint = ""

    def cases(self, s):
        fwd = self.forward
        cases = []
        for index in range(4):
            # The three random cases, then (index 3) the degenerate sizes and the kink cases.
            batch = [fwd.inputs_for_case(s, index) + (False,)] if index < 3 else fwd.extra_inputs(s)
            for arrays, kwargs, kink in batch:
                out_shape = type(fwd).reference(*[arrays[n] for n in fwd.input_names], **kwargs).shape
                arrays["dout"] = s.upstream.normal(size=out_shape)
                save = self.grad_names if len(self.grad_names) > 1 else self.grad_names[0]
                steps = [fwd.forward_call(kwargs), Call(self.name, [arr("dout"), ref("cache")], save=save)]
                cases.append(Case(steps=steps, arrays=arrays, returns=("out",) + tuple(self.grad_names),
                                  context={"kwargs": kwargs, "kink": kink}, label=fwd.label(arrays, kwargs)))
        return cases + self.probe_cases(s)

    def prerequisite_fault(self, case, out):
        """The learner's forward ``out`` in this very case, judged by the forward's own check."""
        try:
            self.forward.check(case, out)
        except Failure:
            return self.forward.name, "returned a wrong out"
        return None

    def check(self, case, out):
        fwd = self.forward
        inputs = {n: case.arrays[n] for n in fwd.input_names}
        kwargs = case.context["kwargs"]
        if case.context.get("kink"):
            return self.check_at_kink(case, out, inputs, kwargs)
        reference = type(fwd).reference
        expected = {}
        for _, input_name in zip(self.grad_names, fwd.input_names):
            def f(v, input_name=input_name):
                return reference(**dict(inputs, **{input_name: v}), **kwargs)
            expected[input_name] = numerical_gradient_array(f, inputs[input_name], case.arrays["dout"])
        floor = pass_scale(expected.values())
        for grad_name, input_name in zip(self.grad_names, fwd.input_names):
            hint = self.hints.get(grad_name, "")
            got = expect_array(self.name, grad_name, out[grad_name], inputs[input_name].shape, case.label, hint)
            expect_close(self.name, grad_name, got, expected[input_name], self.tolerance, case.label, hint, floor)

    def check_at_kink(self, case, out, inputs, kwargs):
        """dx on an x with entries exactly at the kink, against the contract's derivative (everywhere)."""
        grad_name, input_name = self.grad_names[0], self.forward.input_names[0]
        x = inputs[input_name]
        expected = type(self).contract(case.arrays["dout"], **inputs, **kwargs)
        hint = self.hints.get(grad_name, "")
        got = expect_array(self.name, grad_name, out[grad_name], x.shape, case.label, hint)
        kink_error = kink_mismatch(got, expected, x == 0, self.tolerance)
        if kink_error is not None:
            index, err = kink_error
            raise Failure(f"{self.name}: {grad_name} is wrong at index {index}, where {input_name} is exactly 0,"
                          f"{case.label}: your backward gives {got[index]:.4g}, the contract gives "
                          f"{expected[index]:.4g} ({self.kink_rule}; relative error {err:.1e}, must be < "
                          f"{self.tolerance:.0e}).\nHint: {self.kink_hint}")
        expect_close(self.name, grad_name, got, expected, self.tolerance, case.label, hint)


def kink_mismatch(got, expected, at_kink, tol):
    """(index of the worst entry, relative error) where ``at_kink`` holds and ``got`` is off, or None.

    The error is measured like ``rel_error`` on the kink entries alone, so an error there is never diluted
    by the larger entries elsewhere.
    """
    if not at_kink.any():
        return None
    err = rel_error(got[at_kink], expected[at_kink])
    if err < tol:
        return None
    diff = np.where(at_kink, np.abs(got - expected), -1.0)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), got.shape)), err


@register(CHAPTER)
class AffineForward(ForwardItem):
    name = "affine_forward"
    reference = R.affine_forward
    input_names = ("x", "w", "b")
    hint = ("each example of x becomes one row of D numbers (N rows in all); the scores are those rows times w, "
            "plus b added to every row, shape (N, M).")

    def make_inputs(self, s):
        N, d1, d2, M = small_dims(s.inputs, (2, 5), (2, 4), (1, 3), (2, 5))
        x = s.inputs.normal(size=(N, d1, d2))
        return {"x": x, "w": s.inputs.normal(size=(d1 * d2, M)), "b": s.inputs.normal(size=(M,))}, {}

    def edge_inputs(self, s):
        # A batch of one, x of shape (1, d1, d2); then D = 1 and M = 1: x of shape (N, 1), w (1, 1), b (1,).
        _, d1, d2, M = small_dims(s.inputs, (2, 5), (2, 4), (1, 3), (2, 5))
        N = int(s.inputs.integers(2, 6))
        return [({"x": s.inputs.normal(size=(1, d1, d2)), "w": s.inputs.normal(size=(d1 * d2, M)),
                  "b": s.inputs.normal(size=(M,))}, {}),
                ({"x": s.inputs.normal(size=(N, 1)), "w": s.inputs.normal(size=(1, 1)),
                  "b": s.inputs.normal(size=(1,))}, {})]


@register(CHAPTER)
class AffineBackward(BackwardItem):
    name = "affine_backward"
    forward = AffineForward()
    grad_names = ("dx", "dw", "db")
    hints = {"dx": "dx sends dout back through w (a product with w's transpose) and has x's original shape.",
             "dw": "dw has w's shape (D, M): it pairs every input feature (x with one row per example) with "
                   "every output's upstream gradient, summed over the batch.",
             "db": "db has b's shape (M,): b was added to every row of the batch, so its gradient sums over the "
                   "batch axis."}


def _activation_inputs(s, kinks=(), n_range=(2, 5)):
    shape = small_dims(s.inputs, n_range, (2, 6))
    x = away_from_kinks(s.inputs, shape, kinks=kinks, scale=2.0) if kinks else s.inputs.normal(0, 2.0, size=shape)
    return {"x": x}


def _kink_inputs(s):
    """x of shape (N, D) with about 40% of its entries exactly 0, the others at least 0.01 away from 0."""
    return {"x": at_kinks(s.inputs, small_dims(s.inputs, (2, 4), (3, 6)), kinks=(0.0,), scale=2.0)}


class ActivationForward(ForwardItem):
    """An elementwise activation ``name(x) -> (out, cache)``; a batch of one on every seed."""

    input_names = ("x",)
    kinks: tuple = ()

    def make_inputs(self, s):
        return _activation_inputs(s, kinks=self.kinks), {}

    def edge_inputs(self, s):
        return [(_activation_inputs(s, kinks=self.kinks, n_range=(1, 1)), {})]


@register(CHAPTER)
class ReluForward(ActivationForward):
    name = "relu_forward"
    reference = R.relu_forward
    kinks = (0.0,)
    hint = "out = max(0, x) elementwise: np.maximum(0, x)."

    def kink_inputs(self, s):
        return [(_kink_inputs(s), {})]


@register(CHAPTER)
class ReluBackward(BackwardItem):
    name = "relu_backward"
    forward = ReluForward()
    grad_names = ("dx",)
    tolerance = KINKED
    hints = {"dx": "dx = dout where x > 0 and 0 elsewhere; mask with the forward input, not with dout."}
    contract = staticmethod(R.relu_backward_contract)
    kink_rule = "dx = dout where x > 0 and 0 elsewhere, so 0 where x is exactly 0"
    kink_hint = ("at x = 0 exactly ReLU's gradient is 0 in this course (as in PyTorch): only strictly positive "
                 "inputs let dout through, so the mask needs a strict comparison.")


@register(CHAPTER)
class LeakyReluForward(ActivationForward):
    name = "leaky_relu_forward"
    reference = R.leaky_relu_forward
    kinks = (0.0,)
    hint = "out = x where x > 0, slope * x elsewhere; use the slope argument, not a constant."

    def make_inputs(self, s):
        return self.inputs_for_case(s, 1)

    def inputs_for_case(self, s, index):
        # Case 0 uses the default slope, the others an explicit one: a hard-coded 0.01 always fails.
        kwargs = {} if index == 0 else {"slope": float(np.round(s.inputs.uniform(0.05, 0.3), 3))}
        return _activation_inputs(s, kinks=(0.0,)), kwargs

    def edge_inputs(self, s):
        return [(_activation_inputs(s, kinks=(0.0,), n_range=(1, 1)), self.inputs_for_case(s, 1)[1])]

    def kink_inputs(self, s):
        return [(_kink_inputs(s), {"slope": float(np.round(s.inputs.uniform(0.05, 0.3), 3))})]


@register(CHAPTER)
class LeakyReluBackward(BackwardItem):
    name = "leaky_relu_backward"
    forward = LeakyReluForward()
    grad_names = ("dx",)
    tolerance = KINKED
    hints = {"dx": "dx = dout where x > 0 and slope * dout elsewhere; keep the slope in the cache."}
    contract = staticmethod(R.leaky_relu_backward_contract)
    kink_rule = "dx = dout where x > 0 and slope * dout elsewhere, so slope * dout where x is exactly 0"
    kink_hint = ("x = 0 is not positive, so there the gradient is slope * dout, as on the negative side: only "
                 "strictly positive inputs pass dout through unscaled.")


@register(CHAPTER)
class SigmoidForward(ActivationForward):
    name = "sigmoid_forward"
    reference = R.sigmoid_forward
    hint = "out = 1 / (1 + exp(-x)); for very negative x use exp(x) / (1 + exp(x)) to avoid overflow."

    def cases(self, s):
        extreme = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]])
        return super().cases(s) + [Case(steps=[Call(self.name, [arr("x")], save=("out", "cache"))],
                                         arrays={"x": extreme}, returns=("out",), context={"kwargs": {}},
                                         label=" on x = [[-800, -30, 0, 30, 800]]")]


@register(CHAPTER)
class SigmoidBackward(BackwardItem):
    name = "sigmoid_backward"
    forward = SigmoidForward()
    grad_names = ("dx",)
    hints = {"dx": "dx = dout * s * (1 - s), where s = sigmoid(x) from the forward pass."}


@register(CHAPTER)
class TanhForward(ActivationForward):
    name = "tanh_forward"
    reference = R.tanh_forward
    hint = "the hyperbolic tangent of every entry, elementwise (NumPy has it); keep what backward needs."


@register(CHAPTER)
class TanhBackward(BackwardItem):
    name = "tanh_backward"
    forward = TanhForward()
    grad_names = ("dx",)
    hints = {"dx": "dx = dout * (1 - t**2), where t = tanh(x) from the forward pass."}


# --- losses: (loss, gradient) in one call ----------------------------------------------

class LossItem(Item):
    """``name(pred, y) -> (loss, dpred)``: loss vs the reference, dpred vs its numerical gradient."""

    reference = None
    grad_name = "dx"
    tolerance = SMOOTH
    hints: dict = {}

    def make_inputs(self, s) -> dict:
        raise NotImplementedError

    def inputs_for_case(self, s, index) -> dict:
        """Inputs of case ``index`` (0, 1, 2); override to make sure a situation is always covered."""
        return self.make_inputs(s)

    def edge_inputs(self, s) -> list[dict]:
        """Inputs of the degenerate sizes the contract allows (a batch of one, a single element), every seed."""
        return []

    # A loss with a kink where pred == y (L1): cases with entries exactly there, judged by the contract.
    contract = None                 # (pred, y) -> dpred
    kink_rule = ""
    kink_hint = ""

    def kink_inputs(self, s) -> list[dict]:
        return []

    def case_from(self, arrays, label=None, kink=False):
        names = list(arrays)
        return Case(steps=[Call(self.name, [arr(n) for n in names], save=("loss", self.grad_name))],
                    arrays=arrays, returns=("loss", self.grad_name), context={"kink": kink},
                    label=label or shape_phrase(**{names[0]: arrays[names[0]]}))

    def cases(self, s):
        return ([self.case_from(self.inputs_for_case(s, index)) for index in range(3)]
                + [self.case_from(arrays) for arrays in self.edge_inputs(s)]
                + [self.case_from(arrays, kink=True) for arrays in self.kink_inputs(s)])

    def check(self, case, out):
        first, second = list(case.arrays)
        pred, y = case.arrays[first], case.arrays[second]
        reference = type(self).reference
        loss = expect_scalar(self.name, "loss", out["loss"], case.label, self.hints.get("loss", ""))
        expect_close(self.name, "loss", loss, reference(pred, y), SMOOTH, case.label, self.hints.get("loss", ""))
        hint = self.hints.get(self.grad_name, "")
        got = expect_array(self.name, self.grad_name, out[self.grad_name], pred.shape, case.label, hint)
        if case.context.get("kink"):
            expected = type(self).contract(pred, y)
            kink_error = kink_mismatch(got, expected, pred == y, self.tolerance)
            if kink_error is not None:
                index, err = kink_error
                raise Failure(f"{self.name}: {self.grad_name} is wrong at index {index}, where {first} equals y "
                              f"exactly,{case.label}: your gradient gives {got[index]:.4g}, the contract gives "
                              f"{expected[index]:.4g} ({self.kink_rule}; relative error {err:.1e}, must be < "
                              f"{self.tolerance:.0e}).\nHint: {self.kink_hint}")
        else:
            expected = numerical_gradient(lambda v: reference(v, y), pred)
        expect_close(self.name, self.grad_name, got, expected, self.tolerance, case.label, hint)


@register(CHAPTER)
class SoftmaxLoss(LossItem):
    name = "softmax_loss"
    reference = R.softmax_loss
    grad_name = "dx"
    hints = {"loss": "loss = mean over the batch of -log softmax(x)[i, y[i]]; subtract the row max first.",
             "dx": "dx = (softmax(x) - one_hot(y)) / N: divide by the batch size."}

    def make_inputs(self, s):
        N, C = small_dims(s.inputs, (2, 6), (2, 5))
        return {"x": s.inputs.normal(size=(N, C)), "y": s.inputs.integers(0, C, size=N)}

    def edge_inputs(self, s):
        C = int(s.inputs.integers(2, 6))            # a batch of one: x of shape (1, C)
        return [{"x": s.inputs.normal(size=(1, C)), "y": s.inputs.integers(0, C, size=1)}]

    def cases(self, s):
        # Logits around 1000 overflow exp() unless the row max is subtracted.
        big = self.make_inputs(s)
        big["x"] = big["x"] + 1000.0
        return super().cases(s) + [self.case_from(big, label=" on logits around 1000")]

    def check(self, case, out):
        x, y = case.arrays["x"], case.arrays["y"]
        if x.mean() < 500:
            return super().check(case, out)
        # Softmax is shift-invariant, so the large-logit case must match the centred one.
        shifted = x - 1000.0
        loss = expect_scalar(self.name, "loss", out["loss"], case.label, self.hints["loss"])
        expect_close(self.name, "loss", loss, R.softmax_loss(shifted, y), SMOOTH, case.label, self.hints["loss"])
        expected = numerical_gradient(lambda v: R.softmax_loss(v, y), shifted)
        got = expect_array(self.name, "dx", out["dx"], x.shape, case.label, self.hints["dx"])
        expect_close(self.name, "dx", got, expected, SMOOTH, case.label, self.hints["dx"])


@register(CHAPTER)
class BceLoss(LossItem):
    name = "bce_loss"
    reference = R.bce_loss
    grad_name = "dp"
    hints = {"loss": "loss = -mean(y log p + (1 - y) log(1 - p)) over all elements.",
             "dp": "dp = (p - y) / (p (1 - p)) / p.size: the mean divides by the number of elements."}

    def make_inputs(self, s):
        return self.inputs_for_case(s, 1)

    def inputs_for_case(self, s, index):
        # Case 0 is 1-D, the others 2-D with at least two columns, where p.size differs from len(p).
        shape = (int(s.inputs.integers(3, 9)),) if index == 0 else small_dims(s.inputs, (2, 5), (2, 3))
        return {"p": s.inputs.uniform(0.05, 0.95, size=shape), "y": s.inputs.integers(0, 2, size=shape).astype(float)}

    def edge_inputs(self, s):
        return [{"p": s.inputs.uniform(0.05, 0.95, size=(1, 1)),          # a single element
                 "y": s.inputs.integers(0, 2, size=(1, 1)).astype(float)}]


@register(CHAPTER)
class MseLoss(LossItem):
    name = "mse_loss"
    reference = R.mse_loss
    grad_name = "dpred"
    hints = {"loss": "loss = mean((pred - y)**2) over all elements.",
             "dpred": "dpred = 2 (pred - y) / pred.size."}

    def make_inputs(self, s):
        return self.inputs_for_case(s, 1)

    def inputs_for_case(self, s, index):
        # From case 1 on at least two columns, so dividing by len(pred) instead of pred.size fails.
        shape = small_dims(s.inputs, (2, 6), (1, 4) if index == 0 else (2, 4))
        return {"pred": s.inputs.normal(size=shape), "y": s.inputs.normal(size=shape)}

    def edge_inputs(self, s):
        return [{"pred": s.inputs.normal(size=(1, 1)), "y": s.inputs.normal(size=(1, 1))}]


@register(CHAPTER)
class L1Loss(LossItem):
    name = "l1_loss"
    reference = R.l1_loss
    grad_name = "dpred"
    tolerance = KINKED
    hints = {"loss": "loss = mean(|pred - y|) over all elements.",
             "dpred": "dpred = sign(pred - y) / pred.size."}
    contract = staticmethod(R.l1_loss_gradient_contract)
    kink_rule = "dpred = sign(pred - y) / pred.size, and sign(0) = 0"
    kink_hint = ("where pred equals y exactly, |pred - y| has its kink and the contract's gradient is sign(0) = 0; "
                 "a comparison such as pred > y (or >=) gives +-1 there instead of 0.")

    def make_inputs(self, s):
        return self.inputs_for_case(s, 1)

    def inputs_for_case(self, s, index):
        shape = small_dims(s.inputs, (2, 6), (1, 4) if index == 0 else (2, 4))
        y = s.inputs.normal(size=shape)
        return {"pred": y + away_from_kinks(s.inputs, shape, kinks=(0.0,), margin=1e-2), "y": y}

    def edge_inputs(self, s):
        y = s.inputs.normal(size=(1, 1))
        return [{"pred": y + away_from_kinks(s.inputs, (1, 1), kinks=(0.0,), margin=1e-2), "y": y}]

    def kink_inputs(self, s):
        # About 40% of the entries of pred equal y exactly (pred - y is computed exactly there: y + 0.0 == y).
        shape = small_dims(s.inputs, (2, 4), (3, 5))
        y = s.inputs.normal(size=shape)
        return [{"pred": y + at_kinks(s.inputs, shape, kinks=(0.0,), margin=1e-2), "y": y}]

