"""Hidden tests of chapter 08 (VAE, GAN, cycle consistency), through the torch grading path.

Every input is a fresh float64 CPU tensor made from arrays this module draws; the kernel only
records what the learner's functions return (and the gradients autograd gives through them),
and the verdicts are reached here, against ``grader/judge/references/ch08_vae_gan.py`` in float64.

- The losses (``kl_divergence``, ``vae_loss``, ``discriminator_loss``, ``generator_loss``,
  ``cycle_consistency_loss``) must return a 0-dimensional float64 tensor that still carries its
  graph; its value is compared with the reference at relative error < 1e-7, and the gradients
  ``torch.autograd.grad`` gives with respect to every input are compared with a centered-difference
  gradient of the reference (< 1e-7; < 1e-5 for the L1 cycle loss, whose inputs stay at least
  0.01 away from its kink). GAN logits come in shapes (N,) and (N, 1), real and fake batches of
  different sizes, and one case has confident logits (|logit| near 40, where 1 - sigmoid rounds
  to 0 in float64 and only a log-sigmoid / BCE-with-logits form stays finite).
- ``reparameterize`` is random, and the grader never sees the learner's random stream. Its draws
  are judged by their statistics: the noise it used, eps = (z - mu) / exp(logvar / 2), must look
  standard normal in every latent column (mean and sample variance within bounds whose
  false-alarm probability is stated below); two calls must draw fresh noise; and the gradients
  through one draw must be those of z = mu + exp(logvar / 2) * eps: dz/dmu = 1 and
  dz/dlogvar = (z - mu) / 2, computed from the very z that was recorded.
- The training steps (``gan_training_step``, ``vae_training_step``) get modules the grader built (small
  float64 MLPs whose weights come from the case's state_dict), SGD optimizers with momentum the grader
  built, and fixed inputs, the noise included (no torch random stream is involved). After k = 3 calls the
  weights of every network are read back and compared, with the losses each call returned, against the
  same k steps run here on the same modules (relative error < 1e-9: float64 round-off). A failing step is
  compared with the typical mistakes (G before D, D's loss reaching G, no zero_grad, the saturating
  generator loss, ...) to choose the hint; a step built on a wrong loss of this chapter is told to fix that
  loss first. Whether the fake is cut off from D's update is also a fact of the code (a detach, or a
  no_grad block), read from the submitted source.
"""
from __future__ import annotations

import math

import numpy as np

from ..cases import away_from_kinks, small_dims
from ..checks import Failure, expect_close, expect_gradient, expect_scalar, expect_tensor, fail_if_raised
from ..numerics import numerical_gradient, pass_scale
from ..protocol import Call, Case, TensorValue, arr, dict_of, list_of, lit, ref, tensor, trusted
from ..references import ch08_vae_gan as R
from . import Item, register

CHAPTER = "08_vae_gan"
SMOOTH = 1e-7
KINKED = 1e-5
WEIGHTS = 1e-9             # k steps of SGD in float64 on the same modules: round-off only
EXACT = 1e-10              # dz/dmu = dout and dz/dlogvar = dout (z - mu) / 2 hold to round-off

# --- the statistics of reparameterize -------------------------------------------------------------------
# The draws of one case are N_DRAWS rows of D latent columns; in column j the standardized noise
# e = (z - mu) / exp(logvar / 2) of a correct implementation is N_DRAWS independent N(0, 1) values. It is judged
# on its distribution, not two moments, by tests whose false-alarm probability is at most FALSE_ALARM each:
# - Mean: P(|mean(e)| >= t) <= 2 exp(-n t^2 / 2) (Gaussian tail), so t = sqrt(2 ln(2 / FALSE_ALARM) / n).
# - Sample variance: (n - 1) s^2 ~ chi^2 with k = n - 1 degrees of freedom, and by Laurent & Massart (2000)
#   P(chi^2 >= k + 2 sqrt(k x) + 2 x) <= e^-x and P(chi^2 <= k - 2 sqrt(k x)) <= e^-x, with x = ln(1 / FALSE_ALARM).
# - Shape: the Dvoretzky-Kiefer-Wolfowitz inequality (Massart's constant), P(sup |F_n - Phi| > eps) <=
#   2 exp(-2 n eps^2), so eps = sqrt(ln(2 / FALSE_ALARM) / (2 n)) (about 0.042): +-1 noise (0.16 away from Phi),
#   uniform noise of variance 1 (0.058 away) and a fixed eps fail, whatever their mean and variance.
# - Independence: signs of independent symmetric noise agree with probability 1/2. Rows 2i and 2i + 1 of a
#   column (n / 2 disjoint pairs) and columns j and j + 1 of a row agree in a fraction within
#   sqrt(ln(2 / FALSE_ALARM) / (2 m)) of 1/2 (Hoeffding, m pairs): noise repeated over rows or columns, or
#   antithetic pairs (eps, -eps), fail.
# With FALSE_ALARM = 1e-12 per test and at most 6 columns x 5 tests + 5 column pairs = 35 tests per case, two
# cases, correct code fails a grading run with probability below 1e-10 (tests/test_ch08_items.py checks the
# arithmetic). "logvar used as the standard deviation" and "exp(logvar) used as the standard deviation" change
# the variance by a factor of at least 1.8 in every column the cases draw (see LOGVAR_BANDS), far outside the
# variance bounds (about [0.88, 1.12]).
FALSE_ALARM = 1e-12
N_DRAWS = 8000
# log-variances drawn per column from these bands, away from -0.7 (where |logvar| = exp(logvar / 2)) and 0
# (where exp(logvar) = exp(logvar / 2)): there the two classic mistakes would look right.
LOGVAR_BANDS = ((-3.0, -1.8), (-1.8, -1.4), (0.9, 1.6), (1.6, 2.5))


def mean_tolerance(n, false_alarm=FALSE_ALARM):
    """The t with 2 exp(-n t^2 / 2) = false_alarm: the largest |mean| of n standard normals we accept."""
    return math.sqrt(2.0 * math.log(2.0 / false_alarm) / n)


def variance_bounds(n, false_alarm=FALSE_ALARM):
    """(low, high) for the sample variance of n standard normals (Laurent-Massart, k = n - 1)."""
    k, x = n - 1, math.log(1.0 / false_alarm)
    return (k - 2.0 * math.sqrt(k * x)) / k, (k + 2.0 * math.sqrt(k * x) + 2.0 * x) / k


def cdf_tolerance(n, false_alarm=FALSE_ALARM):
    """The eps with 2 exp(-2 n eps^2) = false_alarm (DKW): the largest sup |F_n - Phi| we accept."""
    return math.sqrt(math.log(2.0 / false_alarm) / (2.0 * n))


def sign_tolerance(m, false_alarm=FALSE_ALARM):
    """The largest |fraction - 1/2| of m independent fair agreements we accept (Hoeffding)."""
    return math.sqrt(math.log(2.0 / false_alarm) / (2.0 * m))


def cdf_distance(values):
    """sup_x |F_n(x) - Phi(x)| of a sample against the standard normal distribution."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = len(x)
    phi = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    ranks = np.arange(1, n + 1) / n
    return float(max(np.max(np.abs(ranks - phi)), np.max(np.abs(ranks - 1.0 / n - phi))))


def sign_agreement(a, b):
    """The fraction of pairs (a_i, b_i) with the same sign."""
    return float(np.mean(np.sign(a) == np.sign(b)))


def noise_problem(eps):
    """The first way the columns of ``eps`` (n rows of standardized noise) are not independent N(0, 1) draws,
    as (what, detail), or None."""
    n, d = eps.shape
    t, (low, high), c = mean_tolerance(n), variance_bounds(n), cdf_tolerance(n)
    rows = sign_tolerance(n // 2)
    for j in range(d):
        column = eps[:, j]
        m, v, dist = float(column.mean()), float(column.var(ddof=1)), cdf_distance(column)
        if abs(m) > t:
            return j, f"has mean {m:.3f}; a standard normal's mean over {n} draws is within {t:.3f} of 0"
        if not low <= v <= high:
            return j, f"has variance {v:.3g}; for standard-normal noise it is within [{low:.3f}, {high:.3f}]"
        if dist > c:
            return j, (f"is not normally distributed: its empirical distribution is {dist:.3f} away from the "
                       f"standard normal's (at most {c:.3f} over {n} draws)")
        agree = sign_agreement(column[0:n - 1:2], column[1:n:2])
        if abs(agree - 0.5) > rows:
            return j, (f"is not drawn independently for every row: consecutive rows have the same sign in "
                       f"{agree:.0%} of pairs (independent draws: 50% +- {rows:.1%})")
    cols = sign_tolerance(n)
    for j in range(d - 1):
        agree = sign_agreement(eps[:, j], eps[:, j + 1])
        if abs(agree - 0.5) > cols:
            return j, (f"is not independent of column {j + 1}: they have the same sign in {agree:.0%} of rows "
                       f"(independent draws: 50% +- {cols:.1%})")
    return None


def _grad_call(output, inputs):
    """torch.autograd.grad(output, [inputs], grad_outputs=dout): saves d<name> for every input. An error (the
    output has no graph) is recorded for check(), which names it with the item's hint."""
    return Call("grad", [ref(output), arr("dout"), list_of(*[ref(n) for n in inputs])], builtin=True,
                save=tuple(f"d{n}" for n in inputs), record_errors=True)


def _no_gradient(item, name, where, hint):
    return Failure(f"{item}: no gradient reaches {name}{where}: the result does not depend on {name} through torch "
                   f"operations.\nHint: {hint}")


def _detached(item, quantity, value, where, hint):
    if isinstance(value, TensorValue) and not value.requires_grad:
        raise Failure(f"{item}: {quantity} carries no gradient{where}: nothing would flow back to the inputs."
                      f"\nHint: {hint}")


DETACHED = ("compute it from the input tensors with torch operations only: no .item(), .numpy(), .detach(), "
            "float(...) or torch.tensor(...) on the way.")


class LossItem(Item):
    """``name(*inputs) -> a 0-dimensional tensor``: its value and its gradients against the reference."""

    reference = None
    input_names: tuple = ()
    grad_names: tuple = ()        # the inputs whose gradients are checked
    tolerance = SMOOTH
    hints: dict = {}

    def make_inputs(self, s, index) -> dict:
        raise NotImplementedError

    def degenerate_inputs(self, s) -> dict:
        """Inputs of the smallest sizes the contract allows."""
        raise NotImplementedError

    def label(self, arrays) -> str:
        return " on " + " and ".join(f"{n} of shape {arrays[n].shape}" for n in self.input_names)

    def n_cases(self):
        return 3

    def cases(self, s):
        cases = []
        for index in range(self.n_cases() + 1):
            # the last case has the degenerate sizes the contract allows (a batch of 1, 1 latent dimension)
            arrays = self.make_inputs(s, index) if index < self.n_cases() else self.degenerate_inputs(s)
            steps = [Call(self.name, [tensor(n, requires_grad=n in self.grad_names) for n in self.input_names],
                          save="loss", record_errors=True)]
            returns = ("loss",)
            if index > 0:           # case 0 judges the value alone
                arrays["dout"] = np.asarray(s.upstream.normal())
                steps.append(_grad_call("loss", self.grad_names))
                returns += tuple(f"d{n}" for n in self.grad_names)
            cases.append(Case(steps=steps, arrays=arrays, returns=returns, label=self.label(arrays)))
        return cases

    def expected(self, arrays):
        return type(self).reference(*[arrays[n] for n in self.input_names])

    def check(self, case, out):
        arrays, where, hint = case.arrays, case.label, self.hints["value"]
        got = expect_tensor(self.name, "the loss", out["loss"], (), where, hint)
        _detached(self.name, "the loss", out["loss"], where, DETACHED)
        expect_close(self.name, "the loss", float(got), self.expected(arrays), SMOOTH, where, hint)
        checked = [n for n in self.grad_names if f"d{n}" in out]
        for n in checked:
            if out[f"d{n}"] is None:
                raise _no_gradient(self.name, n, where, hint)
        expected = {n: numerical_gradient(lambda v, n=n: self.expected(dict(arrays, **{n: v})), arrays[n])
                    * float(arrays["dout"]) for n in checked}
        floor = pass_scale(expected.values())
        for n in checked:
            expect_gradient(self.name, n, out[f"d{n}"], expected[n], self.tolerance, where, hint, floor=floor)


# --- VAE -------------------------------------------------------------------------------------------------

def _latent(s, n=None, d=None):
    n = n or int(s.inputs.integers(2, 9))
    d = d or int(s.inputs.integers(2, 7))
    mu = s.inputs.normal(0.0, 1.5, size=(n, d))
    logvar = s.inputs.uniform(-2.5, 1.5, size=(n, d))
    return mu, logvar


@register(CHAPTER)
class Reparameterize(Item):
    name = "reparameterize"
    hints = {
        "stats": "z is mu plus the standard deviation times standard-normal noise; logvar is the log of the "
                 "variance, so the standard deviation is exp of half of it; the noise is one fresh "
                 "standard-normal number per entry (torch.randn_like).",
        "fresh": "draw new noise on every call; do not re-seed the generator inside the function.",
        "grad": "sample through the reparameterization: compute z from mu and logvar with differentiable torch "
                "operations (mu plus the standard deviation times the noise); torch.normal(...), "
                "Normal(...).sample() and .detach() cut the path from z back to mu and logvar.",
    }

    def cases(self, s):
        cases = []
        for _ in range(2):
            d = int(s.inputs.integers(4, 7))
            bands = [LOGVAR_BANDS[int(k)] for k in s.inputs.permutation(np.resize(np.arange(4), d))]
            column_logvar = np.array([s.inputs.uniform(lo, hi) for lo, hi in bands])
            mu = s.inputs.normal(0.0, 2.0, size=(N_DRAWS, d))
            logvar = np.broadcast_to(column_logvar, (N_DRAWS, d)).copy()
            cases.append(Case(steps=[Call(self.name, [tensor("mu"), tensor("logvar")], save="z", record_errors=True)],
                              arrays={"mu": mu, "logvar": logvar}, returns=("z",), context={"kind": "stats"},
                              label=f" on mu and logvar of shape {mu.shape} (column log-variances "
                                    f"{', '.join(f'{v:.2f}' for v in column_logvar)})"))
        mu, logvar = _latent(s, n=int(s.inputs.integers(20, 40)))
        cases.append(Case(steps=[Call(self.name, [tensor("mu"), tensor("logvar")], save="z1", record_errors=True),
                                 Call(self.name, [tensor("mu"), tensor("logvar")], save="z2", record_errors=True)],
                          arrays={"mu": mu, "logvar": logvar}, returns=("z1", "z2"), context={"kind": "fresh"},
                          label=f" called twice on the same mu and logvar of shape {mu.shape}"))
        for index in range(3):
            mu, logvar = _latent(s) if index < 2 else _latent(s, n=1, d=1)
            dout = s.upstream.normal(size=mu.shape)
            steps = [Call(self.name, [tensor("mu", requires_grad=True), tensor("logvar", requires_grad=True)],
                          save="z", record_errors=True),
                     _grad_call("z", ("mu", "logvar"))]
            cases.append(Case(steps=steps, arrays={"mu": mu, "logvar": logvar, "dout": dout},
                              returns=("z", "dmu", "dlogvar"), context={"kind": "grad"},
                              label=f" on mu and logvar of shape {mu.shape} (gradients through one draw)"))
        return cases

    def _z(self, case, value, quantity="z"):
        return expect_tensor(self.name, quantity, value, case.arrays["mu"].shape, case.label, self.hints["stats"])

    def check(self, case, out):
        kind = case.context["kind"]
        mu, logvar = case.arrays["mu"], case.arrays["logvar"]
        if kind == "stats":
            eps = (self._z(case, out["z"]) - mu) / np.exp(0.5 * logvar)
            problem = noise_problem(eps)
            if problem is not None:
                j, detail = problem
                raise Failure(f"{self.name}: the noise (z - mu) / exp(logvar / 2) in latent column {j} "
                              f"(logvar = {logvar[0, j]:.2f}) {detail}{case.label} (false-alarm probability "
                              f"{FALSE_ALARM:.0e} per test).\nHint: {self.hints['stats']}")
        elif kind == "fresh":
            z1, z2 = self._z(case, out["z1"]), self._z(case, out["z2"], "the second z")
            if np.array_equal(z1, z2):
                raise Failure(f"{self.name}: two calls gave the same z{case.label}.\nHint: {self.hints['fresh']}")
        else:
            z = self._z(case, out["z"])
            _detached(self.name, "z", out["z"], case.label, self.hints["grad"])
            dout = case.arrays["dout"]
            expected = {"mu": dout, "logvar": 0.5 * dout * (z - mu)}
            formula = {"mu": "dz/dmu = 1", "logvar": "dz/dlogvar = (z - mu) / 2 = exp(logvar / 2) * eps / 2"}
            for n in ("mu", "logvar"):
                if out[f"d{n}"] is None:
                    raise _no_gradient(self.name, n, case.label, self.hints["grad"])
                expect_gradient(self.name, n, out[f"d{n}"], expected[n], EXACT,
                                f"{case.label} (expected {formula[n]}, from the z you returned)", self.hints["grad"])


@register(CHAPTER)
class KlDivergence(LossItem):
    name = "kl_divergence"
    reference = R.kl_divergence
    input_names = ("mu", "logvar")
    grad_names = ("mu", "logvar")
    hints = {"value": "the closed form of the chapter (and of the docstring), per example: a sum over the latent "
                      "dimensions (dim=1), then the mean over the batch, not a mean over every entry; logvar is "
                      "the log of the variance."}

    def make_inputs(self, s, index):
        mu, logvar = _latent(s)
        return {"mu": mu, "logvar": logvar}

    def degenerate_inputs(self, s):
        mu, logvar = _latent(s, n=1, d=1)
        return {"mu": mu, "logvar": logvar}


@register(CHAPTER)
class VaeLoss(LossItem):
    name = "vae_loss"
    reference = R.vae_loss
    input_names = ("x_recon", "x", "mu", "logvar")
    grad_names = ("x_recon", "mu", "logvar")
    hints = {"value": "reconstruction = binary cross-entropy summed over the pixels of each example (a sum over "
                      "the whole batch is N times too large, a mean over the pixels far too small), plus the KL "
                      "term summed over the latent dimensions; both averaged over the batch of N examples."}

    def make_inputs(self, s, index):
        n = int(s.inputs.integers(2, 7))
        pixels = (n, int(s.inputs.integers(5, 17))) if index != 1 else (n, 1, 3, int(s.inputs.integers(2, 5)))
        x = s.inputs.uniform(0.0, 1.0, size=pixels)
        x[s.inputs.random(pixels) < 0.3] = 0.0                    # digits have many exact zeros
        # probabilities away from 0 and 1, where the BCE's curvature would swamp a centered difference
        x_recon = s.inputs.uniform(0.1, 0.9, size=pixels)
        mu, logvar = _latent(s, n=n)
        return {"x_recon": x_recon, "x": x, "mu": mu, "logvar": logvar}

    def degenerate_inputs(self, s):
        mu, logvar = _latent(s, n=1, d=1)
        return {"x_recon": s.inputs.uniform(0.1, 0.9, size=(1, 1)), "x": s.inputs.uniform(0.0, 1.0, size=(1, 1)),
                "mu": mu, "logvar": logvar}

    def label(self, arrays):
        return (f" on x and x_recon of shape {arrays['x'].shape} and mu and logvar of shape "
                f"{arrays['mu'].shape}")


# --- GAN -------------------------------------------------------------------------------------------------

def _logits(s, n, column, confident=False):
    shape = (n, 1) if column else (n,)
    logits = s.inputs.normal(0.0, 2.0, size=shape)
    if confident:                      # some entries where 1 - sigmoid(logit) is 0 in float64
        flat = logits.reshape(-1)
        k = s.inputs.choice(n, size=max(2, n // 2), replace=False)
        flat[k] = s.inputs.choice([-1.0, 1.0], size=k.size) * s.inputs.uniform(38.0, 45.0, size=k.size)
    return logits


STABLE = ("BCE with logits is stable for any logit: F.binary_cross_entropy_with_logits, or -log sigmoid(l) = "
          "softplus(-l) and -log(1 - sigmoid(l)) = softplus(l); never log(1 - torch.sigmoid(l)).")


@register(CHAPTER)
class DiscriminatorLoss(LossItem):
    name = "discriminator_loss"
    reference = R.discriminator_loss
    input_names = ("logits_real", "logits_fake")
    grad_names = ("logits_real", "logits_fake")
    hints = {"value": "mean BCE-with-logits of logits_real against ones (real images are labelled 1) plus mean "
                      "BCE-with-logits of logits_fake against zeros; the two batches may have different sizes. "
             + STABLE}

    def n_cases(self):
        return 4

    def make_inputs(self, s, index):
        n_real, n_fake = int(s.inputs.integers(3, 9)), int(s.inputs.integers(3, 9))
        if n_fake == n_real:
            n_fake += 2
        column = index in (1, 3)
        return {"logits_real": _logits(s, n_real, column, confident=index == 3),
                "logits_fake": _logits(s, n_fake, column, confident=index == 3)}

    def degenerate_inputs(self, s):
        return {"logits_real": _logits(s, 1, True), "logits_fake": _logits(s, 2, True)}


@register(CHAPTER)
class GeneratorLoss(LossItem):
    name = "generator_loss"
    reference = R.generator_loss
    input_names = ("logits_fake",)
    grad_names = ("logits_fake",)
    hints = {"value": "the non-saturating loss: mean BCE-with-logits of logits_fake against ones, mean(-log D(G(z))) "
                      "(not the minimax mean(log(1 - D(G(z))))). " + STABLE}

    def n_cases(self):
        return 4

    def make_inputs(self, s, index):
        return {"logits_fake": _logits(s, int(s.inputs.integers(3, 10)), index in (1, 3), confident=index == 3)}

    def degenerate_inputs(self, s):
        return {"logits_fake": _logits(s, 1, True)}


# --- CycleGAN --------------------------------------------------------------------------------------------

@register(CHAPTER)
class CycleConsistencyLoss(LossItem):
    name = "cycle_consistency_loss"
    reference = R.cycle_consistency_loss
    input_names = ("x", "x_cycled", "y", "y_cycled")
    grad_names = ("x", "x_cycled", "y", "y_cycled")
    tolerance = KINKED
    hints = {"value": "mean |x - x_cycled| + mean |y - y_cycled|: an L1 distance for each direction, each "
                      "averaged over all of its own entries (x and y may have different shapes)."}

    def make_inputs(self, s, index):
        nx, dx, ny, dy = small_dims(s.inputs, (2, 6), (2, 4), (2, 6), (2, 4))
        if index == 2:
            ny, dy = nx, dx                    # same shapes: also the case where x and y could be mixed up
        x, y = s.inputs.normal(size=(nx, dx)), s.inputs.normal(size=(ny, dy))
        # the cycled tensors differ from the originals by at least 0.01 in every entry: no kink of |.| nearby
        return {"x": x, "x_cycled": x + away_from_kinks(s.inputs, x.shape, scale=0.5),
                "y": y, "y_cycled": y + away_from_kinks(s.inputs, y.shape, scale=0.5)}

    def degenerate_inputs(self, s):
        x, y = s.inputs.normal(size=(1, 1)), s.inputs.normal(size=(1, 2))
        return {"x": x, "x_cycled": x + away_from_kinks(s.inputs, x.shape, scale=0.5),
                "y": y, "y_cycled": y + away_from_kinks(s.inputs, y.shape, scale=0.5)}


# --- training steps --------------------------------------------------------------------------------------

STEPS = 3                  # calls per case: a missing zero_grad shows from the second call on


def _state_arrays(prefix, state):
    return {f"{prefix}:{k}": v for k, v in state.items()}


def _state_spec(prefix, state):
    return dict_of(**{k: arr(f"{prefix}:{k}") for k in state})


def _linear_state(s, sizes, prefix=""):
    """Weights of Linear layers at positions 0, 2, 4, ... of a Sequential (an activation between them)."""
    state = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        state[f"{prefix}{2 * i}.weight"] = s.inputs.normal(0.0, 1.0 / np.sqrt(a), size=(b, a))
        state[f"{prefix}{2 * i}.bias"] = s.inputs.normal(0.0, 0.2, size=b)
    return state


def _compare_states(item, got_state, want_state, what, where, on_fail):
    """Failure from ``on_fail(message)`` at the first parameter of ``what`` that differs from ``want_state``."""
    fail_if_raised(item, got_state, "")
    if not isinstance(got_state, dict):
        raise Failure(f"{item}: the {what}'s weights could not be read back{where}.")
    for name, want in want_state.items():
        got = expect_tensor(item, f"the {what}'s {name} after the steps", got_state.get(name), want.shape, where)
        if not np.allclose(got, want, rtol=WEIGHTS, atol=WEIGHTS):
            error = float(np.max(np.abs(got - want)) / (np.max(np.abs(want)) + 1e-12))
            on_fail(f"after {STEPS} steps the {what}'s {name} differs from the expected weights (relative error "
                    f"{error:.1e}){where}")


class TrainingStepItem(Item):
    """Shared judging of a training step: losses and weights after STEPS calls against the reference."""

    hints: dict = {}

    def _mistake_hint(self, case, out, matches):
        """The hint of the first typical mistake whose run matches what was recorded, else the general one."""
        for mistake in self.mistakes:
            try:
                if matches(mistake):
                    return self.hints[mistake]
            except Exception:  # noqa: BLE001 - a mistake that cannot be reproduced here does not match
                continue
        return self.hints["order"]


@register(CHAPTER)
class GanTrainingStep(TrainingStepItem):
    name = "gan_training_step"
    requires = ("discriminator_loss", "generator_loss")
    mistakes = R.GAN_MISTAKES
    hints = {
        "order": "one step is two updates, in this order: the discriminator on discriminator_loss of its logits on "
                 "the real batch and on the generated batch, then the generator on generator_loss of the updated "
                 "discriminator's logits on its samples; each update resets its own optimizer's gradients, "
                 "backpropagates its own loss and steps its own optimizer (section 3).",
        "generator first": "the discriminator is updated first and the generator second, against the discriminator "
                           "that was just updated (section 3, alternating training).",
        "no detach": "the discriminator's loss must not reach the generator's gradients: the generated batch enters "
                     "the discriminator's update as a constant, cut off from the generator's graph (section 3).",
        "no zero_grad": "reset an optimizer's gradients before each backward pass: the generator's backward also "
                        "fills the discriminator's .grad, and gradients left from the previous call add up.",
        "saturating generator loss": "the generator minimises the non-saturating loss, your generator_loss of the "
                                     "discriminator's logits on the fakes, not the minimax log(1 - D).",
        "losses": "return the two losses of this call as Python numbers, (d_loss, g_loss), each taken with "
                  ".item() right after it is computed: d_loss before the discriminator's update, g_loss with the "
                  "updated discriminator.",
        "detach": "cut the generated batch off from the generator's graph where it enters the discriminator's loss "
                  "(a .detach(), or generate it under torch.no_grad() and generate again for the generator's "
                  "update), so that the discriminator's backward never reaches the generator (section 3).",
    }

    def cases(self, s):
        cases = []
        for index in range(2):
            noise_dim, hidden, dim = int(s.inputs.integers(2, 4)), int(s.inputs.integers(4, 8)), 2
            n = int(s.inputs.integers(5, 10))
            g_layers = [["linear", noise_dim, hidden], ["tanh"], ["linear", hidden, dim]]
            d_layers = [["linear", dim, hidden], ["tanh"], ["linear", hidden, 1]]
            g_state, d_state = _linear_state(s, (noise_dim, hidden, dim)), _linear_state(s, (dim, hidden, 1))
            g_lr, d_lr = (float(np.round(s.inputs.uniform(lo, hi), 3)) for lo, hi in ((0.05, 0.15), (0.2, 0.4)))
            momentum = 0.5
            reals = [s.inputs.normal(0.0, 1.0, size=(n, dim)) + np.array([1.5, -0.5]) for _ in range(STEPS)]
            zs = [s.inputs.normal(size=(n, noise_dim)) for _ in range(STEPS)]
            arrays = {**_state_arrays("g", g_state), **_state_arrays("d", d_state),
                      **{f"real{i}": r for i, r in enumerate(reals)}, **{f"z{i}": z for i, z in enumerate(zs)}}
            steps = [Call("value", [trusted("sequential", layers=lit(g_layers), state=_state_spec("g", g_state))],
                          builtin=True, save="G"),
                     Call("value", [trusted("sequential", layers=lit(d_layers), state=_state_spec("d", d_state))],
                          builtin=True, save="D"),
                     Call("value", [trusted("sgd", module=ref("G"), lr=lit(g_lr), momentum=lit(momentum))],
                          builtin=True, save="g_optimizer"),
                     Call("value", [trusted("sgd", module=ref("D"), lr=lit(d_lr), momentum=lit(momentum))],
                          builtin=True, save="d_optimizer")]
            steps += [Call(self.name, [ref("G"), ref("D"), ref("g_optimizer"), ref("d_optimizer"), tensor(f"real{i}"),
                                       tensor(f"z{i}")], save=(f"d_loss{i}", f"g_loss{i}"), record_errors=True)
                      for i in range(STEPS)]
            steps += [Call("G.state_dict", on_ref=True, save="g_state"),
                      Call("D.state_dict", on_ref=True, save="d_state")]
            returns = tuple(f"{k}{i}" for i in range(STEPS) for k in ("d_loss", "g_loss")) + ("g_state", "d_state")
            cases.append(Case(steps=steps, arrays=arrays, returns=returns,
                              context={"g_layers": g_layers, "d_layers": d_layers, "g_lr": g_lr, "d_lr": d_lr,
                                       "momentum": momentum},
                              label=f" ({STEPS} calls on batches of {n}: a generator {noise_dim} - {hidden} - {dim} "
                                    f"and a discriminator {dim} - {hidden} - 1, SGD with lr {g_lr} and {d_lr}, "
                                    f"momentum {momentum})"))
        return cases

    def _run(self, case, mistake=None):
        a, ctx = case.arrays, case.context
        g_state = {k[2:]: v for k, v in a.items() if k.startswith("g:")}
        d_state = {k[2:]: v for k, v in a.items() if k.startswith("d:")}
        return R.gan_training_steps(ctx["g_layers"], g_state, ctx["d_layers"], d_state,
                                    [a[f"real{i}"] for i in range(STEPS)], [a[f"z{i}"] for i in range(STEPS)],
                                    ctx["g_lr"], ctx["d_lr"], ctx["momentum"], mistake)

    def check(self, case, out):
        for i in range(STEPS):
            fail_if_raised(self.name, out[f"d_loss{i}"], self.hints["order"])
        losses, g_want, d_want = self._run(case)

        def matches(mistake):
            _, g_m, d_m = self._run(case, mistake)
            return all(np.allclose(out[key][k].array, want[k], rtol=1e-7, atol=1e-9)
                       for key, want in (("g_state", g_m), ("d_state", d_m)) for k in want)

        def fail(message):
            raise Failure(f"{self.name}: {message}.\nHint: {self._mistake_hint(case, out, matches)}")

        _compare_states(self.name, out["d_state"], d_want, "discriminator", case.label, fail)
        _compare_states(self.name, out["g_state"], g_want, "generator", case.label, fail)
        for i, (d_loss, g_loss) in enumerate(losses):
            for key, want in (("d_loss", d_loss), ("g_loss", g_loss)):
                where = f" (call {i + 1}){case.label}"
                got = expect_scalar(self.name, f"the returned {key}", out[f"{key}{i}"], where, self.hints["losses"])
                expect_close(self.name, f"the returned {key}", got, want, WEIGHTS, where, self.hints["losses"])

    def source_problem(self, source):
        """Whether the generated batch is cut off from D's update is a fact of the code: read it from the source."""
        if not cuts_the_graph(source):
            return (f"{self.name}: your step never cuts the generated batch off from the generator's graph (no "
                    f".detach() and no torch.no_grad() in your code, read from it): the discriminator's backward "
                    f"reaches the generator, whose .grad you then have to clear by luck of order.\n"
                    f"Hint: {self.hints['detach']}")
        return None


@register(CHAPTER)
class VaeTrainingStep(TrainingStepItem):
    name = "vae_training_step"
    requires = ("vae_loss",)
    mistakes = R.VAE_MISTAKES
    hints = {
        "order": "one step: encode x into mu and logvar, make z with the reparameterization from the given eps, "
                 "decode z, score it with vae_loss, then reset the gradients, backpropagate and step the optimizer "
                 "(section 2).",
        "no zero_grad": "reset the optimizer's gradients before every backward pass: gradients left from the "
                        "previous call add up.",
        "no noise": "decode a sampled z, not mu: z is mu plus the standard deviation times the given eps (the "
                    "reparameterization), otherwise the decoder never learns to handle a neighbourhood of each code.",
        "noise times the variance": "logvar is the log of the variance: the standard deviation that multiplies "
                                    "eps is exp of half of it.",
        "loss": "return the loss of this call as a Python number (.item()), computed before the update.",
    }

    def cases(self, s):
        cases = []
        for index in range(2):
            dim, hidden, latent = int(s.inputs.integers(5, 9)), int(s.inputs.integers(4, 8)), int(s.inputs.integers(2, 4))
            n = int(s.inputs.integers(4, 9))
            encoder = [["linear", dim, hidden], ["tanh"], ["linear", hidden, 2 * latent]]
            decoder = [["linear", latent, hidden], ["tanh"], ["linear", hidden, dim], ["sigmoid"]]
            state = {**_linear_state(s, (dim, hidden, 2 * latent), "encoder."),
                     **_linear_state(s, (latent, hidden, dim), "decoder.")}
            lr, momentum = float(np.round(s.inputs.uniform(0.002, 0.01), 4)), 0.5
            xs = []
            for _ in range(STEPS):
                x = s.inputs.uniform(0.0, 1.0, size=(n, dim))
                x[s.inputs.random(x.shape) < 0.3] = 0.0          # digits have many exact zeros
                xs.append(x)
            epss = [s.inputs.normal(size=(n, latent)) for _ in range(STEPS)]
            arrays = {**_state_arrays("m", state), **{f"x{i}": x for i, x in enumerate(xs)},
                      **{f"eps{i}": e for i, e in enumerate(epss)}}
            steps = [Call("value", [trusted("vae", encoder=lit(encoder), decoder=lit(decoder),
                                            state=_state_spec("m", state))], builtin=True, save="model"),
                     Call("value", [trusted("sgd", module=ref("model"), lr=lit(lr), momentum=lit(momentum))],
                          builtin=True, save="optimizer")]
            steps += [Call(self.name, [ref("model"), ref("optimizer"), tensor(f"x{i}"), tensor(f"eps{i}")],
                           save=f"loss{i}", record_errors=True) for i in range(STEPS)]
            steps += [Call("model.state_dict", on_ref=True, save="state")]
            cases.append(Case(steps=steps, arrays=arrays, returns=tuple(f"loss{i}" for i in range(STEPS)) + ("state",),
                              context={"encoder": encoder, "decoder": decoder, "lr": lr, "momentum": momentum},
                              label=f" ({STEPS} calls on batches of {n} images of {dim} pixels: a VAE {dim} - {hidden} "
                                    f"- (mu, logvar of {latent}) and {latent} - {hidden} - {dim}, SGD with lr {lr}, "
                                    f"momentum {momentum})"))
        return cases

    def _run(self, case, mistake=None):
        a, ctx = case.arrays, case.context
        state = {k[2:]: v for k, v in a.items() if k.startswith("m:")}
        return R.vae_training_steps(ctx["encoder"], ctx["decoder"], state, [a[f"x{i}"] for i in range(STEPS)],
                                    [a[f"eps{i}"] for i in range(STEPS)], ctx["lr"], ctx["momentum"], mistake)

    def check(self, case, out):
        for i in range(STEPS):
            fail_if_raised(self.name, out[f"loss{i}"], self.hints["order"])
        losses, want = self._run(case)

        def matches(mistake):
            _, got_m = self._run(case, mistake)
            return all(np.allclose(out["state"][k].array, got_m[k], rtol=1e-7, atol=1e-9) for k in got_m)

        def fail(message):
            raise Failure(f"{self.name}: {message}.\nHint: {self._mistake_hint(case, out, matches)}")

        _compare_states(self.name, out["state"], want, "model", case.label, fail)
        for i, loss in enumerate(losses):
            where = f" (call {i + 1}){case.label}"
            got = expect_scalar(self.name, "the returned loss", out[f"loss{i}"], where, self.hints["loss"])
            expect_close(self.name, "the returned loss", got, loss, WEIGHTS, where, self.hints["loss"])


CUTS = {"detach", "detach_", "no_grad", "inference_mode", "data", "requires_grad_"}


def cuts_the_graph(source):
    """True when the code (not its docstrings or comments) names a way to cut a tensor off its graph: ``.detach()``,
    ``torch.no_grad()`` / ``inference_mode()``, ``.data`` or ``.requires_grad_(...)``; also when the source cannot
    be parsed (the numbers then decide alone)."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return True
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in CUTS:
            return True
        if isinstance(node, ast.Name) and node.id in CUTS - {"data"}:
            return True
    return False
