"""Hidden tests of chapter 05 (dropout, optimizers, regularization).

Dropout is random and the grader cannot know the learner's random stream, so it is
judged by the distribution of its mask (Hoeffding bounds with stated false-alarm
probabilities, see below): every output entry is 0 or x / (1 - p); the fraction of
dropped units is close to p, in the whole array, in every row and in every column
(one mask per row or per column broadcast over the other axis fails), and neighbouring
units agree as often as independent ones do; the same seed gives the same output,
another seed another one, and two calls without a seed different masks; test mode and
p = 0 return x unchanged; the backward pass applies the very mask of the forward pass,
read off the forward output (inputs have no zeros), and is compared with a
centered-difference gradient of the reference with that mask. On every seed the cases
also hold a single example (N = 1) of a 4-D input (x may have any shape) and, for the
update rules, a single weight of shape (1, 1).

The update rules run several steps with given gradients, each call receiving the
w and config the previous call returned, and every prefix of the trajectory is
compared with ``torch.optim`` in float64 (an independent implementation).
Gradients span nine orders of magnitude, so the placement of epsilon and the
bias correction matter.
"""
from __future__ import annotations

import math

import numpy as np

from ..cases import away_from_kinks
from ..checks import Failure, expect_array, expect_close
from ..numerics import numerical_gradient_array
from ..protocol import Call, Case, arr, dict_of, lit, ref
from ..references import ch05_dropout_regularization as R
from . import Item, known_mistake, register

CHAPTER = "05_dropout_regularization"
SMOOTH = 1e-7
TRAJECTORY = 1e-8          # float64 against torch: round-off is ~1e-15, every mistake below is >= 1e-6
VALUE_RTOL = 1e-9          # a kept entry must equal x / (1 - p) up to round-off

# A correct dropout drops each of n units independently with probability p. By Hoeffding's inequality
# P(|dropped fraction - p| >= t) <= 2 exp(-2 n t^2) (``fraction_tolerance``). The same bound, per line and with
# the union bound over the R rows (C columns), limits the dropped fraction of every row (column) of an R x C
# output (``line_tolerance``). Splitting the columns (rows) into disjoint neighbouring pairs gives R C / 2
# independent pairs whose masks agree with probability (1 - p)^2 + p^2 (``pair_tolerance``). A correct dropout
# fails each of these checks with probability at most FALSE_ALARM = 2e-11. A grading run makes at most
# CHECKS_PER_RUN = 16 of them (5 on each of the three large train outputs, 1 on the 4-D one): < 4e-10 in all.
# Two calls without a seed repeat a mask of n units with probability (1 - 2 p (1 - p))^n < 1e-100.
FALSE_ALARM = 2e-11
CHECKS_PER_RUN = 16
DROPOUT_SHAPE = (80, 100)  # n = 8000 units: t = 0.040 overall, 0.39 per row, 0.43 per column, 0.056 per pair
EDGE_SHAPE = (1, 4, 10, 10)  # a single example of a 4-D input
BACKWARD_TRAIN_SHAPE = (20, 50)  # n = 1000 units in the two train cases of dropout_backward with p > 0
BACKWARD_EDGE_SHAPE = (1, 10, 10, 10)  # ... and 1000 in its third, a single example of a 4-D input
MIN_MASK_SHARE = 0.05            # ... whose forward must keep and drop at least this share of them each


def fraction_tolerance(n, false_alarm=FALSE_ALARM):
    """The t with 2 exp(-2 n t^2) = false_alarm."""
    return math.sqrt(math.log(2.0 / false_alarm) / (2.0 * n))


def line_tolerance(lines, length, false_alarm=FALSE_ALARM):
    """The t with lines * 2 exp(-2 length t^2) = false_alarm: every one of ``lines`` lines of ``length`` units."""
    return fraction_tolerance(length, false_alarm / lines)


def pair_tolerance(pairs, false_alarm=FALSE_ALARM):
    """The t for the share of ``pairs`` independent pairs whose two masks agree."""
    return fraction_tolerance(pairs, false_alarm)


def _param(p, mode, seed=None):
    specs = {"p": lit(float(p)), "mode": lit(mode)}
    if seed is not None:
        specs["seed"] = lit(int(seed))
    return dict_of(**specs)


def _seed(s):
    return int(s.seeds.integers(0, 2**31 - 1))


def _describe_param(p, mode, seed=None):
    text = f"p = {p:.3g}, mode '{mode}'"
    return text + (f", seed {seed}" if seed is not None else ", no seed")


@register(CHAPTER)
class DropoutForward(Item):
    """Judged by the distribution of its mask (bounds above ``fraction_tolerance``): values 0 or x / (1 - p); the
    dropped fraction overall, per row and per column, and the agreement of neighbouring units, each with a
    false-alarm probability of at most FALSE_ALARM = 2e-11 (at most 16 such checks, < 4e-10 per grading run);
    no row, column or channel map constant throughout (< 1e-30); seeds reproduce, other seeds and no seed give
    new masks (a repeat has probability < 1e-100). Every message states its check's false-alarm probability."""

    name = "dropout_forward"
    hints = {
        "values": "in train mode keep a unit with probability 1 - p and scale what you keep by 1 / (1 - p) "
                  "(inverted dropout): out = x * mask / (1 - p).",
        "fraction": "p is the probability of DROPPING a unit (as in PyTorch): keep where rand >= p, "
                    "i.e. mask = rng.random(x.shape) >= p.",
        "seed": "with a seed, draw the mask from np.random.default_rng(dropout_param['seed']) (or call "
                "np.random.seed(seed) first), so that the same seed gives the same mask.",
        "identity": "in test mode (and whenever p = 0) return x itself, unscaled: inverted dropout does all "
                    "its scaling at train time.",
        "independent": "draw one independent random number per unit: a mask of the shape of x (x.shape), not "
                       "one number per row or per column broadcast over the other axis, and no repeated pattern.",
        "fresh": "without a seed, every call must draw a new mask: np.random.default_rng(None) (or "
                 "dropout_param.get('seed'), which is None when there is no seed) gives fresh randomness; a "
                 "default seed such as 0 gives the same mask every time.",
        "shape": "x may have any shape (also (N, C, H, W)): draw the mask with the shape of x itself.",
    }

    def cases(self, s):
        cases = []
        x_of = lambda: away_from_kinks(s.inputs, DROPOUT_SHAPE, kinks=(0.0,), margin=1e-2)  # noqa: E731
        # p is kept at least 0.15 away from 0.5, where "p = keep probability" would look right.
        for p, seed in ((s.inputs.uniform(0.15, 0.35), _seed(s)), (s.inputs.uniform(0.65, 0.85), None)):
            x = x_of()
            steps = [Call(self.name, [arr("x"), _param(p, "train", seed)], save=("out", "cache"))]
            if seed is None:        # without a seed, a second call must draw another mask
                steps.append(Call(self.name, [arr("x"), _param(p, "train")], save=("out_again", "cache_again")))
            cases.append(Case(steps=steps, arrays={"x": x}, returns=("out",) + (("out_again",) if seed is None else ()),
                              context={"kind": "train", "p": p, "lines": True},
                              label=f" on x of shape {x.shape} with {_describe_param(p, 'train', seed)}"))
        # The same seed twice, then another seed.
        x, p = x_of(), float(s.inputs.uniform(0.3, 0.7))
        seed_a = _seed(s)
        seed_b = seed_a + 1 + int(s.seeds.integers(0, 1000))
        steps = [Call(self.name, [arr("x"), _param(p, "train", seed_a)], save=("out_a", "cache_a")),
                 Call(self.name, [arr("x"), _param(p, "train", seed_a)], save=("out_b", "cache_b")),
                 Call(self.name, [arr("x"), _param(p, "train", seed_b)], save=("out_c", "cache_c"))]
        cases.append(Case(steps=steps, arrays={"x": x}, returns=("out_a", "out_b", "out_c"),
                          context={"kind": "seed", "p": p, "seeds": (seed_a, seed_b), "lines": True},
                          label=f" on x of shape {x.shape} with p = {p:.3g}, seeds {seed_a} and {seed_b}"))
        # Identity: test mode, and p = 0 at train time.
        for p, mode in ((float(s.inputs.uniform(0.2, 0.8)), "test"), (0.0, "train")):
            x = away_from_kinks(s.inputs, (int(s.inputs.integers(3, 8)), int(s.inputs.integers(2, 6))), kinks=(0.0,))
            seed = _seed(s)
            cases.append(Case(steps=[Call(self.name, [arr("x"), _param(p, mode, seed)], save=("out", "cache"))],
                              arrays={"x": x}, returns=("out",), context={"kind": "identity", "p": p},
                              label=f" on x of shape {x.shape} with {_describe_param(p, mode, seed)}"))
        # Degenerate sizes: a single example of a 4-D input at train time, a single example at test time.
        x = away_from_kinks(s.inputs, EDGE_SHAPE, kinks=(0.0,), margin=1e-2)
        p, seed = float(s.inputs.uniform(0.2, 0.8)), _seed(s)
        cases.append(Case(steps=[Call(self.name, [arr("x"), _param(p, "train", seed)], save=("out", "cache"))],
                          arrays={"x": x}, returns=("out",), context={"kind": "train", "p": p},
                          label=f" on x of shape {x.shape} with {_describe_param(p, 'train', seed)}"))
        x = away_from_kinks(s.inputs, (1, int(s.inputs.integers(2, 6))), kinks=(0.0,))
        p = float(s.inputs.uniform(0.2, 0.8))
        cases.append(Case(steps=[Call(self.name, [arr("x"), _param(p, "test")], save=("out", "cache"))],
                          arrays={"x": x}, returns=("out",), context={"kind": "identity", "p": p},
                          label=f" on x of shape {x.shape} with {_describe_param(p, 'test')}"))
        return cases

    def _check_train_output(self, case, out, quantity="out"):
        x, p = case.arrays["x"], case.context["p"]
        hint = self.hints["shape" if x.ndim > 2 else "values"]
        got = expect_array(self.name, quantity, out, x.shape, case.label, hint)
        kept = got != 0
        scaled = x / (1.0 - p)
        bad = kept & ~(np.abs(got - scaled) <= VALUE_RTOL * np.abs(scaled))
        if bad.any():
            i = tuple(int(k) for k in np.argwhere(bad)[0])
            raise Failure(f"{self.name}: {quantity} has entries that are neither 0 nor x / (1 - p){case.label}: "
                          f"at index {i}, x = {x[i]:.4g} and out = {got[i]:.4g}, but a kept unit must be "
                          f"x / (1 - p) = {scaled[i]:.4g}.\nHint: {self.hints['values']}")
        self._check_not_broadcast(case, kept, quantity)
        dropped = 1.0 - kept.mean()
        tol = fraction_tolerance(x.size)
        if abs(dropped - p) > tol:
            raise Failure(f"{self.name}: {quantity} dropped a fraction {dropped:.3f} of the units{case.label} "
                          f"(must be within {tol:.3f} of p = {p:.3g}, false-alarm probability {FALSE_ALARM:.0e})."
                          f"\nHint: {self.hints['fraction']}")
        if case.context.get("lines"):
            self._check_independence(case, kept, p, quantity)
        return got

    def _check_not_broadcast(self, case, kept, quantity):
        """Failure when every row, or every column, of the mask is all kept or all dropped (one random number per
        row or per column, broadcast). A 4-D mask is seen as (N * C, H * W): one row per channel map.

        A correct dropout does that with probability below (p^L + (1 - p)^L)^K for K lines of L units, < 1e-30
        for every shape the cases use."""
        view = kept.reshape(-1, kept.shape[-1]) if kept.ndim == 2 else kept.reshape(-1, int(np.prod(kept.shape[-2:])))
        if view.shape[0] < 2 or view.shape[1] < 2:
            return
        lines = ("row", "column") if kept.ndim == 2 else ("channel map", "pixel position across the channels")
        for axis, line in zip((1, 0), lines):
            constant = view.all(axis=axis) | ~view.any(axis=axis)
            if constant.all():
                raise Failure(f"{self.name}: in {quantity}, every {line} is either kept entirely or dropped entirely"
                              f"{case.label}: the mask is one random draw per {line.split(' across')[0]} broadcast "
                              f"over the rest, not independent across entries (a correct dropout does this with "
                              f"probability below 1e-30).\nHint: {self.hints['independent']}")

    def _check_independence(self, case, kept, p, quantity):
        """Every row and every column drops about p; neighbours agree as often as independent units do."""
        R, C = kept.shape
        for axis, line, lines, length in ((1, "row", R, C), (0, "column", C, R)):
            fractions = 1.0 - kept.mean(axis=axis)
            tol = line_tolerance(lines, length)
            worst = int(np.argmax(np.abs(fractions - p)))
            if abs(fractions[worst] - p) > tol:
                raise Failure(f"{self.name}: {line} {worst} of {quantity} dropped a fraction {fractions[worst]:.3f} "
                              f"of its {length} units{case.label}; with independent units every {line} is within "
                              f"{tol:.3f} of p = {p:.3g} (false-alarm probability {FALSE_ALARM:.0e}): the mask is "
                              f"not independent across entries.\nHint: {self.hints['independent']}")
        agree_p = (1.0 - p) ** 2 + p ** 2
        for first, second, what in ((kept[:, 0:C - 1:2], kept[:, 1::2], "horizontally"),
                                    (kept[0:R - 1:2, :], kept[1::2, :], "vertically")):
            agree = float(np.mean(first == second))
            tol = pair_tolerance(first.size)
            if abs(agree - agree_p) > tol:
                raise Failure(f"{self.name}: in {quantity}, {agree:.1%} of the {first.size} pairs of {what} "
                              f"neighbouring units are both kept or both dropped{case.label}; for independent units "
                              f"that share is within {tol:.3f} of (1 - p)^2 + p^2 = {agree_p:.3f} (false-alarm "
                              f"probability {FALSE_ALARM:.0e}): the mask is not independent across entries."
                              f"\nHint: {self.hints['independent']}")

    def check(self, case, out):
        kind = case.context["kind"]
        x = case.arrays["x"]
        if kind == "train":
            got = self._check_train_output(case, out["out"])
            if "out_again" in out:
                again = expect_array(self.name, "out of the second call", out["out_again"], x.shape, case.label,
                                     self.hints["fresh"])
                if np.array_equal(got != 0, again != 0):
                    raise Failure(f"{self.name}: two calls without a seed gave the same mask{case.label} (a "
                                  f"correct dropout repeats a mask of {x.size} units with probability below "
                                  f"1e-100).\nHint: {self.hints['fresh']}")
        elif kind == "seed":
            a = self._check_train_output(case, out["out_a"], "out")
            b = expect_array(self.name, "out of the second call", out["out_b"], x.shape, case.label,
                             self.hints["seed"])
            c = expect_array(self.name, "out with the other seed", out["out_c"], x.shape, case.label,
                             self.hints["seed"])
            if not np.array_equal(a, b):
                raise Failure(f"{self.name}: two calls with the same seed gave different outputs{case.label}.\n"
                              f"Hint: {self.hints['seed']}")
            if np.array_equal(a != 0, c != 0):
                raise Failure(f"{self.name}: two different seeds gave the same mask{case.label} (a correct dropout "
                              f"repeats a mask with probability below 1e-100).\n"
                              f"Hint: {self.hints['seed']} Draw the mask from that seed, not from a fixed one.")
        else:
            got = expect_array(self.name, "out", out["out"], x.shape, case.label, self.hints["identity"])
            expect_close(self.name, "out", got, x, VALUE_RTOL, case.label + " (expected x unchanged)",
                         self.hints["identity"])


@register(CHAPTER)
class DropoutBackward(Item):
    """dx against a centered-difference gradient of the reference with the learner's own mask.

    The mask is read off the learner's dropout_forward output in the same case (the units it kept are its
    nonzero entries; inputs have no zeros), the scale 1 / (1 - p) is the reference's. So a wrong forward
    (wrong scale, p taken as the keep probability, ...) does not cost the backward its points. In train
    mode with p > 0 that mask must be a real dropout mask, keeping and dropping each at least
    MIN_MASK_SHARE of the 1000 units (a correct dropout with p in [0.2, 0.8] misses that with probability
    below 1e-19 per case, three such cases): a forward that keeps everything or nothing leaves the backward
    without a mask to be judged by, and the item fails with "fix dropout_forward first". That is what makes
    the rule ungameable: a forward out = x / (1 - p) with a backward dx = dout / (1 - p), or out = 0 with
    dx = 0, earns nothing.
    In test mode the expected gradient is dout whatever the forward returned.
    """

    name = "dropout_backward"
    hint = ("dx = dout * mask / (1 - p) with the mask the forward pass used (keep it in the cache; do not draw "
            "a new one); in test mode dx = dout.")

    def cases(self, s):
        cases = []
        settings = [(float(s.inputs.uniform(0.2, 0.8)), "train", _seed(s)),
                    (float(s.inputs.uniform(0.2, 0.8)), "train", None),
                    (float(s.inputs.uniform(0.2, 0.8)), "test", _seed(s)),
                    (0.0, "train", _seed(s)),
                    (float(s.inputs.uniform(0.2, 0.8)), "train", _seed(s))]      # a single example, 4-D
        for index, (p, mode, seed) in enumerate(settings):
            # Train cases with p > 0 are large enough for the forward's dropped-fraction check to have teeth.
            shape = BACKWARD_TRAIN_SHAPE if (mode == "train" and p > 0) else (int(s.inputs.integers(4, 9)),
                                                                              int(s.inputs.integers(3, 8)))
            shape = BACKWARD_EDGE_SHAPE if index == 4 else shape
            x = away_from_kinks(s.inputs, shape, kinks=(0.0,), margin=1e-2)
            dout = s.upstream.normal(size=shape)
            steps = [Call("dropout_forward", [arr("x"), _param(p, mode, seed)], save=("out", "cache")),
                     Call(self.name, [arr("dout"), ref("cache")], save="dx")]
            cases.append(Case(steps=steps, arrays={"x": x, "dout": dout}, returns=("out", "dx"),
                              context={"p": p, "mode": mode},
                              label=f" on x of shape {shape} with {_describe_param(p, mode, seed)}"))
        return cases

    def prerequisite_fault(self, case, out):
        """In train mode with p > 0: does the learner's forward output carry a real dropout mask?"""
        x, p = case.arrays["x"], case.context["p"]
        if case.context["mode"] == "test":
            return None
        fwd = out.get("out")
        if not isinstance(fwd, np.ndarray) or fwd.shape != x.shape or fwd.dtype.kind not in "biuf":
            return "dropout_forward", f"did not return an out of shape {x.shape}"
        kept = float(np.mean(fwd != 0))
        if p > 0 and min(kept, 1.0 - kept) < MIN_MASK_SHARE:
            return "dropout_forward", f"kept {kept:.0%} of the units at p = {p:.3g} (no dropout mask to check dx with)"
        return None

    def check(self, case, out):
        x, dout = case.arrays["x"], case.arrays["dout"]
        p, mode = case.context["p"], case.context["mode"]
        if mode == "test":
            keep, p_eff = np.ones(x.shape, dtype=bool), 0.0
        else:
            fault = self.prerequisite_fault(case, out)
            if fault is not None:
                raise Failure(f"{self.name}: dx cannot be compared{case.label}: {fault[0]} {fault[1]}.")
            keep, p_eff = out["out"] != 0, p
        expected = numerical_gradient_array(lambda v: R.dropout_apply(v, keep, p_eff), x, dout)
        dx = expect_array(self.name, "dx", out["dx"], x.shape, case.label, self.hint)
        expect_close(self.name, "dx", dx, expected, SMOOTH, case.label, self.hint)


# --- update rules ------------------------------------------------------------------------------

def _gradient_scales(s, shape):
    """Per-entry gradient sizes from 1e-8 to 10: at least one tiny (epsilon matters) and one large entry."""
    scales = 10.0 ** s.inputs.uniform(-8.0, 1.0, size=shape)
    flat = scales.reshape(-1)
    i, j = s.inputs.choice(flat.size, size=2, replace=False)
    flat[i] = 10.0 ** s.inputs.uniform(-8.5, -7.5)
    flat[j] = 10.0 ** s.inputs.uniform(0.0, 1.0)
    return scales


class UpdateRuleItem(Item):
    """``name(w, dw, config=None) -> (next_w, config)`` run for several steps and compared with torch.optim."""

    torch_name = ""
    hint = ""

    def custom_config(self, s) -> dict:
        """Every hyperparameter set to a value other than its default."""
        raise NotImplementedError

    def scenarios(self, s):
        """(config or None, shape, number of steps)."""
        lr = float(np.round(10.0 ** s.inputs.uniform(-2.5, -1.0), 5))
        return [(None, (3, 4), 4), (self.custom_config(s), (5,), 5), ({"learning_rate": lr}, (2, 3), 3),
                (None, (1, 1), 2)]          # a single weight

    def cases(self, s):
        cases = []
        for config, shape, n_steps in self.scenarios(s):
            w = s.inputs.normal(size=shape)
            # One set of gradient sizes for every step; a single weight gets a new size at every step instead.
            scales = [_gradient_scales(s, shape)] * n_steps if int(np.prod(shape)) > 1 else \
                [10.0 ** s.inputs.uniform(-8.0, 1.0, size=shape) for _ in range(n_steps)]
            grads = [scale * s.upstream.normal(size=shape) for scale in scales]
            oracle = {}     # shared by the cases of this scenario: torch's trajectory, computed once
            described = "config=None" if config is None else f"config={config}"
            for k in range(1, n_steps + 1):
                first_config = lit(None) if config is None else dict_of(
                    mutable=True, **{key: lit(value) for key, value in config.items()})
                steps = [Call(self.name, [arr("w", mutable=True), arr("dw1"), first_config], save=("w1", "config1"))]
                steps += [Call(self.name, [ref(f"w{t - 1}"), arr(f"dw{t}"), ref(f"config{t - 1}")],
                               save=(f"w{t}", f"config{t}")) for t in range(2, k + 1)]
                arrays = {"w": w, **{f"dw{t}": grads[t - 1] for t in range(1, k + 1)}}
                cases.append(Case(steps=steps, arrays=arrays, returns=(f"w{k}",),
                                  context={"config": config, "steps": k, "grads": grads, "oracle": oracle},
                                  label=f" after {k} step{'s' if k > 1 else ''} from a w of shape {shape} "
                                        f"with {described}"))
        return cases

    def check(self, case, out):
        ctx = case.context
        if "path" not in ctx["oracle"]:
            ctx["oracle"]["path"] = R.torch_trajectory(self.name, case.arrays["w"], ctx["grads"], ctx["config"])
        expected = ctx["oracle"]["path"][ctx["steps"] - 1]
        k = ctx["steps"]
        got = expect_array(self.name, f"w{k}", out[f"w{k}"], expected.shape, case.label, self.hint)
        where = f"{case.label} (compared with {self.torch_name})"
        try:
            expect_close(self.name, "next_w", got, expected, TRAJECTORY, where, self.hint)
        except Failure:
            mistakes = [(lambda rule=rule: _trajectory(rule, case.arrays["w"], ctx["grads"][:k], ctx["config"])[-1],
                         hint) for rule, hint in self.mistakes()]
            hint = known_mistake(got, mistakes, TRAJECTORY)
            if hint is None:
                raise
            expect_close(self.name, "next_w", got, expected, TRAJECTORY, where, hint)

    def mistakes(self):
        """(update rule with a typical mistake, the hint for it): recognised when the learner's w matches it."""
        return []


def _trajectory(rule, w0, grads, config):
    """[w after each step] of a NumPy update ``rule(w, dw, config) -> (next_w, config)`` driven with ``grads``."""
    w, c = np.array(w0, dtype=np.float64), (dict(config) if config else None)
    path = []
    for dw in grads:
        w, c = rule(w, np.asarray(dw, dtype=np.float64), c)
        path.append(w.copy())
    return path


def _rmsprop_eps_inside(w, dw, config=None):
    c = dict(R.DEFAULTS["rmsprop"], **(config or {}))
    cache = c["decay_rate"] * c.get("cache", np.zeros_like(w)) + (1 - c["decay_rate"]) * dw ** 2
    c["cache"] = cache
    return w - c["learning_rate"] * dw / np.sqrt(cache + c["epsilon"]), c


def _t_starts_at_one(name):
    """Adam(W) whose t starts at 1 and is incremented before use: the first step corrects with t = 2."""
    def rule(w, dw, config=None):
        c = dict(config or {})
        c.setdefault("t", 1)
        return R.NUMPY_RULES[name](w, dw, c)
    return rule


def _adam_eps_inside(name):
    def rule(w, dw, config=None):
        c = dict(R.DEFAULTS[name], **(config or {}))
        t = c.get("t", 0) + 1
        m = c["beta1"] * c.get("m", np.zeros_like(w)) + (1 - c["beta1"]) * dw
        v = c["beta2"] * c.get("v", np.zeros_like(w)) + (1 - c["beta2"]) * dw ** 2
        c.update(t=t, m=m, v=v)
        step = c["learning_rate"] * (m / (1 - c["beta1"] ** t)) / np.sqrt(v / (1 - c["beta2"] ** t) + c["epsilon"])
        decay = c["learning_rate"] * c["weight_decay"] * w if name == "adamw" else 0.0
        return w - decay - step, c
    return rule


T_START_HINT = ("the first step must use t = 1: start t at 0 (config.setdefault('t', 0)) and increment it "
                "before the bias correction. Your first step corrected with t = 2, i.e. t started at 1 and was "
                "then incremented.")
ADAM_EPS_HINT = ("epsilon goes OUTSIDE the square root: m_hat / (np.sqrt(v_hat) + epsilon), not "
                 "m_hat / np.sqrt(v_hat + epsilon) (the two differ where gradients are tiny).")


def _lr(s, low, high):
    return float(np.round(10.0 ** s.inputs.uniform(np.log10(low), np.log10(high)), 5))


@register(CHAPTER)
class Sgd(UpdateRuleItem):
    name = "sgd"
    torch_name = "torch.optim.SGD"
    hint = "next_w = w - learning_rate * dw, with learning_rate read from config (default 1e-2)."

    def custom_config(self, s):
        return {"learning_rate": _lr(s, 0.1, 0.5)}


@register(CHAPTER)
class SgdMomentum(UpdateRuleItem):
    name = "sgd_momentum"
    torch_name = "torch.optim.SGD(momentum=...)"
    hint = ("v = momentum * v - learning_rate * dw, then next_w = w + v; store v in config['velocity'] so that "
            "the next call continues from it.")

    def custom_config(self, s):
        return {"learning_rate": _lr(s, 0.02, 0.2), "momentum": float(np.round(s.inputs.uniform(0.5, 0.8), 3))}


@register(CHAPTER)
class Rmsprop(UpdateRuleItem):
    name = "rmsprop"
    torch_name = "torch.optim.RMSprop(alpha=decay_rate)"
    hint = ("cache = decay_rate * cache + (1 - decay_rate) * dw**2 (stored in config['cache']), then "
            "next_w = w - learning_rate * dw / (sqrt(cache) + epsilon): epsilon outside the square root.")

    def custom_config(self, s):
        return {"learning_rate": _lr(s, 0.005, 0.05), "decay_rate": float(np.round(s.inputs.uniform(0.8, 0.95), 3)),
                "epsilon": 1e-6}

    def mistakes(self):
        return [(_rmsprop_eps_inside, "epsilon goes OUTSIDE the square root: dw / (np.sqrt(cache) + epsilon), "
                                      "not dw / np.sqrt(cache + epsilon) (they differ where gradients are tiny).")]


ADAM_HINT = ("count the step first (t starts at 1 on the first update); m and v are moving averages of dw and of "
             "dw squared; both are bias-corrected by dividing by 1 minus their beta to the power t; epsilon goes "
             "outside the square root of the corrected v; store t, m and v back in config.")


@register(CHAPTER)
class Adam(UpdateRuleItem):
    name = "adam"
    torch_name = "torch.optim.Adam"
    hint = ADAM_HINT

    def custom_config(self, s):
        return {"learning_rate": _lr(s, 0.01, 0.1), "beta1": float(np.round(s.inputs.uniform(0.7, 0.85), 3)),
                "beta2": float(np.round(s.inputs.uniform(0.9, 0.99), 3)), "epsilon": 1e-6}

    def mistakes(self):
        return [(_t_starts_at_one("adam"), T_START_HINT), (_adam_eps_inside("adam"), ADAM_EPS_HINT)]


@register(CHAPTER)
class AdamW(UpdateRuleItem):
    name = "adamw"
    torch_name = "torch.optim.AdamW"
    hint = ("the Adam step uses dw alone (weight decay never enters m or v); the decay is a separate term "
            "- learning_rate * weight_decay * w, computed from w before the step: "
            "next_w = w - learning_rate * weight_decay * w - learning_rate * m_hat / (sqrt(v_hat) + epsilon).")

    def custom_config(self, s):
        return {"learning_rate": _lr(s, 0.02, 0.2), "beta1": float(np.round(s.inputs.uniform(0.7, 0.85), 3)),
                "beta2": float(np.round(s.inputs.uniform(0.9, 0.99), 3)), "epsilon": 1e-6,
                "weight_decay": float(np.round(s.inputs.uniform(0.1, 0.5), 3))}

    def mistakes(self):
        return [(_t_starts_at_one("adamw"), T_START_HINT), (_adam_eps_inside("adamw"), ADAM_EPS_HINT)]
