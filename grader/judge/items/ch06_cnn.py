"""Hidden tests of chapter 06 (convolutional networks).

Forward passes are compared with the vectorised references of
``grader/judge/references/ch06_cnn.py``; every gradient with a centered-difference
gradient of the reference forward in float64: relative error < 1e-7 for the
linear layers (convolution, im2col) and spatial batch norm, < 1e-5 where there
are kinks (max pooling, the residual block's ReLUs). Shapes stay small so the
numerical gradients are fast, but every grading run contains the hard parts, by
construction rather than by chance: stride > 1 with zero padding and with none,
non-square inputs and kernels, and sizes where the output-size formula has to
round down with a fractional part of 2/3 (so round() rounds the wrong way and an
assert that the division comes out even fails, on every seed). Max-pool inputs have all-distinct values, spaced far
more than the finite-difference step, so no window has a tie; residual-block
inputs are redrawn until every ReLU input is at least 1e-3 away from 0.

Every run also holds the degenerate sizes the contracts allow: a single image (N = 1)
with one channel and one filter and a 1x1 kernel (with stride 2 and padding, so a 1x1
shortcut that ignores them fails), a 1x1 image padded by 1 under a 3x3 kernel, a kernel
covering the whole (non-square) input, pooling windows covering the whole input and 1x1
windows, spatial batch norm with one image of one channel, and a residual block on one
image of one channel. (Not a block with 1x1 kernels: behind batch norm some of its
gradients are exactly 0, e.g. beta1's when the first ReLU is active everywhere, and a
relative error between two round-off values means nothing. Nor max-pool ties or the
block's ReLUs at exactly 0: the contracts leave ties open, and a block's ReLU inputs are
not inputs a case can set.)
"""
from __future__ import annotations

import numpy as np

from ..checks import Failure, describe, expect_array, expect_close, shape_phrase
from ..numerics import numerical_gradient_array, rel_error
from ..protocol import Call, Case, arr, dict_of, list_of, lit, ref, state
from ..references import ch04_batchnorm as R4
from ..references import ch06_cnn as R
from . import Item, register
from .ch02_backprop import BackwardItem, ForwardItem

CHAPTER = "06_cnn"
SMOOTH = 1e-7
KINKED = 1e-5


# --- formulas: output size and parameter count -------------------------------------------

def _expect_int(item, quantity, value, expected, where, hint):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating, np.ndarray)) \
            or np.ndim(value) != 0:
        raise Failure(f"{item}: {quantity} should be a whole number{where}, but it is {describe(value)}.")
    if float(value) != expected:
        raise Failure(f"{item}: {quantity} is {float(value):g}, expected {expected}{where}.\nHint: {hint}")


def _with_remainder(size, kernel, pad, stride, remainder):
    """The smallest size >= ``size`` with (size + 2 pad - kernel) % stride == remainder."""
    while (size + 2 * pad - kernel) % stride != remainder:
        size += 1
    return size


@register(CHAPTER)
class ConvOutputSize(Item):
    name = "conv_output_size"
    hint = ("H_out = (H + 2 * pad - HH) // stride + 1, and the same for W with WW: pad both sides, "
            "round down (a window that does not fit is dropped), and count the first position (+1).")

    def cases(self, s):
        cases = []
        for index in range(8):
            HH, WW = (int(v) for v in s.inputs.integers(1, 6, size=2))
            stride = int(s.inputs.integers(2, 4)) if index % 2 == 0 else int(s.inputs.integers(1, 4))
            pad = int(s.inputs.integers(0, 3))
            H, W = (int(v) for v in s.inputs.integers(max(HH, WW) + 1, 40, size=2))
            if index == 0:
                # stride 3, no padding, non-square: H leaves remainder 2 (x.67: round() rounds UP), W remainder 1.
                stride, pad = 3, 0
                WW = WW if WW != HH else HH % 5 + 1
                H = _with_remainder(H, HH, 0, 3, 2)
                W = _with_remainder(W, WW, 0, 3, 1)
                W = W + 3 if W == H else W
            elif index == 1:
                # stride 2, remainder 1 with an odd quotient: (H + 2 pad - HH) / 2 = q + 0.5 and round() gives q + 1.
                stride = 2
                H = _with_remainder(H, HH, pad, 2, 1)
                if ((H + 2 * pad - HH) // 2) % 2 == 0:
                    H += 2
            elif index == 6:
                # A kernel covering the whole padded input: one output position, whatever the stride.
                HH, WW = H + 2 * pad, W + 2 * pad
            elif index == 7:
                # A 1x1 kernel with stride 1 and no padding: the output has the input's size.
                HH, WW, stride, pad = 1, 1, 1, 0
            args = dict(H=H, W=W, HH=HH, WW=WW, stride=stride, pad=pad)
            cases.append(Case(steps=[Call(self.name, [lit(v) for v in args.values()], save="size")],
                              arrays={}, returns=("size",), context=args,
                              label=" for " + ", ".join(f"{k}={v}" for k, v in args.items())))
        return cases

    def check(self, case, out):
        size = out["size"]
        if not isinstance(size, (tuple, list)) or len(size) != 2:
            raise Failure(f"{self.name}: should return two numbers (H_out, W_out){case.label}, "
                          f"but it returned {describe(size)}.")
        H_out, W_out = R.conv_output_size(**case.context)
        _expect_int(self.name, "H_out", size[0], H_out, case.label, self.hint)
        _expect_int(self.name, "W_out", size[1], W_out, case.label, self.hint)


@register(CHAPTER)
class ConvParamCount(Item):
    name = "conv_param_count"
    hint = "each of the F filters has C * HH * WW weights and ONE bias: F * C * HH * WW + F."

    def cases(self, s):
        cases = []
        for index in range(6):
            args = dict(C=int(s.inputs.integers(2, 65)), F=int(s.inputs.integers(2, 129)),
                        HH=int(s.inputs.integers(1, 8)), WW=int(s.inputs.integers(1, 8)))
            if index == 4:
                args = dict(C=1, F=1, HH=1, WW=1)                   # one 1x1 filter on one channel: 2
            elif index == 5:
                args["C"] = 1                                       # a single input channel
            cases.append(Case(steps=[Call(self.name, [lit(v) for v in args.values()], save="count")],
                              arrays={}, returns=("count",), context=args,
                              label=" for " + ", ".join(f"{k}={v}" for k, v in args.items())))
        return cases

    def check(self, case, out):
        _expect_int(self.name, "the count", out["count"], R.conv_param_count(**case.context), case.label, self.hint)


# --- layers whose settings (conv_param, pool_param) are passed positionally ---------------

class LayerForwardItem(ForwardItem):
    """``name(*inputs, param_dict) -> (out, cache)``: the settings dict (conv_param, pool_param) is passed
    in position, and the reference takes it by name."""

    def forward_call(self, params):
        return Call(self.name, [arr(n) for n in self.input_names] + [lit(v) for v in params.values()],
                    save=("out", "cache"))

    def label(self, arrays, params):
        settings = ", ".join(f"{k}={v}" for p in params.values() for k, v in p.items())
        return super().label(arrays, params) + f" with {settings}"


CONV_EDGES = (3, 4, 5)


def _conv_inputs(s, index):
    """Every run has all three: case 0 stride 2 with padding, an output size that rounds down (x.5) and a
    non-square kernel; case 1 stride 1, no padding, non-square input and kernel; case 2 stride 3, no padding,
    non-square input and kernel, H_out rounding down from x.67 (round() is wrong) and W_out from x.33.

    And the degenerate sizes (CONV_EDGES): case 3 a single image of one channel, one filter, a 1x1 kernel with
    stride 2 and padding 1; case 4 a 1x1 image padded by 1 under a 3x3 kernel; case 5 a kernel covering the whole
    non-square input (one output position), stride 2, a single image."""
    if index in CONV_EDGES:
        return _conv_edge_inputs(s, index)
    N, C, F = (int(v) for v in s.inputs.integers(1, 4, size=3))
    C = max(C, 2) if index == 1 else C            # at least two channels: the column order matters
    H, W = (int(v) for v in s.inputs.integers(4, 8, size=2))
    if index == 0:
        HH, WW, stride, pad = 3, int(s.inputs.integers(2, 4)), 2, int(s.inputs.integers(1, 3))
        H = _with_remainder(H, HH, pad, stride, 1)
    elif index == 1:
        HH, WW, stride, pad = 2, 3, 1, 0
        W = H + 1                                 # non-square input
    else:
        HH, WW = [(1, 2), (2, 1), (2, 3), (3, 2)][int(s.inputs.integers(0, 4))]
        stride, pad = 3, 0
        H = _with_remainder(H, HH, pad, stride, 2)
        W = _with_remainder(W, WW, pad, stride, 1)
        W = W + 3 if W == H else W
    arrays = {"x": s.inputs.normal(size=(N, C, H, W)), "w": s.inputs.normal(size=(F, C, HH, WW)),
              "b": s.inputs.normal(size=(F,))}
    return arrays, {"conv_param": {"stride": stride, "pad": pad}}


def _conv_edge_inputs(s, index):
    H, W = (int(v) for v in s.inputs.integers(3, 6, size=2))
    W = W + 1 if W == H else W
    C, F = (int(v) for v in s.inputs.integers(1, 4, size=2))
    if index == 3:
        N, C, F, HH, WW, stride, pad = 1, 1, 1, 1, 1, 2, 1
    elif index == 4:
        N, H, W, HH, WW, stride, pad = int(s.inputs.integers(1, 3)), 1, 1, 3, 3, 1, 1
    else:
        N, HH, WW, stride, pad = 1, H, W, 2, 0
    arrays = {"x": s.inputs.normal(size=(N, C, H, W)), "w": s.inputs.normal(size=(F, C, HH, WW)),
              "b": s.inputs.normal(size=(F,))}
    return arrays, {"conv_param": {"stride": stride, "pad": pad}}


CONV_FORWARD_HINT = ("out[n, f, i, j] = sum(x_pad[n, :, i*stride : i*stride + HH, j*stride : j*stride + WW] * w[f]) "
                     "+ b[f]: a cross-correlation (do not flip the kernel), windows every `stride` pixels of the "
                     "zero-padded input, and H_out = (H + 2*pad - HH) // stride + 1.")
CONV_BACKWARD_HINTS = {
    "dx": "add w[f] * dout[n, f, i, j] into the window of a zero-padded dx, then crop the padding "
          "(dx_pad[:, :, pad:pad + H, pad:pad + W]) so dx has the shape of x.",
    "dw": "dw[f] sums x_pad's window times dout[n, f, i, j] over n, i and j, with windows `stride` pixels apart.",
    "db": "db[f] sums dout[:, f] over the batch AND every output position: dout.sum(axis=(0, 2, 3)), shape (F,).",
}


@register(CHAPTER)
class ConvForwardNaive(LayerForwardItem):
    name = "conv_forward_naive"
    reference = R.conv_forward
    input_names = ("x", "w", "b")
    hint = CONV_FORWARD_HINT

    def make_inputs(self, s):
        return _conv_inputs(s, 2)

    def inputs_for_case(self, s, index):
        return _conv_inputs(s, index)

    def edge_inputs(self, s):
        return [_conv_inputs(s, index) for index in CONV_EDGES]


@register(CHAPTER)
class ConvBackwardNaive(BackwardItem):
    name = "conv_backward_naive"
    forward = ConvForwardNaive()
    grad_names = ("dx", "dw", "db")
    hints = CONV_BACKWARD_HINTS


# --- im2col and its adjoint ----------------------------------------------------------------

IM2COL_HINT = ("row (n * H_out + i) * W_out + j holds the window of output position (i, j) of image n, "
               "flattened in (c, kh, kw) order like w.reshape(F, -1); windows are `stride` pixels apart in the "
               "zero-padded input.")
COL2IM_HINT = ("col2im undoes im2col's bookkeeping: ADD every entry of cols into its pixel of a zero-padded array "
               "(overlapping windows share pixels, so use +=), then crop the padding.")


def _im2col_case(name, arrays, x_shape, HH, WW, stride, pad, first):
    args = [arr(first)] if first == "x" else [arr(first), lit(list(x_shape))]
    args += [lit(HH), lit(WW), lit(stride), lit(pad)]
    return Case(steps=[Call(name, args, save="result")], arrays=arrays, returns=("result",),
                context={"x_shape": tuple(x_shape), "HH": HH, "WW": WW, "stride": stride, "pad": pad},
                label=f" on x of shape {tuple(x_shape)} with HH={HH}, WW={WW}, stride={stride}, pad={pad}")


def _im2col_settings(s, index):
    arrays, params = _conv_inputs(s, index)
    F, C, HH, WW = arrays["w"].shape
    return arrays["x"], HH, WW, params["conv_param"]["stride"], params["conv_param"]["pad"]


@register(CHAPTER)
class Im2col(Item):
    name = "im2col"
    hint = IM2COL_HINT

    def cases(self, s):
        cases = []
        for index in range(3 + len(CONV_EDGES)):
            x, HH, WW, stride, pad = _im2col_settings(s, index)
            cases.append(_im2col_case(self.name, {"x": x}, x.shape, HH, WW, stride, pad, "x"))
        return cases

    def check(self, case, out):
        c = case.context
        expected = R.im2col(case.arrays["x"], c["HH"], c["WW"], c["stride"], c["pad"])
        got = expect_array(self.name, "cols", out["result"], expected.shape, case.label, self.hint)
        expect_close(self.name, "cols", got, expected, SMOOTH, case.label, self.hint)


@register(CHAPTER)
class Col2im(Item):
    name = "col2im"
    hint = COL2IM_HINT

    def cases(self, s):
        cases = []
        for index in range(3 + len(CONV_EDGES)):
            x, HH, WW, stride, pad = _im2col_settings(s, index)
            cols = s.upstream.normal(size=R.im2col(x, HH, WW, stride, pad).shape)
            cases.append(_im2col_case(self.name, {"cols": cols}, x.shape, HH, WW, stride, pad, "cols"))
        return cases

    def check(self, case, out):
        c = case.context
        # im2col is linear, so its adjoint is the gradient of sum(im2col(x) * cols) with respect to x.
        expected = numerical_gradient_array(lambda v: R.im2col(v, c["HH"], c["WW"], c["stride"], c["pad"]),
                                            np.zeros(c["x_shape"]), case.arrays["cols"])
        got = expect_array(self.name, "the image", out["result"], c["x_shape"], case.label, self.hint)
        expect_close(self.name, "the image", got, expected, SMOOTH, case.label, self.hint)


@register(CHAPTER)
class ConvForwardIm2col(ConvForwardNaive):
    name = "conv_forward_im2col"
    requires = ("im2col",)          # a wrong im2col is named ("fix im2col first") when this item fails
    hint = ("with the windows as rows (your im2col) and each filter flattened in the same (c, kh, kw) order, one "
            "matrix product gives one row per (n, i, j) and one column per filter, plus b; that result is "
            "(N, H_out, W_out, F): move F to axis 1.")


@register(CHAPTER)
class ConvBackwardIm2col(ConvBackwardNaive):
    name = "conv_backward_im2col"
    forward = ConvForwardIm2col()
    requires = ("col2im",)
    hints = {"dx": "bring dout into the (n, i, j) row order of im2col (F last), send it back through the flattened "
                   "filters to get one gradient row per window, then let your col2im add overlapping windows "
                   "back into an array shaped like x.",
             "dw": "dw pairs each window row of the forward's cols with dout in the same (n, i, j) row order "
                   "(F last), summed over all rows, then shaped like w (F, C, HH, WW).",
             "db": CONV_BACKWARD_HINTS["db"]}


# --- max pooling --------------------------------------------------------------------------

def _pool_inputs(s, index):
    """Case 0: 2x2 windows, stride 2, an odd H (H_out rounds down from x.5); case 1: overlapping non-square
    windows on a non-square input; case 2: 2x3 windows, stride 3, a non-square input whose H_out and W_out
    both round down from x.67 (round() is wrong). Every run has all three, and the degenerate sizes: case 3 a
    window covering the whole non-square input of a single image with one channel (one output per map); case 4
    1x1 windows with stride 1 (out = x)."""
    N, C = (int(v) for v in s.inputs.integers(1, 4, size=2))
    H, W = (int(v) for v in s.inputs.integers(4, 8, size=2))
    ph, pw, stride = [(2, 2, 2), (3, 2, 1), (2, 3, 3), (H, H + 1, 2), (1, 1, 1)][index]
    if index == 0:
        H = _with_remainder(H, ph, 0, stride, 1)
    elif index == 1:
        W = H + 1
    elif index == 2:
        H = int(s.inputs.choice([4, 7]))
        W = int(s.inputs.choice([5, 8]))
    elif index == 3:
        N, C, W = 1, 1, H + 1
    # All values distinct and at least 0.05 apart (h = 1e-5): every window has a unique maximum.
    size = N * C * H * W
    values = (s.inputs.permutation(size) - size / 2) * 0.1 + s.inputs.uniform(-0.02, 0.02, size=size)
    return ({"x": values.reshape(N, C, H, W)},
            {"pool_param": {"pool_height": ph, "pool_width": pw, "stride": stride}})


@register(CHAPTER)
class MaxPoolForwardNaive(LayerForwardItem):
    name = "max_pool_forward_naive"
    reference = R.max_pool_forward
    input_names = ("x",)
    hint = ("out[n, c, i, j] = max of x[n, c, i*stride : i*stride + pool_height, j*stride : j*stride + pool_width]; "
            "H_out = (H - pool_height) // stride + 1 (no padding).")

    def make_inputs(self, s):
        return _pool_inputs(s, 0)

    def inputs_for_case(self, s, index):
        return _pool_inputs(s, index)

    def edge_inputs(self, s):
        return [_pool_inputs(s, 3), _pool_inputs(s, 4)]


@register(CHAPTER)
class MaxPoolBackwardNaive(BackwardItem):
    name = "max_pool_backward_naive"
    forward = MaxPoolForwardNaive()
    grad_names = ("dx",)
    tolerance = KINKED
    hints = {"dx": "route all of dout[n, c, i, j] to the ONE position of the maximum in its window (nothing to the "
                   "others), and add (+=) where windows overlap."}


# --- spatial batch normalization ------------------------------------------------------------

def _bn_inputs(s, edge=False):
    """Random (N, C, H, W) inputs; with ``edge`` a single image (N = 1) of one channel (C = 1)."""
    N, C = int(s.inputs.integers(2, 4)), int(s.inputs.integers(2, 4))
    H, W = (int(v) for v in s.inputs.integers(2, 4, size=2))
    N, C = (1, 1) if edge else (N, C)
    x = s.inputs.normal(1.0, 2.0, size=(N, C, H, W)) * s.inputs.uniform(0.5, 2.0, size=(1, C, 1, 1))
    return {"x": x, "gamma": s.inputs.uniform(0.5, 2.0, size=C), "beta": s.inputs.normal(size=C)}


SPATIAL_BN_HINT = ("one mean and variance per CHANNEL, over N, H and W: move C last "
                   "(x.transpose(0, 2, 3, 1).reshape(-1, C)), call batchnorm_forward, and transpose back.")


@register(CHAPTER)
class SpatialBatchnormForward(Item):
    name = "spatial_batchnorm_forward"
    hint = SPATIAL_BN_HINT

    def cases(self, s):
        cases = []
        # The last two: one image of one channel in train mode, one image in test mode.
        for index, mode in enumerate(("train", "train", "test", "train", "test")):
            arrays = _bn_inputs(s, edge=index == 3)
            if index == 4:
                arrays["x"] = arrays["x"][:1]
            C = arrays["x"].shape[1]
            arrays["running_mean"] = s.inputs.normal(size=C)
            arrays["running_var"] = s.inputs.uniform(0.5, 2.0, size=C)
            momentum = float(np.round(s.inputs.uniform(0.5, 0.95), 2))
            bn = state("bn_param", mode=lit(mode), eps=lit(1e-5), momentum=lit(momentum),
                       running_mean=arr("running_mean", mutable=True), running_var=arr("running_var", mutable=True))
            cases.append(Case(steps=[Call(self.name, [arr("x"), arr("gamma"), arr("beta"), bn], save=("out", "cache"))],
                              arrays=arrays, returns=("out", "bn_param"), context={"mode": mode, "momentum": momentum},
                              label=shape_phrase(x=arrays["x"]) + f" in {mode} mode"))
        return cases

    def check(self, case, out):
        a, mode = case.arrays, case.context["mode"]
        expected = R.spatial_batchnorm_forward(a["x"], a["gamma"], a["beta"], mode, a["running_mean"],
                                               a["running_var"])
        got = expect_array(self.name, "out", out["out"], expected.shape, case.label, self.hint)
        expect_close(self.name, "out", got, expected, SMOOTH, case.label, self.hint)
        if mode != "train":
            return
        C = a["x"].shape[1]
        rows = a["x"].transpose(0, 2, 3, 1).reshape(-1, C)
        new_mean, new_var = R4.running_stats_update(a["running_mean"], a["running_var"], rows,
                                                    case.context["momentum"])
        bn = out["bn_param"] if isinstance(out["bn_param"], dict) else {}
        hint = "pass bn_param itself to batchnorm_forward, which updates its running statistics, one per channel."
        for key, value in (("running_mean", new_mean), ("running_var", new_var)):
            got = expect_array(self.name, f"bn_param['{key}'] after the call", bn.get(key), (C,), case.label, hint)
            expect_close(self.name, f"bn_param['{key}'] after the call", got, value, SMOOTH, case.label, hint)


@register(CHAPTER)
class SpatialBatchnormBackward(Item):
    name = "spatial_batchnorm_backward"
    hints = {"dx": "move C last exactly as in the forward pass, call batchnorm_backward on (N*H*W, C) rows, "
                   "then move C back to axis 1.",
             "dgamma": "dgamma has one entry per channel: batchnorm_backward on the (N*H*W, C) rows gives it.",
             "dbeta": "dbeta has one entry per channel: batchnorm_backward on the (N*H*W, C) rows gives it."}

    def cases(self, s):
        cases = []
        for index in range(4):
            arrays = _bn_inputs(s, edge=index == 3)           # the last: one image of one channel
            arrays["dout"] = s.upstream.normal(size=arrays["x"].shape)
            bn = dict_of(mutable=True, mode=lit("train"))
            steps = [Call("spatial_batchnorm_forward", [arr("x"), arr("gamma"), arr("beta"), bn], save=("out", "cache")),
                     Call(self.name, [arr("dout"), ref("cache")], save=("dx", "dgamma", "dbeta"))]
            cases.append(Case(steps=steps, arrays=arrays, returns=("out", "dx", "dgamma", "dbeta"),
                              label=shape_phrase(x=arrays["x"])))
        return cases

    def prerequisite_fault(self, case, out):
        """The learner's spatial_batchnorm_forward ``out`` in this case (train mode) against the reference."""
        a = case.arrays
        expected = R.spatial_batchnorm_forward(a["x"], a["gamma"], a["beta"])
        got = out.get("out")
        if not (isinstance(got, np.ndarray) and got.shape == expected.shape and got.dtype.kind in "biuf"
                and np.all(np.isfinite(got)) and rel_error(got.astype(np.float64), expected) < SMOOTH):
            return "spatial_batchnorm_forward", "returned a wrong out"
        return None

    def check(self, case, out):
        inputs = {n: case.arrays[n] for n in ("x", "gamma", "beta")}
        for grad_name, input_name in (("dx", "x"), ("dgamma", "gamma"), ("dbeta", "beta")):
            def f(v, input_name=input_name):
                return R.spatial_batchnorm_forward(**dict(inputs, **{input_name: v}))
            expected = numerical_gradient_array(f, inputs[input_name], case.arrays["dout"])
            hint = self.hints[grad_name]
            got = expect_array(self.name, grad_name, out[grad_name], inputs[input_name].shape, case.label, hint)
            expect_close(self.name, grad_name, got, expected, SMOOTH, case.label, hint)


# --- the residual block -----------------------------------------------------------------

PARAM_NAMES = ("w1", "gamma1", "beta1", "w2", "gamma2", "beta2")
KINK_MARGIN = 1e-3


def _residual_inputs(s, edge=False):
    """Small random blocks, redrawn until both ReLUs' inputs are at least KINK_MARGIN away from 0; with ``edge``
    a single image of one channel (3x3 kernels: see the module docstring for why not 1x1).

    A draw is accepted with probability about 0.9, so 200 tries never all fail in practice (< 1e-150).
    """
    for _ in range(200):
        N, C = int(s.inputs.integers(2, 4)), int(s.inputs.integers(1, 3))
        H, W = (int(v) for v in s.inputs.integers(3, 5, size=2))
        K = 3
        if edge:
            N, C, K = 1, 1, 3
        arrays = {"x": s.inputs.normal(size=(N, C, H, W)),
                  "w1": s.inputs.normal(0, 0.5, size=(C, C, K, K)), "w2": s.inputs.normal(0, 0.5, size=(C, C, K, K)),
                  "gamma1": s.inputs.uniform(0.5, 1.5, size=C), "beta1": s.inputs.normal(0, 0.5, size=C),
                  "gamma2": s.inputs.uniform(0.5, 1.5, size=C), "beta2": s.inputs.normal(0, 0.5, size=C)}
        _, a, z = R.residual_block_parts(*[arrays[n] for n in ("x",) + PARAM_NAMES])
        if min(np.abs(a).min(), np.abs(z).min()) > KINK_MARGIN:
            return arrays
    raise RuntimeError("could not draw a residual block away from its kinks")


def _residual_forward_call():
    bn = [dict_of(mutable=True, mode=lit("train"), running_mean=arr("zeros", mutable=True),
                  running_var=arr("ones", mutable=True)) for _ in range(2)]
    return Call("residual_block_forward", [arr("x"), dict_of(**{n: arr(n) for n in PARAM_NAMES}), list_of(*bn)],
                save=("out", "cache"))


def _residual_cases(s, backward):
    cases = []
    for index in range(4):
        arrays = _residual_inputs(s, edge=index == 3)       # the last: one image of one channel
        C = arrays["x"].shape[1]
        arrays["zeros"], arrays["ones"] = np.zeros(C), np.ones(C)
        steps = [_residual_forward_call()]
        returns = ("out",)
        if backward:
            arrays["dout"] = s.upstream.normal(size=arrays["x"].shape)
            steps.append(Call("residual_block_backward", [arr("dout"), ref("cache")], save=("dx", "grads")))
            returns = ("out", "dx", "grads")
        cases.append(Case(steps=steps, arrays=arrays, returns=returns,
                          label=shape_phrase(x=arrays["x"], w1=arrays["w1"])))
    return cases


def _residual_reference(arrays, **replace):
    values = dict({n: arrays[n] for n in ("x",) + PARAM_NAMES}, **replace)
    return R.residual_block_forward(*[values[n] for n in ("x",) + PARAM_NAMES])


def _train_mode(case):
    return case.context.get("mode", "train") == "train"


@register(CHAPTER)
class ResidualBlockForward(Item):
    """Built from the learner's conv_forward_im2col and spatial_batchnorm_forward: when the block is wrong and
    one of those fails its own (train-mode) cases, the message says to fix that one first; the block's
    points still need a right ``out``."""

    name = "residual_block_forward"
    requires = ("conv_forward_im2col", "spatial_batchnorm_forward")
    hint = ("out = relu(bn2(conv2(relu(bn1(conv1(x))))) + x): 'same' convolutions (stride 1, pad (K - 1) // 2, "
            "no bias), spatial batch norm with bn_params[0] and bn_params[1], the shortcut added BEFORE the last ReLU.")

    def cases(self, s):
        return _residual_cases(s, backward=False) + self.probe_cases(s, keep=_train_mode)

    def check(self, case, out):
        expected = _residual_reference(case.arrays)
        got = expect_array(self.name, "out", out["out"], expected.shape, case.label, self.hint)
        expect_close(self.name, "out", got, expected, KINKED, case.label, self.hint)


@register(CHAPTER)
class ResidualBlockBackward(Item):
    """Gradients against the reference block's numerical gradient; a wrong learner residual_block_forward in
    the same case, or a failing conv_backward_im2col / spatial_batchnorm_backward, is named in the message."""

    name = "residual_block_backward"
    requires = ("conv_backward_im2col", "spatial_batchnorm_backward")
    hints = {"dx": "the gradient reaches x along two paths: through both conv-BN layers AND straight along the "
                   "shortcut; add them (both start from relu_backward of dout).",
             "grads": "run the layers' backward functions in reverse order: relu, bn2, conv2, relu, bn1, conv1; "
                      "return grads with the keys w1, gamma1, beta1, w2, gamma2, beta2."}

    def cases(self, s):
        return _residual_cases(s, backward=True) + self.probe_cases(s)

    def prerequisite_fault(self, case, out):
        try:
            ResidualBlockForward().check(case, out)
        except Failure:
            return "residual_block_forward", "returned a wrong out"
        return None

    def check(self, case, out):
        a = case.arrays
        grads = out["grads"]
        if not isinstance(grads, dict):
            raise Failure(f"{self.name}: grads should be a dict keyed like params{case.label}, "
                          f"but it is {describe(grads)}.\nHint: {self.hints['grads']}")
        for name in ("x",) + PARAM_NAMES:
            got = out["dx"] if name == "x" else grads.get(name)
            quantity = "dx" if name == "x" else f"grads['{name}']"
            hint = self.hints["dx" if name == "x" else "grads"]
            expected = numerical_gradient_array(lambda v, name=name: _residual_reference(a, **{name: v}), a[name],
                                                a["dout"])
            got = expect_array(self.name, quantity, got, a[name].shape, case.label, hint)
            expect_close(self.name, quantity, got, expected, KINKED, case.label, hint)
