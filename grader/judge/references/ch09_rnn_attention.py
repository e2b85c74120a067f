"""Trusted reference implementations for chapter 09 (RNN, LSTM and attention).

Used only by hidden tests, in the grader's process; never shipped inside a learner
notebook. Plain float64 NumPy, forward passes only: every gradient is checked against a
centered difference of these forwards. The attention references are NumPy too, so the
torch items are judged by an implementation that shares no code with torch.
"""
from __future__ import annotations

import numpy as np

from .ch01_mlp_xor import sigmoid


def word_embedding_forward(x, W):
    """x: (N, T) integer word indices, W: (V, D). Returns (N, T, D) = W[x] (one-hot rows times W)."""
    return W[x]


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """next_h = tanh(x Wx + prev_h Wh + b): x (N, D), prev_h (N, H) -> (N, H)."""
    return np.tanh(x @ Wx + prev_h @ Wh + b)


def rnn_forward(x, h0, Wx, Wh, b):
    """Hidden states of every step: x (N, T, D), h0 (N, H) -> h (N, T, H); h0 itself is not part of h."""
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]))
    prev = h0
    for t in range(T):
        prev = rnn_step_forward(x[:, t], prev, Wx, Wh, b)
        h[:, t] = prev
    return h


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """(next_h, next_c) of one LSTM step, gates in PyTorch's order i, f, g, o along the 4H axis."""
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H])
    g, o = np.tanh(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    return o * np.tanh(next_c), next_c


def global_norm(grads):
    """sqrt of the sum of squares of every entry of every array of the dict."""
    return float(np.sqrt(sum(np.sum(np.asarray(g, dtype=np.float64) ** 2) for g in grads.values())))


def clip_gradients(grads, max_norm):
    """A new dict: every array times min(1, max_norm / global_norm)."""
    scale = min(1.0, max_norm / max(global_norm(grads), 1e-300))
    return {name: np.asarray(g, dtype=np.float64) * scale for name, g in grads.items()}


def softmax_last(scores):
    """Softmax over the last axis; -inf entries get weight exactly 0."""
    shifted = scores - np.max(scores, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


def scaled_dot_product_attention(q, k, v, mask=None):
    """(out, weights): weights = softmax(q k^T / sqrt(d)) over the keys, masked where mask is False.

    q (..., Lq, d), k (..., Lk, d), v (..., Lk, dv), mask broadcastable to (..., Lq, Lk) with True
    (or 1) = may attend; every query must be allowed at least one key.
    """
    d = q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(d)
    if mask is not None:
        scores = np.where(np.asarray(mask).astype(bool), scores, -np.inf)
    weights = softmax_last(scores)
    return weights @ v, weights


def multi_head_attention(query, key, value, in_proj_weight, in_proj_bias, out_weight, out_bias, num_heads,
                         mask=None):
    """Batch-first multi-head attention with torch.nn.MultiheadAttention's parameters.

    query (N, Lq, E), key and value (N, Lk, E); in_proj_weight (3E, E) stacks the query, key and value
    projections (rows), in_proj_bias (3E,); out_weight (E, E), out_bias (E,) as nn.Linear. mask is
    broadcastable to (N, num_heads, Lq, Lk), True = may attend. Returns (out (N, Lq, E),
    weights (N, num_heads, Lq, Lk)), the weights of every head (not averaged).
    """
    N, Lq, E = query.shape
    Lk = key.shape[1]
    d = E // num_heads
    Wq, Wk, Wv = in_proj_weight[:E], in_proj_weight[E:2 * E], in_proj_weight[2 * E:]
    bq, bk, bv = in_proj_bias[:E], in_proj_bias[E:2 * E], in_proj_bias[2 * E:]

    def heads(x, W, bias, L):
        # (N, L, E) -> (N, num_heads, L, d): head h uses features h*d .. (h+1)*d of the projection.
        return (x @ W.T + bias).reshape(N, L, num_heads, d).transpose(0, 2, 1, 3)

    q, k, v = heads(query, Wq, bq, Lq), heads(key, Wk, bk, Lk), heads(value, Wv, bv, Lk)
    out, weights = scaled_dot_product_attention(q, k, v, mask)
    out = out.transpose(0, 2, 1, 3).reshape(N, Lq, E)
    return out @ out_weight.T + out_bias, weights
