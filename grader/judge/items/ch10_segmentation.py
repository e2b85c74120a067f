"""Hidden tests of chapter 10 (segmentation: dense prediction, upsampling, U-Net, boxes).

Everything is judged here, in float64 on the CPU, against ``grader/judge/references/ch10_segmentation.py``:

- ``pixel_accuracy`` / ``mean_iou``: integer label maps of fresh random shapes (with and without a batch
  axis, a single pixel), predictions that are right on about 70 % of the pixels; every run has pixels
  whose target is ``ignore_index`` (a different number of them per image, so a mean of per-image means
  is wrong), a class that appears nowhere (no IoU: left out of the mean) and a class that is predicted
  but absent from the target (IoU 0: counted);
- ``max_unpool_forward`` / ``max_unpool_backward``: values at distinct positions of non-square maps, some
  from max pooling's windows (odd sizes that pooling rounded down), some anywhere in the map, and a 1x1
  map; gradients against centered differences of the reference (linear in x: < 1e-7);
- ``conv_transpose_forward`` / ``conv_transpose_backward``: every run has stride 2 with kernel 3, pad 1,
  output_padding 1 (the usual 2x upsampler); stride 1 without padding and a non-square kernel; stride 3
  with output_padding 2 and a non-square kernel; and the degenerate sizes: a single 1x1 image of one
  channel under a 1x1 kernel with stride 2 and output_padding 1, a 1x1 kernel with stride 2 (bed of
  nails), and a 2x2 kernel with stride 2 (the U-Net's up layer). Gradients against centered differences
  of the reference (< 1e-7);
- ``UNet``: the learner's class built with a state_dict the case draws (loaded strictly: the submodule
  names are the contract), its scores on non-square and smallest (4x4) inputs against the reference
  forward (< 1e-9);
- ``box_iou``: boxes that overlap, touch nothing (apart in x only, in y only, in both), nest or
  coincide, and empty sets of boxes;
- ``nms``: clusters of overlapping boxes, a chain A-B-C where only A and C survive (a suppressed box
  suppresses nothing), equal scores on overlapping boxes (the lower index wins), no box and one box.
  IoUs within 1e-6 of the threshold are redrawn: the contract's ``>`` is never tested on a knife edge.
"""
from __future__ import annotations

import numpy as np

from ..cases import small_dims
from ..checks import (Failure, describe, expect_array, expect_close, expect_scalar, expect_tensor, fail_if_raised,
                      shape_phrase)
from ..protocol import Call, Case, arr, lit, module, tensor
from ..references import ch10_segmentation as R
from . import Item, register
from .ch02_backprop import BackwardItem, ForwardItem
from .ch06_cnn import LayerForwardItem

CHAPTER = "10_segmentation"
SMOOTH = 1e-7
EXACT = 1e-12          # metrics: ratios of counts, round-off only
FORWARD = 1e-9         # a whole network in float64


# --- metrics ---------------------------------------------------------------------------------------

def _label_maps(s, shape, num_classes, ignore_index=None, ignore_share=0.0, only_predicted=None, absent=None):
    """(pred, target): target uniform over the classes, pred right on ~70 % of the pixels.

    ``only_predicted``: a class removed from the target (and predicted on a few pixels); ``absent``: a class
    that appears in neither. Ignored pixels: a different share in every image along the first axis.
    """
    classes = [c for c in range(num_classes) if c not in (only_predicted, absent)]
    target = s.inputs.choice(classes, size=shape)
    pred = np.where(s.inputs.uniform(size=shape) < 0.7, target, s.inputs.choice(classes, size=shape))
    if only_predicted is not None:
        spots = s.inputs.uniform(size=shape) < 0.15
        spots.reshape(-1)[int(s.inputs.integers(0, spots.size))] = True
        pred = np.where(spots, only_predicted, pred)
    if ignore_index is not None and ignore_share > 0:
        first = shape[0]
        shares = np.linspace(0.05, 2 * ignore_share, first) if first > 1 else np.array([ignore_share])
        share = shares.reshape((first,) + (1,) * (len(shape) - 1))
        ignored = s.inputs.uniform(size=shape) < share
        ignored.reshape(-1)[0] = True                       # at least one ignored pixel ...
        ignored.reshape(-1)[-1] = False                     # ... and at least one kept
        target = np.where(ignored, ignore_index, target)
    return pred.astype(np.int64), target.astype(np.int64)


def _metric_cases(s, name, with_classes):
    cases = []
    settings = [  # (shape, num_classes, ignore_index, ignore share, only predicted, absent)
        (small_dims(s.inputs, (2, 3), (4, 7), (4, 7)), int(s.inputs.integers(3, 6)), None, 0.0, None, None),
        (small_dims(s.inputs, (3, 4), (4, 7), (5, 8)), 4, 255, 0.2, None, None),
        (small_dims(s.inputs, (2, 3), (5, 8), (4, 6)), 5, -1, 0.15, 3, 4),
        ((1, 1, 1), 2, None, 0.0, None, None),                              # a single pixel
        (small_dims(s.inputs, (5, 9), (5, 9)), 3, 255, 0.2, None, None),    # one map (H, W), no batch axis
    ]
    for index, (shape, C, ignore, share, only_pred, absent) in enumerate(settings):
        pred, target = _label_maps(s, shape, C, ignore, share, only_pred, absent)
        if index == 3:
            pred[...] = 1
            target[...] = int(s.inputs.integers(0, 2))
        args = [arr("pred"), arr("target")] + ([lit(C)] if with_classes else [])
        kwargs = {"ignore_index": lit(ignore)} if ignore is not None else {}
        label = f" on label maps of shape {shape}" + (f" with num_classes={C}" if with_classes else "") + \
                (f" and ignore_index={ignore}" if ignore is not None else "")
        if absent is not None and with_classes:
            label += f" (class {absent} appears nowhere, class {only_pred} is only predicted)"
        cases.append(Case(steps=[Call(name, args, kwargs, save="value")], arrays={"pred": pred, "target": target},
                          returns=("value",), context={"num_classes": C, "ignore_index": ignore}, label=label))
    return cases


@register(CHAPTER)
class PixelAccuracy(Item):
    name = "pixel_accuracy"
    hint = ("the share of the counted pixels whose prediction equals the target: leave out every pixel whose "
            "TARGET is ignore_index (from the count of correct pixels and from the total), and divide once, over "
            "all pixels of all images together; a fraction between 0 and 1.")

    def cases(self, s):
        return _metric_cases(s, self.name, with_classes=False)

    def check(self, case, out):
        value = expect_scalar(self.name, "the accuracy", out["value"], case.label, self.hint)
        expected = R.pixel_accuracy(case.arrays["pred"], case.arrays["target"], case.context["ignore_index"])
        if abs(value - expected) > EXACT:
            raise Failure(f"{self.name}: the accuracy is {value:.6g}, expected {expected:.6g}{case.label}.\n"
                          f"Hint: {self.hint}")


@register(CHAPTER)
class MeanIou(Item):
    name = "mean_iou"
    hint = ("per class c: IoU = |pred == c AND target == c| / |pred == c OR target == c|, counted over all kept "
            "pixels (a pixel whose target is ignore_index is left out, its prediction too); a class with an empty "
            "union (in neither map) has no IoU and is left out of the mean, a class that is only predicted has IoU "
            "0 and counts; then the mean over the classes that have an IoU.")

    def cases(self, s):
        return _metric_cases(s, self.name, with_classes=True)

    def check(self, case, out):
        value = expect_scalar(self.name, "the mean IoU", out["value"], case.label, self.hint)
        c = case.context
        per_class = R.class_iou(case.arrays["pred"], case.arrays["target"], c["num_classes"], c["ignore_index"])
        expected = float(np.nanmean(per_class))
        if abs(value - expected) > EXACT:
            shown = ", ".join("none" if np.isnan(v) else f"{v:.3f}" for v in per_class)
            raise Failure(f"{self.name}: the mean IoU is {value:.6g}, expected {expected:.6g}{case.label} "
                          f"(the IoU of each class: {shown}).\nHint: {self.hint}")


# --- max unpooling ---------------------------------------------------------------------------------

def _distinct_positions(s, N, C, H, W, H_out, W_out, window=None):
    """(N, C, H, W) flat positions in the (H_out, W_out) map, distinct in each map: one per pooling window of
    size ``window`` (stride = window) when given, else anywhere."""
    idx = np.zeros((N, C, H, W), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            if window is None:
                idx[n, c] = s.inputs.choice(H_out * W_out, size=H * W, replace=False).reshape(H, W)
            else:
                kh, kw = window
                rows = np.arange(H)[:, None] * kh + s.inputs.integers(0, kh, size=(H, W))
                cols = np.arange(W)[None, :] * kw + s.inputs.integers(0, kw, size=(H, W))
                idx[n, c] = rows * W_out + cols
    return idx


def _unpool_inputs(s, index):
    """Case 0: 2x2 windows of an odd-sized (non-square) map that pooling rounded down; case 1: 3x2 windows;
    case 2: positions anywhere in a non-square map. Edge cases: a 1x1 map of one image and one channel
    unpooled to 1x1, and to a 2x3 map."""
    N, C = small_dims(s.inputs, (1, 3), (1, 3))
    if index in (0, 1):
        kh, kw = (2, 2) if index == 0 else (3, 2)
        H, W = small_dims(s.inputs, (2, 4), (2, 4))
        W = W + 1 if W == H else W
        H_out, W_out = H * kh + (1 if index == 0 else 2), W * kw + 1
        idx = _distinct_positions(s, N, C, H, W, H_out, W_out, (kh, kw))
    elif index == 2:
        H, W = small_dims(s.inputs, (2, 3), (2, 4))
        H_out, W_out = H + int(s.inputs.integers(2, 5)), W + int(s.inputs.integers(5, 8))
        idx = _distinct_positions(s, N, C, H, W, H_out, W_out)
    else:
        N, C, H, W = 1, 1, 1, 1
        H_out, W_out = (1, 1) if index == 3 else (2, 3)
        idx = _distinct_positions(s, N, C, H, W, H_out, W_out)
    x = s.inputs.normal(size=(N, C, H, W))
    x[np.abs(x) < 0.1] += 0.5                                        # no value near 0: a lost one shows
    return {"x": x, "indices": idx}, {"output_shape": [H_out, W_out]}


@register(CHAPTER)
class MaxUnpoolForward(LayerForwardItem):
    name = "max_unpool_forward"
    reference = R.max_unpool_forward
    input_names = ("x", "indices")
    hint = ("out is zero everywhere except at the remembered positions: in map (n, c), the flat position "
            "p = indices[n, c, i, j] is row p // W_out, column p % W_out of the (H_out, W_out) output, and gets "
            "x[n, c, i, j]; out has shape (N, C, H_out, W_out).")

    def label(self, arrays, params):
        return shape_phrase(x=arrays["x"]) + f" unpooled to output_shape={tuple(params['output_shape'])}"

    def make_inputs(self, s):
        return _unpool_inputs(s, 0)

    def inputs_for_case(self, s, index):
        return _unpool_inputs(s, index)

    def edge_inputs(self, s):
        return [_unpool_inputs(s, 3), _unpool_inputs(s, 4)]


@register(CHAPTER)
class MaxUnpoolBackward(BackwardItem):
    name = "max_unpool_backward"
    forward = MaxUnpoolForward()
    grad_names = ("dx",)
    hints = {"dx": "each input value went to exactly one output position, so its gradient is dout at that "
                   "position: dx[n, c, i, j] = dout[n, c] at row p // W_out, column p % W_out with "
                   "p = indices[n, c, i, j]; dx has the shape of x."}


# --- transposed convolution ------------------------------------------------------------------------

CONVT_EDGES = (3, 4, 5)


def _convt_inputs(s, index):
    """See the module docstring: cases 0-2 on every run, then the degenerate sizes (CONVT_EDGES)."""
    N, C_in, C_out = small_dims(s.inputs, (1, 3), (1, 3), (1, 3))
    H, W = small_dims(s.inputs, (2, 4), (2, 4))
    W = W + 1 if W == H else W
    if index == 0:
        N, kh, kw, stride, pad, op = max(N, 2), 3, 3, 2, 1, 1
    elif index == 1:
        C_in = max(C_in, 2)
        kh, kw, stride, pad, op = 2, 3, 1, 0, 0
    elif index == 2:
        kh, kw, stride, pad, op = 3, 4, 3, int(s.inputs.integers(1, 3)), 2
    elif index == 3:
        N, C_in, C_out, H, W, kh, kw, stride, pad, op = 1, 1, 1, 1, 1, 1, 1, 2, 0, 1
    elif index == 4:
        kh, kw, stride, pad, op = 1, 1, 2, 0, 0
    else:
        C_out = C_in + 1
        kh, kw, stride, pad, op = 2, 2, 2, 0, 0
    arrays = {"x": s.inputs.normal(size=(N, C_in, H, W)), "w": s.inputs.normal(size=(C_in, C_out, kh, kw)),
              "b": s.inputs.normal(size=(C_out,))}
    return arrays, {"conv_param": {"stride": stride, "pad": pad, "output_padding": op}}


@register(CHAPTER)
class ConvTransposeForward(LayerForwardItem):
    name = "conv_transpose_forward"
    reference = R.conv_transpose_forward
    input_names = ("x", "w", "b")
    hint = ("every input pixel (i, j) ADDS x[n, c, i, j] * w[c] (all C_out channels, kh x kw, not flipped) into "
            "the output window whose top-left corner is (i * stride, j * stride); then cut `pad` rows and columns "
            "off the top and left and keep H_out = (H - 1) * stride - 2 * pad + kh + output_padding rows (W the "
            "same way): output_padding adds rows at the bottom and right only; add b[o] to channel o.")

    def make_inputs(self, s):
        return _convt_inputs(s, 0)

    def inputs_for_case(self, s, index):
        return _convt_inputs(s, index)

    def edge_inputs(self, s):
        return [_convt_inputs(s, index) for index in CONVT_EDGES]


@register(CHAPTER)
class ConvTransposeBackward(BackwardItem):
    name = "conv_transpose_backward"
    forward = ConvTransposeForward()
    grad_names = ("dx", "dw", "db")
    hints = {"dx": "dx[n, c, i, j] sums w[c] times the window of dout that input pixel (i, j) wrote to (top-left "
                   "corner (i * stride, j * stride) of the uncropped output): put dout back into a zero array of "
                   "the uncropped size at offset (pad, pad) first; that is a strided convolution of dout.",
             "dw": "dw[c, o] sums x[n, c, i, j] times that same window of the uncropped dout[n, o], over n, i and j.",
             "db": "db[o] sums dout[:, o] over the batch AND every output position, shape (C_out,)."}


# --- U-Net -----------------------------------------------------------------------------------------

def _unet_state(s, in_channels, num_classes, base):
    state = {}
    for key, shape in R.unet_state_shapes(in_channels, num_classes, base).items():
        if key.endswith("bias"):
            state[key] = s.inputs.normal(0.0, 0.1, size=shape)
        else:
            fan_in = int(np.prod(shape[1:])) if not key.startswith("up") else shape[0]
            state[key] = s.inputs.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
    return state


@register(CHAPTER)
class UNet(Item):
    name = "UNet"
    hint = ("enc1, enc2, bottleneck, dec2 and dec1 are each nn.Sequential(Conv2d 3x3 with padding 1, ReLU, Conv2d "
            "3x3 with padding 1, ReLU) with B, 2B, 4B, 2B and B output channels; nn.MaxPool2d(2) between the "
            "encoder levels; up2 = nn.ConvTranspose2d(4B, 2B, 2, stride=2), up1 = nn.ConvTranspose2d(2B, B, 2, "
            "stride=2); the decoder input is torch.cat([skip, upsampled], dim=1), the skip FIRST; head = "
            "nn.Conv2d(B, num_classes, 1) gives raw scores (no ReLU or softmax after it).")

    def cases(self, s):
        cases = []
        for index in range(3):
            if index == 0:
                (N, C_in, K, B), (H, W) = small_dims(s.inputs, (2, 2), (1, 3), (2, 4), (2, 3)), (8, 12)
            elif index == 1:
                N, C_in, K, B, H, W = 1, 1, 2, 1, 4, 4                   # the smallest: a 1x1 bottleneck
            else:
                (N, C_in, K, B), (H, W) = small_dims(s.inputs, (1, 2), (2, 3), (2, 4), (2, 3)), (12, 8)
            state = _unet_state(s, C_in, K, B)
            arrays = {"x": s.inputs.normal(size=(N, C_in, H, W)), **{k.replace(".", "_"): v for k, v in state.items()}}
            spec = module(self.name, [lit(C_in), lit(K), lit(B)], state={k: k.replace(".", "_") for k in state},
                          train=False)
            steps = [Call("value", [spec], builtin=True, save="model", label=self.name, record_errors=True),
                     Call("model", [tensor("x")], on_ref=True, save="scores", label=self.name, record_errors=True)]
            cases.append(Case(steps=steps, arrays=arrays, returns=("scores",), context={"state": state},
                              label=f" built as {self.name}({C_in}, {K}, {B}){shape_phrase(x=arrays['x'])}"))
        return cases

    def check(self, case, out):
        expected = R.unet_forward(case.arrays["x"], case.context["state"])
        got = expect_tensor(self.name, "the scores", out["scores"], expected.shape, case.label, self.hint)
        expect_close(self.name, "the scores", got, expected, FORWARD, case.label, self.hint)


# --- boxes -----------------------------------------------------------------------------------------

def _random_boxes(s, n, low=0.0, high=10.0):
    xy = s.inputs.uniform(low, high, size=(n, 2))
    wh = s.inputs.uniform(0.5, 5.0, size=(n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _box_iou_inputs(s, index):
    if index == 0:
        N, M = small_dims(s.inputs, (3, 5), (2, 5))
        return _random_boxes(s, N, high=6.0), _random_boxes(s, M, high=6.0)
    if index == 1:
        # Apart in x only, in y only, in both (where an unclamped overlap is a product of two negatives), and
        # boxes that share only an edge.
        a = _random_boxes(s, 1)[0]
        w, h = a[2] - a[0], a[3] - a[1]
        gap = s.inputs.uniform(0.5, 2.0)
        apart = [a + [w + gap, 0.3, w + gap, 0.3], a + [0.2, h + gap, 0.2, h + gap],
                 a + [w + gap, h + gap, w + gap, h + gap], a + [w, 0.0, w, 0.0]]
        return np.stack([a, a + [0.5, 0.5, 0.5, 0.5]]), np.stack(apart + [a + [0.4, -0.3, 0.1, 0.2]])
    if index == 2:
        # Nested (one inside the other) and identical boxes (IoU 1).
        a = _random_boxes(s, 2)
        inner = a[0] + [0.2 * (a[0, 2] - a[0, 0]), 0.1 * (a[0, 3] - a[0, 1]), -0.3 * (a[0, 2] - a[0, 0]),
                        -0.2 * (a[0, 3] - a[0, 1])]
        return a, np.stack([inner, a[1].copy(), a[0].copy()])
    if index == 3:
        return np.zeros((0, 4)), _random_boxes(s, 3)                # no box on one side
    return _random_boxes(s, 1), _random_boxes(s, 1, high=3.0) + 1.0


@register(CHAPTER)
class BoxIou(Item):
    name = "box_iou"
    hint = ("the overlap of boxes a and b spans max(x1) .. min(x2) and max(y1) .. min(y2), and is EMPTY when either "
            "extent is negative (clamp each at 0 before multiplying); IoU = overlap / (area_a + area_b - overlap) "
            "with area (x2 - x1) * (y2 - y1), no +1; one row per box of boxes_a, one column per box of boxes_b.")

    def cases(self, s):
        cases = []
        for index in range(5):
            a, b = _box_iou_inputs(s, index)
            cases.append(Case(steps=[Call(self.name, [arr("boxes_a"), arr("boxes_b")], save="iou")],
                              arrays={"boxes_a": a, "boxes_b": b}, returns=("iou",),
                              label=f" on boxes_a of shape {a.shape} and boxes_b of shape {b.shape}"))
        return cases

    def check(self, case, out):
        expected = R.box_iou(case.arrays["boxes_a"], case.arrays["boxes_b"])
        got = expect_array(self.name, "the IoU matrix", out["iou"], expected.shape, case.label, self.hint)
        expect_close(self.name, "the IoU matrix", got, expected, SMOOTH, case.label, self.hint)


MARGIN = 1e-6


def _clear_of_threshold(boxes, threshold):
    ious = R.box_iou(boxes, boxes)
    return not np.any(np.abs(ious - threshold) < MARGIN)


def _nms_inputs(s, index):
    """(boxes, scores, iou_threshold): see the module docstring."""
    for _ in range(100):
        threshold = float(s.inputs.choice([0.3, 0.4, 0.5, 0.6]))
        if index == 3:
            return np.zeros((0, 4)), np.zeros(0), threshold
        if index == 4:
            return _random_boxes(s, 1), s.inputs.uniform(size=1), threshold
        parts = []
        for _ in range(int(s.inputs.integers(2, 4))):              # clusters of jittered boxes
            center = _random_boxes(s, 1, high=30.0)[0]
            k = int(s.inputs.integers(2, 4))
            parts.append(center + s.inputs.normal(0.0, 0.6, size=(k, 4)) * [1, 1, 1, 1])
        if index == 1:
            # A chain: A overlaps B and B overlaps C above the threshold, A and C do not; scores A > B > C.
            threshold = 0.5
            a = _random_boxes(s, 1, low=40.0, high=50.0)[0]
            w = a[2] - a[0]
            chain = np.stack([a, a + [0.3 * w, 0, 0.3 * w, 0], a + [0.6 * w, 0, 0.6 * w, 0]])
            parts.append(chain)
        boxes = np.concatenate(parts)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 0.2)
        scores = s.inputs.uniform(0.05, 0.95, size=len(boxes))
        if index == 1:
            scores[-3:] = np.sort(s.inputs.uniform(0.96, 0.99, size=3))[::-1]
        if index == 2:
            # Equal scores on boxes that overlap: the one with the lower index must come first and be kept.
            i = int(s.inputs.integers(0, len(boxes) - 1))
            boxes[i + 1] = boxes[i] + s.inputs.uniform(-0.1, 0.1, size=4)
            tie = float(s.inputs.uniform(0.96, 0.99))
            scores[i], scores[i + 1] = tie, tie
        order = s.inputs.permutation(len(boxes))
        if index == 2:
            order = np.arange(len(boxes))
        boxes, scores = boxes[order], scores[order]
        if _clear_of_threshold(boxes, threshold):
            return boxes, scores, threshold
    raise RuntimeError("could not draw NMS boxes clear of the threshold")


@register(CHAPTER)
class Nms(Item):
    name = "nms"
    hint = ("visit the boxes by descending score (equal scores: lower index first, a stable sort of -scores); keep "
            "a box unless a box ALREADY KEPT overlaps it with IoU > iou_threshold (a suppressed box suppresses "
            "nothing); return the kept indices, into the original boxes, in the order they were kept.")

    def cases(self, s):
        cases = []
        for index in range(5):
            boxes, scores, threshold = _nms_inputs(s, index)
            label = f" on {len(boxes)} boxes with iou_threshold={threshold}"
            if index == 1:
                label += " (with a chain of three overlapping boxes)"
            if index == 2:
                label += " (two overlapping boxes have equal scores)"
            cases.append(Case(steps=[Call(self.name, [arr("boxes"), arr("scores"), lit(threshold)], save="kept")],
                              arrays={"boxes": boxes, "scores": scores}, returns=("kept",),
                              context={"threshold": threshold}, label=label))
        return cases

    def check(self, case, out):
        kept = out["kept"]
        fail_if_raised(self.name, kept, self.hint)
        expected = R.nms(case.arrays["boxes"], case.arrays["scores"], case.context["threshold"])
        if isinstance(kept, (list, tuple)) and all(isinstance(v, (int, np.integer)) for v in kept):
            kept = np.array(kept, dtype=np.int64)
        if not isinstance(kept, np.ndarray) or kept.ndim != 1 or (kept.size and kept.dtype.kind not in "iu"):
            extra = (" A boolean mask says which boxes survive, not in which order: return their indices."
                     if isinstance(kept, np.ndarray) and kept.dtype.kind == "b" else "")
            raise Failure(f"{self.name}: should return a 1-D array of integer indices{case.label}, but it returned "
                          f"{describe(kept)}.{extra}\nHint: {self.hint}")
        if not np.array_equal(kept.astype(np.int64), expected):
            raise Failure(f"{self.name}: kept {kept.tolist()}, expected {expected.tolist()}{case.label}.\n"
                          f"Hint: {self.hint}")
