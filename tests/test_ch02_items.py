"""Chapter 02 (backprop): the hidden tests, proven in-process against the solution notebook.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that
  names the function and gives a hint;
- alternative correct implementations (loops, other cache layouts, other return types) get full marks.
"""
from __future__ import annotations


import numpy as np
import pytest

from grader.judge.items import grade_in_process

from chapter_proofs import SEEDS, chapter_proofs, fault_proofs, grade_items

pytestmark = pytest.mark.ch02

CHAPTER = "02_backprop"


def _sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


# --- wrong implementations, keyed by the item they must lose --------------------------------
# Wrong forwards keep a correct cache (the backward item pairs its function with *this*
# forward), so that only the forward item is lost.

def ng_forward_difference(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    f0 = f(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        grad[i] = (f(x) - f0) / h
        x[i] = old
    return grad


def ng_forgets_to_restore_x(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        grad[i] = (plus - f(x)) / (2 * h)
    return grad


def ng_forgets_to_restore_a_copy(f, x, h=1e-5):
    x = x.copy()
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        grad[i] = (plus - f(x)) / (2 * h)
    return grad


def ng_only_first_axis(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    for i in range(x.shape[0]):           # x[i] is a whole row when x is not 1-D
        old = x[i].copy()
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def ng_divides_by_h(f, x, h=1e-5):
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f(x)
        x[i] = old - h
        minus = f(x)
        x[i] = old
        grad[i] = (plus - minus) / h
    return grad


def nga_ignores_df(f, x, df, h=1e-5):
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = np.array(f(x))
        x[i] = old - h
        minus = np.array(f(x))
        x[i] = old
        grad[i] = np.sum(plus - minus) / (2 * h)
    return grad


def nga_forward_difference(f, x, df, h=1e-5):
    grad = np.zeros(x.shape)
    f0 = np.array(f(x))
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        grad[i] = np.sum((np.array(f(x)) - f0) * df) / h
        x[i] = old
    return grad


def nga_forgets_to_restore_a_copy(f, x, df, h=1e-5):
    x = x.copy()
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = np.array(f(x))
        x[i] = old - h
        grad[i] = np.sum((plus - np.array(f(x))) * df) / (2 * h)
    return grad


def nga_divides_by_h(f, x, df, h=1e-5):
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = np.array(f(x))
        x[i] = old - h
        minus = np.array(f(x))
        x[i] = old
        grad[i] = np.sum((plus - minus) * df) / h
    return grad


def graph_sign_error(x):
    a = np.exp(-x)
    b = np.sin(a)
    return 2 / b, (-2 / b ** 2) * np.cos(a) * a           # lost the -1 of the negate node


def graph_missing_cos(x):
    a = np.exp(-x)
    b = np.sin(a)
    return 2 / b, (-2 / b ** 2) * (-a)


def graph_wrong_f(x):
    a = np.exp(-x)
    b = np.sin(a)
    return 2 * b, (-2 / b ** 2) * np.cos(a) * (-a)


def graph_swapped_outputs(x):
    a = np.exp(-x)
    b = np.sin(a)
    return (-2 / b ** 2) * np.cos(a) * (-a), 2 / b


def affine_forward_no_bias(x, w, b):
    return x.reshape(x.shape[0], -1) @ w, (x, w, b)


def affine_forward_scrambled_reshape(x, w, b):
    n = x.shape[0]
    return x.reshape(-1, n).T @ w + b, (x, w, b)


def affine_forward_bias_subtracted(x, w, b):
    return x.reshape(x.shape[0], -1) @ w - b, (x, w, b)


def affine_backward_db_wrong_axis(dout, cache):
    x, w, b = cache
    xf = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), xf.T @ dout, dout.sum(axis=1)


def affine_backward_dw_not_transposed(dout, cache):
    x, w, b = cache
    xf = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), dout.T @ xf, dout.sum(axis=0)


def affine_backward_dx_not_reshaped(dout, cache):
    x, w, b = cache
    xf = x.reshape(x.shape[0], -1)
    return dout @ w.T, xf.T @ dout, dout.sum(axis=0)


def affine_backward_db_keepdims(dout, cache):
    x, w, b = cache
    xf = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), xf.T @ dout, dout.sum(axis=0, keepdims=True)


def affine_backward_db_mean(dout, cache):
    x, w, b = cache
    xf = x.reshape(x.shape[0], -1)
    return (dout @ w.T).reshape(x.shape), xf.T @ dout, dout.mean(axis=0)


def affine_forward_squeezed(x, w, b):
    # Only the degenerate cases catch it: np.squeeze drops the batch axis when N = 1 and the output axis
    # when M = 1 (the random cases have N, M >= 2).
    return np.squeeze(x.reshape(x.shape[0], -1) @ w + b), (x, w, b)


def affine_backward_db_only_summed_for_several_rows(dout, cache):
    # "dout.sum(axis=0)" written as a flattening that is only right for N > 1: for N = 1 it keeps dout's
    # leading axis (shape (1, M)). Only the N = 1 case catches it.
    x, w, b = cache
    xf = x.reshape(x.shape[0], -1)
    db = dout.sum(axis=0) if dout.shape[0] > 1 else dout
    return (dout @ w.T).reshape(x.shape), xf.T @ dout, db


def relu_forward_abs(x):
    return np.abs(x), x


def relu_forward_min(x):
    return np.minimum(0, x), x


def relu_forward_leaky(x):
    return np.maximum(0.01 * x, x), x


def relu_backward_masks_with_dout(dout, cache):
    return dout * (dout > 0)


def relu_backward_mutates_dout(dout, cache):
    x = cache
    dout[x <= 0] = 0
    return dout


def relu_backward_ignores_dout(dout, cache):
    return (cache > 0).astype(float)


def relu_backward_flipped_mask(dout, cache):
    return dout * (cache < 0)


def relu_backward_mask_includes_zero(dout, cache):
    # Right everywhere but at x = 0 exactly, where the contract's gradient is 0: only the kink case catches it.
    return dout * (cache >= 0)


def leaky_forward_slope_ignored(x, slope=0.01):
    return np.where(x > 0, x, 0.01 * x), (x, slope)


def leaky_forward_plain_relu(x, slope=0.01):
    return np.maximum(0, x), (x, slope)


def leaky_forward_slope_on_positive_side(x, slope=0.01):
    return np.where(x > 0, slope * x, x), (x, slope)


def leaky_backward_slope_ignored(dout, cache):
    x, slope = cache
    return np.where(x > 0, dout, 0.01 * dout)


def leaky_backward_like_relu(dout, cache):
    x, slope = cache
    return np.where(x > 0, dout, 0.0)


def leaky_backward_forgets_dout_on_negative_side(dout, cache):
    x, slope = cache
    return np.where(x > 0, dout, slope)


def leaky_backward_mask_includes_zero(dout, cache):
    # dout instead of slope * dout at x = 0 exactly: only the kink case catches it.
    x, slope = cache
    return np.where(x >= 0, dout, slope * dout)


def sigmoid_forward_overflows(x):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(x) / (1 + np.exp(x)), (x, _sigmoid(x))


def sigmoid_forward_sign_error(x):
    return _sigmoid(-x), (x, _sigmoid(x))


def sigmoid_forward_tanh_confusion(x):
    return 0.5 * (1 + np.tanh(x)), (x, _sigmoid(x))


def sigmoid_backward_uses_x(dout, cache):
    x, s = cache
    return dout * x * (1 - x)


def sigmoid_backward_missing_one_minus_s(dout, cache):
    x, s = cache
    return dout * s


def sigmoid_backward_tanh_formula(dout, cache):
    x, s = cache
    return dout * (1 - s ** 2)


def sigmoid_backward_ignores_dout(dout, cache):
    x, s = cache
    return s * (1 - s)


def tanh_forward_half_angle(x):
    return 2 * _sigmoid(x) - 1, (x, np.tanh(x))


def tanh_forward_sigmoid(x):
    return _sigmoid(x), (x, np.tanh(x))


def tanh_forward_arctan(x):
    return np.arctan(x), (x, np.tanh(x))


def tanh_backward_uses_x(dout, cache):
    x, t = cache
    return dout * (1 - x ** 2)


def tanh_backward_not_squared(dout, cache):
    x, t = cache
    return dout * (1 - t)


def tanh_backward_sigmoid_formula(dout, cache):
    x, t = cache
    return dout * t * (1 - t)


def _softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_loss_not_divided_by_n(x, y):
    p = _softmax(x)
    n = x.shape[0]
    dx = p.copy()
    dx[np.arange(n), y] -= 1
    return float(-np.sum(np.log(p[np.arange(n), y]))), dx


def softmax_loss_no_max_subtraction(x, y):
    n = x.shape[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(x)
        p = e / e.sum(axis=1, keepdims=True)
        dx = p.copy()
        dx[np.arange(n), y] -= 1
        return float(-np.mean(np.log(p[np.arange(n), y]))), dx / n


def softmax_loss_no_one_hot(x, y):
    p = _softmax(x)
    n = x.shape[0]
    return float(-np.mean(np.log(p[np.arange(n), y]))), p / n


def softmax_loss_squeezed(x, y):
    # np.squeeze "to tidy up" the gradient: for a batch of one, dx loses its batch axis. Only the N = 1 case
    # catches it (the random cases have N >= 2).
    p = _softmax(x)
    n = x.shape[0]
    dx = p.copy()
    dx[np.arange(n), y] -= 1
    return float(-np.mean(np.log(p[np.arange(n), y]))), np.squeeze(dx / n)


def softmax_loss_dx_not_divided(x, y):
    p = _softmax(x)
    n = x.shape[0]
    dx = p.copy()
    dx[np.arange(n), y] -= 1
    return float(-np.mean(np.log(p[np.arange(n), y]))), dx


def bce_sum_instead_of_mean(p, y):
    return float(-np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))), (p - y) / (p * (1 - p))


def bce_gradient_without_size(p, y):
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), (p - y) / (p * (1 - p))


def bce_gradient_over_rows(p, y):
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), (p - y) / (p * (1 - p)) / p.shape[0]


def bce_gradient_sign_error(p, y):
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), (y - p) / (p * (1 - p)) / p.size


def mse_gradient_missing_two(pred, y):
    d = pred - y
    return float(np.mean(d ** 2)), d / d.size


def mse_sum_instead_of_mean(pred, y):
    d = pred - y
    return float(np.sum(d ** 2)), 2 * d


def mse_gradient_over_rows(pred, y):
    d = pred - y
    return float(np.mean(d ** 2)), 2 * d / d.shape[0]


def mse_gradient_sign_error(pred, y):
    d = pred - y
    return float(np.mean(d ** 2)), -2 * d / d.size


def l1_gradient_without_size(pred, y):
    d = pred - y
    return float(np.mean(np.abs(d))), np.sign(d)


def l1_gradient_sign_error(pred, y):
    d = pred - y
    return float(np.mean(np.abs(d))), np.sign(-d) / d.size


def l1_squared_loss(pred, y):
    d = pred - y
    return float(np.mean(d ** 2)), np.sign(d) / d.size


def l1_gradient_not_sign(pred, y):
    d = pred - y
    return float(np.mean(np.abs(d))), d / d.size


def l1_gradient_plus_one_at_equality(pred, y):
    # +1 instead of sign(0) = 0 where pred == y exactly: only the kink case catches it.
    d = pred - y
    return float(np.mean(np.abs(d))), np.where(d >= 0, 1.0, -1.0) / d.size


WRONG = {
    "numerical_gradient": [ng_forward_difference, ng_forgets_to_restore_x, ng_forgets_to_restore_a_copy,
                           ng_only_first_axis, ng_divides_by_h],
    "numerical_gradient_array": [nga_ignores_df, nga_forward_difference, nga_forgets_to_restore_a_copy,
                                 nga_divides_by_h],
    "graph_example": [graph_sign_error, graph_missing_cos, graph_wrong_f, graph_swapped_outputs],
    "affine_forward": [affine_forward_no_bias, affine_forward_scrambled_reshape, affine_forward_bias_subtracted,
                       (affine_forward_squeezed, "shape")],
    "affine_backward": [affine_backward_db_wrong_axis, affine_backward_dw_not_transposed,
                        affine_backward_dx_not_reshaped, affine_backward_db_keepdims, affine_backward_db_mean,
                        (affine_backward_db_only_summed_for_several_rows, "x of shape (1,")],
    "relu_forward": [relu_forward_abs, relu_forward_min, relu_forward_leaky],
    "relu_backward": [relu_backward_masks_with_dout, relu_backward_mutates_dout, relu_backward_ignores_dout,
                      relu_backward_flipped_mask, (relu_backward_mask_includes_zero, "where x is exactly 0,")],
    "leaky_relu_forward": [leaky_forward_slope_ignored, leaky_forward_plain_relu,
                           leaky_forward_slope_on_positive_side],
    "leaky_relu_backward": [leaky_backward_slope_ignored, leaky_backward_like_relu,
                            leaky_backward_forgets_dout_on_negative_side,
                            (leaky_backward_mask_includes_zero, "where x is exactly 0,")],
    "sigmoid_forward": [sigmoid_forward_overflows, sigmoid_forward_sign_error, sigmoid_forward_tanh_confusion],
    "sigmoid_backward": [sigmoid_backward_uses_x, sigmoid_backward_missing_one_minus_s, sigmoid_backward_tanh_formula,
                         sigmoid_backward_ignores_dout],
    "tanh_forward": [tanh_forward_half_angle, tanh_forward_sigmoid, tanh_forward_arctan],
    "tanh_backward": [tanh_backward_uses_x, tanh_backward_not_squared, tanh_backward_sigmoid_formula],
    "softmax_loss": [softmax_loss_not_divided_by_n, softmax_loss_no_max_subtraction, softmax_loss_no_one_hot,
                     softmax_loss_dx_not_divided, (softmax_loss_squeezed, "x of shape (1,")],
    "bce_loss": [bce_sum_instead_of_mean, bce_gradient_without_size, bce_gradient_over_rows, bce_gradient_sign_error],
    "mse_loss": [mse_gradient_missing_two, mse_sum_instead_of_mean, mse_gradient_over_rows, mse_gradient_sign_error],
    "l1_loss": [l1_gradient_without_size, l1_gradient_sign_error, l1_squared_loss, l1_gradient_not_sign,
                (l1_gradient_plus_one_at_equality, "equals y exactly,")],
}


# --- alternative correct implementations -------------------------------------------------

def ng_flat_view_loop(f, x, h=1e-5):
    flat = x.reshape(-1)                  # a view: changing it changes x
    grad = np.empty(flat.shape)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + h
        up = float(f(x))
        flat[k] = keep - h
        down = float(f(x))
        flat[k] = keep
        grad[k] = (up - down) / (2 * h)
    return grad.reshape(x.shape)


def nga_on_a_copy(f, x, df, h=1e-5):
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = np.sum((f(xp) - f(xm)) * df) / (2 * h)
    return grad


def graph_one_expression(x):
    e = np.exp(-x)
    return 2 / np.sin(e), 2 * e * np.cos(e) / np.sin(e) ** 2


def affine_forward_loops(x, w, b):
    n = x.shape[0]
    xf = x.reshape(n, -1)
    out = np.zeros((n, w.shape[1]))
    for i in range(n):
        for j in range(w.shape[1]):
            out[i, j] = sum(xf[i, k] * w[k, j] for k in range(w.shape[0])) + b[j]
    return out, {"x": x, "w": w}


def affine_backward_loops(dout, cache):
    x, w = cache["x"], cache["w"]
    n, d = x.shape[0], w.shape[0]
    xf = x.reshape(n, d)
    dx = np.zeros((n, d))
    dw = np.zeros_like(w)
    db = np.zeros(w.shape[1])
    for i in range(n):
        dx[i] = w @ dout[i]
        dw += np.outer(xf[i], dout[i])
        db += dout[i]
    return dx.reshape(x.shape), dw, db


def relu_forward_list_cache(x):
    mask = x > 0
    return x * mask, [mask]


def relu_backward_list_cache(dout, cache):
    dx = dout.copy()
    dx[~cache[0]] = 0.0
    return dx


def leaky_forward_dict_cache(x, slope=0.01):
    return np.maximum(x, 0) + slope * np.minimum(x, 0), {"negative": x <= 0, "slope": slope}


def leaky_backward_dict_cache(dout, cache):
    return np.where(cache["negative"], cache["slope"] * dout, dout)


def sigmoid_forward_where_branches(x):
    with np.errstate(over="ignore"):
        pos = 1.0 / (1.0 + np.exp(-np.where(x >= 0, x, 0)))
        neg = np.exp(np.where(x < 0, x, 0)) / (1.0 + np.exp(np.where(x < 0, x, 0)))
    out = np.where(x >= 0, pos, neg)
    return out, out


def sigmoid_backward_output_cache(dout, cache):
    return dout * cache * (1 - cache)


def tanh_forward_exp_formula(x):
    e2 = np.exp(2 * x)
    out = (e2 - 1) / (e2 + 1)
    return out, {"t": out}


def tanh_backward_dict_cache(dout, cache):
    return dout - dout * cache["t"] ** 2


def softmax_loss_loops_numpy_float(x, y):
    n, c = x.shape
    loss = np.float64(0.0)
    dx = np.zeros_like(x)
    for i in range(n):
        row = x[i] - np.max(x[i])
        log_z = np.log(np.sum(np.exp(row)))
        loss += (log_z - row[y[i]]) / n
        dx[i] = np.exp(row - log_z) / n
        dx[i, y[i]] -= 1.0 / n
    return loss, dx


def bce_numpy_float(p, y):
    loss = -np.mean(np.where(y == 1, np.log(p), np.log(1 - p)))
    return loss, (-(y / p) + (1 - y) / (1 - p)) / p.size


def mse_numpy_float(pred, y):
    d = pred - y
    return np.sum(d * d) / d.size, d * (2.0 / d.size)


def l1_zero_d_array(pred, y):
    # Its dpred used to be np.where(d > 0, 1.0, -1.0) / d.size, which gives -1 / size instead of the contract's
    # sign(0) = 0 where pred == y exactly; the kink case now catches that, so the alternative uses np.sign.
    d = pred - y
    return np.asarray(np.abs(d).mean()), np.sign(d) / d.size


ALTERNATIVES = {
    "flat view loop": {"numerical_gradient": ng_flat_view_loop},
    "copies instead of restoring": {"numerical_gradient_array": nga_on_a_copy},
    "closed form": {"graph_example": graph_one_expression},
    "explicit loops, dict cache": {"affine_forward": affine_forward_loops, "affine_backward": affine_backward_loops},
    "list cache holding a mask": {"relu_forward": relu_forward_list_cache, "relu_backward": relu_backward_list_cache},
    "dict cache": {"leaky_relu_forward": leaky_forward_dict_cache, "leaky_relu_backward": leaky_backward_dict_cache},
    "np.where branches, output cache": {"sigmoid_forward": sigmoid_forward_where_branches,
                                        "sigmoid_backward": sigmoid_backward_output_cache},
    "exp formula, dict cache": {"tanh_forward": tanh_forward_exp_formula, "tanh_backward": tanh_backward_dict_cache},
    "loops, numpy float loss": {"softmax_loss": softmax_loss_loops_numpy_float},
    "numpy float losses": {"bce_loss": bce_numpy_float, "mse_loss": mse_numpy_float},
    "0-d array loss": {"l1_loss": l1_zero_d_array},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))   # the standard proofs: tests/chapter_proofs.py


# --- tests -----------------------------------------------------------------------------------


def test_returning_a_single_value_names_the_function():
    def mse_returns_loss_only(pred, y):
        return float(np.mean((pred - y) ** 2))

    verdict = grade_in_process("mse_loss", {"mse_loss": mse_returns_loss_only}, CHAPTER, seed=0)
    assert not verdict.passed and "mse_loss should return 2 values" in verdict.message, verdict.message


# --- faults charged where they are --------------------------------------------------------------

def _identity_forward(x, *args, **kwargs):
    return x.copy(), None


def _pass_through_backward(dout, cache):
    return dout.copy()


FORWARDS = {"affine_backward": "affine_forward", "relu_backward": "relu_forward",
            "leaky_relu_backward": "leaky_relu_forward", "sigmoid_backward": "sigmoid_forward",
            "tanh_backward": "tanh_forward"}
GAMES = {f"identity {fwd} with a pass-through backward": (bwd, {fwd: _identity_forward, bwd: _pass_through_backward})
         for bwd, fwd in FORWARDS.items() if bwd != "affine_backward"}

globals().update(fault_proofs(CHAPTER, FORWARDS, GAMES))


def relu_forward_in_place(x):
    """The external solution set's relu_forward: right out and cache, but x itself is overwritten."""
    x[x < 0] = 0
    return x, x


def test_correct_relu_backward_keeps_its_points_beside_an_in_place_relu_forward(solution):
    namespace = dict(solution, relu_forward=relu_forward_in_place)
    for seed in range(10):
        verdicts = grade_items(CHAPTER, namespace, seed, ["relu_forward", "relu_backward"])
        assert verdicts["relu_backward"].passed, verdicts["relu_backward"].message
        assert not verdicts["relu_forward"].passed
        assert "relu_forward: relu_forward changed its input `x` in place" in verdicts["relu_forward"].message


def test_wrong_forward_with_a_wrong_cache_is_named_in_the_backward_message(solution):
    def relu_forward_shifted(x):          # wrong out, and a cache that misleads a correct backward
        return np.maximum(0, x - 1.0), x - 1.0

    namespace = dict(solution, relu_forward=relu_forward_shifted)
    for seed in SEEDS:
        verdicts = grade_items(CHAPTER, namespace, seed, ["relu_forward", "relu_backward"])
        assert not verdicts["relu_forward"].passed
        message = verdicts["relu_backward"].message
        assert not verdicts["relu_backward"].passed
        assert "relu_forward returned a wrong out" in message and "Fix relu_forward first" in message, message


def test_a_gradient_near_0_is_measured_on_the_scale_of_its_pass():
    """The seed sweep's false failures (batch norm's dgamma of one feature, vae_loss's x_recon close to x): a
    centered difference carries the round-off of the pass's largest quantities, so a gradient that happens to
    be near 0 is measured on the pass's scale; a gradient of the pass's own size that is wrong still fails."""
    from grader.judge.numerics import pass_scale, rel_error

    dx = np.array([[1.7, -0.4], [0.9, 2.3]])
    dgamma_exact = np.array([2e-9])
    dgamma_numerical = dgamma_exact + 3e-11            # a centered difference's round-off at h = 1e-5
    assert not rel_error(dgamma_numerical, dgamma_exact) < 1e-7           # alone: a correct answer would fail
    scale = pass_scale([dx, dgamma_numerical])
    assert scale == 2.3
    assert rel_error(dgamma_numerical, dgamma_exact, scale) < 1e-7
    assert not rel_error(dx * 1.01, dx, scale) < 1e-7                     # 1 % off: still wrong
    assert not rel_error(np.array([0.5]), np.array([0.25]), scale) < 1e-7  # a gradient of the pass's size, off
    assert pass_scale([np.zeros((0, 3))]) == 1e-8                         # nothing to measure by: the floor
