"""Chapter 09 (RNN, LSTM, attention): the hidden tests, proven in-process against the solution notebook.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that
  names the function and gives a hint;
- alternative correct implementations (other cache layouts, loops, a stacked weight
  matrix) get full marks.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.workflow.earlier_chapters import solution_namespace

from chapter_proofs import chapter_proofs
from conftest import solution_notebook

pytestmark = pytest.mark.ch09

CHAPTER = "09_rnn_attention"
NOTEBOOK = solution_notebook(CHAPTER)
_SOLUTION = {}


def sol(name):
    """The solution's function ``name`` (wrong functions reuse the solution's caches)."""
    if not _SOLUTION:
        _SOLUTION.update(solution_namespace(NOTEBOOK))
    return _SOLUTION[name]


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# --- word embeddings ------------------------------------------------------------------------------
# Wrong forwards return the solution's cache, so that only the forward item is lost.

def embedding_transposed_table(x, W):
    return W.T[x % W.shape[1]], sol("word_embedding_forward")(x, W)[1]


def embedding_time_major(x, W):
    return W[x.T], sol("word_embedding_forward")(x, W)[1]


def embedding_off_by_one(x, W):
    return W[x - 1], sol("word_embedding_forward")(x, W)[1]


def embedding_backward_fancy_index_add(dout, cache):
    x, shape = cache
    dW = np.zeros(shape)
    dW[x] += dout                      # a repeated word keeps only one of its gradients
    return dW


def embedding_backward_assigns(dout, cache):
    x, shape = cache
    dW = np.zeros(shape)
    dW[x] = dout
    return dW


def embedding_backward_mean_over_uses(dout, cache):
    x, shape = cache
    dW = np.zeros(shape)
    np.add.at(dW, x, dout)
    counts = np.bincount(x.ravel(), minlength=shape[0])
    return dW / np.maximum(counts, 1)[:, None]


# --- RNN step ----------------------------------------------------------------------------------------

def _with_step_cache(out, x, prev_h, Wx, Wh, b):
    return out, sol("rnn_step_forward")(x, prev_h, Wx, Wh, b)[1]


def rnn_step_no_tanh(x, prev_h, Wx, Wh, b):
    return _with_step_cache(x @ Wx + prev_h @ Wh + b, x, prev_h, Wx, Wh, b)


def rnn_step_wh_transposed(x, prev_h, Wx, Wh, b):
    return _with_step_cache(np.tanh(x @ Wx + prev_h @ Wh.T + b), x, prev_h, Wx, Wh, b)


def rnn_step_sigmoid(x, prev_h, Wx, Wh, b):
    return _with_step_cache(_sigmoid(x @ Wx + prev_h @ Wh + b), x, prev_h, Wx, Wh, b)


def rnn_step_no_bias(x, prev_h, Wx, Wh, b):
    return _with_step_cache(np.tanh(x @ Wx + prev_h @ Wh), x, prev_h, Wx, Wh, b)


def _step_backward(dnext_h, cache, tanh_grad=True, sum_db=True, transpose_wh=True, dwh_from="prev"):
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * ((1 - next_h ** 2) if tanh_grad else (1 - next_h))
    dprev_h = da @ (Wh.T if transpose_wh else Wh)
    dWh = (prev_h if dwh_from == "prev" else next_h).T @ da
    db = da.sum(axis=0) if sum_db else da.mean(axis=0)
    return da @ Wx.T, dprev_h, x.T @ da, dWh, db


def rnn_step_backward_wrong_tanh_derivative(dnext_h, cache):
    return _step_backward(dnext_h, cache, tanh_grad=False)


def rnn_step_backward_db_mean(dnext_h, cache):
    return _step_backward(dnext_h, cache, sum_db=False)


def rnn_step_backward_wh_not_transposed(dnext_h, cache):
    return _step_backward(dnext_h, cache, transpose_wh=False)


def rnn_step_backward_dwh_from_next_h(dnext_h, cache):
    return _step_backward(dnext_h, cache, dwh_from="next")


# --- RNN over a sequence ---------------------------------------------------------------------------

def _with_sequence_cache(h, x, h0, Wx, Wh, b):
    return h, sol("rnn_forward")(x, h0, Wx, Wh, b)[1]


def rnn_forward_always_from_h0(x, h0, Wx, Wh, b):
    h = np.stack([np.tanh(x[:, t] @ Wx + h0 @ Wh + b) for t in range(x.shape[1])], axis=1)
    return _with_sequence_cache(h, x, h0, Wx, Wh, b)


def rnn_forward_includes_h0(x, h0, Wx, Wh, b):
    h, _ = sol("rnn_forward")(x, h0, Wx, Wh, b)
    return _with_sequence_cache(np.concatenate([h0[:, None], h[:, :-1]], axis=1), x, h0, Wx, Wh, b)


def rnn_forward_squeezed(x, h0, Wx, Wh, b):
    """A CS231n-style loop that squeezes the stacked states: fine until a batch, a step or a hidden size is 1
    (only the degenerate cases catch it)."""
    prev, states = h0, []
    for t in range(x.shape[1]):
        prev = np.tanh(x[:, t, :] @ Wx + prev @ Wh + b)
        states.append(prev)
    return _with_sequence_cache(np.squeeze(np.stack(states, axis=1)), x, h0, Wx, Wh, b)


def rnn_forward_time_major(x, h0, Wx, Wh, b):
    h, _ = sol("rnn_forward")(x, h0, Wx, Wh, b)
    return _with_sequence_cache(h.transpose(1, 0, 2), x, h0, Wx, Wh, b)


def _bptt(dh, cache, carry=True, accumulate=True, every_step=True):
    step_backward = sol("rnn_step_backward")
    N, T, H = dh.shape
    dx = np.zeros((N, T, cache[0][0].shape[1]))
    dWx = dWh = db = 0.0
    dprev = np.zeros((N, H))
    for t in reversed(range(T)):
        upstream = dh[:, t] if (every_step or t == T - 1) else 0.0
        dx[:, t], dprev_t, dWx_t, dWh_t, db_t = step_backward(upstream + (dprev if carry else 0.0), cache[t])
        dprev = dprev_t
        dWx, db = dWx + dWx_t, db + db_t
        dWh = dWh + dWh_t if accumulate else dWh_t
    return dx, dprev, dWx, dWh, db


def rnn_backward_not_carried_through_time(dh, cache):
    return _bptt(dh, cache, carry=False)


def rnn_backward_dwh_overwritten(dh, cache):
    return _bptt(dh, cache, accumulate=False)


def rnn_backward_only_last_dh(dh, cache):
    return _bptt(dh, cache, every_step=False)


def rnn_backward_forward_in_time(dh, cache):
    step_backward = sol("rnn_step_backward")
    N, T, H = dh.shape
    dx = np.zeros((N, T, cache[0][0].shape[1]))
    dWx = dWh = db = 0.0
    dprev = np.zeros((N, H))
    for t in range(T):
        dx[:, t], dprev, dWx_t, dWh_t, db_t = step_backward(dh[:, t] + dprev, cache[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    return dx, dprev, dWx, dWh, db


# --- LSTM ---------------------------------------------------------------------------------------------

def _lstm_gates(x, prev_h, Wx, Wh, b, order="ifgo"):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    blocks = dict(zip(order, np.split(a, 4, axis=1)))
    return _sigmoid(blocks["i"]), _sigmoid(blocks["f"]), np.tanh(blocks["g"]), _sigmoid(blocks["o"]), H


def _with_lstm_cache(next_h, next_c, *inputs):
    return next_h, next_c, sol("lstm_step_forward")(*inputs)[2]


def lstm_forward_gates_ifog(x, prev_h, prev_c, Wx, Wh, b):
    i, f, g, o, _ = _lstm_gates(x, prev_h, Wx, Wh, b, order="ifog")
    c = f * prev_c + i * g
    return _with_lstm_cache(o * np.tanh(c), c, x, prev_h, prev_c, Wx, Wh, b)


def lstm_forward_no_tanh_on_cell(x, prev_h, prev_c, Wx, Wh, b):
    i, f, g, o, _ = _lstm_gates(x, prev_h, Wx, Wh, b)
    c = f * prev_c + i * g
    return _with_lstm_cache(o * c, c, x, prev_h, prev_c, Wx, Wh, b)


def lstm_forward_sigmoid_candidate(x, prev_h, prev_c, Wx, Wh, b):
    i, f, _, o, H = _lstm_gates(x, prev_h, Wx, Wh, b)
    g = _sigmoid((x @ Wx + prev_h @ Wh + b)[:, 2 * H:3 * H])
    c = f * prev_c + i * g
    return _with_lstm_cache(o * np.tanh(c), c, x, prev_h, prev_c, Wx, Wh, b)


def lstm_forward_no_input_gate(x, prev_h, prev_c, Wx, Wh, b):
    i, f, g, o, _ = _lstm_gates(x, prev_h, Wx, Wh, b)
    c = f * prev_c + g
    return _with_lstm_cache(o * np.tanh(c), c, x, prev_h, prev_c, Wx, Wh, b)


def _lstm_backward(dnext_h, dnext_c, cache, through_h=True, order="ifgo", forget_on_dc=True, g_as_sigmoid=False):
    x, prev_h, prev_c, Wx, Wh, i, f, g, o, tanh_c = cache
    dc = dnext_c + (dnext_h * o * (1 - tanh_c ** 2) if through_h else 0.0)
    dg_local = g * (1 - g) if g_as_sigmoid else 1 - g ** 2
    blocks = {"i": dc * g * i * (1 - i), "f": dc * prev_c * f * (1 - f), "g": dc * i * dg_local,
              "o": dnext_h * tanh_c * o * (1 - o)}
    da = np.hstack([blocks[k] for k in order])
    return da @ Wx.T, da @ Wh.T, dc * f if forget_on_dc else dc, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_backward_cell_misses_next_h_path(dnext_h, dnext_c, cache):
    return _lstm_backward(dnext_h, dnext_c, cache, through_h=False)


def lstm_backward_gates_ifog(dnext_h, dnext_c, cache):
    return _lstm_backward(dnext_h, dnext_c, cache, order="ifog")


def lstm_backward_dprev_c_without_forget_gate(dnext_h, dnext_c, cache):
    return _lstm_backward(dnext_h, dnext_c, cache, forget_on_dc=False)


def lstm_backward_candidate_sigmoid_derivative(dnext_h, dnext_c, cache):
    return _lstm_backward(dnext_h, dnext_c, cache, g_as_sigmoid=True)


# --- clipping -------------------------------------------------------------------------------------------

def clip_per_tensor(grads, max_norm):
    return {k: g * min(1.0, max_norm / np.linalg.norm(g)) for k, g in grads.items()}


def clip_always_rescales(grads, max_norm):
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    return {k: g * max_norm / norm for k, g in grads.items()}


def clip_by_sum_of_norms(grads, max_norm):
    norm = sum(np.linalg.norm(g) for g in grads.values())
    return {k: g * min(1.0, max_norm / norm) for k, g in grads.items()}


def clip_in_place(grads, max_norm):
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    for g in grads.values():
        g *= min(1.0, max_norm / norm)
    return grads


def clip_replaces_entries_of_the_dict_passed_in(grads, max_norm):
    norm = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    for k in grads:
        grads[k] = grads[k] * min(1.0, max_norm / norm)
    return grads


def clip_values(grads, max_norm):
    return {k: np.clip(g, -max_norm, max_norm) for k, g in grads.items()}


# --- attention (torch) --------------------------------------------------------------------------------

import math  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


def _attend(q, k, v, mask=None, scale="sqrt", axis=-1, mask_mode="-inf"):
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1)
    scores = scores / {"sqrt": math.sqrt(d), "none": 1.0, "d": d}[scale]
    if mask is not None and mask_mode == "-inf":
        scores = torch.where(mask.bool(), scores, float("-inf"))
    elif mask is not None and mask_mode == "inverted":
        scores = torch.where(mask.bool(), float("-inf"), scores)
    elif mask is not None and mask_mode == "zero":
        scores = torch.where(mask.bool(), scores, 0.0)
    weights = torch.softmax(scores, dim=axis)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    return weights @ v, weights


def attention_without_scaling(q, k, v, mask=None):
    return _attend(q, k, v, mask, scale="none")


def attention_divided_by_d(q, k, v, mask=None):
    return _attend(q, k, v, mask, scale="d")


def attention_softmax_over_queries(q, k, v, mask=None):
    return _attend(q, k, v, mask, axis=-2)


def attention_mask_ignored(q, k, v, mask=None):
    return _attend(q, k, v, None)


def attention_mask_inverted(q, k, v, mask=None):
    return _attend(q, k, v, mask, mask_mode="inverted")


def attention_masked_scores_set_to_zero(q, k, v, mask=None):
    return _attend(q, k, v, mask, mask_mode="zero")


def attention_mask_after_softmax(q, k, v, mask=None):
    return _attend(q, k, v, mask, mask_mode="after")


def attention_detached(q, k, v, mask=None):
    out, weights = _attend(q.detach(), k.detach(), v.detach(), mask)
    return out, weights


def attention_out_from_the_built_in(q, k, v, mask=None):
    _, weights = _attend(q, k, v, mask)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.bool()), weights


class _MHA(nn.Module):
    """The solution's parameters with a configurable forward (wrong ways of splitting and merging heads)."""

    split = "right"
    project_out = True
    average = False
    order = (0, 1, 2)
    transpose_w = True

    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query, key, value, mask=None):
        E, h = self.embed_dim, self.num_heads
        W, b = self.in_proj_weight.chunk(3), self.in_proj_bias.chunk(3)
        W, b = [W[i] for i in self.order], [b[i] for i in self.order]

        def heads(x, W, b):
            N, L, _ = x.shape
            p = x @ (W.T if self.transpose_w else W) + b
            return p.view(N, L, h, E // h).transpose(1, 2) if self.split == "right" else p.view(N, h, L, E // h)

        q, k, v = heads(query, W[0], b[0]), heads(key, W[1], b[1]), heads(value, W[2], b[2])
        out, weights = _attend(q, k, v, mask)
        N, _, Lq, _ = out.shape
        out = out.transpose(1, 2).reshape(N, Lq, E) if self.split == "right" else out.reshape(N, Lq, E)
        if self.project_out:
            out = self.out_proj(out)
        return out, weights.mean(dim=1) if self.average else weights


class MHAHeadsSplitAlongTheWrongAxis(_MHA):
    split = "wrong"


class MHAWithoutOutputProjection(_MHA):
    project_out = False


class MHAWeightsAveragedOverHeads(_MHA):
    average = True


class MHAKeyAndQueryRowsSwapped(_MHA):
    order = (1, 0, 2)


class MHAWeightNotTransposed(_MHA):
    transpose_w = False


class MHASeparateProjections(nn.Module):
    """q_proj, k_proj, v_proj as three nn.Linear: correct maths, but nn.MultiheadAttention's weights do not load."""

    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(embed_dim, embed_dim) for _ in range(3))
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query, key, value, mask=None):
        raise AssertionError("never reached: the state_dict does not load")


class MHADelegatesToTorch(nn.MultiheadAttention):
    """nn.MultiheadAttention itself, with the chapter's mask convention translated: right numbers, no work."""

    def __init__(self, embed_dim, num_heads):
        super().__init__(embed_dim, num_heads, batch_first=True)

    def forward(self, query, key, value, mask=None):
        if mask is not None:
            N, Lq, Lk = query.shape[0], query.shape[1], key.shape[1]
            mask = ~mask.bool().expand(N, self.num_heads, Lq, Lk).reshape(N * self.num_heads, Lq, Lk)
        return super().forward(query, key, value, attn_mask=mask, average_attn_weights=False)


WRONG = {
    "word_embedding_forward": [embedding_transposed_table, embedding_time_major, embedding_off_by_one],
    "word_embedding_backward": [embedding_backward_fancy_index_add, embedding_backward_assigns,
                                embedding_backward_mean_over_uses],
    "rnn_step_forward": [rnn_step_no_tanh, rnn_step_wh_transposed, rnn_step_sigmoid, rnn_step_no_bias],
    "rnn_step_backward": [(rnn_step_backward_wrong_tanh_derivative, "dx"), (rnn_step_backward_db_mean, "db"),
                          (rnn_step_backward_wh_not_transposed, "dprev_h"),
                          (rnn_step_backward_dwh_from_next_h, "dWh")],
    "rnn_forward": [rnn_forward_always_from_h0, rnn_forward_includes_h0, rnn_forward_time_major,
                    rnn_forward_squeezed],
    "rnn_backward": [(rnn_backward_not_carried_through_time, "dx"), (rnn_backward_dwh_overwritten, "dWh"),
                     (rnn_backward_only_last_dh, "dx"), rnn_backward_forward_in_time],
    "lstm_step_forward": [lstm_forward_gates_ifog, lstm_forward_no_tanh_on_cell, lstm_forward_sigmoid_candidate,
                          lstm_forward_no_input_gate],
    "lstm_step_backward": [(lstm_backward_cell_misses_next_h_path, "next_h"),
                           (lstm_backward_gates_ifog, "order i, f, g, o"),
                           (lstm_backward_dprev_c_without_forget_gate, "dprev_c"),
                           lstm_backward_candidate_sigmoid_derivative],
    "clip_gradients": [(clip_per_tensor, "global"), (clip_always_rescales, "unchanged"), clip_by_sum_of_norms,
                       (clip_in_place, "changed grads"), (clip_replaces_entries_of_the_dict_passed_in, "changed grads"),
                       clip_values],
    "scaled_dot_product_attention": [
        (attention_without_scaling, "sqrt(d)"), (attention_divided_by_d, "sqrt(d)"),
        (attention_softmax_over_queries, "over the keys"), (attention_mask_ignored, "-inf"),
        (attention_mask_inverted, "-inf"), (attention_masked_scores_set_to_zero, "-inf"),
        (attention_mask_after_softmax, "-inf"), (attention_detached, "autograd"),
        (attention_out_from_the_built_in, "built-in attention earns no points")],
    "MultiHeadAttention": [
        (MHAHeadsSplitAlongTheWrongAxis, "transpose(1, 2)"), (MHAWithoutOutputProjection, "out_proj"),
        (MHAWeightsAveragedOverHeads, "every head"), (MHAKeyAndQueryRowsSwapped, "rows 0:E (query)"),
        MHAWeightNotTransposed, (MHASeparateProjections, "q_proj"),
        (MHADelegatesToTorch, "built-in attention earns no points")],
}


# --- alternative correct implementations -----------------------------------------------------------------

def embedding_one_hot_matmul(x, W):
    one_hot = np.eye(W.shape[0])[x]                     # (N, T, V)
    return one_hot @ W, {"x": x, "V": W.shape[0]}


def embedding_backward_one_hot_matmul(dout, cache):
    one_hot = np.eye(cache["V"])[cache["x"]]
    return np.einsum("ntv,ntd->vd", one_hot, dout)


def rnn_forward_keeps_states(x, h0, Wx, Wh, b):
    """One big cache of whole arrays instead of a list of step caches."""
    N, T, _ = x.shape
    states = [h0]
    for t in range(T):
        states.append(np.tanh(x[:, t] @ Wx + states[-1] @ Wh + b))
    h = np.stack(states[1:], axis=1)
    return h, {"x": x, "states": np.stack(states, axis=1), "Wx": Wx, "Wh": Wh}


def rnn_backward_keeps_states(dh, cache):
    x, states, Wx, Wh = cache["x"], cache["states"], cache["Wx"], cache["Wh"]
    T = x.shape[1]
    dx, dWx, dWh, db = np.zeros_like(x), np.zeros_like(Wx), np.zeros_like(Wh), np.zeros(Wh.shape[0])
    dnext = np.zeros_like(states[:, 0])
    for t in range(T - 1, -1, -1):
        da = (dh[:, t] + dnext) * (1 - states[:, t + 1] ** 2)
        dx[:, t] = da @ Wx.T
        dWx += x[:, t].T @ da
        dWh += states[:, t].T @ da
        db += da.sum(axis=0)
        dnext = da @ Wh.T
    return dx, dnext, dWx, dWh, db


def lstm_forward_stacked(x, prev_h, prev_c, Wx, Wh, b):
    """[x, h] @ [[Wx], [Wh]], one matrix product, and a dict cache."""
    H = prev_h.shape[1]
    a = np.hstack([x, prev_h]) @ np.vstack([Wx, Wh]) + b
    i, f, o = (1 / (1 + np.exp(-a[:, k * H:(k + 1) * H])) for k in (0, 1, 3))
    g = np.tanh(a[:, 2 * H:3 * H])
    c = f * prev_c + i * g
    h = o * np.tanh(c)
    return h, c, {"xh": np.hstack([x, prev_h]), "W": np.vstack([Wx, Wh]), "D": x.shape[1], "gates": (i, f, g, o),
                  "prev_c": prev_c, "c": c}


def lstm_backward_stacked(dnext_h, dnext_c, cache):
    i, f, g, o = cache["gates"]
    t = np.tanh(cache["c"])
    dc = dnext_c + dnext_h * o * (1 - t * t)
    da = np.concatenate([dc * g * i * (1 - i), dc * cache["prev_c"] * f * (1 - f), dc * i * (1 - g * g),
                         dnext_h * t * o * (1 - o)], axis=1)
    dxh, dW = da @ cache["W"].T, cache["xh"].T @ da
    D = cache["D"]
    return dxh[:, :D], dxh[:, D:], dc * f, dW[:D], dW[D:], da.sum(axis=0)


def clip_with_concatenated_vector(grads, max_norm):
    norm = np.linalg.norm(np.concatenate([g.ravel() for g in grads.values()]))
    factor = max_norm / norm if norm > max_norm else 1.0
    return {k: np.array(g) * factor for k, g in grads.items()}


def attention_einsum_additive_mask(q, k, v, mask=None):
    """einsum for the products, a large negative number added where the mask forbids."""
    scores = torch.einsum("...id,...jd->...ij", q, k) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores + (1.0 - mask.to(scores.dtype)) * -1e30
    weights = scores.softmax(dim=-1)
    return torch.einsum("...ij,...jd->...id", weights, v), weights


def attention_renormalised(q, k, v, mask=None):
    """Mask the exponentials and renormalise: the same weights as -inf before the softmax."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    if mask is not None:
        e = e * mask.to(e.dtype)
    weights = e / e.sum(dim=-1, keepdim=True)
    return weights @ v, weights


class MHAHeadLoop(nn.Module):
    """One head at a time with F.linear on slices, then torch.cat: slow and correct."""

    def __init__(self, embed_dim, num_heads):
        super().__init__()
        self.h = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, query, key, value, mask=None):
        E = query.shape[-1]
        d = E // self.h
        q = F.linear(query, self.in_proj_weight[:E], self.in_proj_bias[:E])
        k = F.linear(key, self.in_proj_weight[E:2 * E], self.in_proj_bias[E:2 * E])
        v = F.linear(value, self.in_proj_weight[2 * E:], self.in_proj_bias[2 * E:])
        outs, weights = [], []
        for head in range(self.h):
            sl = slice(head * d, (head + 1) * d)
            m = None if mask is None else mask.expand(q.shape[0], self.h, q.shape[1], k.shape[1])[:, head]
            o, w = attention_renormalised(q[..., sl], k[..., sl], v[..., sl], m)
            outs.append(o)
            weights.append(w)
        return self.out_proj(torch.cat(outs, dim=-1)), torch.stack(weights, dim=1)


ALTERNATIVES = {
    "attention with einsum and an additive mask": {"scaled_dot_product_attention": attention_einsum_additive_mask},
    "attention by renormalised exponentials": {"scaled_dot_product_attention": attention_renormalised},
    "multi-head attention one head at a time": {"MultiHeadAttention": MHAHeadLoop},
    "one-hot matrix products for the embedding": {"word_embedding_forward": embedding_one_hot_matmul,
                                                   "word_embedding_backward": embedding_backward_one_hot_matmul},
    "RNN with a whole-array cache": {"rnn_forward": rnn_forward_keeps_states,
                                     "rnn_backward": rnn_backward_keeps_states},
    "LSTM with one stacked weight matrix": {"lstm_step_forward": lstm_forward_stacked,
                                            "lstm_step_backward": lstm_backward_stacked},
    "clipping through one concatenated vector": {"clip_gradients": clip_with_concatenated_vector},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))


# --- the references the attention items trust ------------------------------------------------------------

def test_attention_reference_agrees_with_torch_on_every_mask_kind():
    from grader.judge.references import ch09_rnn_attention as R

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64) for _ in range(3))
    masks = [None, torch.tril(torch.ones(4, 4, dtype=torch.bool)),
             torch.tensor([[True] * 4, [True, True, False, False]])[:, None, None, :]]
    for mask in masks:
        out, _ = R.scaled_dot_product_attention(q.numpy(), k.numpy(), v.numpy(), None if mask is None else mask.numpy())
        assert np.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask).numpy(), rtol=1e-12, atol=1e-12)


def test_multi_head_reference_is_nn_multihead_attention_with_the_hidden_tests_parameters():
    """The hidden cases' arrays, loaded into torch's own module, give the reference's numbers (per head)."""
    from grader.judge.cases import Streams
    from grader.judge.items import find_item
    from grader.judge.references import ch09_rnn_attention as R

    item = find_item("MultiHeadAttention", CHAPTER)
    for case in item.cases(Streams.from_seed(3)):
        a = case.arrays
        E, h = a["in_proj_weight"].shape[1], case.context["heads"]
        torch_mha = nn.MultiheadAttention(E, h, batch_first=True).double()
        torch_mha.load_state_dict({name: torch.from_numpy(a[key]) for name, key in
                                   {"in_proj_weight": "in_proj_weight", "in_proj_bias": "in_proj_bias",
                                    "out_proj.weight": "out_proj_weight", "out_proj.bias": "out_proj_bias"}.items()})
        query = torch.from_numpy(a["query"])
        key, value = (query, query) if case.context["self"] else (torch.from_numpy(a["key"]), torch.from_numpy(a["value"]))
        mask = a.get("mask")
        attn_mask = None
        if mask is not None:
            N, Lq, Lk = query.shape[0], query.shape[1], key.shape[1]
            attn_mask = ~torch.from_numpy(np.broadcast_to(mask, (N, h, Lq, Lk)).reshape(N * h, Lq, Lk).copy())
        out, weights = torch_mha(query, key, value, attn_mask=attn_mask, average_attn_weights=False)
        ref_out, ref_weights = item._reference(case)
        assert np.allclose(out.detach().numpy(), ref_out, rtol=1e-12, atol=1e-12)
        assert np.allclose(weights.detach().numpy(), ref_weights, rtol=1e-12, atol=1e-12)
