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

The attention items go through the torch path (chapter 07): float64 CPU tensors made from the
case's arrays, results compared with NumPy references at relative error < 1e-10 (round-off only),
gradients through autograd against centered differences of the reference at < 1e-7. Attention gets
3-D and 4-D (batch, heads) inputs with query and key lengths that differ, no mask, a padding mask
(N, 1, 1, Lk), a causal mask (L, L) and a 0/1 integer mask. ``MultiHeadAttention`` is built by the
kernel with random ``nn.MultiheadAttention``-shaped parameters loaded strictly (never a torch random
stream), for self-attention, cross-attention with padding and causal self-attention. Both record
which of torch's attention functions ran during the call (``Call.watch``): delegating fails.
"""
from __future__ import annotations

import numpy as np

from ..cases import small_dims
from ..checks import Failure, describe, expect_array, expect_close, expect_gradient, expect_tensor, shape_phrase
from ..numerics import numerical_gradient, numerical_gradient_array, rel_error
from ..protocol import Call, Case, Raised, TensorValue, arr, list_of, lit, module, ref, state, tensor
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
    hint = ("out[n, t] is row x[n, t] of W (the one-hot vector of the word times W): index the rows of W with the "
            "whole integer array x at once, shape (N, T, D).")

    def make_inputs(self, s):
        N, T, V, D = _distinct_dims(s, (2, 4), (2, 5), (5, 9), (2, 6))
        return {"x": s.inputs.integers(0, V, size=(N, T)), "W": s.inputs.normal(size=(V, D))}, {}

    def edge_inputs(self, s):
        # One sequence of one word, and embeddings of size 1 for a batch.
        V = int(s.inputs.integers(3, 7))
        return [({"x": s.inputs.integers(0, V, size=(1, 1)), "W": s.inputs.normal(size=(V, 3))}, {}),
                ({"x": s.inputs.integers(0, V, size=(2, 3)), "W": s.inputs.normal(size=(V, 1))}, {})]


@register(CHAPTER)
class WordEmbeddingBackward(BackwardItem):
    name = "word_embedding_backward"
    forward = WordEmbeddingForward()
    grad_names = ("dW",)
    hints = {"dW": "row v of dW sums dout[n, t] over every (n, t) with x[n, t] == v; a word that occurs twice "
                   "gets both gradients: a fancy-index += keeps only one of them, NumPy's unbuffered np.add.at "
                   "or a loop adds them all."}

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
    hint = ("the docstring's formula: the input through Wx plus the previous state through Wh (not its transpose) "
            "plus b, then tanh; next_h has shape (N, H).")

    def make_inputs(self, s):
        N, D, H = _distinct_dims(s, (2, 5), (2, 6), (3, 6))
        return dict(x=s.inputs.normal(size=(N, D)), prev_h=s.inputs.uniform(-0.9, 0.9, size=(N, H)),
                    **_recurrent_weights(s, D, H)), {}

    def edge_inputs(self, s):
        # One example; then one input feature and one hidden unit.
        return [(dict(x=s.inputs.normal(size=(1, D)), prev_h=s.inputs.uniform(-0.9, 0.9, size=(1, H)),
                      **_recurrent_weights(s, D, H)), {}) for D, H in ((3, 4), (1, 1))]


@register(CHAPTER)
class RnnStepBackward(BackwardItem):
    name = "rnn_step_backward"
    forward = RnnStepForward()
    grad_names = ("dx", "dprev_h", "dWx", "dWh", "db")
    hints = {"dx": "first back through tanh, whose derivative 1 - tanh^2 uses the cached output next_h (not the "
                   "input); then dx goes back through Wx (transposed), shape (N, D).",
             "dprev_h": "dprev_h goes back through Wh (transposed), after the tanh derivative, which uses the cached "
                        "output next_h; shape (N, H).",
             "dWx": "dWx (D, H) pairs the inputs x with the gradient after tanh, summed over the batch (chapter "
                    "02's affine dw).",
             "dWh": "dWh (H, H) pairs the previous state prev_h (not next_h) with the gradient after tanh, summed "
                    "over the batch (chapter 02's affine dw).",
             "db": "db (H,) sums the gradient after tanh over the batch axis: the bias was added to every row of "
                   "the batch."}


@register(CHAPTER)
class RnnForward(ForwardItem):
    name = "rnn_forward"
    reference = R.rnn_forward
    input_names = ("x", "h0", "Wx", "Wh", "b")
    hint = ("one rnn_step_forward per time step on the inputs of step t (x[:, t]), each starting from the state "
            "the step before produced (h0 for t = 0); h[:, t] is the state after step t, so h has shape (N, T, H) "
            "and does not contain h0.")

    def make_inputs(self, s):
        N, T, D, H = _distinct_dims(s, (2, 4), (2, 5), (2, 5), (3, 6))
        return dict(x=s.inputs.normal(size=(N, T, D)), h0=s.inputs.uniform(-0.9, 0.9, size=(N, H)),
                    **_recurrent_weights(s, D, H)), {}

    def edge_inputs(self, s):
        # One sequence of one step; then one input feature and one hidden unit over several steps.
        return [(dict(x=s.inputs.normal(size=(N, T, D)), h0=s.inputs.uniform(-0.9, 0.9, size=(N, H)),
                      **_recurrent_weights(s, D, H)), {}) for N, T, D, H in ((1, 1, 3, 4), (2, 3, 1, 1))]


@register(CHAPTER)
class RnnBackward(BackwardItem):
    name = "rnn_backward"
    forward = RnnForward()
    grad_names = ("dx", "dh0", "dWx", "dWh", "db")
    _through_time = ("Go backwards from t = T - 1 to 0; the gradient reaching h[:, t] is the sum of dh[:, t] (from "
                     "the loss) and the dprev_h that step t + 1 sent back.")
    hints = {"dx": _through_time,
             "dh0": "dh0 is the dprev_h of step 0, after the gradient has been carried back through every step. "
                    + _through_time,
             "dWx": "add (+=) every step's dWx: the same weights are used at every time step.",
             "dWh": "add (+=) every step's dWh, do not overwrite it: the same Wh is used at every time step. "
                    + _through_time,
             "db": "add (+=) every step's db: the same bias is used at every time step."}


# --- LSTM -------------------------------------------------------------------------------------

def _lstm_inputs(s, degenerate=False):
    N, D, H = (1, 1, 1) if degenerate else _distinct_dims(s, (2, 4), (2, 5), (3, 5))
    arrays = dict(x=s.inputs.normal(size=(N, D)), prev_h=s.inputs.uniform(-0.9, 0.9, size=(N, H)),
                  prev_c=s.inputs.normal(0.0, 1.0, size=(N, H)), **_recurrent_weights(s, D, H, gates=4))
    return arrays, shape_phrase(x=arrays["x"], prev_h=arrays["prev_h"], Wx=arrays["Wx"])


LSTM_INPUTS = ("x", "prev_h", "prev_c", "Wx", "Wh", "b")
GATES_HINT = ("the pre-activation has 4H columns, H per gate, in PyTorch's order i, f, g, o: sigmoid for the "
              "gates i, f and o, tanh for the candidate g; the new cell keeps f of the old cell and adds i of the "
              "candidate, and next_h is o times tanh of the new cell (the docstring's formulas).")


def _lstm_forward_call():
    return Call("lstm_step_forward", [arr(n) for n in LSTM_INPUTS], save=("next_h", "next_c", "cache"))


@register(CHAPTER)
class LstmStepForward(Item):
    name = "lstm_step_forward"
    hint = GATES_HINT

    def cases(self, s):
        cases = []
        for index in range(4):
            arrays, label = _lstm_inputs(s, degenerate=index == 3)
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
    _dc = ("The new cell reaches the loss twice: directly (dnext_c) and through next_h = o * tanh(next_c); add "
           "both paths before going into the gates.")
    _gates = ("Every gate's gradient goes back through its own activation (sigmoid for i, f and o, tanh for g, "
              "from the cached gate values), and the four are stacked in the forward's order i, f, g, o into one "
              "(N, 4H) gradient of the pre-activation.")
    hints = {"dx": f"dx (N, D) goes back through Wx (transposed). {_dc} {_gates}",
             "dprev_h": f"dprev_h (N, H) goes back through Wh (transposed). {_dc} {_gates}",
             "dprev_c": f"the old cell reaches the new one only through the forget gate. {_dc}",
             "dWx": f"dWx (D, 4H) pairs x with the stacked gate gradient, summed over the batch. {_gates}",
             "dWh": f"dWh (H, 4H) pairs prev_h with the stacked gate gradient, summed over the batch. {_gates}",
             "db": f"db (4H,) sums the stacked gate gradient over the batch. {_gates}"}

    def cases(self, s):
        cases = []
        for index in range(4):
            arrays, label = _lstm_inputs(s, degenerate=index == 3)
            N, H = arrays["prev_h"].shape
            arrays["dnext_h"] = s.upstream.normal(size=(N, H))
            arrays["dnext_c"] = s.upstream.normal(size=(N, H))
            steps = [_lstm_forward_call(),
                     Call(self.name, [arr("dnext_h"), arr("dnext_c"), ref("cache")], save=self.grad_names)]
            cases.append(Case(steps=steps, arrays=arrays, returns=("next_h", "next_c") + self.grad_names,
                              label=label))
        return cases

    def prerequisite_fault(self, case, out):
        """The learner's forward in this very case, judged by lstm_step_forward's own check."""
        try:
            LstmStepForward.check(LstmStepForward(), case, out)
        except Failure as failure:
            return "lstm_step_forward", f"gives a wrong result ({str(failure).splitlines()[0]})"
        return None

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
        "new": "return a new dict of new arrays (multiply, do not scale in place) and leave the dict passed in, "
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


# --- attention (torch) ---------------------------------------------------------------------------------
# The kernel counts calls of torch's own attention during the learner's call (Call.watch): these items
# ask for attention written with matrix products and a softmax, so handing the work to a built-in fails
# whatever numbers it gives. The numbers alone would catch most delegations too: the weights come back
# per head, and the mask convention (True = may attend) is the opposite of nn.MultiheadAttention's.

FORWARD = 1e-10         # float64 attention against the NumPy reference: round-off only
BUILT_INS = ("scaled_dot_product_attention", "multi_head_attention_forward", "_native_multi_head_attention")
BUILT_IN_NAMES = {"scaled_dot_product_attention": "torch.nn.functional.scaled_dot_product_attention",
                  "multi_head_attention_forward": "torch.nn.MultiheadAttention (F.multi_head_attention_forward)",
                  "_native_multi_head_attention": "torch.nn.MultiheadAttention (its fast path)"}


def expect_no_built_in_attention(item, calls, where, hint):
    """Failure if the recorded call counts show that torch's attention did the work."""
    used = [BUILT_IN_NAMES[n] for n in BUILT_INS if isinstance(calls, dict) and _count(calls.get(n)) > 0]
    if used:
        raise Failure(f"{item}: calls {' and '.join(used)}{where}. This chapter asks you to write attention "
                      f"yourself, with matrix products and a softmax; torch's built-in attention earns no points "
                      f"here.\nHint: {hint}")


def _count(value):
    try:
        return int(np.asarray(value))
    except (TypeError, ValueError):
        return 0


def _qkv(s, batch, Lq, Lk, d, dv, scale=1.2):
    return {"q": s.inputs.normal(0.0, scale, size=(*batch, Lq, d)), "k": s.inputs.normal(0.0, scale, size=(*batch, Lk, d)),
            "v": s.inputs.normal(size=(*batch, Lk, dv))}


def _padding_mask(s, N, Lk):
    """(N, 1, 1, Lk) bool: sample n may attend to its first length[n] keys (at least one, one sample padded)."""
    lengths = s.inputs.integers(1, Lk + 1, size=N)
    lengths[0] = max(1, Lk - int(s.inputs.integers(1, max(2, Lk // 2) + 1)))
    return (np.arange(Lk)[None, :] < lengths[:, None])[:, None, None, :]


def _random_mask(s, shape, dtype=bool):
    """A random 0/1 mask with at least one allowed key per query (the last axis)."""
    mask = s.inputs.uniform(size=shape) < 0.6
    rows = np.argwhere(~mask.any(axis=-1))
    for row in rows:
        mask[tuple(row) + (int(s.inputs.integers(0, shape[-1])),)] = True
    return mask.astype(dtype)


ATTENTION_HINTS = {
    "scale": "divide the scores by sqrt(d), with d the size of one query (the last axis of q), not the number of "
             "keys or the size of the values.",
    "axis": "the softmax runs over the keys, the last axis (dim=-1): every query's weights sum to 1.",
    "mask": "where the mask is False (or 0) the score becomes -inf before the softmax, so that its weight is exactly 0 "
            "(zeroing the weights after the softmax leaves rows that do not sum to 1); True (or 1) means 'may "
            "attend', and a 0/1 mask is read as booleans.",
    "general": "the softmax, over the last axis (the keys), of the query-key scores divided by sqrt(d), d the size "
               "of one query; then the weighted sum of the values; keep batch and head dimensions in front: "
               "transpose only the last two axes of k (k.T reverses them all).",
    "grad": "stay in torch (matrix products, torch.softmax, torch.where): no NumPy, .detach() or .item(), so that "
            "autograd can take the gradient.",
    "built_in": "compute the scores, the softmax and the weighted sum of the values yourself.",
}


def _attention_hint(case, weights):
    """The hint that matches what the returned weights look like."""
    q, k = case.arrays["q"], case.arrays["k"]
    mask = case.arrays.get("mask")
    expected = R.scaled_dot_product_attention(q, k, case.arrays["v"], mask)[1]
    if weights.shape != expected.shape:
        return ATTENTION_HINTS["general"]
    if not np.allclose(weights.sum(axis=-1), 1.0, atol=1e-6):
        return ATTENTION_HINTS["axis"] if mask is None else ATTENTION_HINTS["mask"] + " " + ATTENTION_HINTS["axis"]
    if mask is not None and np.any(np.abs(weights[~np.broadcast_to(mask.astype(bool), weights.shape)]) > 1e-12):
        return ATTENTION_HINTS["mask"]
    unscaled = R.scaled_dot_product_attention(q * np.sqrt(q.shape[-1]), k, case.arrays["v"], mask)[1]
    if rel_error(weights, unscaled) < 1e-6:
        return ATTENTION_HINTS["scale"]
    return ATTENTION_HINTS["general"]


@register(CHAPTER)
class ScaledDotProductAttention(Item):
    name = "scaled_dot_product_attention"
    hints = ATTENTION_HINTS

    def _case(self, arrays, label, mask=False, grad=False):
        args = [tensor("q", requires_grad=grad), tensor("k", requires_grad=grad), tensor("v", requires_grad=grad)]
        kwargs = {"mask": tensor("mask")} if mask else {}
        steps = [Call(self.name, args, kwargs, save=("out", "weights"), record_errors=True, watch=BUILT_INS)]
        returns = ("out", "weights", "torch_calls")
        if grad:
            steps.append(Call("grad", [ref("out"), arr("dout"), list_of(ref("q"), ref("k"), ref("v"))], builtin=True,
                              save=("dq", "dk", "dv"), label=f"the gradient of {self.name}", record_errors=True))
            returns += ("dq", "dk", "dv")
        return Case(steps=steps, arrays=arrays, returns=returns, context={"grad": grad}, label=label)

    def cases(self, s):
        cases = []
        # 0: a batch of queries against keys of another length, no mask.
        N, Lq, Lk, d, dv = _distinct_dims(s, (2, 3), (2, 5), (3, 6), (4, 8), (2, 5))
        arrays = _qkv(s, (N,), Lq, Lk, d, dv)
        cases.append(self._case(arrays, shape_phrase(q=arrays["q"], k=arrays["k"], v=arrays["v"]) + ", no mask"))
        # 1: batch and head dimensions, a padding mask of shape (N, 1, 1, Lk).
        N, h, Lq, Lk, d = _distinct_dims(s, (2, 3), (2, 3), (2, 4), (4, 6), (4, 7))
        arrays = dict(_qkv(s, (N, h), Lq, Lk, d, d), mask=_padding_mask(s, N, Lk))
        cases.append(self._case(arrays, shape_phrase(q=arrays["q"], k=arrays["k"]) + " and a padding mask of shape "
                                f"{arrays['mask'].shape} (True = may attend)", mask=True))
        # 2: a causal mask (L, L) broadcast over batch and heads.
        N, h, L, d = _distinct_dims(s, (2, 3), (2, 3), (4, 6), (4, 7))
        arrays = dict(_qkv(s, (N, h), L, L, d, d), mask=np.tril(np.ones((L, L), dtype=bool)))
        cases.append(self._case(arrays, shape_phrase(q=arrays["q"]) + f" and a causal mask of shape {(L, L)}",
                                mask=True))
        # 3: a 0/1 integer mask per query, and the gradient for q, k and v.
        N, Lq, Lk, d, dv = _distinct_dims(s, (2, 3), (2, 4), (3, 5), (4, 6), (2, 4))
        arrays = dict(_qkv(s, (N,), Lq, Lk, d, dv), mask=_random_mask(s, (N, Lq, Lk), dtype=np.int64))
        arrays["dout"] = s.upstream.normal(size=(N, Lq, dv))
        cases.append(self._case(arrays, shape_phrase(q=arrays["q"], k=arrays["k"], v=arrays["v"])
                                + " and a 0/1 integer mask of shape " + str(arrays["mask"].shape), mask=True, grad=True))
        # 4: the degenerate sizes: one query, one key, features of size 1 (the softmax of one score is 1).
        arrays = _qkv(s, (1,), 1, 1, 1, 1)
        arrays["dout"] = s.upstream.normal(size=(1, 1, 1))
        cases.append(self._case(arrays, shape_phrase(q=arrays["q"], k=arrays["k"], v=arrays["v"]), grad=True))
        # 5: one query against several keys, one sample.
        Lk, d, dv = _distinct_dims(s, (2, 4), (2, 5), (1, 3))
        arrays = _qkv(s, (1,), 1, Lk, d, dv)
        cases.append(self._case(arrays, shape_phrase(q=arrays["q"], k=arrays["k"], v=arrays["v"])))
        return cases

    def check(self, case, out):
        q, k, v = case.arrays["q"], case.arrays["k"], case.arrays["v"]
        mask = case.arrays.get("mask")
        expect_no_built_in_attention(self.name, out.get("torch_calls"), case.label, self.hints["built_in"])
        expected_out, expected_w = R.scaled_dot_product_attention(q, k, v, mask)
        w = out["weights"]
        if mask is not None and isinstance(w, TensorValue) and w.shape == expected_w.shape \
                and not np.all(np.isfinite(w.array)):
            raise Failure(f"{self.name}: weights contain NaN{case.label}: a query with every score at -inf has "
                          f"nothing to attend to. Every query here may attend to at least one key, so check the mask "
                          f"convention.\nHint: {self.hints['mask']}")
        weights = expect_tensor(self.name, "weights", out["weights"], expected_w.shape, case.label,
                                self.hints["general"])
        hint = _attention_hint(case, weights)
        expect_close(self.name, "weights", weights, expected_w, FORWARD, case.label, hint)
        got = expect_tensor(self.name, "out", out["out"], expected_out.shape, case.label, self.hints["general"])
        expect_close(self.name, "out", got, expected_out, FORWARD, case.label,
                     "out is the weights applied to the values: (..., Lq, Lk) times (..., Lk, dv).")
        if case.context["grad"]:
            inputs = {"q": q, "k": k, "v": v}
            for name in inputs:
                def f(x, name=name):
                    return R.scaled_dot_product_attention(**dict(inputs, **{name: x}), mask=mask)[0]
                numerical = numerical_gradient_array(f, inputs[name], case.arrays["dout"])
                expect_gradient(self.name, name, out[f"d{name}"], numerical, SMOOTH, case.label, self.hints["grad"])


MHA_STATE = {"in_proj_weight": "in_proj_weight", "in_proj_bias": "in_proj_bias",
             "out_proj.weight": "out_proj_weight", "out_proj.bias": "out_proj_bias"}


@register(CHAPTER)
class MultiHeadAttentionItem(Item):
    name = "MultiHeadAttention"
    hints = {
        "build": "MultiHeadAttention(embed_dim, num_heads) holds exactly the parameters of nn.MultiheadAttention: "
                 "in_proj_weight (3E, E) and in_proj_bias (3E,) as nn.Parameter, and out_proj = nn.Linear(E, E).",
        "weights": "return the weights of every head, shape (N, num_heads, Lq, Lk), as your scaled_dot_product_attention "
                   "gives them for q, k, v of shape (N, num_heads, L, d); the mask means True = may attend.",
        "out": "project with rows 0:E (query), E:2E (key), 2E:3E (value) of in_proj_weight and in_proj_bias, as "
               "nn.Linear does (the weight transposed); head h takes features h*d .. (h+1)*d of each projection: "
               "split the last axis into (num_heads, d) and move the head axis in front of the sequence axis, a "
               "transpose(1, 2) (viewing (N, L, E) directly as (N, num_heads, L, d) mixes positions and heads); "
               "attend, undo the split the same way and apply out_proj.",
        "built_in": "project, split into heads, call your own scaled_dot_product_attention, merge the heads and "
                    "apply out_proj: no nn.MultiheadAttention inside.",
        "grad": "stay in torch operations (no NumPy, .detach() or .item()) so that autograd can take the gradient.",
        "scale": "the scaling belongs to the attention inside each head: the size of one query there is "
                 "embed_dim / num_heads, not embed_dim.",
    }

    def cases(self, s):
        cases = []
        for index in range(4):
            h, d = int(s.inputs.integers(2, 4)), int(s.inputs.integers(2, 4))
            N, Lq, Lk = _distinct_dims(s, (2, 3), (3, 5), (2, 6))
            if index == 3:                                         # one head, one sample, one position
                h, N, Lq, Lk = 1, 1, 1, 1
            E = h * d
            if index != 1:
                Lk = Lq                                           # self-attention (cases 0 and 2)
            bound = np.sqrt(6.0 / (E + E))
            arrays = {"in_proj_weight": s.inputs.uniform(-bound, bound, size=(3 * E, E)) * 1.5,
                      "in_proj_bias": s.inputs.normal(0.0, 0.2, size=3 * E),
                      "out_proj_weight": s.inputs.uniform(-bound, bound, size=(E, E)),
                      "out_proj_bias": s.inputs.normal(0.0, 0.2, size=E),
                      "query": s.inputs.normal(size=(N, Lq, E))}
            if index == 1:                                         # cross-attention with a padding mask
                arrays["key"] = s.inputs.normal(size=(N, Lk, E))
                arrays["value"] = s.inputs.normal(size=(N, Lk, E))
                arrays["mask"] = _padding_mask(s, N, Lk)
                inputs = [tensor("query"), tensor("key"), tensor("value")]
                label = (f" built as {self.name}({E}, {h}), cross-attention" + shape_phrase(query=arrays["query"],
                         key=arrays["key"]) + f" and a padding mask of shape {arrays['mask'].shape}")
            else:
                inputs = [tensor("query", requires_grad=index == 2), ref("query"), ref("query")]
                label = f" built as {self.name}({E}, {h}), self-attention" + shape_phrase(query=arrays["query"])
                if index == 2:
                    arrays["mask"] = np.tril(np.ones((Lq, Lq), dtype=bool))
                    arrays["dout"] = s.upstream.normal(size=(N, Lq, E))
                    label += f" and a causal mask of shape {(Lq, Lq)}"
            kwargs = {"mask": tensor("mask")} if "mask" in arrays else {}
            steps = [Call("value", [module(self.name, [lit(E), lit(h)], state=MHA_STATE)], builtin=True, save="model",
                          label=self.name, record_errors=True),
                     Call("model", inputs, kwargs, on_ref=True, save=("out", "weights"), label=f"{self.name}.forward",
                          record_errors=True, watch=BUILT_INS)]
            returns = ("out", "weights", "torch_calls")
            if index == 2:
                steps.append(Call("grad", [ref("out"), arr("dout"), list_of(ref("query"))], builtin=True,
                                  save=("dquery",), label=f"the gradient of {self.name}", record_errors=True))
                returns += ("dquery",)
            cases.append(Case(steps=steps, arrays=arrays, returns=returns,
                              context={"heads": h, "self": index != 1, "grad": index == 2}, label=label))
        return cases

    def _reference(self, case, query=None, scale_by_embed_dim=False):
        a = case.arrays
        query = a["query"] if query is None else query
        key, value = (query, query) if case.context["self"] else (a["key"], a["value"])
        weight, bias = a["in_proj_weight"].copy(), a["in_proj_bias"].copy()
        if scale_by_embed_dim:       # the usual mistake: scores / sqrt(E) instead of / sqrt(E / num_heads)
            E = query.shape[-1]
            factor = np.sqrt(1.0 / case.context["heads"])
            weight[:E] *= factor
            bias[:E] *= factor
        return R.multi_head_attention(query, key, value, weight, bias, a["out_proj_weight"],
                                      a["out_proj_bias"], case.context["heads"], a.get("mask"))

    def check(self, case, out):
        expect_no_built_in_attention(self.name, out.get("torch_calls"), case.label, self.hints["built_in"])
        expected_out, expected_w = self._reference(case)
        w = out["weights"]
        hint = self.hints["build"] if isinstance(w, Raised) and w.function == self.name else self.hints["weights"]
        weights = expect_tensor(self.name, "weights", w, expected_w.shape, case.label, hint)
        wrong_scale = self._reference(case, scale_by_embed_dim=True)[1]
        # Named only when the weights are not also the right ones: a padding mask that leaves one key per query
        # makes every scale give the same weights.
        if (case.context["heads"] > 1 and rel_error(weights, wrong_scale) < 1e-8
                and not rel_error(weights, expected_w) < FORWARD):
            raise Failure(f"{self.name}: the weights are those of scores divided by sqrt(embed_dim){case.label}: "
                          f"each head's scores are divided by the square root of that head's own size."
                          f"\nHint: {self.hints['scale']}")
        expect_close(self.name, "weights", weights, expected_w, FORWARD, case.label, self.hints["out"])
        got = expect_tensor(self.name, "out", out["out"], expected_out.shape, case.label, self.hints["out"])
        expect_close(self.name, "out", got, expected_out, FORWARD, case.label,
                     "merge the heads with out.transpose(1, 2).reshape(N, Lq, E), then apply out_proj.")
        if case.context["grad"]:
            numerical = numerical_gradient_array(lambda x: self._reference(case, x)[0], case.arrays["query"],
                                                 case.arrays["dout"])
            expect_gradient(self.name, "query", out["dquery"], numerical, SMOOTH, case.label, self.hints["grad"])
