"""Chapter 04 (batch normalization): the hidden tests, proven in-process against the solution notebook.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that
  names the function and gives a hint;
- alternative correct implementations (loops, dict caches, in-place running averages,
  layer norm through a transpose) get full marks.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.judge.items import grade_in_process

from chapter_proofs import SEEDS, chapter_proofs, fault_proofs, grade_items

pytestmark = pytest.mark.ch04

CHAPTER = "04_batchnorm"


# --- wrong implementations, keyed by the item they must lose --------------------------------
# Wrong forwards return the cache of a correct forward in the solution's layout
# (x_centered, std, x_hat, gamma), because the backward items pair the learner's backward with
# the learner's forward: only the forward item may be lost.

def _cache(x, gamma, eps, axis=0):
    mean = x.mean(axis=axis, keepdims=True)
    std = np.sqrt(x.var(axis=axis, keepdims=True) + eps)
    x_centered = x - mean
    if axis == 0:
        x_centered, std = x_centered, std[0]
    return x_centered, std, x_centered / std, gamma


def _bn(x, gamma, beta, bn_param, *, ddof=0, eps_mode="inside", test_uses_batch=False, swap_momentum=False,
        write_back=True, fixed_eps=None, fixed_momentum=None, running_ddof=0):
    """A batch norm forward with one configurable mistake; correct with the default arguments."""
    eps = bn_param.get("eps", 1e-5) if fixed_eps is None else fixed_eps
    momentum = bn_param.get("momentum", 0.9) if fixed_momentum is None else fixed_momentum
    D = x.shape[1]
    running_mean = bn_param.get("running_mean", np.zeros(D))
    running_var = bn_param.get("running_var", np.zeros(D))
    cache = _cache(x, gamma, bn_param.get("eps", 1e-5))
    if bn_param["mode"] == "train" or test_uses_batch:
        mean, var = x.mean(axis=0), x.var(axis=0, ddof=ddof)
    else:
        mean, var = running_mean, running_var
    if eps_mode == "inside":
        x_hat = (x - mean) / np.sqrt(var + eps)
    elif eps_mode == "outside":
        x_hat = (x - mean) / (np.sqrt(var) + eps)
    else:
        x_hat = (x - mean) / np.sqrt(var)
    if bn_param["mode"] == "train":
        old, new = (1 - momentum, momentum) if swap_momentum else (momentum, 1 - momentum)
        new_mean = old * running_mean + new * mean
        new_var = old * running_var + new * x.var(axis=0, ddof=running_ddof)
        if write_back:
            bn_param["running_mean"], bn_param["running_var"] = new_mean, new_var
    return gamma * x_hat + beta, cache


def bn_unbiased_variance(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, ddof=1, running_ddof=1)


def bn_eps_outside_sqrt(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, eps_mode="outside")


def bn_no_eps(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, eps_mode="missing")


def bn_momentum_on_wrong_term(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, swap_momentum=True)


def bn_test_mode_uses_batch_statistics(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, test_uses_batch=True)


def bn_running_stats_not_written_back(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, write_back=False)


def bn_running_var_unbiased_like_pytorch(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, running_ddof=1)


def bn_ignores_eps_and_momentum_in_bn_param(x, gamma, beta, bn_param):
    return _bn(x, gamma, beta, bn_param, fixed_eps=1e-5, fixed_momentum=0.9)


def bn_running_stats_updated_in_test_mode(x, gamma, beta, bn_param):
    out, cache = _bn(x, gamma, beta, bn_param)
    if bn_param["mode"] == "test":
        bn_param["running_mean"] = 0.9 * bn_param["running_mean"] + 0.1 * x.mean(axis=0)
        bn_param["running_var"] = 0.9 * bn_param["running_var"] + 0.1 * x.var(axis=0)
    return out, cache


def bn_running_stats_squeezed(x, gamma, beta, bn_param):
    """Batch statistics taken with keepdims=True and squeezed back to (D,), absent running averages started as
    zeros like them: for one feature (D = 1) they are 0-d arrays. Only the single-feature case catches it."""
    out, cache = _bn(x, gamma, beta, bn_param, write_back=False)
    if bn_param["mode"] == "train":
        momentum = bn_param.get("momentum", 0.9)
        mean = x.mean(axis=0, keepdims=True).squeeze()
        var = x.var(axis=0, keepdims=True).squeeze()
        bn_param["running_mean"] = momentum * bn_param.get("running_mean", np.zeros_like(mean)) + (1 - momentum) * mean
        bn_param["running_var"] = momentum * bn_param.get("running_var", np.zeros_like(var)) + (1 - momentum) * var
    return out, cache


def bn_backward_without_mean_terms(dout, cache):
    x_centered, std, x_hat, gamma = cache
    return dout * gamma / std, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def bn_backward_dgamma_not_summed(dout, cache):
    dx, _, dbeta = _bn_backward(dout, cache)
    return dx, dout * cache[2], dbeta


def bn_backward_dgamma_without_x_hat(dout, cache):
    dx, _, dbeta = _bn_backward(dout, cache)
    return dx, dout.sum(axis=0), dbeta


def bn_backward_dbeta_wrong_axis(dout, cache):
    dx, dgamma, _ = _bn_backward(dout, cache)
    return dx, dgamma, dout.sum(axis=1)


def bn_backward_forgets_variance_path(dout, cache):
    x_centered, std, x_hat, gamma = cache
    N = dout.shape[0]
    dx_centered = dout * gamma / std
    dx = dx_centered - dx_centered.sum(axis=0) / N          # only the path through the mean
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def _bn_backward(dout, cache):
    x_centered, std, x_hat, gamma = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = gamma / (N * std) * (N * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def alt_without_x_hat_term(dout, cache):
    x_centered, std, x_hat, gamma = cache
    N = dout.shape[0]
    dbeta, dgamma = dout.sum(axis=0), (dout * x_hat).sum(axis=0)
    return gamma / (N * std) * (N * dout - dbeta), dgamma, dbeta


def alt_not_divided_by_n(dout, cache):
    x_centered, std, x_hat, gamma = cache
    N = dout.shape[0]
    dbeta, dgamma = dout.sum(axis=0), (dout * x_hat).sum(axis=0)
    return gamma / std * (N * dout - dbeta - x_hat * dgamma), dgamma, dbeta


def alt_sums_over_features(dout, cache):
    x_centered, std, x_hat, gamma = cache
    N = dout.shape[0]
    dbeta, dgamma = dout.sum(axis=0), (dout * x_hat).sum(axis=0)
    dx = gamma / (N * std) * (N * dout - dout.sum(axis=1, keepdims=True)
                              - x_hat * (dout * x_hat).sum(axis=1, keepdims=True))
    return dx, dgamma, dbeta


def bn_backward_squeezed_parameter_gradients(dout, cache):
    # keepdims sums squeezed back: for one feature (D = 1) dgamma and dbeta become 0-d. Only the D = 1 case
    # catches it.
    dx, _, _ = _bn_backward(dout, cache)
    x_hat = cache[2]
    return dx, (dout * x_hat).sum(axis=0, keepdims=True).squeeze(), dout.sum(axis=0, keepdims=True).squeeze()


def alt_dbeta_keepdims(dout, cache):
    dx, dgamma, dbeta = _bn_backward(dout, cache)
    return dx, dgamma, dout.sum(axis=0, keepdims=True)


def _ln(x, gamma, beta, ln_param, *, axis=1, ddof=0, eps_mode="inside", fixed_eps=None):
    eps = ln_param.get("eps", 1e-5) if fixed_eps is None else fixed_eps
    cache = _cache(x, gamma, ln_param.get("eps", 1e-5), axis=1)
    mean, var = x.mean(axis=axis, keepdims=True), x.var(axis=axis, ddof=ddof, keepdims=True)
    denominator = np.sqrt(var + eps) if eps_mode == "inside" else np.sqrt(var) + eps
    return gamma * (x - mean) / denominator + beta, cache


def ln_normalizes_over_the_batch_axis(x, gamma, beta, ln_param):
    return _ln(x, gamma, beta, ln_param, axis=0)


def ln_unbiased_variance(x, gamma, beta, ln_param):
    return _ln(x, gamma, beta, ln_param, ddof=1)


def ln_eps_outside_sqrt(x, gamma, beta, ln_param):
    return _ln(x, gamma, beta, ln_param, eps_mode="outside")


def ln_ignores_eps_in_ln_param(x, gamma, beta, ln_param):
    return _ln(x, gamma, beta, ln_param, fixed_eps=1e-5)


def _ln_backward(dout, cache):
    x_centered, std, x_hat, gamma = cache
    D = dout.shape[1]
    g = dout * gamma
    dx = (D * g - g.sum(axis=1, keepdims=True) - x_hat * (g * x_hat).sum(axis=1, keepdims=True)) / (D * std)
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def ln_backward_with_batchnorm_axes(dout, cache):
    x_centered, std, x_hat, gamma = cache
    N = dout.shape[0]
    g = dout * gamma
    dx = (N * g - g.sum(axis=0) - x_hat * (g * x_hat).sum(axis=0)) / (N * std)
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def ln_backward_without_mean_terms(dout, cache):
    x_centered, std, x_hat, gamma = cache
    return dout * gamma / std, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def ln_backward_dgamma_summed_over_features(dout, cache):
    dx, _, dbeta = _ln_backward(dout, cache)
    return dx, (dout * cache[2]).sum(axis=1), dbeta


def ln_backward_dbeta_not_summed(dout, cache):
    dx, dgamma, _ = _ln_backward(dout, cache)
    return dx, dgamma, dout


def ln_forward_squeezed(x, gamma, beta, ln_param):
    # Only the single-example case (N = 1) catches it.
    out, cache = _ln(x, gamma, beta, ln_param)
    return np.squeeze(out), cache


def ln_backward_dx_squeezed(dout, cache):
    # Only the single-example case (N = 1) catches it.
    dx, dgamma, dbeta = _ln_backward(dout, cache)
    return np.squeeze(dx), dgamma, dbeta


WRONG = {
    "batchnorm_forward": [bn_unbiased_variance, bn_eps_outside_sqrt, bn_no_eps, bn_momentum_on_wrong_term,
                          bn_test_mode_uses_batch_statistics, bn_running_stats_not_written_back,
                          bn_running_var_unbiased_like_pytorch, bn_ignores_eps_and_momentum_in_bn_param,
                          bn_running_stats_updated_in_test_mode, (bn_running_stats_squeezed, "shape")],
    "batchnorm_backward": [bn_backward_without_mean_terms, bn_backward_dgamma_not_summed,
                           bn_backward_dgamma_without_x_hat, bn_backward_dbeta_wrong_axis,
                           bn_backward_forgets_variance_path, (bn_backward_squeezed_parameter_gradients, "shape")],
    "batchnorm_backward_alt": [bn_backward_without_mean_terms, alt_without_x_hat_term, alt_not_divided_by_n,
                               alt_sums_over_features, alt_dbeta_keepdims,
                               (bn_backward_squeezed_parameter_gradients, "shape")],
    "layernorm_forward": [ln_normalizes_over_the_batch_axis, ln_unbiased_variance, ln_eps_outside_sqrt,
                          ln_ignores_eps_in_ln_param, (ln_forward_squeezed, "shape")],
    "layernorm_backward": [ln_backward_with_batchnorm_axes, ln_backward_without_mean_terms,
                           ln_backward_dgamma_summed_over_features, ln_backward_dbeta_not_summed,
                           (ln_backward_dx_squeezed, "shape")],
}


# --- alternative correct implementations -------------------------------------------------

def bn_forward_loops_dict_cache(x, gamma, beta, bn_param):
    """Column by column with explicit sums; keeps x itself and recomputes in the backward pass."""
    N, D = x.shape
    eps = bn_param.get("eps", 1e-5)
    if bn_param["mode"] == "test":
        out = np.empty_like(x)
        for j in range(D):
            out[:, j] = gamma[j] * (x[:, j] - bn_param["running_mean"][j]) / (bn_param["running_var"][j] + eps) ** 0.5
            out[:, j] += beta[j]
        return out, {}
    m = bn_param.setdefault("momentum", 0.9)
    mean, var, out = np.zeros(D), np.zeros(D), np.empty_like(x)
    for j in range(D):
        mean[j] = sum(x[n, j] for n in range(N)) / N
        var[j] = sum((x[n, j] - mean[j]) ** 2 for n in range(N)) / N
        out[:, j] = gamma[j] * (x[:, j] - mean[j]) / np.sqrt(var[j] + eps) + beta[j]
    if "running_mean" not in bn_param:
        bn_param["running_mean"], bn_param["running_var"] = np.zeros(D), np.zeros(D)
    bn_param["running_mean"] = m * bn_param["running_mean"] + (1 - m) * mean
    bn_param["running_var"] = m * bn_param["running_var"] + (1 - m) * var
    return out, {"x": x, "gamma": gamma, "eps": eps}


def _from_dict_cache(cache):
    x, eps = cache["x"], cache["eps"]
    mu = x.mean(axis=0)
    inv_std = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=0) + eps)
    return x, mu, inv_std, cache["gamma"]


def bn_backward_dict_cache_explicit_chain(dout, cache):
    x, mu, inv_std, gamma = _from_dict_cache(cache)
    N = x.shape[0]
    x_hat = (x - mu) * inv_std
    dx_hat = dout * gamma
    dvar = np.sum(dx_hat * (x - mu), axis=0) * -0.5 * inv_std ** 3
    dmu = np.sum(-dx_hat * inv_std, axis=0) + dvar * np.mean(-2.0 * (x - mu), axis=0)
    dx = dx_hat * inv_std + dvar * 2.0 * (x - mu) / N + dmu / N
    return dx, np.einsum("nd,nd->d", dout, x_hat), np.einsum("nd->d", dout)


def bn_backward_alt_dict_cache(dout, cache):
    x, mu, inv_std, gamma = _from_dict_cache(cache)
    x_hat = (x - mu) * inv_std
    g = dout * gamma
    dx = inv_std * (g - g.mean(axis=0) - x_hat * (g * x_hat).mean(axis=0))
    return dx, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def bn_forward_in_place_running_averages(x, gamma, beta, bn_param):
    """Updates the running arrays in place (after creating them once) and returns a float32-free list cache."""
    D = x.shape[1]
    eps, m = bn_param.get("eps", 1e-5), bn_param.get("momentum", 0.9)
    if bn_param["mode"] == "train":
        if "running_mean" not in bn_param:
            bn_param["running_mean"], bn_param["running_var"] = np.zeros(D), np.zeros(D)
        mean, var = np.mean(x, axis=0), np.mean((x - np.mean(x, axis=0)) ** 2, axis=0)
        bn_param["running_mean"] *= m
        bn_param["running_mean"] += (1 - m) * mean
        bn_param["running_var"] *= m
        bn_param["running_var"] += (1 - m) * var
    else:
        mean, var = bn_param["running_mean"], bn_param["running_var"]
    inv_std = (var + eps) ** -0.5
    x_hat = (x - mean) * inv_std
    return x_hat * gamma + beta, [x_hat, inv_std, gamma]


def bn_backward_list_cache(dout, cache):
    x_hat, inv_std, gamma = cache
    N = dout.shape[0]
    dbeta, dgamma = dout.sum(axis=0), (x_hat * dout).sum(axis=0)
    return (gamma * inv_std / N) * (N * dout - dbeta - x_hat * dgamma), dgamma, dbeta


def ln_forward_through_transpose(x, gamma, beta, ln_param):
    """Layer norm as CS231n suggests: batch-normalize the transpose, then scale and shift."""
    eps = ln_param.get("eps", 1e-5)
    xt = x.T
    xt_hat = (xt - xt.mean(axis=0)) / np.sqrt(xt.var(axis=0) + eps)
    x_hat = xt_hat.T
    return gamma * x_hat + beta, (x_hat, 1.0 / np.sqrt(xt.var(axis=0) + eps), gamma)


def ln_backward_through_transpose(dout, cache):
    x_hat, inv_std, gamma = cache
    D = dout.shape[1]
    gt = (dout * gamma).T                                   # (D, N): batch norm's backward on the transpose
    xt_hat = x_hat.T
    dxt = inv_std / D * (D * gt - gt.sum(axis=0) - xt_hat * (gt * xt_hat).sum(axis=0))
    return dxt.T, (dout * x_hat).sum(axis=0), dout.sum(axis=0)


def ln_forward_row_loops(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    out = np.empty_like(x)
    rows = []
    for n in range(x.shape[0]):
        mu = np.mean(x[n])
        sd = np.sqrt(np.mean((x[n] - mu) ** 2) + eps)
        rows.append((x[n] - mu) / sd)
        out[n] = gamma * rows[-1] + beta
    return out, {"x_hat": np.array(rows), "std": np.sqrt(x.var(axis=1) + eps), "gamma": gamma}


def ln_backward_row_loops(dout, cache):
    x_hat, std, gamma = cache["x_hat"], cache["std"], cache["gamma"]
    dx = np.empty_like(dout)
    for n in range(dout.shape[0]):
        g = dout[n] * gamma
        dx[n] = (g - g.mean() - x_hat[n] * np.mean(g * x_hat[n])) / std[n]
    return dx, np.sum(dout * x_hat, axis=0), np.sum(dout, axis=0)


ALTERNATIVES = {
    "loops, dict cache, explicit chain rule": {"batchnorm_forward": bn_forward_loops_dict_cache,
                                               "batchnorm_backward": bn_backward_dict_cache_explicit_chain,
                                               "batchnorm_backward_alt": bn_backward_alt_dict_cache},
    "in-place running averages, list cache": {"batchnorm_forward": bn_forward_in_place_running_averages,
                                              "batchnorm_backward": bn_backward_list_cache,
                                              "batchnorm_backward_alt": bn_backward_list_cache},
    "layer norm through the transpose": {"layernorm_forward": ln_forward_through_transpose,
                                         "layernorm_backward": ln_backward_through_transpose},
    "layer norm row by row, dict cache": {"layernorm_forward": ln_forward_row_loops,
                                          "layernorm_backward": ln_backward_row_loops},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))   # the standard proofs: tests/chapter_proofs.py


# --- tests -----------------------------------------------------------------------------------


def test_running_averages_missing_from_bn_param_are_named():
    def forgets_running_averages(x, gamma, beta, bn_param):
        return _bn(x, gamma, beta, bn_param, write_back=False)

    verdict = grade_in_process("batchnorm_forward", {"batchnorm_forward": forgets_running_averages}, CHAPTER, seed=0)
    assert not verdict.passed and "bn_param has no 'running_mean'" in verdict.message, verdict.message


def test_modifying_x_in_place_loses_the_forward_item(solution):
    def centres_x_in_place(x, gamma, beta, bn_param):
        out, cache = solution["batchnorm_forward"](x.copy(), gamma, beta, bn_param)
        x -= x.mean(axis=0)
        return out, cache

    verdict = grade_in_process("batchnorm_forward", dict(solution, batchnorm_forward=centres_x_in_place), CHAPTER,
                               seed=0)
    assert not verdict.passed and "changed its input `x" in verdict.message, verdict.message


# --- faults charged where they are ----------------------------------------------------------------

def _identity_norm_forward(x, gamma, beta, param):
    return x.copy(), gamma.copy()


def _pass_through_norm_backward(dout, cache):
    return dout.copy(), np.zeros_like(cache), np.zeros_like(cache)


FORWARDS = {"batchnorm_backward": "batchnorm_forward", "batchnorm_backward_alt": "batchnorm_forward",
            "layernorm_backward": "layernorm_forward"}
GAMES = {f"identity {fwd} with a pass-through {bwd}": (bwd, {fwd: _identity_norm_forward,
                                                              bwd: _pass_through_norm_backward})
         for bwd, fwd in FORWARDS.items()}

globals().update(fault_proofs(CHAPTER, FORWARDS, GAMES))


# --- hints that name eps --------------------------------------------------------------------------

def bn_eps_outside_sqrt_at_test_time_only(x, gamma, beta, bn_param):
    if bn_param["mode"] == "train":
        return _bn(x, gamma, beta, bn_param)
    return _bn(x, gamma, beta, bn_param, eps_mode="outside")


def bn_eps_stored_in_running_var(x, gamma, beta, bn_param):
    out, cache = _bn(x, gamma, beta, bn_param)
    if bn_param["mode"] == "train":
        momentum = bn_param.get("momentum", 0.9)
        bn_param["running_var"] = bn_param["running_var"] + (1 - momentum) * bn_param.get("eps", 1e-5)
    return out, cache


@pytest.mark.parametrize("wrong, fragment", [
    (bn_eps_outside_sqrt, "eps goes INSIDE the square root"),
    (bn_eps_outside_sqrt_at_test_time_only, "eps goes INSIDE the square root"),
    (bn_eps_stored_in_running_var, "eps is only added inside the square root when normalizing, never to running_var"),
], ids=lambda v: getattr(v, "__name__", "fragment"))
def test_eps_in_the_wrong_place_gets_a_hint_about_eps_on_every_seed(wrong, fragment):
    for seed in range(12):
        verdict = grade_in_process("batchnorm_forward", {"batchnorm_forward": wrong}, CHAPTER, seed=seed)
        assert not verdict.passed and fragment in verdict.message, f"seed {seed}: {verdict.message}"


def test_layernorm_eps_outside_the_square_root_gets_the_eps_hint():
    def ln_eps_outside(x, gamma, beta, ln_param):
        eps = ln_param.get("eps", 1e-5)
        mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
        return gamma * (x - mean) / (np.sqrt(var) + eps) + beta, None

    for seed in range(5):
        verdict = grade_in_process("layernorm_forward", {"layernorm_forward": ln_eps_outside}, CHAPTER, seed=seed)
        assert not verdict.passed and "eps goes INSIDE the square root" in verdict.message, verdict.message
