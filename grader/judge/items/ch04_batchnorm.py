"""Hidden tests of chapter 04 (batch normalization and layer normalization).

Forward values are compared with the trusted references; every gradient is compared
with a centered-difference gradient of the trusted reference forward (train mode), in
float64, at relative error < 1e-7. Running averages are checked after several training
steps on one ``bn_param`` dict that the calls share (``state``), test mode on a batch
whose own statistics are far from the running ones, and defaults (eps 1e-5, momentum
0.9, running averages starting at zero) on a ``bn_param`` that holds only the mode.
Batch sizes always differ from feature counts, so a sum over the wrong axis shows up
as a wrong shape rather than passing by accident. On every seed the cases also hold the
degenerate sizes the contracts allow: a single feature (D = 1) for batch norm in train
mode and its backward passes, a single example (N = 1) for batch norm in test mode and
for layer norm, so a ``squeeze()`` that drops an axis of size 1 loses its item. (A batch
of one in train mode is not among them: its variance is 0 and PyTorch refuses it.)
"""
from __future__ import annotations

import numpy as np

from ..cases import small_dims
from ..checks import Failure, describe, expect_array, expect_close, shape_phrase
from ..numerics import rel_error
from ..protocol import Call, Case, arr, dict_of, lit, ref, state
from ..references import ch04_batchnorm as R
from . import Item, known_mistake, register
from .ch02_backprop import BackwardItem, ForwardItem

CHAPTER = "04_batchnorm"
SMOOTH = 1e-7
DEFAULT_EPS = 1e-5
DEFAULT_MOMENTUM = 0.9


def _dims(s, n_range=(4, 8), d_range=(3, 6)):
    """(N, D) with N != D, N >= 4 (a batch of 2 normalizes every column to +-1 and hides mistakes)."""
    N, D = small_dims(s.inputs, n_range, d_range)
    return (N + 1 if N == D else N), D


def _features(s, N, D, scale=(0.5, 3.0)):
    """(N, D) inputs whose columns have their own means and spreads."""
    loc = s.inputs.normal(0.0, 2.0, size=D)
    spread = s.inputs.uniform(*scale, size=D)
    return loc + spread * s.inputs.normal(size=(N, D))


def _rows(s, N, D, scale=(0.5, 3.0)):
    """(N, D) inputs whose rows have their own means and spreads."""
    loc = s.inputs.normal(0.0, 2.0, size=(N, 1))
    spread = s.inputs.uniform(*scale, size=(N, 1))
    return loc + spread * s.inputs.normal(size=(N, D))


def _affine_params(s, D):
    return {"gamma": s.inputs.uniform(0.5, 2.0, size=D) * s.inputs.choice([-1.0, 1.0], size=D),
            "beta": s.inputs.normal(size=D)}


def _bn_param_phrase(**param):
    shown = ", ".join(f"{k}={v!r}" for k, v in param.items())
    return f" with bn_param = {{{shown}}}"


# --- batch norm forward ----------------------------------------------------------------

@register(CHAPTER)
class BatchnormForward(Item):
    name = "batchnorm_forward"
    hints = {
        "train": "in 'train' mode normalize every column (feature) with the batch's mean and biased variance "
                 "(ddof=0), eps added to the variance inside the square root; then scale by gamma and shift by "
                 "beta, one of each per feature; read eps from bn_param (default 1e-5).",
        "test": "in 'test' mode normalize with bn_param['running_mean'] and bn_param['running_var'], not with the "
                "statistics of the batch, with eps inside the square root and added only there (never stored "
                "into running_var).",
        "running": "after each training step store running = momentum * running + (1 - momentum) * batch_stat "
                   "(biased batch variance) back into bn_param['running_mean'] and bn_param['running_var']; "
                   "momentum comes from bn_param (default 0.9) and absent running averages start at zeros of "
                   "shape (D,); the running variance averages the batch variance itself, without eps.",
        "frozen": "in 'test' mode leave bn_param['running_mean'] and bn_param['running_var'] unchanged "
                  "(no eps added to running_var either).",
    }
    mistake_hints = {
        "sqrt_plus_eps": "eps goes INSIDE the square root: np.sqrt(var + eps), not np.sqrt(var) + eps (the two "
                         "differ by about eps / (2 var), the error you see).",
        "running_eps": "store the batch variance itself in the running average (running_var = momentum * "
                       "running_var + (1 - momentum) * var); eps is only added inside the square root when "
                       "normalizing, never to running_var.",
    }

    def cases(self, s):
        cases = []

        # 0: bn_param holds only the mode: default eps and momentum, running averages start at zero.
        N, D = _dims(s)
        arrays = dict(x=_features(s, N, D), **_affine_params(s, D))
        cases.append(Case(steps=[Call(self.name, [arr("x"), arr("gamma"), arr("beta"), state("bn_param",
                                                                                        mode=lit("train"))],
                                      save=("out0", "cache"))],
                          arrays=arrays, returns=("out0", "bn_param"),
                          context={"kind": "train", "steps": 1, "eps": DEFAULT_EPS, "momentum": DEFAULT_MOMENTUM,
                                   "start": None},
                          label=shape_phrase(x=arrays["x"]) + _bn_param_phrase(mode="train")))

        # 1: three training steps on one bn_param with its own eps and momentum and given running averages.
        # Small spreads and a large eps make an eps outside the square root (or none) visible; a momentum
        # away from 0.5 makes swapping momentum and 1 - momentum visible.
        N, D = _dims(s)
        eps = float(np.round(s.inputs.uniform(0.05, 0.2), 3))
        momentum = float(np.round(s.inputs.uniform(0.6, 0.8), 2))
        arrays = dict(**_affine_params(s, D), running_mean=s.inputs.normal(size=D),
                      running_var=s.inputs.uniform(0.5, 2.0, size=D))
        steps = []
        for k in range(3):
            arrays[f"x{k}"] = _features(s, N, D, scale=(0.2, 1.0))
            param = state("bn_param", mode=lit("train"), eps=lit(eps), momentum=lit(momentum),
                          running_mean=arr("running_mean"), running_var=arr("running_var")) if k == 0 \
                else ref("bn_param")
            steps.append(Call(self.name, [arr(f"x{k}"), arr("gamma"), arr("beta"), param], save=(f"out{k}", "cache")))
        cases.append(Case(steps=steps, arrays=arrays, returns=("out0", "out1", "out2", "bn_param"),
                          context={"kind": "train", "steps": 3, "eps": eps, "momentum": momentum, "start": True},
                          label=shape_phrase(x=arrays["x0"]) + " after 3 training steps"
                          + _bn_param_phrase(mode="train", eps=eps, momentum=momentum)
                          + " and given running averages"))

        # 2 and 3: test mode, on a batch whose own mean and variance are far from the running ones.
        for eps in (None, float(np.round(s.inputs.uniform(0.05, 0.2), 3))):
            N, D = _dims(s)
            running_mean = s.inputs.normal(size=D)
            running_var = s.inputs.uniform(0.2, 1.0, size=D)
            shift = s.inputs.uniform(2.0, 4.0, size=D) * s.inputs.choice([-1.0, 1.0], size=D)
            x = running_mean + shift + s.inputs.uniform(2.0, 4.0, size=D) * s.inputs.normal(size=(N, D))
            arrays = dict(x=x, **_affine_params(s, D), running_mean=running_mean, running_var=running_var)
            specs = dict(mode=lit("test"), running_mean=arr("running_mean"), running_var=arr("running_var"))
            shown = {"mode": "test"}
            if eps is not None:
                specs["eps"] = lit(eps)
                shown["eps"] = eps
            cases.append(Case(steps=[Call(self.name, [arr("x"), arr("gamma"), arr("beta"),
                                                      state("bn_param", **specs)], save=("out0", "cache"))],
                              arrays=arrays, returns=("out0", "bn_param"),
                              context={"kind": "test", "eps": DEFAULT_EPS if eps is None else eps},
                              label=shape_phrase(x=x) + _bn_param_phrase(**shown) + " and running averages"))

        # 4: a single feature (D = 1) in train mode, defaults; 5: a single example (N = 1) in test mode.
        N, _ = _dims(s)
        arrays = dict(x=_features(s, N, 1), **_affine_params(s, 1))
        cases.append(Case(steps=[Call(self.name, [arr("x"), arr("gamma"), arr("beta"), state("bn_param",
                                                                                        mode=lit("train"))],
                                      save=("out0", "cache"))],
                          arrays=arrays, returns=("out0", "bn_param"),
                          context={"kind": "train", "steps": 1, "eps": DEFAULT_EPS, "momentum": DEFAULT_MOMENTUM,
                                   "start": None},
                          label=shape_phrase(x=arrays["x"]) + _bn_param_phrase(mode="train")))
        _, D = _dims(s)
        running_mean, running_var = s.inputs.normal(size=D), s.inputs.uniform(0.2, 1.0, size=D)
        arrays = dict(x=s.inputs.normal(size=(1, D)), **_affine_params(s, D), running_mean=running_mean,
                      running_var=running_var)
        cases.append(Case(steps=[Call(self.name, [arr("x"), arr("gamma"), arr("beta"),
                                                  state("bn_param", mode=lit("test"), running_mean=arr("running_mean"),
                                                        running_var=arr("running_var"))], save=("out0", "cache"))],
                          arrays=arrays, returns=("out0", "bn_param"), context={"kind": "test", "eps": DEFAULT_EPS},
                          label=shape_phrase(x=arrays["x"]) + _bn_param_phrase(mode="test") + " and running averages"))
        return cases

    def _running(self, case, out, key, expected, mistakes=()):
        bn_param = out.get("bn_param")
        hint = self.hints["frozen" if case.context["kind"] == "test" else "running"]
        if not isinstance(bn_param, dict) or bn_param.get(key) is None:
            raise Failure(f"{self.name}: bn_param has no '{key}' after the call{case.label}.\nHint: {hint}")
        value = bn_param[key]
        if not isinstance(value, np.ndarray) and np.ndim(value) == 0 and isinstance(value, (float, np.floating)):
            raise Failure(f"{self.name}: bn_param['{key}'] is a single number ({describe(value)}) after the call"
                          f"{case.label}, expected an array of shape {expected.shape}.\nHint: keep one running "
                          f"average per feature, shape (D,), also when D = 1: a squeeze() or a reduction without "
                          f"axis=0 turns it into a single number.")
        got = expect_array(self.name, f"bn_param['{key}']", bn_param[key], expected.shape, case.label, hint)
        hint = known_mistake(got, list(mistakes)) or hint if rel_error(got, expected) >= SMOOTH else hint
        expect_close(self.name, f"bn_param['{key}']", got, expected, SMOOTH, case.label, hint)

    def _out(self, got, expected, quantity, case, hint, mistakes):
        if rel_error(got, expected) >= SMOOTH:
            hint = known_mistake(got, mistakes) or hint
        expect_close(self.name, quantity, got, expected, SMOOTH, case.label, hint)

    def check(self, case, out):
        a, ctx = case.arrays, case.context
        gamma, beta, eps = a["gamma"], a["beta"], ctx["eps"]
        m = self.mistake_hints
        if ctx["kind"] == "test":
            x, rm, rv = a["x"], a["running_mean"], a["running_var"]
            expected = R.batchnorm_test_forward(x, gamma, beta, rm, rv, eps=eps)
            got = expect_array(self.name, "out", out["out0"], expected.shape, case.label, self.hints["test"])
            self._out(got, expected, "out", case, self.hints["test"], [
                (lambda: gamma * (x - rm) / (np.sqrt(rv) + eps) + beta, m["sqrt_plus_eps"])])
            self._running(case, out, "running_mean", rm)
            self._running(case, out, "running_var", rv, [(lambda: rv + eps, self.hints["frozen"])])
            return
        D = gamma.shape[0]
        mean, var = (a["running_mean"], a["running_var"]) if ctx["start"] else (np.zeros(D), np.zeros(D))
        var_with_eps = var
        for k in range(ctx["steps"]):
            x = a[f"x{k}"] if ctx["start"] else a["x"]
            expected = R.batchnorm_train_forward(x, gamma, beta, eps=eps)
            quantity = "out" if ctx["steps"] == 1 else f"out of training step {k + 1}"
            got = expect_array(self.name, quantity, out[f"out{k}"], expected.shape, case.label, self.hints["train"])
            self._out(got, expected, quantity, case, self.hints["train"],
                      [(lambda x=x: gamma * (x - x.mean(axis=0)) / (np.sqrt(x.var(axis=0)) + eps) + beta,
                        m["sqrt_plus_eps"])])
            mean, var = R.running_stats_update(mean, var, x, momentum=ctx["momentum"])
            var_with_eps = ctx["momentum"] * var_with_eps + (1 - ctx["momentum"]) * (x.var(axis=0) + eps)
        self._running(case, out, "running_mean", mean)
        self._running(case, out, "running_var", var, [(lambda: var_with_eps, m["running_eps"])])


# --- training-mode forwards and the backward passes paired with them --------------------------

class NormForward(ForwardItem):
    """``name(x, gamma, beta, param) -> (out, cache)`` with ``param`` a dict of settings; the reference
    takes ``eps`` by name. Case 1 uses its own eps (and smaller spreads, so that eps matters): a backward
    pass must use the eps of its forward pass, kept in the cache."""

    input_names = ("x", "gamma", "beta")
    make_x = None                     # _features (batch norm) or _rows (layer norm)
    d_range = (3, 6)
    fixed: dict = {}                  # settings always passed, e.g. mode='train'
    param_name = ""

    def inputs_for_case(self, s, index):
        N, D = _dims(s, d_range=self.d_range)
        eps = float(np.round(s.inputs.uniform(0.05, 0.2), 3)) if index == 1 else None
        x = type(self).make_x(s, N, D, scale=(0.2, 1.0) if index == 1 else (0.5, 3.0))
        return dict(x=x, **_affine_params(s, D)), ({} if eps is None else {"eps": eps})

    edge_size = ""                    # "D": a single feature (batch norm); "N": a single example (layer norm)

    def edge_inputs(self, s):
        N, D = _dims(s, d_range=self.d_range)
        N, D = (N, 1) if self.edge_size == "D" else (1, D)
        return [(dict(x=type(self).make_x(s, N, D), **_affine_params(s, D)), {})]

    axis = 0                          # the axis the statistics run over (1 for layer norm)

    def mistakes(self, case):
        x, gamma, beta = (case.arrays[n] for n in self.input_names)
        eps = case.context["kwargs"].get("eps", DEFAULT_EPS)
        mean, var = x.mean(axis=self.axis, keepdims=True), x.var(axis=self.axis, keepdims=True)
        return [(lambda: gamma * (x - mean) / (np.sqrt(var) + eps) + beta,
                 "eps goes INSIDE the square root: np.sqrt(var + eps), not np.sqrt(var) + eps.")]

    def forward_call(self, kwargs):
        param = dict_of(**{k: lit(v) for k, v in dict(self.fixed, **kwargs).items()})
        return Call(self.name, [arr("x"), arr("gamma"), arr("beta"), param], save=("out", "cache"))

    def label(self, arrays, kwargs):
        return shape_phrase(x=arrays["x"]) + f" with {self.param_name} = {dict(self.fixed, **kwargs)}"


class BatchnormTrainForward(NormForward):
    """The forward that the batch-norm backward items pair with (its own item, with running averages and
    test mode, is BatchnormForward above)."""

    name = "batchnorm_forward"
    reference = staticmethod(R.batchnorm_train_forward)
    make_x = staticmethod(_features)
    fixed = {"mode": "train"}
    param_name = "bn_param"
    edge_size = "D"


@register(CHAPTER)
class BatchnormBackward(BackwardItem):
    name = "batchnorm_backward"
    forward = BatchnormTrainForward()
    grad_names = ("dx", "dgamma", "dbeta")
    hints = {"dx": "the mean and the variance depend on every row of x: besides dout * gamma / std, dx gets the "
                   "gradients that flow back through the variance node and through the mean node (each summed over "
                   "the batch, then spread back with 1/N).",
             "dgamma": "dgamma = np.sum(dout * x_hat, axis=0), shape (D,): gamma multiplies x_hat in every row.",
             "dbeta": "dbeta = np.sum(dout, axis=0), shape (D,): beta is added to every row."}


@register(CHAPTER)
class BatchnormBackwardAlt(BackwardItem):
    name = "batchnorm_backward_alt"
    forward = BatchnormTrainForward()
    grad_names = ("dx", "dgamma", "dbeta")
    hints = {"dx": "dx = gamma / (N * std) * (N * dout - dout.sum(axis=0) - x_hat * (dout * x_hat).sum(axis=0)); "
                   "all three terms are needed, and the sums run over the batch axis 0.",
             "dgamma": "dgamma = np.sum(dout * x_hat, axis=0), shape (D,).",
             "dbeta": "dbeta = np.sum(dout, axis=0), shape (D,)."}


# --- layer norm -----------------------------------------------------------------------------

@register(CHAPTER)
class LayernormForward(NormForward):
    name = "layernorm_forward"
    reference = staticmethod(R.layernorm_forward)
    make_x = staticmethod(_rows)
    axis = 1
    d_range = (3, 7)
    param_name = "ln_param"
    edge_size = "N"
    hint = ("normalize every row (example) over its D features: mean and biased variance with axis=1 and "
            "keepdims=True, eps inside the square root; then scale by gamma and shift by beta, one of each per "
            "feature; eps comes from ln_param (default 1e-5).")


@register(CHAPTER)
class LayernormBackward(BackwardItem):
    name = "layernorm_backward"
    forward = LayernormForward()
    grad_names = ("dx", "dgamma", "dbeta")
    hints = {"dx": "layer norm's mean and variance are per row: the two extra terms of dx sum over the features "
                   "(axis=1, keepdims=True) and divide by D, the transpose of batch norm's.",
             "dgamma": "gamma is shared by every row: dgamma = np.sum(dout * x_hat, axis=0), shape (D,).",
             "dbeta": "beta is shared by every row: dbeta = np.sum(dout, axis=0), shape (D,)."}
