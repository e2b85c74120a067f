"""Chapter 10 (segmentation): the hidden tests, proven in-process against the solution notebook.

- every graded item passes with the solution's functions and class, on several seeds;
- each typical wrong implementation (ignored pixels counted, per-image means, absent classes counted as 0 or 1,
  unions without the intersection subtracted, unpooling positions read with the wrong width, bed of nails,
  flipped kernels, padding cropped from the wrong side, output_padding ignored, sums where U-Net concatenates,
  skips in the wrong order, unclamped box overlaps, NMS without sorting or with suppressed boxes suppressing)
  loses exactly its own item, with a message that names it and gives a hint;
- alternative correct implementations (vectorised metrics, confusion-matrix IoU, fancy-index unpooling,
  transposed convolution by zero stuffing, a U-Net with its own block class and nn.functional pooling,
  NMS with a suppression mask) get full marks;
- the NumPy transposed convolution reference agrees with torch.nn.functional.conv_transpose2d, and the U-Net
  reference with a torch U-Net that loads the same state_dict.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from grader.judge.cases import Streams
from grader.judge.items import find_item
from grader.judge.references import ch10_segmentation as R
from grader.workflow.earlier_chapters import solution_namespace

from chapter_proofs import chapter_proofs
from conftest import solution_notebook

pytestmark = pytest.mark.ch10

CHAPTER = "10_segmentation"
_SOLUTION = {}


def sol(name):
    if not _SOLUTION:
        _SOLUTION.update(solution_namespace(solution_notebook(CHAPTER)))
    return _SOLUTION[name]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- metrics ------------------------------------------------------------------------------------------

def accuracy_ignored_counted(pred, target, ignore_index=None):
    return float(np.mean(np.asarray(pred) == np.asarray(target)))


def accuracy_mean_of_image_means(pred, target, ignore_index=None):
    pred, target = np.asarray(pred), np.asarray(target)
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    per_image = [np.sum((p == t) & k) / np.sum(k) for p, t, k in zip(pred, target, keep)]
    return float(np.mean(per_image))


def accuracy_in_percent(pred, target, ignore_index=None):
    return 100.0 * R.pixel_accuracy(pred, target, ignore_index)


def accuracy_as_count(pred, target, ignore_index=None):
    pred, target = np.asarray(pred), np.asarray(target)
    keep = np.ones(target.shape, bool) if ignore_index is None else target != ignore_index
    return float(np.sum((pred == target) & keep))


def accuracy_error_rate(pred, target, ignore_index=None):
    return 1.0 - R.pixel_accuracy(pred, target, ignore_index)


def _ious(pred, target, num_classes, ignore_index, drop_pred_on_ignored=True):
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if ignore_index is not None:
        keep = target != ignore_index
        target = target[keep] if drop_pred_on_ignored else np.where(keep, target, -12345)
        pred = pred[keep] if drop_pred_on_ignored else pred
    inter = np.array([np.sum((pred == c) & (target == c)) for c in range(num_classes)], float)
    union = np.array([np.sum((pred == c) | (target == c)) for c in range(num_classes)], float)
    return inter, union, pred, target


def iou_absent_as_zero(pred, target, num_classes, ignore_index=None):
    inter, union, _, _ = _ious(pred, target, num_classes, ignore_index)
    return float(np.sum(inter / np.maximum(union, 1)) / num_classes)


def iou_absent_as_one(pred, target, num_classes, ignore_index=None):
    inter, union, _, _ = _ious(pred, target, num_classes, ignore_index)
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


def iou_only_classes_in_target(pred, target, num_classes, ignore_index=None):
    inter, union, _, t = _ious(pred, target, num_classes, ignore_index)
    present = np.array([np.any(t == c) for c in range(num_classes)])
    return float(np.mean((inter / np.maximum(union, 1))[present]))


def iou_ignore_not_applied(pred, target, num_classes, ignore_index=None):
    return R.mean_iou(pred, target, num_classes, None)


def iou_prediction_on_ignored_pixels_kept(pred, target, num_classes, ignore_index=None):
    inter, union, _, _ = _ious(pred, target, num_classes, ignore_index, drop_pred_on_ignored=False)
    return float(np.mean(inter[union > 0] / union[union > 0]))


def iou_micro_average(pred, target, num_classes, ignore_index=None):
    inter, union, _, _ = _ious(pred, target, num_classes, ignore_index)
    return float(inter.sum() / union.sum())


def iou_union_without_intersection(pred, target, num_classes, ignore_index=None):
    inter, union, p, t = _ious(pred, target, num_classes, ignore_index)
    sums = np.array([np.sum(p == c) + np.sum(t == c) for c in range(num_classes)], float)
    return float(np.mean(inter[union > 0] / sums[union > 0]))


# --- max unpooling ------------------------------------------------------------------------------------

def _unpool_with(x, indices, output_shape, position):
    N, C, H, W = x.shape
    H_out, W_out = output_shape
    out = np.zeros((N, C, H_out, W_out))
    for n, c, i, j in np.ndindex(N, C, H, W):
        r, q = position(int(indices[n, c, i, j]), H_out, W_out, i, j)
        if 0 <= r < H_out and 0 <= q < W_out:
            out[n, c, r, q] = x[n, c, i, j]
    return out, (indices, x.shape, (H_out, W_out))


def unpool_divided_by_height(x, indices, output_shape):
    return _unpool_with(x, indices, output_shape, lambda p, H, W, i, j: (p // H, p % H))


def unpool_column_major(x, indices, output_shape):
    return _unpool_with(x, indices, output_shape, lambda p, H, W, i, j: (p % H, p // H))


def unpool_bed_of_nails(x, indices, output_shape):
    return _unpool_with(x, indices, output_shape, lambda p, H, W, i, j: (2 * i, 2 * j))


def unpool_nearest(x, indices, output_shape):
    H_out, W_out = output_shape
    up = x.repeat(-(-H_out // x.shape[2]), axis=2).repeat(-(-W_out // x.shape[3]), axis=3)[:, :, :H_out, :W_out]
    return up, (indices, x.shape, (H_out, W_out))


def unpool_index_over_channels(x, indices, output_shape):
    N, C, H, W = x.shape
    H_out, W_out = output_shape
    out = np.zeros((N, C * H_out * W_out))
    for n in range(N):
        out[n, indices[n].ravel()] = x[n].ravel()          # as if indices counted over (C, H_out, W_out)
    return out.reshape(N, C, H_out, W_out), (indices, x.shape, (H_out, W_out))


def unpool_transposed_shape(x, indices, output_shape):
    out, cache = R.max_unpool_forward(x, indices, output_shape), None
    return out.transpose(0, 1, 3, 2), (indices, x.shape, tuple(output_shape))


def _gather_with(dout, cache, position):
    indices, x_shape, (H_out, W_out) = cache
    dx = np.zeros(x_shape)
    for n, c, i, j in np.ndindex(*x_shape):
        r, q = position(int(indices[n, c, i, j]), H_out, W_out, i, j)
        if 0 <= r < H_out and 0 <= q < W_out:
            dx[n, c, i, j] = dout[n, c, r, q]
    return dx


def unpool_backward_divided_by_height(dout, cache):
    return _gather_with(dout, cache, lambda p, H, W, i, j: (p // H, p % H))


def unpool_backward_bed_of_nails(dout, cache):
    return _gather_with(dout, cache, lambda p, H, W, i, j: (2 * i, 2 * j))


def unpool_backward_zeros(dout, cache):
    return np.zeros(cache[1])


def unpool_backward_top_left_crop(dout, cache):
    N, C, H, W = cache[1]
    return dout[:, :, :H, :W].copy() if dout.shape[2] >= H and dout.shape[3] >= W else np.zeros(cache[1])


def unpool_backward_scaled(dout, cache):
    return 0.5 * sol("max_unpool_backward")(dout, cache)


# --- transposed convolution ---------------------------------------------------------------------------

def _convt(x, w, b, stride, pad, op, flip=False, crop="start", op_at_start=False, bias=True):
    if flip:
        w = w[:, :, ::-1, ::-1]
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = w.shape
    H_out, W_out = (H - 1) * stride - 2 * pad + kh + op, (W - 1) * stride - 2 * pad + kw + op
    full = np.zeros((N, C_out, (H - 1) * stride + kh + 2 * op, (W - 1) * stride + kw + 2 * op))
    shift = op if op_at_start else 0
    for i in range(H):
        for j in range(W):
            full[:, :, shift + i * stride:shift + i * stride + kh, shift + j * stride:shift + j * stride + kw] += \
                np.einsum("nc,cokl->nokl", x[:, :, i, j], w)
    start = pad if crop == "start" else 2 * pad if crop == "double" else 0
    out = full[:, :, start:start + H_out, start:start + W_out]
    return out + (b[None, :, None, None] if bias else 0)


def _param(conv_param):
    return conv_param["stride"], conv_param["pad"], conv_param.get("output_padding", 0)


def convt_flipped_kernel(x, w, b, conv_param):
    return _convt(x, w, b, *_param(conv_param), flip=True), (x, w, conv_param)


def convt_crop_from_the_end(x, w, b, conv_param):
    return _convt(x, w, b, *_param(conv_param), crop="end"), (x, w, conv_param)


def convt_output_padding_at_top_left(x, w, b, conv_param):
    return _convt(x, w, b, *_param(conv_param), op_at_start=True), (x, w, conv_param)


def convt_output_padding_ignored(x, w, b, conv_param):
    s, p, _ = _param(conv_param)
    return _convt(x, w, b, s, p, 0), (x, w, conv_param)


def convt_stride_ignored(x, w, b, conv_param):
    s, p, op = _param(conv_param)
    out = _convt(x, w, b, 1, p, op)
    H_out, W_out = (x.shape[2] - 1) * s - 2 * p + w.shape[2] + op, (x.shape[3] - 1) * s - 2 * p + w.shape[3] + op
    full = np.zeros(out.shape[:2] + (H_out, W_out))
    h, ww = min(H_out, out.shape[2]), min(W_out, out.shape[3])
    full[:, :, :h, :ww] = out[:, :, :h, :ww]
    return full, (x, w, conv_param)


def convt_no_bias(x, w, b, conv_param):
    return _convt(x, w, b, *_param(conv_param), bias=False), (x, w, conv_param)


def convt_as_convolution(x, w, b, conv_param):
    """A convolution's output size (H + 2 pad - kh) // stride + 1: the formula of the wrong layer."""
    s, p, op = _param(conv_param)
    out = _convt(x, w, b, s, p, op)
    H_c, W_c = max(1, (x.shape[2] + 2 * p - w.shape[2]) // s + 1), max(1, (x.shape[3] + 2 * p - w.shape[3]) // s + 1)
    return out[:, :, :H_c, :W_c], (x, w, conv_param)


def _convt_backward_with(dout, cache, flip=False, dw_first_image=False, db_first_position=False, shift=True):
    x, w, conv_param = cache
    s, p, op = _param(conv_param)
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = w.shape
    wk = w[:, :, ::-1, ::-1] if flip else w
    canvas = np.zeros((N, C_out, (H - 1) * s + kh + op + 2 * p, (W - 1) * s + kw + op + 2 * p))
    o = p if shift else 0
    canvas[:, :, o:o + dout.shape[2], o:o + dout.shape[3]] = dout
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for i in range(H):
        for j in range(W):
            win = canvas[:, :, i * s:i * s + kh, j * s:j * s + kw]
            dx[:, :, i, j] = np.einsum("nokl,cokl->nc", win, wk)
            dw += np.einsum("nc,nokl->cokl", x[:1, :, i, j] if dw_first_image else x[:, :, i, j],
                            win[:1] if dw_first_image else win)
    db = dout[:, :, 0, 0].sum(axis=0) if db_first_position else dout.sum(axis=(0, 2, 3))
    return dx, dw, db


def convt_backward_flipped_dx(dout, cache):
    return _convt_backward_with(dout, cache, flip=True)


def convt_backward_dw_first_image(dout, cache):
    return _convt_backward_with(dout, cache, dw_first_image=True)


def convt_backward_db_first_position(dout, cache):
    return _convt_backward_with(dout, cache, db_first_position=True)


def convt_backward_padding_not_undone(dout, cache):
    return _convt_backward_with(dout, cache, shift=False)


def convt_backward_db_not_summed_over_batch(dout, cache):
    dx, dw, _ = _convt_backward_with(dout, cache)
    return dx, dw, dout.sum(axis=(2, 3))


# --- U-Net --------------------------------------------------------------------------------------------

def _block(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                         nn.ReLU())


class UNetLayers(nn.Module):
    """The contract's layers; subclasses vary the forward pass."""

    def __init__(self, in_channels, num_classes, base_channels, dec_in=(4, 2)):
        super().__init__()
        B = base_channels
        self.enc1, self.enc2, self.bottleneck = _block(in_channels, B), _block(B, 2 * B), _block(2 * B, 4 * B)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * B, 2 * B, 2, stride=2), _block(dec_in[0] * B, 2 * B)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * B, B, 2, stride=2), _block(dec_in[1] * B, B)
        self.head = nn.Conv2d(B, num_classes, 1)

    def parts(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        return e1, e2, self.bottleneck(nn.functional.max_pool2d(e2, 2))


class UNetSkipLast(UNetLayers):
    def forward(self, x):
        e1, e2, m = self.parts(x)
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        return self.head(self.dec1(torch.cat([self.up1(d2), e1], dim=1)))


class UNetSoftmax(UNetLayers):
    def forward(self, x):
        e1, e2, m = self.parts(x)
        d2 = self.dec2(torch.cat([e2, self.up2(m)], dim=1))
        return torch.softmax(self.head(self.dec1(torch.cat([e1, self.up1(d2)], dim=1))), dim=1)


class UNetReluOnScores(UNetLayers):
    def forward(self, x):
        e1, e2, m = self.parts(x)
        d2 = self.dec2(torch.cat([e2, self.up2(m)], dim=1))
        return torch.relu(self.head(self.dec1(torch.cat([e1, self.up1(d2)], dim=1))))


class UNetSummedSkips(UNetLayers):
    def __init__(self, in_channels, num_classes, base_channels):
        super().__init__(in_channels, num_classes, base_channels, dec_in=(2, 1))

    def forward(self, x):
        e1, e2, m = self.parts(x)
        d2 = self.dec2(e2 + self.up2(m))
        return self.head(self.dec1(e1 + self.up1(d2)))


class UNetAveragePooling(UNetLayers):
    def parts(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.avg_pool2d(e1, 2))
        return e1, e2, self.bottleneck(nn.functional.avg_pool2d(e2, 2))

    def forward(self, x):
        e1, e2, m = self.parts(x)
        d2 = self.dec2(torch.cat([e2, self.up2(m)], dim=1))
        return self.head(self.dec1(torch.cat([e1, self.up1(d2)], dim=1)))


class UNetBlocksWithoutLastReLU(UNetLayers):
    """Each block Conv-ReLU-Conv (the same parameter names), the second ReLU left out."""

    def __init__(self, in_channels, num_classes, base_channels):
        super().__init__(in_channels, num_classes, base_channels)
        for name in ("enc1", "enc2", "bottleneck", "dec2", "dec1"):
            block = getattr(self, name)
            setattr(self, name, nn.Sequential(block[0], block[1], block[2]))

    def forward(self, x):
        e1, e2, m = self.parts(x)
        d2 = self.dec2(torch.cat([e2, self.up2(m)], dim=1))
        return self.head(self.dec1(torch.cat([e1, self.up1(d2)], dim=1)))


# --- boxes --------------------------------------------------------------------------------------------

def _iou_parts(a, b, plus_one=0.0, clamp=True):
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + plus_one
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + plus_one
    if clamp:
        w, h = np.clip(w, 0, None), np.clip(h, 0, None)
    area_a = (a[:, 2] - a[:, 0] + plus_one) * (a[:, 3] - a[:, 1] + plus_one)
    area_b = (b[:, 2] - b[:, 0] + plus_one) * (b[:, 3] - b[:, 1] + plus_one)
    return w * h, area_a[:, None], area_b[None, :]


def iou_plus_one(a, b):
    inter, aa, ab = _iou_parts(a, b, plus_one=1.0)
    return inter / (aa + ab - inter)


def iou_unclamped(a, b):
    inter, aa, ab = _iou_parts(a, b, clamp=False)
    return inter / (aa + ab - inter)


def iou_union_is_sum(a, b):
    inter, aa, ab = _iou_parts(a, b)
    return inter / (aa + ab)


def iou_over_smaller_area(a, b):
    inter, aa, ab = _iou_parts(a, b)
    return inter / np.minimum(aa, ab)


def iou_transposed(a, b):
    return R.box_iou(b, a).T.copy() if len(a) == len(b) else R.box_iou(b, a)


def iou_clamped_after_product(a, b):
    inter, aa, ab = _iou_parts(a, b, clamp=False)
    inter = np.clip(inter, 0, None)
    return inter / (aa + ab - inter)


def _nms_with(boxes, scores, threshold, order, chain=False, against_top_only=False):
    ious = R.box_iou(boxes, boxes)
    kept, seen = [], []
    for i in order:
        judges = seen if chain else kept[:1] if against_top_only else kept
        if all(ious[i, j] <= threshold for j in judges):
            kept.append(int(i))
        seen.append(int(i))
    return np.array(kept, dtype=np.int64)


def nms_unsorted(boxes, scores, iou_threshold):
    return _nms_with(boxes, scores, iou_threshold, range(len(scores)))


def nms_ascending(boxes, scores, iou_threshold):
    return _nms_with(boxes, scores, iou_threshold, np.argsort(scores, kind="stable"))


def nms_ties_reversed(boxes, scores, iou_threshold):
    return _nms_with(boxes, scores, iou_threshold, np.argsort(scores, kind="stable")[::-1])


def nms_suppressed_boxes_suppress(boxes, scores, iou_threshold):
    return _nms_with(boxes, scores, iou_threshold, np.argsort(-scores, kind="stable"), chain=True)


def nms_index_order(boxes, scores, iou_threshold):
    return np.sort(R.nms(boxes, scores, iou_threshold))


def nms_mask(boxes, scores, iou_threshold):
    mask = np.zeros(len(scores), dtype=bool)
    mask[R.nms(boxes, scores, iou_threshold)] = True
    return mask


WRONG = {
    "pixel_accuracy": [accuracy_ignored_counted, accuracy_mean_of_image_means, accuracy_in_percent, accuracy_as_count,
                       accuracy_error_rate],
    "mean_iou": [iou_absent_as_zero, iou_absent_as_one, iou_only_classes_in_target, iou_ignore_not_applied,
                 iou_prediction_on_ignored_pixels_kept, iou_micro_average, iou_union_without_intersection],
    "max_unpool_forward": [unpool_divided_by_height, unpool_column_major, unpool_bed_of_nails, unpool_nearest,
                           unpool_index_over_channels, unpool_transposed_shape],
    "max_unpool_backward": [unpool_backward_divided_by_height, unpool_backward_bed_of_nails, unpool_backward_zeros,
                            unpool_backward_top_left_crop, unpool_backward_scaled],
    "conv_transpose_forward": [convt_flipped_kernel, convt_crop_from_the_end, convt_output_padding_at_top_left,
                               convt_output_padding_ignored, convt_stride_ignored, convt_no_bias,
                               convt_as_convolution],
    "conv_transpose_backward": [convt_backward_flipped_dx, convt_backward_dw_first_image,
                                convt_backward_db_first_position, convt_backward_padding_not_undone,
                                convt_backward_db_not_summed_over_batch],
    "UNet": [UNetSkipLast, UNetSoftmax, UNetReluOnScores, UNetSummedSkips, UNetAveragePooling, UNetBlocksWithoutLastReLU],
    "box_iou": [iou_plus_one, iou_unclamped, iou_union_is_sum, iou_over_smaller_area, iou_transposed],
    "nms": [nms_unsorted, nms_ascending, nms_ties_reversed, nms_suppressed_boxes_suppress, nms_index_order, nms_mask],
}


# --- alternative correct implementations --------------------------------------------------------------

def accuracy_vectorised(pred, target, ignore_index=None):
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if ignore_index is not None:
        pred, target = pred[target != ignore_index], target[target != ignore_index]
    return float((pred == target).mean())


def iou_from_confusion_matrix(pred, target, num_classes, ignore_index=None):
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if ignore_index is not None:
        pred, target = pred[target != ignore_index], target[target != ignore_index]
    cm = np.bincount(target * num_classes + pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))


def unpool_fancy_index(x, indices, output_shape):
    N, C, H, W = x.shape
    H_out, W_out = output_shape
    out = np.zeros((N, C, H_out, W_out))
    n, c, _, _ = np.indices(x.shape)
    out[n, c, indices // W_out, indices % W_out] = x
    return out, {"indices": indices, "W_out": W_out}


def unpool_backward_fancy_index(dout, cache):
    idx, W_out = cache["indices"], cache["W_out"]
    n, c, _, _ = np.indices(idx.shape)
    return dout[n, c, idx // W_out, idx % W_out]


def convt_by_zero_stuffing(x, w, b, conv_param):
    s, p, op = _param(conv_param)
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = w.shape
    stuffed = np.zeros((N, C_in, (H - 1) * s + 1, (W - 1) * s + 1))
    stuffed[:, :, ::s, ::s] = x
    stuffed = np.pad(stuffed, ((0, 0), (0, 0), (kh - 1, kh - 1 + op), (kw - 1, kw - 1 + op)))
    k = w[:, :, ::-1, ::-1]
    H_full, W_full = stuffed.shape[2] - kh + 1, stuffed.shape[3] - kw + 1
    full = np.zeros((N, C_out, H_full, W_full))
    for a in range(kh):
        for c in range(kw):
            full += np.einsum("nchw,co->nohw", stuffed[:, :, a:a + H_full, c:c + W_full], k[:, :, a, c])
    H_out, W_out = H_full - 2 * p, W_full - 2 * p
    return full[:, :, p:p + H_out, p:p + W_out] + b[None, :, None, None], {"x": x, "w": w, "param": conv_param}


def convt_backward_by_autograd_free_loops(dout, cache):
    x, w, conv_param = cache["x"], cache["w"], cache["param"]
    s, p, op = _param(conv_param)
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = w.shape
    padded = np.zeros((N, C_out, dout.shape[2] + 2 * p + kh, dout.shape[3] + 2 * p + kw))
    padded[:, :, p:p + dout.shape[2], p:p + dout.shape[3]] = dout
    dx, dw = np.zeros(x.shape), np.zeros(w.shape)
    for a in range(kh):
        for c in range(kw):
            win = padded[:, :, a:a + (H - 1) * s + 1:s, c:c + (W - 1) * s + 1:s]       # (N, C_out, H, W)
            dx += np.einsum("nohw,co->nchw", win, w[:, :, a, c])
            dw[:, :, a, c] = np.einsum("nchw,nohw->co", x, win)
    return dx, dw, dout.sum(axis=(0, 2, 3))


class DoubleConv(nn.Sequential):
    def __init__(self, c_in, c_out):
        super().__init__(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True))


class UNetOwnBlocks(nn.Module):
    def __init__(self, in_channels, num_classes, base_channels):
        super().__init__()
        c = base_channels
        self.enc1, self.enc2, self.bottleneck = DoubleConv(in_channels, c), DoubleConv(c, 2 * c), DoubleConv(2 * c, 4 * c)
        self.up2, self.up1 = nn.ConvTranspose2d(4 * c, 2 * c, 2, 2), nn.ConvTranspose2d(2 * c, c, 2, 2)
        self.dec2, self.dec1 = DoubleConv(4 * c, 2 * c), DoubleConv(2 * c, c)
        self.head = nn.Conv2d(c, num_classes, 1)

    def forward(self, x):
        skips = []
        for block in (self.enc1, self.enc2):
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, kernel_size=2)
        x = self.bottleneck(x)
        for up, dec in ((self.up2, self.dec2), (self.up1, self.dec1)):
            x = dec(torch.cat((skips.pop(), up(x)), 1))
        return self.head(x)


def iou_by_loops(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            out[i, j] = w * h / ((p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h)
    return out


def nms_with_mask(boxes, scores, iou_threshold):
    boxes = np.asarray(boxes, float)
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    alive = np.ones(len(scores), bool)
    kept = []
    for i in order:
        if not alive[i]:
            continue
        kept.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]), 0, None)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        alive &= ~(w * h / (area[i] + area - w * h) > iou_threshold)
    return np.array(kept, dtype=np.int64)


ALTERNATIVES = {
    "vectorised metrics and a confusion-matrix IoU": {"pixel_accuracy": accuracy_vectorised,
                                                      "mean_iou": iou_from_confusion_matrix},
    "fancy-index unpooling with a dict cache": {"max_unpool_forward": unpool_fancy_index,
                                                "max_unpool_backward": unpool_backward_fancy_index},
    "zero-stuffed transposed convolution, loops over kernel taps": {
        "conv_transpose_forward": convt_by_zero_stuffing,
        "conv_transpose_backward": convt_backward_by_autograd_free_loops},
    "U-Net with its own block class and loops over levels": {"UNet": UNetOwnBlocks},
    "box IoU by loops, NMS with a suppression mask": {"box_iou": iou_by_loops, "nms": nms_with_mask},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))


# --- the references against torch -----------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(3))
def test_conv_transpose_reference_agrees_with_torch_on_every_case(seed):
    cases = find_item("conv_transpose_forward", CHAPTER).cases(Streams.from_seed(seed))
    for case in cases:
        a, param = case.arrays, case.context["kwargs"]["conv_param"]
        expected = nn.functional.conv_transpose2d(torch.tensor(a["x"]), torch.tensor(a["w"]), torch.tensor(a["b"]),
                                                  stride=param["stride"], padding=param["pad"],
                                                  output_padding=param["output_padding"]).numpy()
        got = R.conv_transpose_forward(a["x"], a["w"], a["b"], param)
        assert got.shape == expected.shape and np.abs(got - expected).max() < 1e-12, case.label


def test_max_unpool_reference_agrees_with_torch():
    x = torch.tensor(np.random.default_rng(0).normal(size=(2, 3, 7, 9)))
    pooled, where = nn.functional.max_pool2d(x, 2, return_indices=True)
    expected = nn.functional.max_unpool2d(pooled, where, 2, output_size=(7, 9)).numpy()
    assert np.array_equal(R.max_unpool_forward(pooled.numpy(), where.numpy(), (7, 9)), expected)


def test_unet_reference_agrees_with_a_torch_unet_loading_the_same_state():
    rng = np.random.default_rng(1)
    state = {k: rng.normal(0, 0.3, size=s) for k, s in R.unet_state_shapes(2, 3, 2).items()}
    model = UNetOwnBlocks(2, 3, 2).double()
    model.load_state_dict({k: torch.tensor(v) for k, v in state.items()})
    x = rng.normal(size=(2, 2, 8, 12))
    with torch.no_grad():
        expected = model(torch.tensor(x)).numpy()
    assert np.abs(R.unet_forward(x, state) - expected).max() < 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_nms_reference_agrees_with_a_plain_reading_of_the_contract(seed):
    for case in find_item("nms", CHAPTER).cases(Streams.from_seed(seed)):
        a = case.arrays
        assert np.array_equal(R.nms(a["boxes"], a["scores"], case.context["threshold"]),
                              nms_with_mask(a["boxes"], a["scores"], case.context["threshold"])), case.label
