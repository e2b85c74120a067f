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
"""
from __future__ import annotations

import math

import numpy as np

from ..cases import away_from_kinks, small_dims
from ..checks import Failure, expect_close, expect_gradient, expect_tensor
from ..numerics import numerical_gradient
from ..protocol import Call, Case, TensorValue, arr, list_of, ref, tensor
from ..references import ch08_vae_gan as R
from . import Item, register

CHAPTER = "08_vae_gan"
SMOOTH = 1e-7
KINKED = 1e-5
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
        for n in self.grad_names:
            key = f"d{n}"
            if key not in out:
                continue
            if out[key] is None:
                raise _no_gradient(self.name, n, where, hint)

            def f(v, n=n):
                return self.expected(dict(arrays, **{n: v}))
            expected = numerical_gradient(f, arrays[n]) * float(arrays["dout"])
            expect_gradient(self.name, n, out[key], expected, self.tolerance, where, hint)


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
