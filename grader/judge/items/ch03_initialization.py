"""Hidden tests of chapter 03 (initialization).

The initializers are random, so they are judged by properties of what they
return, never by comparison with one reference draw:

- the exact shape (fan_in, fan_out), with fan_in and fan_out far apart, so a
  swapped shape and a standard deviation taken from fan_out both fail; on every
  seed also a single column (fan_out = 1) and a single row (fan_in = 1), where a
  ``squeeze()`` loses an axis;
- the ``rng`` argument is the only source of randomness: two generators with the
  same seed give identical arrays, a generator with another seed a different one
  (``np.random.randn`` or a generator made inside the function fail);
- the distribution, with tolerances derived from exact tail bounds so that a
  correct answer fails with probability < 1e-9 per grading run (see
  ``FALSE_ALARM_PER_CASE``): independent entries (the row sums and the column
  sums spread as much as sums of independent draws do, so a row or a column drawn
  once and repeated fails), mean 0, the right standard deviation, Gaussian tails
  (a uniform draw with the right standard deviation has no values beyond 2
  standard deviations, a Gaussian 4.55% of them), and the whole empirical CDF
  within the Dvoretzky-Kiefer-Wolfowitz band of the normal CDF (a Laplace draw
  with the right standard deviation passes the other checks, not this one).

``layer_activations`` is deterministic and compared with the reference forward;
``two_layer_tanh_loss`` is compared with the reference loss and with
centered-difference gradients of it (float64, relative error < 1e-7), and on
symmetric weights its gradients must be symmetric too.
"""
from __future__ import annotations

import math

import numpy as np

from ..cases import small_dims
from ..checks import Failure, expect_array, expect_close, expect_scalar
from ..numerics import numerical_gradient
from ..protocol import Call, Case, arr, list_of, lit, rng
from ..references import ch03_initialization as R
from . import Item, register

CHAPTER = "03_initialization"
SMOOTH = 1e-7

# --- statistical tolerances of the initializer checks -----------------------------------
# n = fan_in * fan_out draws, sigma = the standard deviation the initializer must have.
# Mean: mean(w) ~ N(0, sigma^2 / n) exactly for a correct answer; |mean| <= 7 sigma / sqrt(n)
#   fails with probability 2 * Phi(-7) = 2.6e-12.
# Standard deviation: with the known mean 0, Q = sum(w^2) / sigma^2 ~ chi-square(n). Laurent and
#   Massart (2000): P(Q - n >= 2 sqrt(n x) + 2 x) <= e^-x and P(n - Q >= 2 sqrt(n x)) <= e^-x.
#   With x = 25 the two sides together fail with probability <= 2 e^-25 = 2.8e-11.
# Gaussian tails: K = #{|w| > 2 sigma} ~ Binomial(n, p) with p = P(|Z| > 2) = 0.0455, mean mu = n p.
#   Accept 0.5 mu < K < 1.5 mu. Chernoff: P(K <= mu / 2) <= exp(-mu / 8) and P(K >= 1.5 mu) <=
#   exp(-mu / 10); with n >= 6000 (mu >= 273) that is <= 1.6e-12 in all.
# Independence, free of the mean and the scale: for n = r * c i.i.d. N(mu, tau^2) entries of an r x c array, the
#   r row sums R_i have sum_i (R_i - mean R)^2 / (c tau^2) ~ chi-square(r - 1), and the sample variance s^2 (ddof 0)
#   has n s^2 / tau^2 ~ chi-square(n - 1). Laurent-Massart on both (x = INDEPENDENCE_X = 30): the statistic
#   sum_i (R_i - mean R)^2 / (c s^2) exceeds ``independence_bound(r - 1, n)`` with probability <= 2 e^-30 =
#   1.9e-13 for the rows, the same for the columns.
#   A row (or column) drawn once and repeated multiplies the statistic of the columns (rows) by the number of
#   repeats, >= 20 in the cases with two fans > 1, while the bound is at most 7.8 times its mean.
# Empirical CDF (Dvoretzky-Kiefer-Wolfowitz with Massart's constant): for n i.i.d. draws from N(0, sigma^2),
#   P(sup_u |F_n(u) - Phi(u / sigma)| > eps) <= 2 exp(-2 n eps^2); eps = sqrt(ln(2 / DKW_FALSE_ALARM) / (2 n))
#   with DKW_FALSE_ALARM = 1e-11 (eps = 0.047 for 6000 draws). Laplace with the right standard deviation is 0.06
#   away from the normal CDF.
# Per case at most 4.3e-11; 5 cases per initializer and 2 initializers: < 5e-10 per grading run.
MEAN_Z = 7.0
CHI2_X = 25.0
TAIL_P = math.erfc(2.0 / math.sqrt(2.0))
TAIL_BAND = (0.5, 1.5)
MIN_DRAWS = 6000
INDEPENDENCE_X = 30.0
DKW_FALSE_ALARM = 1e-11
FALSE_ALARM_PER_CASE = (math.erfc(MEAN_Z / math.sqrt(2.0)) + 2 * math.exp(-CHI2_X)
                        + math.exp(-MIN_DRAWS * TAIL_P / 8) + math.exp(-MIN_DRAWS * TAIL_P / 10)
                        + 4 * math.exp(-INDEPENDENCE_X) + DKW_FALSE_ALARM)


def independence_bound(k, n, x=INDEPENDENCE_X):
    """The largest sum_i (R_i - mean R)^2 / (c s^2) accepted for k = r - 1 and n = r * c (see above).

    Laurent-Massart: chi2(k) <= k + 2 sqrt(k x) + 2 x and chi2(n - 1) >= n - 1 - 2 sqrt((n - 1) x), each with
    probability >= 1 - e^-x; then n s^2 / tau^2 >= n - 1 - 2 sqrt((n - 1) x).
    """
    low = (n - 1 - 2.0 * math.sqrt((n - 1) * x)) / n
    return (k + 2.0 * math.sqrt(k * x) + 2.0 * x) / low


def dkw_band(n, false_alarm=DKW_FALSE_ALARM):
    """The eps with 2 exp(-2 n eps^2) = false_alarm: the largest sup |F_n - Phi| accepted for n draws."""
    return math.sqrt(math.log(2.0 / false_alarm) / (2.0 * n))


_ERF = np.frompyfunc(math.erf, 1, 1)


def normal_cdf(u):
    return 0.5 * (1.0 + _ERF(np.asarray(u, dtype=np.float64) / math.sqrt(2.0)).astype(np.float64))


def ks_distance(u):
    """sup_u |F_n(u) - Phi(u)| of the sample ``u`` against the standard normal CDF, and where it is largest."""
    u = np.sort(np.asarray(u, dtype=np.float64).reshape(-1))
    n = u.size
    cdf = normal_cdf(u)
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(0, n) / n
    i, j = int(np.argmax(above)), int(np.argmax(below))
    return (float(above[i]), float(u[i])) if above[i] >= below[j] else (float(below[j]), float(u[j]))


def std_band(n):
    """(low, high) bounds on the root mean square of n correct draws, as multiples of sigma."""
    low = 1.0 - 2.0 * math.sqrt(CHI2_X / n)
    high = 1.0 + 2.0 * math.sqrt(CHI2_X / n) + 2.0 * CHI2_X / n
    return math.sqrt(low), math.sqrt(high)


class InitItem(Item):
    """``name(fan_in, fan_out, rng) -> W`` of shape (fan_in, fan_out), N(0, sigma^2) entries.

    Judged by its distribution on five fresh draws of at least MIN_DRAWS = 6000 entries (one a single column,
    one a single row): independence of the entries (Laurent-Massart on the spread of row and column sums,
    false alarm 2e-13 each), mean (Gaussian tail, 2.6e-12), standard deviation (Laurent-Massart, 2.8e-11),
    the share beyond 2 standard deviations (Chernoff, < 1.5e-12) and the empirical CDF (DKW, 1e-11). A correct
    initializer fails a case with probability < FALSE_ALARM_PER_CASE = 4.3e-11, a grading run of both
    initializers (10 cases) with probability < 5e-10. Every message states its check's false-alarm probability.
    """

    formula = ""                   # "1/sqrt(fan_in)"
    hint = ""
    # Other standard deviations a learner might have used: (description, std(fan_in, fan_out), hint).
    mistakes: tuple = ()

    @staticmethod
    def sigma(fan_in, fan_out):
        raise NotImplementedError

    def sizes(self, s, index):
        # fan_in and fan_out far apart (ratio >= 7.5) in cases 0 and 1; at least MIN_DRAWS entries each;
        # cases 3 and 4 are a single column (fan_out = 1) and a single row (fan_in = 1).
        ranges = [((300, 500), (20, 40)), ((20, 40), (300, 500)), ((100, 160), (60, 90)),
                  ((MIN_DRAWS, MIN_DRAWS + 2000), (1, 1)), ((1, 1), (MIN_DRAWS, MIN_DRAWS + 2000))][index]
        return small_dims(s.inputs, *ranges)

    def cases(self, s):
        cases = []
        for index in range(5):
            fan_in, fan_out = self.sizes(s, index)
            seed, other = (int(v) for v in s.seeds.choice(2**31, size=2, replace=False))
            args = [lit(fan_in), lit(fan_out)]
            steps = [Call(self.name, args + [rng(seed)], save="w"),
                     Call(self.name, args + [rng(seed)], save="w_same_seed"),
                     Call(self.name, args + [rng(other)], save="w_other_seed")]
            cases.append(Case(steps=steps, arrays={}, returns=("w", "w_same_seed", "w_other_seed"),
                              context={"fan_in": fan_in, "fan_out": fan_out},
                              label=f" for fan_in={fan_in}, fan_out={fan_out}"))
        return cases

    def check(self, case, out):
        fan_in, fan_out = case.context["fan_in"], case.context["fan_out"]
        where = case.label
        shape = (fan_in, fan_out)
        w = out["w"]
        if isinstance(w, np.ndarray) and w.shape == (fan_out, fan_in):
            raise Failure(f"{self.name}: W has shape {w.shape}, expected {shape}{where}.\n"
                          f"Hint: the shape is (fan_in, fan_out), so that x @ W works for x of shape (N, fan_in).")
        w = expect_array(self.name, "W", w, shape, where, self.hint)
        same = out["w_same_seed"]
        if not (isinstance(same, np.ndarray) and same.shape == w.shape and np.array_equal(same, w)):
            raise Failure(f"{self.name}: two generators made with the same seed gave different arrays{where}.\n"
                          f"Hint: draw every random number from the rng argument (rng.normal(...) or "
                          f"rng.standard_normal(...)), not from np.random.")
        other = out["w_other_seed"]
        if isinstance(other, np.ndarray) and other.shape == w.shape and np.array_equal(other, w):
            raise Failure(f"{self.name}: generators with different seeds gave the same array{where}.\n"
                          f"Hint: use the rng argument you are given; do not make a generator with a fixed seed.")

        n = w.size
        sigma = self.sigma(fan_in, fan_out)
        self._check_independence(w, where)
        mean = float(w.mean())
        if abs(mean) > MEAN_Z * sigma / math.sqrt(n):
            raise Failure(f"{self.name}: the entries have mean {mean:.4g}, expected 0 (allowed: within "
                          f"{MEAN_Z * sigma / math.sqrt(n):.2g} for {n} draws, false-alarm probability "
                          f"{math.erfc(MEAN_Z / math.sqrt(2.0)):.0e}){where}.\n"
                          f"Hint: draw from a Gaussian centred at 0: rng.normal(0.0, std, size=...).")
        rms = float(np.sqrt(np.mean(w ** 2)))
        low, high = std_band(n)
        if not low * sigma <= rms <= high * sigma:
            hint = self.hint
            for description, std_of, mistake_hint in self.mistakes:
                m_sigma = std_of(fan_in, fan_out)
                if low * m_sigma <= rms <= high * m_sigma:
                    hint = f"this is the standard deviation of {description}: {mistake_hint}"
                    break
            raise Failure(f"{self.name}: the standard deviation is {rms:.4g}, expected {sigma:.4g} "
                          f"(= {self.formula}; allowed {low * sigma:.4g} to {high * sigma:.4g} for {n} draws, "
                          f"false-alarm probability {2 * math.exp(-CHI2_X):.0e}){where}.\nHint: {hint}")
        beyond = int(np.sum(np.abs(w) > 2 * sigma))
        mu = n * TAIL_P
        if not TAIL_BAND[0] * mu < beyond < TAIL_BAND[1] * mu:
            raise Failure(f"{self.name}: {beyond / n:.2%} of the entries lie beyond 2 standard deviations, "
                          f"a Gaussian has {TAIL_P:.2%} there (allowed {TAIL_BAND[0] * TAIL_P:.2%} to "
                          f"{TAIL_BAND[1] * TAIL_P:.2%}, false-alarm probability "
                          f"{math.exp(-mu / 8) + math.exp(-mu / 10):.0e}){where}: the values do not look Gaussian.\n"
                          f"Hint: use rng.normal or rng.standard_normal, not rng.uniform or rng.random.")
        distance, at = ks_distance(w / sigma)
        eps = dkw_band(n)
        if distance > eps:
            raise Failure(f"{self.name}: the empirical CDF of the entries is {distance:.3f} away from the normal CDF "
                          f"N(0, {sigma:.4g}^2) (at {at:+.2f} standard deviations); for {n} Gaussian draws it stays "
                          f"within {eps:.3f} (false-alarm probability {DKW_FALSE_ALARM:.0e}){where}: the values do "
                          f"not look Gaussian.\nHint: draw from a normal distribution (rng.normal or "
                          f"rng.standard_normal), not from another one with the same standard deviation.")

    def _check_independence(self, w, where):
        """Row sums and column sums spread like sums of independent draws (bound above ``independence_bound``)."""
        n = w.size
        centred = w - w.mean()
        s2 = float(np.mean(centred ** 2))
        if s2 == 0.0:
            raise Failure(f"{self.name}: every entry of W is the same number{where}.\nHint: draw each entry "
                          f"independently, one random number per entry: size=(fan_in, fan_out).")
        for axis, what, other in ((1, "rows", "column"), (0, "columns", "row")):
            sums = w.sum(axis=axis)
            if sums.size < 2:
                continue
            statistic = float(np.sum((sums - sums.mean()) ** 2)) / (w.shape[axis] * s2)
            bound = independence_bound(sums.size - 1, n)
            if statistic > bound:
                raise Failure(f"{self.name}: the sums of the {what} of W spread {statistic / (sums.size - 1):.1f} "
                              f"times as much as sums of independent draws (allowed: up to "
                              f"{bound / (sums.size - 1):.2f} times, false-alarm probability "
                              f"{2 * math.exp(-INDEPENDENCE_X):.0e}){where}: the entries are not independent, e.g. "
                              f"one {other} of numbers repeated.\nHint: draw every entry independently, one "
                              f"random number per entry: size=(fan_in, fan_out), not a row or a column broadcast "
                              f"or tiled.")


@register(CHAPTER)
class XavierInit(InitItem):
    name = "xavier_init"
    formula = "1/sqrt(fan_in)"
    hint = "W = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(fan_in, fan_out))."
    mistakes = (("1/sqrt(fan_out)", lambda fi, fo: 1 / math.sqrt(fo), "the standard deviation uses fan_in."),
                ("a variance of 1/fan_in used as the standard deviation", lambda fi, fo: 1 / fi,
                 "the standard deviation is the square root of the variance 1/fan_in."),
                ("Glorot's 2/(fan_in + fan_out) variant", lambda fi, fo: math.sqrt(2 / (fi + fo)),
                 "this course uses std = 1/sqrt(fan_in)."))

    @staticmethod
    def sigma(fan_in, fan_out):
        return R.xavier_std(fan_in, fan_out)


@register(CHAPTER)
class HeInit(InitItem):
    name = "he_init"
    formula = "sqrt(2/fan_in)"
    hint = "W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))."
    mistakes = (("Xavier initialization, 1/sqrt(fan_in)", lambda fi, fo: 1 / math.sqrt(fi),
                 "He initialization has an extra factor 2 inside the square root."),
                ("sqrt(2/fan_out)", lambda fi, fo: math.sqrt(2 / fo), "the standard deviation uses fan_in."),
                ("a variance of 2/fan_in used as the standard deviation", lambda fi, fo: 2 / fi,
                 "the standard deviation is the square root of the variance 2/fan_in."),
                ("2/sqrt(fan_in)", lambda fi, fo: 2 / math.sqrt(fi), "the 2 belongs inside the square root."))

    @staticmethod
    def sigma(fan_in, fan_out):
        return R.he_std(fan_in, fan_out)


# --- the activation-histogram experiment, deterministic ------------------------------------

@register(CHAPTER)
class LayerActivations(Item):
    name = "layer_activations"
    hint = ("start from h = x and, for every W in weights, set h = act(h @ W) and append it; "
            "act is sigmoid, tanh or ReLU as the activation argument says.")
    formulas = {"sigmoid": "act(a) = sigmoid(a) = 1 / (1 + exp(-a))", "tanh": "act(a) = np.tanh(a)",
                "relu": "act(a) = np.maximum(0, a)"}

    def cases(self, s):
        cases = []
        # The fourth case is degenerate: a single example through layers of width 1 (one unit) and more.
        for index, activation in enumerate(("sigmoid", "tanh", "relu", None)):
            n, depth = small_dims(s.inputs, (3, 6), (3, 5))
            widths = [int(v) for v in s.inputs.integers(2, 7, size=depth + 1)]
            if activation is None:
                activation = ("sigmoid", "tanh", "relu")[int(s.inputs.integers(0, 3))]
                n, depth = 1, 3
                widths = [int(s.inputs.integers(2, 6)), 1, int(s.inputs.integers(2, 6)), 1]
            x = s.inputs.normal(size=(n, widths[0]))
            arrays = {"x": x}
            for layer in range(depth):
                fan_in = widths[layer]
                arrays[f"W{layer}"] = s.inputs.normal(0.0, 1.5 / np.sqrt(fan_in), size=(fan_in, widths[layer + 1]))
            weights = list_of(*[arr(f"W{layer}") for layer in range(depth)])
            cases.append(Case(steps=[Call(self.name, [arr("x"), weights, lit(activation)], save="acts")],
                              arrays=arrays, returns=("acts",), context={"activation": activation, "depth": depth},
                              label=f" on x of shape {x.shape}, {depth} layers, activation={activation!r}"))
        return cases

    def check(self, case, out):
        depth, where = case.context["depth"], case.label
        x = case.arrays["x"]
        weights = [case.arrays[f"W{layer}"] for layer in range(depth)]
        expected = R.layer_activations(x, weights, case.context["activation"])
        acts = out["acts"]
        if not isinstance(acts, (list, tuple)):
            shape = f" of shape {acts.shape}" if isinstance(acts, np.ndarray) else ""
            raise Failure(f"{self.name}: should return a list of {depth} arrays (one per layer), but returned "
                          f"{type(acts).__name__}{shape}{where}.\n"
                          f"Hint: append the output of every layer to a list and return the whole list.")
        if len(acts) != depth:
            extra = (" the input x is not a layer: do not put it first in the list." if len(acts) == depth + 1
                     else " append one array per weight matrix.")
            raise Failure(f"{self.name}: returned {len(acts)} arrays, expected {depth}, one per layer{where}.\n"
                          f"Hint:{extra}")
        hint = f"{self.hint} Here {self.formulas[case.context['activation']]}."
        for layer, (got, want) in enumerate(zip(acts, expected), start=1):
            quantity = f"h_{layer} (the output of layer {layer})"
            got = expect_array(self.name, quantity, got, want.shape, where, hint)
            expect_close(self.name, quantity, got, want, SMOOTH, where, hint)


# --- symmetry: why all weights must not start equal ------------------------------------------

@register(CHAPTER)
class TwoLayerTanhLoss(Item):
    name = "two_layer_tanh_loss"
    hints = {"loss": "scores = tanh(X @ W1) @ W2; loss = mean softmax cross-entropy (softmax_loss(scores, y)).",
             "dW2": "dW2 = h.T @ dscores with h = tanh(X @ W1) and dscores the gradient of the loss w.r.t. scores.",
             "dW1": "dh = dscores @ W2.T, then da = dh * (1 - h**2) (tanh's derivative at the forward output "
                    "h), then dW1 = X.T @ da."}

    def cases(self, s):
        cases = []
        for kind in ("symmetric", "random", "random, large weights", "one example, one hidden unit, random"):
            N, D, H, C = small_dims(s.inputs, (3, 6), (2, 4), (5, 7), (2, 4))
            if kind.startswith("one example"):
                N, H = 1, 1
            X = s.inputs.normal(size=(N, D))
            y = s.inputs.integers(0, C, size=N)
            if kind == "symmetric":
                # Every hidden unit has the same incoming weights (a constant W1) and the same outgoing
                # weights (identical rows of W2): the state after one step from an all-constant start.
                c = float(s.inputs.uniform(0.2, 0.8) * s.inputs.choice([-1.0, 1.0]))
                W1 = np.full((D, H), c)
                W2 = np.tile(s.inputs.normal(0.0, 0.7, size=(1, C)), (H, 1))
            else:
                scale = 1.0 if kind.endswith("large weights") else 0.5
                W1 = s.inputs.normal(0.0, scale, size=(D, H))
                W2 = s.inputs.normal(0.0, scale, size=(H, C))
            cases.append(Case(steps=[Call(self.name, [arr("X"), arr("y"), arr("W1"), arr("W2")],
                                          save=("loss", "dW1", "dW2"))],
                              arrays={"X": X, "y": y, "W1": W1, "W2": W2}, returns=("loss", "dW1", "dW2"),
                              context={"symmetric": kind == "symmetric"},
                              label=f" on X of shape {X.shape}, W1 {W1.shape}, W2 {W2.shape} ({kind} weights)"))
        return cases

    def check(self, case, out):
        X, y, W1, W2 = (case.arrays[k] for k in ("X", "y", "W1", "W2"))
        where = case.label
        loss = expect_scalar(self.name, "loss", out["loss"], where, self.hints["loss"])
        expect_close(self.name, "loss", loss, R.two_layer_tanh_loss(X, y, W1, W2), SMOOTH, where, self.hints["loss"])
        dW1 = expect_array(self.name, "dW1", out["dW1"], W1.shape, where, self.hints["dW1"])
        dW2 = expect_array(self.name, "dW2", out["dW2"], W2.shape, where, self.hints["dW2"])
        if case.context["symmetric"]:
            # Identical units get identical gradients: every column of dW1 (a unit's incoming weights) and
            # every row of dW2 (its outgoing weights) are the same, up to round-off.
            for quantity, grad, axis in (("columns of dW1", dW1, 1), ("rows of dW2", dW2, 0)):
                spread = float(np.max(np.ptp(grad, axis=axis)))
                if spread > 1e-9 * max(1e-8, float(np.max(np.abs(grad)))):
                    raise Failure(f"{self.name}: the {quantity} differ (by up to {spread:.1e}) although every "
                                  f"hidden unit has the same weights{where}: identical units must get identical "
                                  f"gradients.\nHint: {self.hints['dW1' if axis == 1 else 'dW2']}")
        for quantity, got, param in (("dW2", dW2, "W2"), ("dW1", dW1, "W1")):
            def loss_of(v, param=param):
                weights = {"W1": W1, "W2": W2, param: v}
                return R.two_layer_tanh_loss(X, y, weights["W1"], weights["W2"])
            expected = numerical_gradient(loss_of, case.arrays[param])
            expect_close(self.name, quantity, got, expected, SMOOTH, where, self.hints[quantity])
