"""Chapter 03 (initialization): the hidden tests, proven in-process against the solution notebook.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that names the
  function, gives a hint, and says what is wrong (e.g. that the rng argument was ignored);
- alternative correct implementations (other ways to draw a Gaussian, loops, plain NumPy) get full marks;
- the statistical tolerances of the initializer checks fail a correct answer with probability < 1e-9
  per grading run, computed from the exact distributions.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from grader.judge.cases import Streams
from grader.judge.items import chapter_items
from grader.judge.items import ch03_initialization as items_module

from chapter_proofs import chapter_proofs

pytestmark = pytest.mark.ch03

CHAPTER = "03_initialization"
ITEMS = chapter_items(CHAPTER)


def _sigmoid(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def _softmax_loss(scores, y):
    shifted = scores - scores.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    dscores = p.copy()
    dscores[np.arange(n), y] -= 1
    return float(-np.mean(np.log(p[np.arange(n), y]))), dscores / n


# --- wrong implementations, keyed by the item they must lose ---------------------------------
# Each comes with a fragment its message must contain: the grader says *what* is wrong.

def xavier_std_from_fan_out(fan_in, fan_out, rng):
    return rng.normal(0.0, 1 / np.sqrt(fan_out), size=(fan_in, fan_out))


def xavier_variance_as_std(fan_in, fan_out, rng):
    return rng.normal(0.0, 1 / fan_in, size=(fan_in, fan_out))


def xavier_ignores_rng(fan_in, fan_out, rng):
    return np.random.randn(fan_in, fan_out) / np.sqrt(fan_in)


def xavier_fixed_seed_inside(fan_in, fan_out, rng):
    return np.random.default_rng(0).normal(0.0, 1 / np.sqrt(fan_in), size=(fan_in, fan_out))


def xavier_swapped_shape(fan_in, fan_out, rng):
    return rng.normal(0.0, 1 / np.sqrt(fan_in), size=(fan_out, fan_in))


def xavier_uniform_same_std(fan_in, fan_out, rng):
    limit = np.sqrt(3.0 / fan_in)               # U(-a, a) has std a / sqrt(3): the right std, not Gaussian
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def xavier_glorot_average(fan_in, fan_out, rng):
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), size=(fan_in, fan_out))


def xavier_not_centred(fan_in, fan_out, rng):
    return np.abs(rng.normal(0.0, 1 / np.sqrt(fan_in), size=(fan_in, fan_out)))


def xavier_one_row_repeated(fan_in, fan_out, rng):
    # One row of draws tiled over the fan_in rows: mean, std and tails look right, the entries are not independent.
    return np.tile(rng.normal(0.0, 1 / np.sqrt(fan_in), size=(1, fan_out)), (fan_in, 1))


def xavier_laplace_same_std(fan_in, fan_out, rng):
    # Laplace with the right std: its share beyond 2 std (5.9%) is inside the tail band; only the CDF check sees it.
    return rng.laplace(0.0, 1 / np.sqrt(2 * fan_in), size=(fan_in, fan_out))


def he_one_value_per_row(fan_in, fan_out, rng):
    # One draw per input broadcast over the fan_out columns.
    return rng.normal(0.0, np.sqrt(2 / fan_in), size=(fan_in, 1)) * np.ones((1, fan_out))


def he_laplace_same_std(fan_in, fan_out, rng):
    return rng.laplace(0.0, np.sqrt(1 / fan_in), size=(fan_in, fan_out))


def he_squeezed(fan_in, fan_out, rng):
    # Only the single-row and single-column cases catch it.
    return np.squeeze(rng.normal(0.0, np.sqrt(2 / fan_in), size=(fan_in, fan_out)))


def he_xavier_std(fan_in, fan_out, rng):
    return rng.normal(0.0, 1 / np.sqrt(fan_in), size=(fan_in, fan_out))


def he_std_from_fan_out(fan_in, fan_out, rng):
    return rng.normal(0.0, np.sqrt(2 / fan_out), size=(fan_in, fan_out))


def he_variance_as_std(fan_in, fan_out, rng):
    return rng.normal(0.0, 2 / fan_in, size=(fan_in, fan_out))


def he_ignores_rng(fan_in, fan_out, rng):
    return np.random.normal(0.0, np.sqrt(2 / fan_in), size=(fan_in, fan_out))


def he_uniform_same_std(fan_in, fan_out, rng):
    limit = np.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=(fan_in, fan_out))


def he_swapped_shape(fan_in, fan_out, rng):
    return rng.standard_normal((fan_out, fan_in)) * np.sqrt(2 / fan_in)


def he_two_outside_sqrt(fan_in, fan_out, rng):
    return rng.normal(0.0, 2 / np.sqrt(fan_in), size=(fan_in, fan_out))


ACTS = {"sigmoid": _sigmoid, "tanh": np.tanh, "relu": lambda a: np.maximum(0, a)}


def acts_activation_only_at_the_end(x, weights, activation):
    h, out = x, []
    for w in weights:
        h = h @ w
        out.append(h)
    out[-1] = ACTS[activation](out[-1])
    return out


def acts_only_last_layer(x, weights, activation):
    h = x
    for w in weights:
        h = ACTS[activation](h @ w)
    return h


def acts_include_input(x, weights, activation):
    h, out = x, [x]
    for w in weights:
        h = ACTS[activation](h @ w)
        out.append(h)
    return out


def acts_sigmoid_as_tanh(x, weights, activation):
    act = np.tanh if activation in ("sigmoid", "tanh") else ACTS["relu"]
    h, out = x, []
    for w in weights:
        h = act(h @ w)
        out.append(h)
    return out


def acts_relu_as_abs(x, weights, activation):
    act = np.abs if activation == "relu" else ACTS[activation]
    h, out = x, []
    for w in weights:
        h = act(h @ w)
        out.append(h)
    return out


def acts_pre_activations(x, weights, activation):
    h, out = x, []
    for w in weights:
        a = h @ w
        out.append(a)
        h = ACTS[activation](a)
    return out


def acts_every_layer_from_x(x, weights, activation):
    out = []
    h = x
    for w in weights:
        out.append(ACTS[activation](h @ w))       # never feeds h forward: each layer sees the previous *input*
        h = h @ w
    return out


def acts_squeezed(x, weights, activation):
    # Squeezes every layer's output: a single example, or a layer of one unit, loses an axis. Only the
    # degenerate case (one example through layers of width 1) catches it.
    h, out = x, []
    for w in weights:
        h = ACTS[activation](h @ w)
        out.append(np.squeeze(h))
    return out


def tanh_net_no_tanh_derivative(X, y, W1, W2):
    h = np.tanh(X @ W1)
    loss, dscores = _softmax_loss(h @ W2, y)
    return loss, X.T @ (dscores @ W2.T), h.T @ dscores


def tanh_net_derivative_at_preactivation(X, y, W1, W2):
    a = X @ W1
    h = np.tanh(a)
    loss, dscores = _softmax_loss(h @ W2, y)
    return loss, X.T @ ((dscores @ W2.T) * (1 - a ** 2)), h.T @ dscores


def tanh_net_dw2_transposed(X, y, W1, W2):
    h = np.tanh(X @ W1)
    loss, dscores = _softmax_loss(h @ W2, y)
    return loss, X.T @ ((dscores @ W2.T) * (1 - h ** 2)), dscores.T @ h


def tanh_net_summed_loss(X, y, W1, W2):
    h = np.tanh(X @ W1)
    loss, dscores = _softmax_loss(h @ W2, y)
    dscores *= len(y)
    return loss * len(y), X.T @ ((dscores @ W2.T) * (1 - h ** 2)), h.T @ dscores


def tanh_net_no_one_hot(X, y, W1, W2):
    h = np.tanh(X @ W1)
    scores = h @ W2
    loss, _ = _softmax_loss(scores, y)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    dscores = p / p.sum(axis=1, keepdims=True) / len(y)
    return loss, X.T @ ((dscores @ W2.T) * (1 - h ** 2)), h.T @ dscores


def tanh_net_squeezed_gradients(X, y, W1, W2):
    # np.squeeze on the gradients: with one hidden unit dW1 becomes (D,) and dW2 (C,). Only the degenerate
    # case catches it.
    h = np.tanh(X @ W1)
    loss, dscores = _softmax_loss(h @ W2, y)
    return loss, np.squeeze(X.T @ ((dscores @ W2.T) * (1 - h ** 2))), np.squeeze(h.T @ dscores)


def tanh_net_breaks_symmetry(X, y, W1, W2):
    # A per-unit rescaling slipped in (e.g. a leftover debugging factor): clones no longer stay clones.
    h = np.tanh(X @ W1)
    loss, dscores = _softmax_loss(h @ W2, y)
    dW1 = X.T @ ((dscores @ W2.T) * (1 - h ** 2))
    return loss, dW1 * (1 + 1e-3 * np.arange(W1.shape[1])), h.T @ dscores


WRONG = {
    "xavier_init": [(xavier_std_from_fan_out, "uses fan_in"), (xavier_variance_as_std, "square root"),
                    (xavier_ignores_rng, "rng argument"), (xavier_fixed_seed_inside, "different seeds"),
                    (xavier_swapped_shape, "(fan_in, fan_out)"), (xavier_uniform_same_std, "Gaussian"),
                    (xavier_glorot_average, "1/sqrt(fan_in)"), (xavier_not_centred, "mean"),
                    (xavier_one_row_repeated, "not independent"), (xavier_laplace_same_std, "empirical CDF")],
    "he_init": [(he_xavier_std, "extra factor 2"), (he_std_from_fan_out, "uses fan_in"),
                (he_variance_as_std, "square root"), (he_ignores_rng, "rng argument"),
                (he_uniform_same_std, "Gaussian"), (he_swapped_shape, "(fan_in, fan_out)"),
                (he_two_outside_sqrt, "inside the square root"), (he_one_value_per_row, "not independent"),
                (he_laplace_same_std, "empirical CDF"), (he_squeezed, "shape")],
    "layer_activations": [(acts_activation_only_at_the_end, "relative error"), (acts_only_last_layer, "a list of"),
                          (acts_include_input, "not a layer"), (acts_sigmoid_as_tanh, "'sigmoid'"),
                          (acts_relu_as_abs, "'relu'"), (acts_pre_activations, "relative error"),
                          (acts_every_layer_from_x, "relative error"), (acts_squeezed, "shape")],
    "two_layer_tanh_loss": [(tanh_net_no_tanh_derivative, "dW1"), (tanh_net_derivative_at_preactivation, "dW1"),
                            (tanh_net_dw2_transposed, "dW2 has shape"), (tanh_net_summed_loss, "loss"),
                            (tanh_net_no_one_hot, "dW"), (tanh_net_breaks_symmetry, "identical gradients"),
                            (tanh_net_squeezed_gradients, "shape")],
}


# --- alternative correct implementations ---------------------------------------------------

def xavier_box_muller(fan_in, fan_out, rng):
    u1 = 1.0 - rng.random((fan_in, fan_out))         # in (0, 1]: log is finite
    u2 = rng.random((fan_in, fan_out))
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2) / np.sqrt(fan_in)


def xavier_transposed_float32(fan_in, fan_out, rng):
    return (rng.standard_normal((fan_out, fan_in)).T / np.sqrt(fan_in)).astype(np.float32)


def he_column_by_column(fan_in, fan_out, rng):
    w = np.empty((fan_in, fan_out))
    for j in range(fan_out):
        w[:, j] = rng.normal(loc=0.0, scale=math.sqrt(2 / fan_in), size=fan_in)
    return w


def he_from_variance(fan_in, fan_out, rng):
    variance = 2.0 / fan_in
    return np.sqrt(variance) * rng.normal(size=(fan_in, fan_out))


def acts_tuple_own_sigmoid(x, weights, activation):
    functions = {"sigmoid": lambda a: 0.5 * (1 + np.tanh(a / 2)),      # the same function, written another way
                 "tanh": np.tanh, "relu": lambda a: a * (a > 0)}
    out = []
    for w in weights:
        x = functions[activation](np.einsum("nd,dm->nm", x, w))
        out.append(x)
    return tuple(out)


def acts_recursive(x, weights, activation):
    if not weights:
        return []
    h = ACTS[activation](x @ weights[0])
    return [h] + acts_recursive(h, weights[1:], activation)


def tanh_net_plain_numpy(X, y, W1, W2):
    h = np.tanh(X @ W1)
    scores = h @ W2
    log_z = np.log(np.sum(np.exp(scores - scores.max(axis=1, keepdims=True)), axis=1)) + scores.max(axis=1)
    n = X.shape[0]
    loss = np.mean(log_z - scores[np.arange(n), y])                      # a NumPy float
    dscores = np.exp(scores - log_z[:, None])
    dscores[np.arange(n), y] -= 1
    dscores /= n
    dh = dscores @ W2.T
    return loss, X.T @ (dh - dh * h * h), h.T @ dscores


def tanh_net_loops(X, y, W1, W2):
    dW1, dW2, loss = np.zeros_like(W1), np.zeros_like(W2), 0.0
    n = X.shape[0]
    for i in range(n):
        h = np.tanh(X[i] @ W1)
        s = h @ W2
        p = np.exp(s - s.max())
        p /= p.sum()
        loss -= np.log(p[y[i]]) / n
        ds = p.copy()
        ds[y[i]] -= 1
        ds /= n
        dW2 += np.outer(h, ds)
        dW1 += np.outer(X[i], (W2 @ ds) * (1 - h ** 2))
    return loss, dW1, dW2


ALTERNATIVES = {
    "Box-Muller from rng.random": {"xavier_init": xavier_box_muller},
    "transposed draw, float32": {"xavier_init": xavier_transposed_float32},
    "column by column": {"he_init": he_column_by_column},
    "sqrt of the variance times N(0, 1)": {"he_init": he_from_variance},
    "tuple, einsum, sigmoid via tanh": {"layer_activations": acts_tuple_own_sigmoid},
    "recursive": {"layer_activations": acts_recursive},
    "plain NumPy, numpy float loss": {"two_layer_tanh_loss": tanh_net_plain_numpy},
    "one example at a time": {"two_layer_tanh_loss": tanh_net_loops},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))   # the standard proofs: tests/chapter_proofs.py


# --- tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["xavier_init", "he_init"])
def test_initializer_cases_have_enough_draws_and_far_apart_fans(name):
    item = ITEMS[name]
    for seed in range(20):
        cases = item.cases(Streams.from_seed(seed))
        fans = [(c.context["fan_in"], c.context["fan_out"]) for c in cases]
        assert all(fi * fo >= items_module.MIN_DRAWS for fi, fo in fans), fans
        assert fans[0][0] >= 7 * fans[0][1] and fans[1][1] >= 7 * fans[1][0], fans


def test_initializer_tolerances_fail_a_correct_answer_with_probability_below_1e_9():
    # Exact distributions (scipy), not the bounds the grader derives its tolerances from.
    stats = pytest.importorskip("scipy.stats")
    n = items_module.MIN_DRAWS                      # the smallest sample: the loosest bounds are checked
    low, high = items_module.std_band(n)
    chi2 = stats.chi2(n)
    p_std = chi2.cdf(n * low ** 2) + chi2.sf(n * high ** 2)
    p_mean = 2 * stats.norm.sf(items_module.MEAN_Z)
    tail = stats.binom(n, items_module.TAIL_P)
    mu = n * items_module.TAIL_P
    p_tail = tail.cdf(items_module.TAIL_BAND[0] * mu) + tail.sf(items_module.TAIL_BAND[1] * mu - 1)
    per_case = p_std + p_mean + p_tail
    assert per_case <= items_module.FALSE_ALARM_PER_CASE, (per_case, items_module.FALSE_ALARM_PER_CASE)
    cases_per_run = sum(len(ITEMS[name].cases(Streams.from_seed(0))) for name in ("xavier_init", "he_init"))
    assert cases_per_run * items_module.FALSE_ALARM_PER_CASE < 1e-9


def test_a_uniform_initializer_with_the_right_std_passes_every_check_but_the_tails():
    # The tail check is what catches it: mean and standard deviation alone cannot tell.
    namespace = {"xavier_init": xavier_uniform_same_std}
    from grader.judge.items import grade_in_process

    verdict = grade_in_process("xavier_init", namespace, CHAPTER, seed=0)
    assert not verdict.passed and "beyond 2 standard deviations" in verdict.message, verdict.message


def test_independence_bounds_fail_independent_draws_with_the_stated_probability():
    # The two Laurent-Massart events behind independence_bound, computed exactly (scipy) at the case sizes.
    stats = pytest.importorskip("scipy.stats")
    x = items_module.INDEPENDENCE_X
    for k in (1, 19, 59, 299, 499, 7999):
        assert stats.chi2(k).sf(k + 2 * math.sqrt(k * x) + 2 * x) <= math.exp(-x), k
    for n in (items_module.MIN_DRAWS, 20000):
        assert stats.chi2(n - 1).cdf(n - 1 - 2 * math.sqrt((n - 1) * x)) <= math.exp(-x), n
    assert 4 * math.exp(-x) + items_module.DKW_FALSE_ALARM < items_module.FALSE_ALARM_PER_CASE


def test_a_laplace_initializer_with_the_right_std_passes_every_check_but_the_cdf():
    from grader.judge.items import grade_in_process

    verdict = grade_in_process("he_init", {"he_init": he_laplace_same_std}, CHAPTER, seed=0)
    assert not verdict.passed and "empirical CDF" in verdict.message and "false-alarm probability" in verdict.message, \
        verdict.message


@pytest.mark.parametrize("name", ["xavier_init", "he_init"])
def test_initializer_cases_hold_a_single_row_and_a_single_column_on_every_seed(name):
    for seed in range(20):
        fans = [(c.context["fan_in"], c.context["fan_out"]) for c in ITEMS[name].cases(Streams.from_seed(seed))]
        assert any(fo == 1 for fi, fo in fans) and any(fi == 1 for fi, fo in fans), fans
