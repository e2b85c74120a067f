"""Hidden tests of chapter 09 (RNN, LSTM, gradient clipping, attention).

NumPy items follow chapter 02: forward values against the trusted references, every
gradient against a centered-difference gradient of the trusted reference forward in
float64 at relative error < 1e-7, the learner's backward always paired with the learner's
own forward (the cache is opaque), inputs checked for in-place changes. Sizes are drawn so
that N, D, H (and V, D) differ, which turns a transposed weight into a wrong shape, and
sequences have at least two steps, so a gradient that is not carried back through time or
a dWh that is overwritten instead of accumulated shows up. Pre-activations stay in the
non-saturated range of tanh and sigmoid, where every gate's contribution is visible.

``clip_gradients`` gets dicts whose global norm is above the limit while every single array
is below it (per-tensor clipping changes nothing there), a dict below the limit (it must come
back unchanged), and a dict with one dominant array; the dict passed in is read back after
the call, so clipping in place is caught.
"""
from __future__ import annotations

import numpy as np

from ..cases import small_dims
from ..checks import Failure, describe, expect_array, expect_close, shape_phrase
from ..numerics import numerical_gradient, numerical_gradient_array
from ..protocol import Call, Case, arr, lit, ref, state
from ..references import ch09_rnn_attention as R
from . import Item, register
from .ch02_backprop import BackwardItem, ForwardItem

CHAPTER = "09_rnn_attention"
SMOOTH = 1e-7


def _distinct_dims(s, *ranges):
    """Sizes from the ranges, nudged upwards until all differ (a transposed matrix then has a wrong shape)."""
    dims = []
    for lo, hi in ranges:
        d = int(s.inputs.integers(lo, hi + 1))
        while d in dims:
            d += 1
        dims.append(d)
    return tuple(dims)


def _recurrent_weights(s, D, H, gates=1):
    """Wx (D, gates*H), Wh (H, gates*H), b (gates*H,) scaled so that pre-activations stay around +-1."""
    return {"Wx": s.inputs.normal(0.0, 1.0 / np.sqrt(D), size=(D, gates * H)),
            "Wh": s.inputs.normal(0.0, 0.8 / np.sqrt(H), size=(H, gates * H)),
            "b": s.inputs.normal(0.0, 0.3, size=(gates * H,))}


# --- word embeddings --------------------------------------------------------------------------

@register(CHAPTER)
class WordEmbeddingForward(ForwardItem):
    name = "word_embedding_forward"
    reference = R.word_embedding_forward
    input_names = ("x", "W")
    hint = "out[n, t] is row x[n, t] of W: out = W[x], shape (N, T, D) (the one-hot vector times W)."

    def make_inputs(self, s):
        N, T, V, D = _distinct_dims(s, (2, 4), (2, 5), (5, 9), (2, 6))
        return {"x": s.inputs.integers(0, V, size=(N, T)), "W": s.inputs.normal(size=(V, D))}, {}


@register(CHAPTER)
class WordEmbeddingBackward(BackwardItem):
    name = "word_embedding_backward"
    forward = WordEmbeddingForward()
    grad_names = ("dW",)
    hints = {"dW": "row v of dW sums dout[n, t] over every (n, t) with x[n, t] == v; a word that occurs twice "
                   "gets both gradients: np.add.at(dW, x, dout) (dW[x] += dout keeps only one of them)."}

    def cases(self, s):
        cases = super().cases(s)
        for case in cases:               # the same word twice in the batch: repeated indices must add up
            x = case.arrays["x"]
            x[-1, -1] = x[0, 0]
        return cases

    def check(self, case, out):
        x, W = case.arrays["x"], case.arrays["W"]
        expected = numerical_gradient_array(lambda v: R.word_embedding_forward(x, v), W, case.arrays["dout"])
        hint = self.hints["dW"]
        got = expect_array(self.name, "dW", out["dW"], W.shape, case.label, hint)
        expect_close(self.name, "dW", got, expected, SMOOTH, case.label, hint)


# --- vanilla RNN --------------------------------------------------------------------------------

@register(CHAPTER)
class RnnStepForward(ForwardItem):
    name = "rnn_step_forward"
    reference = R.rnn_step_forward
    input_names = ("x", "prev_h", "Wx", "Wh", "b")
    hint = "next_h = np.tanh(x @ Wx + prev_h @ Wh + b), shape (N, H)."

    def make_inputs(self, s):
        N, D, H = _distinct_dims(s, (2, 5), (2, 6), (3, 6))
        return dict(x=s.inputs.normal(size=(N, D)), prev_h=s.inputs.uniform(-0.9, 0.9, size=(N, H)),
                    **_recurrent_weights(s, D, H)), {}


@register(CHAPTER)
class RnnStepBackward(BackwardItem):
    name = "rnn_step_backward"
    forward = RnnStepForward()
    grad_names = ("dx", "dprev_h", "dWx", "dWh", "db")
    hints = {"dx": "with da = dnext_h * (1 - next_h**2) (the tanh derivative, from the cached output): dx = da @ Wx.T.",
             "dprev_h": "dprev_h = da @ Wh.T, where da = dnext_h * (1 - next_h**2).",
             "dWx": "dWx = x.T @ da, where da = dnext_h * (1 - next_h**2).",
             "dWh": "dWh = prev_h.T @ da, where da = dnext_h * (1 - next_h**2).",
             "db": "db = da.sum(axis=0): the bias was added to every row of the batch."}


@register(CHAPTER)
class RnnForward(ForwardItem):
    name = "rnn_forward"
    reference = R.rnn_forward
    input_names = ("x", "h0", "Wx", "Wh", "b")
    hint = ("h[:, t] = rnn_step_forward(x[:, t], h[:, t - 1], ...), starting from h0 at t = 0; "
            "h has shape (N, T, H) and does not contain h0.")

    def make_inputs(self, s):
        N, T, D, H = _distinct_dims(s, (2, 4), (2, 5), (2, 5), (3, 6))
        return dict(x=s.inputs.normal(size=(N, T, D)), h0=s.inputs.uniform(-0.9, 0.9, size=(N, H)),
                    **_recurrent_weights(s, D, H)), {}


@register(CHAPTER)
class RnnBackward(BackwardItem):
    name = "rnn_backward"
    forward = RnnForward()
    grad_names = ("dx", "dh0", "dWx", "dWh", "db")
    _through_time = ("go backwards from t = T - 1 to 0; the gradient reaching h[:, t] is dh[:, t] plus the dprev_h "
                     "that step t + 1 sent back: dnext = dh[:, t] + dprev.")
    hints = {"dx": _through_time,
             "dh0": "dh0 is the dprev_h of step 0, after the gradient has been carried back through every step. "
                    + _through_time,
             "dWx": "add (+=) every step's dWx: the same weights are used at every time step.",
             "dWh": "add (+=) every step's dWh, do not overwrite it: the same Wh is used at every time step. "
                    + _through_time,
             "db": "add (+=) every step's db: the same bias is used at every time step."}


# --- LSTM -------------------------------------------------------------------------------------

def _lstm_inputs(s):
    N, D, H = _distinct_dims(s, (2, 4), (2, 5), (3, 5))
    arrays = dict(x=s.inputs.normal(size=(N, D)), prev_h=s.inputs.uniform(-0.9, 0.9, size=(N, H)),
                  prev_c=s.inputs.normal(0.0, 1.0, size=(N, H)), **_recurrent_weights(s, D, H, gates=4))
    return arrays, shape_phrase(x=arrays["x"], prev_h=arrays["prev_h"], Wx=arrays["Wx"])


LSTM_INPUTS = ("x", "prev_h", "prev_c", "Wx", "Wh", "b")
GATES_HINT = ("a = x @ Wx + prev_h @ Wh + b has 4H columns: i = sigmoid(a[:, :H]), f = sigmoid(a[:, H:2H]), "
              "g = tanh(a[:, 2H:3H]), o = sigmoid(a[:, 3H:]) (PyTorch's order i, f, g, o); "
              "next_c = f * prev_c + i * g, next_h = o * tanh(next_c).")


def _lstm_forward_call():
    return Call("lstm_step_forward", [arr(n) for n in LSTM_INPUTS], save=("next_h", "next_c", "cache"))


@register(CHAPTER)
class LstmStepForward(Item):
    name = "lstm_step_forward"
    hint = GATES_HINT

    def cases(self, s):
        cases = []
        for _ in range(3):
            arrays, label = _lstm_inputs(s)
            cases.append(Case(steps=[_lstm_forward_call()], arrays=arrays, returns=("next_h", "next_c"), label=label))
        return cases

    def check(self, case, out):
        expected = R.lstm_step_forward(*[case.arrays[n] for n in LSTM_INPUTS])
        for quantity, value in zip(("next_h", "next_c"), expected):
            got = expect_array(self.name, quantity, out[quantity], value.shape, case.label, self.hint)
            expect_close(self.name, quantity, got, value, SMOOTH, case.label, self.hint)


@register(CHAPTER)
class LstmStepBackward(Item):
    name = "lstm_step_backward"
    grad_names = ("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db")
    _dc = ("the cell receives dnext_c plus the path through next_h = o * tanh(next_c): "
           "dc = dnext_c + dnext_h * o * (1 - tanh(next_c)**2).")
    _gates = ("stack the gate gradients in the forward's order i, f, g, o: "
              "da = np.hstack([di * i * (1 - i), df * f * (1 - f), dg * (1 - g**2), do * o * (1 - o)]).")
    hints = {"dx": f"dx = da @ Wx.T; {_dc} {_gates}",
             "dprev_h": f"dprev_h = da @ Wh.T; {_dc} {_gates}",
             "dprev_c": f"dprev_c = dc * f, where {_dc}",
             "dWx": f"dWx = x.T @ da; {_gates}",
             "dWh": f"dWh = prev_h.T @ da; {_gates}",
             "db": f"db = da.sum(axis=0); {_gates}"}

    def cases(self, s):
        cases = []
        for _ in range(3):
            arrays, label = _lstm_inputs(s)
            N, H = arrays["prev_h"].shape
            arrays["dnext_h"] = s.upstream.normal(size=(N, H))
            arrays["dnext_c"] = s.upstream.normal(size=(N, H))
            steps = [_lstm_forward_call(),
                     Call(self.name, [arr("dnext_h"), arr("dnext_c"), ref("cache")], save=self.grad_names)]
            cases.append(Case(steps=steps, arrays=arrays, returns=self.grad_names, label=label))
        return cases

    def check(self, case, out):
        inputs = {n: case.arrays[n] for n in LSTM_INPUTS}
        dnext_h, dnext_c = case.arrays["dnext_h"], case.arrays["dnext_c"]
        for grad_name, input_name in zip(self.grad_names, LSTM_INPUTS):
            def f(v, input_name=input_name):
                next_h, next_c = R.lstm_step_forward(**dict(inputs, **{input_name: v}))
                return np.sum(next_h * dnext_h) + np.sum(next_c * dnext_c)
            expected = numerical_gradient(f, inputs[input_name])
            hint = self.hints[grad_name]
            got = expect_array(self.name, grad_name, out[grad_name], inputs[input_name].shape, case.label, hint)
            expect_close(self.name, grad_name, got, expected, SMOOTH, case.label, hint)


# --- gradient clipping ----------------------------------------------------------------------------

def _norm(a):
    return float(np.sqrt(np.sum(a ** 2)))


@register(CHAPTER)
class ClipGradients(Item):
    name = "clip_gradients"
    hints = {
        "global": "the norm is global: sqrt of the sum of squares of every entry of every array together, "
                  "and every array is multiplied by the same factor max_norm / global_norm.",
        "below": "scale by min(1, max_norm / global_norm): gradients whose global norm is already at most max_norm "
                 "come back unchanged.",
        "new": "return a new dict (e.g. {name: g * scale for name, g in grads.items()}) and leave the dict passed in, "
               "and its arrays, unchanged.",
    }

    def _case(self, arrays, max_norm, label):
        names = list(arrays)
        return Case(steps=[Call(self.name, [state("grads", **{n: arr(n) for n in names}), lit(max_norm)],
                                save="clipped")],
                    arrays=arrays, returns=("clipped", "grads"), context={"max_norm": max_norm, "names": names},
                    label=label)

    def _grads(self, s, scales):
        D, H = _distinct_dims(s, (3, 5), (2, 4))
        shapes = {"Wx": (D, H), "Wh": (H, H), "b": (H,)}
        return {name: scale * s.inputs.normal(size=shape) / np.sqrt(np.prod(shape))
                for (name, shape), scale in zip(shapes.items(), scales)}

    def cases(self, s):
        cases = []
        # 0: every array below max_norm, the global norm above it (per-tensor clipping changes nothing).
        grads = self._grads(s, s.inputs.uniform(0.8, 1.2, size=3))
        norms = [_norm(g) for g in grads.values()]
        total = float(np.sqrt(sum(n ** 2 for n in norms)))
        max_norm = float(np.round((max(norms) + total) / 2, 4))
        cases.append(self._case(grads, max_norm, f" on three arrays of norms {_fmt(norms)} with max_norm = {max_norm}"))
        # 1: global norm below max_norm: nothing to do.
        grads = self._grads(s, s.inputs.uniform(0.5, 1.5, size=3))
        norms = [_norm(g) for g in grads.values()]
        max_norm = float(np.round(R.global_norm(grads) * s.inputs.uniform(1.2, 2.0), 4))
        cases.append(self._case(grads, max_norm, f" on three arrays of norms {_fmt(norms)} with max_norm = {max_norm}"))
        # 2: one exploding array dominates.
        grads = self._grads(s, [s.inputs.uniform(20.0, 50.0), 1.0, 0.5])
        norms = [_norm(g) for g in grads.values()]
        max_norm = float(np.round(s.inputs.uniform(2.0, 5.0), 2))
        cases.append(self._case(grads, max_norm, f" on three arrays of norms {_fmt(norms)} with max_norm = {max_norm}"))
        return cases

    def check(self, case, out):
        names = case.context["names"]
        original = {n: case.arrays[n] for n in names}
        expected = R.clip_gradients(original, case.context["max_norm"])
        clipped = out["clipped"]
        if not isinstance(clipped, dict):
            raise Failure(f"{self.name}: should return a dict of arrays with keys {names}, but returned "
                          f"{describe(clipped)}{case.label}.\nHint: {self.hints['new']}")
        if sorted(clipped) != sorted(names):
            raise Failure(f"{self.name}: returned a dict with keys {sorted(clipped)}, expected {sorted(names)}"
                          f"{case.label}.\nHint: keep every name of grads.")
        passed_in = out["grads"]
        for n in names:
            if not (isinstance(passed_in, dict) and isinstance(passed_in.get(n), np.ndarray)
                    and passed_in[n].shape == original[n].shape and np.array_equal(passed_in[n], original[n])):
                raise Failure(f"{self.name}: changed grads['{n}'] in the dict passed in{case.label}.\n"
                              f"Hint: {self.hints['new']}")
        total = R.global_norm(original)
        hint = self.hints["below"] if total <= case.context["max_norm"] else self.hints["global"]
        for n in names:
            got = expect_array(self.name, f"the clipped '{n}'", clipped[n], original[n].shape, case.label, hint)
            expect_close(self.name, f"the clipped '{n}'", got, expected[n], SMOOTH, case.label, hint)


def _fmt(values):
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"
