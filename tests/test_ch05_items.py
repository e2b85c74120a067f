"""Chapter 05 (dropout, optimizers, regularization): the hidden tests, proven in-process.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that
  names the function and gives a hint;
- alternative correct implementations (global NumPy seeding, torch's formulation of the
  update rules, in-place updates, other cache layouts) get full marks;
- the NumPy references agree with torch.optim, and the dropout fraction check has the
  false-alarm probability its comment states.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.judge.cases import Streams
from grader.judge.items import ch05_dropout_regularization as items
from grader.judge.items import grade_in_process
from grader.judge.references import ch05_dropout_regularization as R

from chapter_proofs import SEEDS, chapter_proofs, fault_proofs, grade_items

pytestmark = pytest.mark.ch05

CHAPTER = "05_dropout_regularization"


def _rng(param):
    return np.random.default_rng(param.get("seed"))


# --- wrong implementations, keyed by the item they must lose -----------------------------------
# Wrong forwards keep a cache the solution's backward reads correctly, (mode, mask / (1 - p)),
# with the mask matching the zeros of their own output, so that only the forward item is lost.

def df_p_as_keep_probability(x, param):
    p = param["p"]
    if param["mode"] != "train":
        return x.copy(), ("test", None)
    keep = _rng(param).random(x.shape) < p                      # keeps with probability p
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(keep, x / p, 0.0)
    return out, ("train", keep / (1 - p))


def df_not_inverted(x, param):
    p = param["p"]
    if param["mode"] != "train":
        return x.copy(), ("test", None)
    keep = _rng(param).random(x.shape) >= p
    return x * keep, ("train", keep / (1 - p))


def df_scales_at_test_time(x, param):
    p = param["p"]
    if param["mode"] != "train":
        return x * (1 - p), ("test", None)
    keep = _rng(param).random(x.shape) >= p
    return x * keep / (1 - p), ("train", keep / (1 - p))


def df_drops_at_test_time(x, param):
    p = param["p"]
    keep = _rng(param).random(x.shape) >= p
    if param["mode"] != "train":
        return x * keep / (1 - p), ("test", None)
    return x * keep / (1 - p), ("train", keep / (1 - p))


def df_ignores_seed(x, param):
    p = param["p"]
    if param["mode"] != "train":
        return x.copy(), ("test", None)
    keep = np.random.default_rng().random(x.shape) >= p
    return x * keep / (1 - p), ("train", keep / (1 - p))


def df_fixed_seed(x, param):
    p = param["p"]
    if param["mode"] != "train":
        return x.copy(), ("test", None)
    keep = np.random.default_rng(0).random(x.shape) >= p
    return x * keep / (1 - p), ("train", keep / (1 - p))


def _dropout_with_keep(x, param, draw_keep):
    """A forward whose only mistake is how the keep mask is drawn: ``draw_keep(rng, x, p)``."""
    p = param["p"]
    if param["mode"] != "train":
        return x.copy(), ("test", None)
    keep = np.broadcast_to(draw_keep(_rng(param), x, p), x.shape)
    return x * keep / (1 - p), ("train", keep / (1 - p))


# Wrong distributions with the right overall dropped fraction (on average): only the per-row, per-column and
# neighbour checks see them. The first two pass the old checks on most seeds by chance, the third always.
def df_one_mask_per_row(x, param):
    # One number per row, broadcast over the columns (the last axis).
    return _dropout_with_keep(x, param, lambda rng, x, p: rng.random(x.shape[:-1] + (1,)) >= p)


def df_one_mask_per_column(x, param):
    return _dropout_with_keep(x, param, lambda rng, x, p: rng.random(x.shape[-1]) >= p)


def df_mask_repeated_in_pairs(x, param):
    # A half-width mask with every entry used twice, side by side.
    def draw(rng, x, p):
        half = rng.random(x.shape[:-1] + ((x.shape[-1] + 1) // 2,)) >= p
        return np.repeat(half, 2, axis=-1)[..., :x.shape[-1]]
    return _dropout_with_keep(x, param, draw)


def df_default_seed_zero(x, param):
    # dropout_param.get("seed", 0): without a seed, every call draws the same mask. Only the second call without
    # a seed catches it (the same-seed/other-seed case hands it seeds).
    p = param["p"]
    if param["mode"] != "train":
        return x.copy(), ("test", None)
    keep = np.random.default_rng(param.get("seed", 0)).random(x.shape) >= p
    return x * keep / (1 - p), ("train", keep / (1 - p))


def df_one_mask_per_channel(x, param):
    # A mask of shape x.shape[:2], written with matrices in mind: for 4-D x it keeps or drops whole channel maps
    # (like torch's Dropout2d, not Dropout). Only the degenerate 4-D single-example case catches it.
    def draw(rng, x, p):
        keep = rng.random(x.shape[:2]) >= p
        return keep.reshape(keep.shape + (1,) * (x.ndim - 2))
    return _dropout_with_keep(x, param, draw)


def db_squeezed(dout, cache):
    # Only the single-example case catches it.
    mode, mask = cache
    return np.squeeze(dout * mask) if mode == "train" else dout.copy()


def db_ignores_mask(dout, cache):
    mode, mask = cache
    return dout * mask.max() if mode == "train" else dout.copy()


def db_draws_a_new_mask(dout, cache):
    mode, mask = cache
    if mode != "train":
        return dout.copy()
    p = 1 - 1 / mask.max()
    return dout * (np.random.default_rng().random(dout.shape) >= p) / (1 - p)


def db_not_scaled(dout, cache):
    mode, mask = cache
    return dout * (mask != 0) if mode == "train" else dout.copy()


def db_mutates_dout(dout, cache):
    mode, mask = cache
    if mode == "train":
        dout *= mask
    return dout


def _config(config, **defaults):
    config = {} if config is None else config
    for key, value in defaults.items():
        config.setdefault(key, value)
    return config


def sgd_squeezed(w, dw, config=None):
    # np.squeeze on the new weights: a single weight of shape (1, 1) becomes 0-d. Only the single-weight case
    # catches it.
    config = _config(config, learning_rate=1e-2)
    return np.squeeze(w - config["learning_rate"] * dw), config


def sgd_ignores_learning_rate(w, dw, config=None):
    return w - 1e-2 * dw, _config(config, learning_rate=1e-2)


def sgd_ascends(w, dw, config=None):
    c = _config(config, learning_rate=1e-2)
    return w + c["learning_rate"] * dw, c


def sgd_returns_no_config(w, dw, config=None):
    c = _config(config, learning_rate=1e-2)
    return w - c["learning_rate"] * dw, None


def sgd_mutates_dw(w, dw, config=None):
    c = _config(config, learning_rate=1e-2)
    dw *= c["learning_rate"]
    return w - dw, c


def momentum_wrong_sign(w, dw, config=None):
    c = _config(config, learning_rate=1e-2, momentum=0.9)
    v = c["momentum"] * c.get("velocity", np.zeros_like(w)) + c["learning_rate"] * dw
    c["velocity"] = v
    return w + v, c


def momentum_velocity_not_stored(w, dw, config=None):
    c = _config(config, learning_rate=1e-2, momentum=0.9)
    v = c["momentum"] * c.get("velocity", np.zeros_like(w)) - c["learning_rate"] * dw
    return w + v, c


def momentum_ignores_config_momentum(w, dw, config=None):
    c = _config(config, learning_rate=1e-2)
    v = 0.9 * c.get("velocity", np.zeros_like(w)) - c["learning_rate"] * dw
    c["velocity"] = v
    return w + v, c


def _rms(config, w):
    return _config(config, learning_rate=1e-2, decay_rate=0.99, epsilon=1e-8)


def rmsprop_epsilon_inside_sqrt(w, dw, config=None):
    c = _rms(config, w)
    c["cache"] = c["decay_rate"] * c.get("cache", np.zeros_like(w)) + (1 - c["decay_rate"]) * dw ** 2
    return w - c["learning_rate"] * dw / np.sqrt(c["cache"] + c["epsilon"]), c


def rmsprop_cache_not_decayed(w, dw, config=None):
    c = _rms(config, w)
    c["cache"] = c.get("cache", np.zeros_like(w)) + (1 - c["decay_rate"]) * dw ** 2
    return w - c["learning_rate"] * dw / (np.sqrt(c["cache"]) + c["epsilon"]), c


def rmsprop_cache_not_stored(w, dw, config=None):
    c = _rms(config, w)
    cache = c["decay_rate"] * c.get("cache", np.zeros_like(w)) + (1 - c["decay_rate"]) * dw ** 2
    return w - c["learning_rate"] * dw / (np.sqrt(cache) + c["epsilon"]), c


def _adam_config(config, **extra):
    return _config(config, learning_rate=1e-3, beta1=0.9, beta2=0.999, epsilon=1e-8, **extra)


def adam_no_bias_correction(w, dw, config=None):
    c = _adam_config(config)
    c["m"] = c["beta1"] * c.get("m", np.zeros_like(w)) + (1 - c["beta1"]) * dw
    c["v"] = c["beta2"] * c.get("v", np.zeros_like(w)) + (1 - c["beta2"]) * dw ** 2
    return w - c["learning_rate"] * c["m"] / (np.sqrt(c["v"]) + c["epsilon"]), c


def _adam_with_t(w, dw, c, t, beta2_on_dw=False, eps_inside=False):
    c["m"] = c["beta1"] * c.get("m", np.zeros_like(w)) + (1 - c["beta1"]) * dw
    c["v"] = c["beta2"] * c.get("v", np.zeros_like(w)) + (1 - c["beta2"]) * (dw if beta2_on_dw else dw ** 2)
    m_hat = c["m"] / (1 - c["beta1"] ** t)
    v_hat = c["v"] / (1 - c["beta2"] ** t)
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt(v_hat + c["epsilon"]) if eps_inside else np.sqrt(v_hat) + c["epsilon"]
        return w - c["learning_rate"] * m_hat / denom, c


def adam_t_not_incremented(w, dw, config=None):
    c = _adam_config(config, t=1)
    return _adam_with_t(w, dw, c, c["t"])


def adam_t_incremented_after_use(w, dw, config=None):
    c = _adam_config(config, t=0)
    out = _adam_with_t(w, dw, c, c["t"])
    c["t"] += 1
    return out


def adam_beta2_on_dw(w, dw, config=None):
    c = _adam_config(config, t=0)
    c["t"] += 1
    return _adam_with_t(w, dw, c, c["t"], beta2_on_dw=True)


def adam_epsilon_inside_sqrt(w, dw, config=None):
    c = _adam_config(config, t=0)
    c["t"] += 1
    return _adam_with_t(w, dw, c, c["t"], eps_inside=True)


def _adam_step(w, dw, c):
    c["t"] = c.get("t", 0) + 1
    return _adam_with_t(np.zeros_like(w), dw, c, c["t"])[0]        # -lr m_hat / (sqrt(v_hat) + eps)


def adamw_as_l2(w, dw, config=None):
    c = _adam_config(config, weight_decay=1e-2)
    return w + _adam_step(w, dw + c["weight_decay"] * w, c), c


def adamw_decay_not_scaled_by_learning_rate(w, dw, config=None):
    c = _adam_config(config, weight_decay=1e-2)
    return w - c["weight_decay"] * w + _adam_step(w, dw, c), c


def adamw_without_decay(w, dw, config=None):
    c = _adam_config(config, weight_decay=1e-2)
    return w + _adam_step(w, dw, c), c


def adamw_decays_the_updated_w(w, dw, config=None):
    c = _adam_config(config, weight_decay=1e-2)
    return (w + _adam_step(w, dw, c)) * (1 - c["learning_rate"] * c["weight_decay"]), c


WRONG = {
    "dropout_forward": [df_p_as_keep_probability, df_not_inverted, df_scales_at_test_time, df_drops_at_test_time,
                        df_ignores_seed, df_fixed_seed, (df_one_mask_per_row, "not independent"),
                        (df_one_mask_per_column, "not independent"), (df_mask_repeated_in_pairs, "neighbouring"),
                        (df_default_seed_zero, "without a seed"), (df_one_mask_per_channel, "every channel map")],
    "dropout_backward": [db_ignores_mask, db_draws_a_new_mask, db_not_scaled, db_mutates_dout,
                         (db_squeezed, "shape")],
    "sgd": [sgd_ignores_learning_rate, sgd_ascends, sgd_returns_no_config, sgd_mutates_dw, (sgd_squeezed, "shape")],
    "sgd_momentum": [momentum_wrong_sign, momentum_velocity_not_stored, momentum_ignores_config_momentum],
    "rmsprop": [rmsprop_epsilon_inside_sqrt, rmsprop_cache_not_decayed, rmsprop_cache_not_stored],
    "adam": [adam_no_bias_correction, adam_t_not_incremented, adam_t_incremented_after_use, adam_beta2_on_dw,
             adam_epsilon_inside_sqrt],
    "adamw": [adamw_as_l2, adamw_decay_not_scaled_by_learning_rate, adamw_without_decay, adamw_decays_the_updated_w],
}


# --- alternative correct implementations -----------------------------------------------------------

def dropout_forward_global_seed_dict_cache(x, dropout_param):
    p = dropout_param["p"]
    if dropout_param["mode"] == "test":
        return x, {"mode": "test"}                                   # x itself: not a mutation
    if "seed" in dropout_param:
        np.random.seed(dropout_param["seed"])
    keep = np.random.rand(*x.shape) > p
    return np.where(keep, x / (1 - p), 0.0), {"mode": "train", "keep": keep, "p": p}


def dropout_backward_dict_cache(dout, cache):
    if cache["mode"] == "test":
        return dout
    return np.where(cache["keep"], dout / (1 - cache["p"]), 0.0)


def dropout_forward_binomial(x, dropout_param):
    p, mode = dropout_param["p"], dropout_param["mode"]
    rng = np.random.default_rng(dropout_param.get("seed"))
    mask = rng.binomial(1, 1 - p, size=x.shape) if mode == "train" else np.ones(x.shape, dtype=int)
    scale = 1 / (1 - p) if mode == "train" else 1.0
    return x * mask * scale, [mask, scale]


def dropout_backward_list_cache(dout, cache):
    mask, scale = cache
    return dout * mask * scale


def sgd_in_place(w, dw, config=None):
    if config is None:
        config = {"learning_rate": 1e-2}
    w -= config.get("learning_rate", 1e-2) * dw
    return w, config


def momentum_torch_buffer(w, dw, config=None):
    """torch's form: buf = momentum * buf + dw, w -= lr * buf (the same for a constant learning rate)."""
    config = dict(config or {})
    lr, mu = config.setdefault("learning_rate", 1e-2), config.setdefault("momentum", 0.9)
    buf = dw.copy() if "buf" not in config else mu * config["buf"] + dw
    config["buf"] = buf
    return w - lr * buf, config


def rmsprop_in_place(w, dw, config=None):
    config = {} if config is None else config
    rho = config.setdefault("decay_rate", 0.99)
    cache = config.setdefault("cache", np.zeros_like(w))
    cache *= rho
    cache += (1 - rho) * dw * dw
    w -= config.setdefault("learning_rate", 1e-2) * dw / (np.sqrt(cache) + config.setdefault("epsilon", 1e-8))
    return w, config


def adam_torch_form_t_from_one(w, dw, config=None):
    """torch's arrangement of the arithmetic; t counts the *next* step and is incremented after use."""
    c = _adam_config(config, t=1)
    c.setdefault("m", np.zeros_like(w))
    c.setdefault("v", np.zeros_like(w))
    b1, b2, t = c["beta1"], c["beta2"], c["t"]
    c["m"] = c["m"] * b1 + dw * (1 - b1)
    c["v"] = c["v"] * b2 + dw * dw * (1 - b2)
    denom = np.sqrt(c["v"]) / np.sqrt(1 - b2 ** t) + c["epsilon"]
    w -= (c["learning_rate"] / (1 - b1 ** t)) * c["m"] / denom
    c["t"] = t + 1
    return w, c


def adamw_decay_in_place_first(w, dw, config=None):
    c = _adam_config(config, weight_decay=1e-2, t=0)
    w *= 1 - c["learning_rate"] * c["weight_decay"]
    c["t"] += 1
    c["m"] = c["beta1"] * c.get("m", 0.0) + (1 - c["beta1"]) * dw
    c["v"] = c["beta2"] * c.get("v", 0.0) + (1 - c["beta2"]) * dw ** 2
    m_hat, v_hat = c["m"] / (1 - c["beta1"] ** c["t"]), c["v"] / (1 - c["beta2"] ** c["t"])
    w -= c["learning_rate"] * m_hat / (np.sqrt(v_hat) + c["epsilon"])
    return w, c


ALTERNATIVES = {
    "global NumPy seed, dict cache": {"dropout_forward": dropout_forward_global_seed_dict_cache,
                                      "dropout_backward": dropout_backward_dict_cache},
    "binomial mask, list cache": {"dropout_forward": dropout_forward_binomial,
                                  "dropout_backward": dropout_backward_list_cache},
    "in-place sgd": {"sgd": sgd_in_place},
    "torch's momentum buffer": {"sgd_momentum": momentum_torch_buffer},
    "in-place rmsprop": {"rmsprop": rmsprop_in_place},
    "torch's Adam arithmetic, t from 1": {"adam": adam_torch_form_t_from_one},
    "in-place decay first": {"adamw": adamw_decay_in_place_first},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))   # the standard proofs: tests/chapter_proofs.py


# --- tests -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", list(R.NUMPY_RULES))
def test_numpy_references_agree_with_torch_optim(rule):
    rng = np.random.default_rng(7)
    custom = {"sgd": {"learning_rate": 0.2}, "sgd_momentum": {"learning_rate": 0.05, "momentum": 0.7},
              "rmsprop": {"learning_rate": 0.03, "decay_rate": 0.9, "epsilon": 1e-6},
              "adam": {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-6},
              "adamw": {"learning_rate": 0.05, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-6, "weight_decay": 0.3}}
    for config in (None, custom[rule], {"learning_rate": 0.01}):
        w0 = rng.normal(size=(4, 3))
        grads = [10.0 ** rng.uniform(-8, 1, size=(4, 3)) * rng.normal(size=(4, 3)) for _ in range(6)]
        ours = R.numpy_trajectory(rule, w0, grads, config)
        theirs = R.torch_trajectory(rule, w0, grads, config)
        for step, (a, b) in enumerate(zip(ours, theirs), start=1):
            assert R.np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b)), f"{rule}, {config}, step {step}"


def test_dropout_fraction_check_false_alarm_is_below_one_in_a_billion():
    n = int(np.prod(items.DROPOUT_SHAPE))
    t = items.fraction_tolerance(n)
    R, C = items.DROPOUT_SHAPE
    # overall, per row, per column, horizontal and vertical neighbour pairs: each fails a correct dropout with
    # probability <= FALSE_ALARM (Hoeffding, union bound over the lines)
    assert 2 * np.exp(-2 * n * t ** 2) <= items.FALSE_ALARM * (1 + 1e-9)
    assert R * 2 * np.exp(-2 * C * items.line_tolerance(R, C) ** 2) <= items.FALSE_ALARM * (1 + 1e-9)
    assert C * 2 * np.exp(-2 * R * items.line_tolerance(C, R) ** 2) <= items.FALSE_ALARM * (1 + 1e-9)
    checks = sum(5 if c.context.get("lines") else 1 for c in items.DropoutForward().cases(Streams.from_seed(0))
                 if c.context["kind"] != "identity")
    assert checks == items.CHECKS_PER_RUN and checks * items.FALSE_ALARM < 1e-9
    # dropout_backward needs a forward mask keeping and dropping >= MIN_MASK_SHARE each of n_b units; a correct
    # dropout with p in [0.2, 0.8] misses that (Hoeffding, three train cases) with probability < 1e-18
    n_b = int(np.prod(items.BACKWARD_TRAIN_SHAPE))
    assert int(np.prod(items.BACKWARD_EDGE_SHAPE)) >= n_b
    assert 3 * 2 * np.exp(-2 * n_b * (0.2 - items.MIN_MASK_SHARE) ** 2) < 1e-18
    # the per-line checks separate one mask per row / per column (a line dropped entirely or kept entirely)
    # from independent units at every p the train cases draw (0.15-0.35 and 0.65-0.85)
    assert min(1 - 0.35, 0.65) > max(items.line_tolerance(R, C), items.line_tolerance(C, R))
    # and the check still separates p from the "keep probability" mistake at the closest p the cases draw
    assert abs(0.35 - 0.65) > 2 * t


def test_solution_dropout_drops_the_stated_fraction_on_many_seeds(solution):
    """A correct dropout never trips the fraction check (n = 8000): 200 seeds, each far inside the bound."""
    x = np.ones(items.DROPOUT_SHAPE)
    t = items.fraction_tolerance(x.size)
    worst = max(abs(1 - (solution["dropout_forward"](x, {"p": 0.3, "mode": "train", "seed": s})[0] != 0).mean() - 0.3)
                for s in range(200))
    assert worst < t / 2, worst


# --- faults charged where they are --------------------------------------------------------------

def _keeps_everything_scaled(x, param):
    p = param["p"] if param["mode"] == "train" else 0.0
    return x / (1 - p), (param["mode"], 1 / (1 - p))


def _scaled_pass_through(dout, cache):
    mode, scale = cache
    return dout * scale


def _drops_everything(x, param):
    return (np.zeros_like(x), param["mode"]) if param["mode"] == "train" and param["p"] > 0 else (x.copy(), "test")


def _zero_in_train_mode(dout, cache):
    return np.zeros_like(dout) if cache == "train" else dout.copy()


FORWARDS = {"dropout_backward": "dropout_forward"}
GAMES = {"keep-everything forward with a scaled pass-through backward":
         ("dropout_backward", {"dropout_forward": _keeps_everything_scaled, "dropout_backward": _scaled_pass_through}),
         "drop-everything forward with an all-zero backward":
         ("dropout_backward", {"dropout_forward": _drops_everything, "dropout_backward": _zero_in_train_mode})}

globals().update(fault_proofs(CHAPTER, FORWARDS, GAMES))


@pytest.mark.parametrize("wrong_forward", [df_p_as_keep_probability, df_not_inverted, df_scales_at_test_time,
                                           df_drops_at_test_time, df_ignores_seed, df_fixed_seed])
def test_a_correct_dropout_backward_keeps_its_points_beside_a_wrong_forward(solution, wrong_forward):
    """The mask is read off the forward's out and the scale is the reference's: a wrong forward costs only itself."""
    namespace = dict(solution, dropout_forward=wrong_forward)
    for seed in SEEDS:
        verdicts = grade_items(CHAPTER, namespace, seed, ["dropout_forward", "dropout_backward"])
        assert not verdicts["dropout_forward"].passed
        assert verdicts["dropout_backward"].passed, f"seed {seed}: {verdicts['dropout_backward'].message}"


# --- hints for the start value of t and the place of epsilon ----------------------------------------

def adam_t_starts_at_one(w, dw, config=None):
    c = _adam_config(config, t=1)
    c["t"] += 1                                           # incremented first, but from 1: the first step uses t = 2
    return _adam_with_t(w, dw, c, c["t"])


def adamw_t_starts_at_one(w, dw, config=None):
    c = _adam_config(config, weight_decay=1e-2, t=1)
    decay = c["learning_rate"] * c["weight_decay"] * w
    c["t"] += 1
    next_w, c = _adam_with_t(w, dw, c, c["t"])
    return next_w - decay, c


@pytest.mark.parametrize("item, wrong, fragment", [
    ("adam", adam_t_starts_at_one, "start t at 0"),
    ("adamw", adamw_t_starts_at_one, "start t at 0"),
    ("adam", adam_epsilon_inside_sqrt, "epsilon goes OUTSIDE the square root"),
    ("rmsprop", rmsprop_epsilon_inside_sqrt, "epsilon goes OUTSIDE the square root"),
], ids=["adam-t-from-1", "adamw-t-from-1", "adam-eps", "rmsprop-eps"])
def test_the_hint_names_the_mistake_on_every_seed(item, wrong, fragment):
    for seed in range(10):
        verdict = grade_in_process(item, {item: wrong}, CHAPTER, seed=seed)
        assert not verdict.passed and fragment in verdict.message, f"seed {seed}: {verdict.message}"
        if "t at 0" in fragment:
            assert "count the step first" not in verdict.message, verdict.message


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_adam_t_incremented_after_use_still_gets_the_general_hint():
    verdict = grade_in_process("adam", {"adam": adam_t_incremented_after_use}, CHAPTER, seed=0)
    assert not verdict.passed and "count the step first" in verdict.message, verdict.message
