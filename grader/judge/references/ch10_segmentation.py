"""Trusted references for chapter 10 (segmentation: dense prediction, upsampling, U-Net, boxes).

Used only by hidden tests, in the grader's process; never shipped inside a learner notebook.
Everything is NumPy in float64. Gradients are checked against centered differences of these
forwards, so only forwards are written here.

Conventions (the chapter's docstrings state the same):
- metrics: ``ignore_index`` is a target value outside 0 .. num_classes - 1; pixels whose target is it
  are left out entirely (their prediction too). A class that is neither in the (kept) target nor in the
  prediction has no IoU (0 / 0) and is left out of the mean; a class predicted but absent from the
  target has IoU 0 and counts.
- max unpooling: ``indices[n, c, i, j]`` is the flat position ``row * W_out + col`` inside the
  (H_out, W_out) map of image n, channel c, as ``torch.nn.functional.max_pool2d(return_indices=True)``
  gives it; indices are distinct within a map.
- transposed convolution: w (C_in, C_out, kh, kw) as torch has it; input pixel (i, j) adds
  x[n, c, i, j] * w[c] into the output window whose top-left corner is (i * stride, j * stride) of the
  uncropped output, which is then cropped by ``pad`` on the top and left and cut to
  H_out = (H - 1) * stride - 2 * pad + kh + output_padding rows (the same for W): exactly
  ``torch.nn.functional.conv_transpose2d``.
- boxes are (x1, y1, x2, y2) with x2 > x1, y2 > y1; area (x2 - x1) * (y2 - y1) (continuous coordinates,
  no "+1"). NMS keeps a box unless a box kept before it overlaps it with IoU > iou_threshold; boxes are
  visited by descending score, equal scores by ascending index; the kept indices come in that order.
"""
from __future__ import annotations

import numpy as np

from .ch06_cnn import conv_forward, max_pool_forward


# --- metrics ---------------------------------------------------------------------------------------

def _kept(pred, target, ignore_index):
    pred, target = np.asarray(pred).reshape(-1), np.asarray(target).reshape(-1)
    if ignore_index is None:
        return pred, target
    keep = target != ignore_index
    return pred[keep], target[keep]


def pixel_accuracy(pred, target, ignore_index=None):
    pred, target = _kept(pred, target, ignore_index)
    return float(np.mean(pred == target))


def class_iou(pred, target, num_classes, ignore_index=None):
    """(num_classes,) IoU per class, NaN for a class that is neither predicted nor in the target."""
    pred, target = _kept(pred, target, ignore_index)
    ious = np.full(num_classes, np.nan)
    for c in range(num_classes):
        inter = np.sum((pred == c) & (target == c))
        union = np.sum((pred == c) | (target == c))
        if union > 0:
            ious[c] = inter / union
    return ious


def mean_iou(pred, target, num_classes, ignore_index=None):
    return float(np.nanmean(class_iou(pred, target, num_classes, ignore_index)))


# --- max unpooling ---------------------------------------------------------------------------------

def max_unpool_forward(x, indices, output_shape):
    N, C, H, W = x.shape
    H_out, W_out = output_shape
    out = np.zeros((N, C, H_out * W_out))
    flat = indices.reshape(N, C, -1)
    np.put_along_axis(out, flat, x.reshape(N, C, -1), axis=2)
    return out.reshape(N, C, H_out, W_out)


# --- transposed convolution ------------------------------------------------------------------------

def conv_transpose_output_size(H, W, kh, kw, stride, pad, output_padding):
    return ((H - 1) * stride - 2 * pad + kh + output_padding, (W - 1) * stride - 2 * pad + kw + output_padding)


def conv_transpose_forward(x, w, b, conv_param):
    N, C_in, H, W = x.shape
    _, C_out, kh, kw = w.shape
    s, p, op = conv_param["stride"], conv_param["pad"], conv_param.get("output_padding", 0)
    H_out, W_out = conv_transpose_output_size(H, W, kh, kw, s, p, op)
    full = np.zeros((N, C_out, (H - 1) * s + kh + op, (W - 1) * s + kw + op))
    contrib = np.einsum("ncij,cokl->noijkl", x, w)
    for k in range(kh):
        for l in range(kw):
            full[:, :, k:k + (H - 1) * s + 1:s, l:l + (W - 1) * s + 1:s] += contrib[:, :, :, :, k, l]
    return full[:, :, p:p + H_out, p:p + W_out] + b[None, :, None, None]


# --- U-Net -----------------------------------------------------------------------------------------

UNET_BLOCKS = ("enc1", "enc2", "bottleneck", "dec2", "dec1")


def unet_state_shapes(in_channels, num_classes, base_channels):
    """{state_dict key: shape} of the chapter's UNet (see the notebook's UNet docstring)."""
    B = base_channels
    channels = {"enc1": (in_channels, B), "enc2": (B, 2 * B), "bottleneck": (2 * B, 4 * B),
                "dec2": (4 * B, 2 * B), "dec1": (2 * B, B)}
    shapes = {}
    for block, (c_in, c_out) in channels.items():
        shapes[f"{block}.0.weight"], shapes[f"{block}.0.bias"] = (c_out, c_in, 3, 3), (c_out,)
        shapes[f"{block}.2.weight"], shapes[f"{block}.2.bias"] = (c_out, c_out, 3, 3), (c_out,)
    shapes["up2.weight"], shapes["up2.bias"] = (4 * B, 2 * B, 2, 2), (2 * B,)
    shapes["up1.weight"], shapes["up1.bias"] = (2 * B, B, 2, 2), (B,)
    shapes["head.weight"], shapes["head.bias"] = (num_classes, B, 1, 1), (num_classes,)
    return shapes


def _double_conv(x, state, block):
    same = {"stride": 1, "pad": 1}
    h = np.maximum(conv_forward(x, state[f"{block}.0.weight"], state[f"{block}.0.bias"], same), 0.0)
    return np.maximum(conv_forward(h, state[f"{block}.2.weight"], state[f"{block}.2.bias"], same), 0.0)


def unet_forward(x, state):
    """Scores (N, num_classes, H, W) of the chapter's UNet with the parameters ``state`` (arrays by key)."""
    pool = {"pool_height": 2, "pool_width": 2, "stride": 2}
    up = {"stride": 2, "pad": 0, "output_padding": 0}
    e1 = _double_conv(x, state, "enc1")
    e2 = _double_conv(max_pool_forward(e1, pool), state, "enc2")
    mid = _double_conv(max_pool_forward(e2, pool), state, "bottleneck")
    d2 = _double_conv(np.concatenate([e2, conv_transpose_forward(mid, state["up2.weight"], state["up2.bias"], up)],
                                     axis=1), state, "dec2")
    d1 = _double_conv(np.concatenate([e1, conv_transpose_forward(d2, state["up1.weight"], state["up1.bias"], up)],
                                     axis=1), state, "dec1")
    return conv_forward(d1, state["head.weight"], state["head.bias"], {"stride": 1, "pad": 0})


# --- boxes -----------------------------------------------------------------------------------------

def box_iou(boxes_a, boxes_b):
    a, b = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4), np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes, scores, iou_threshold):
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ious = box_iou(boxes, boxes)
    kept = []
    for i in order:
        if all(ious[i, j] <= iou_threshold for j in kept):
            kept.append(int(i))
    return np.array(kept, dtype=np.int64)
