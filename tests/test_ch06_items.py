"""Chapter 06 (convolutional networks): the hidden tests, proven in-process against the solution notebook.

- every graded item passes with the solution's functions, on several seeds;
- each typical wrong implementation loses exactly its own item, with a message that
  names the function and gives a hint;
- alternative correct implementations (other loop orders, stride tricks, other cache
  layouts) get full marks.
"""
from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from grader.workflow.earlier_chapters import solution_namespace

from chapter_proofs import SEEDS, chapter_proofs, fault_proofs, grade_items, rebind
from conftest import solution_notebook

pytestmark = pytest.mark.ch06

CHAPTER = "06_cnn"
NOTEBOOK = solution_notebook(CHAPTER)
_SOLUTION = {}


def sol(name):
    """The solution's function ``name`` (wrong backward passes reuse the solution's layers and caches)."""
    if not _SOLUTION:
        _SOLUTION.update(solution_namespace(NOTEBOOK))
    return _SOLUTION[name]


# --- small independent helpers --------------------------------------------------------------

def _pad(x, pad):
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))


def _out_size(H, W, HH, WW, stride, pad):
    return (H + 2 * pad - HH) // stride + 1, (W + 2 * pad - WW) // stride + 1


def _conv(x, w, b, stride, pad, flip=False):
    """Correct cross-correlation (or, with flip, a true convolution) by sliding windows."""
    if flip:
        w = w[:, :, ::-1, ::-1]
    win = sliding_window_view(_pad(x, pad), w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("ncijkl,fckl->nfij", win, w) + b[None, :, None, None]


# --- wrong implementations, keyed by the item they must lose --------------------------------
# Wrong forwards keep the solution's cache layout, so that only the forward item is lost.

def size_no_plus_one(H, W, HH, WW, stride, pad):
    return (H + 2 * pad - HH) // stride, (W + 2 * pad - WW) // stride


def size_pad_once(H, W, HH, WW, stride, pad):
    return (H + pad - HH) // stride + 1, (W + pad - WW) // stride + 1


def size_ceil(H, W, HH, WW, stride, pad):
    return -(-(H + 2 * pad - HH) // stride) + 1, -(-(W + 2 * pad - WW) // stride) + 1


def size_stride_ignored(H, W, HH, WW, stride, pad):
    return H + 2 * pad - HH + 1, W + 2 * pad - WW + 1


def count_without_biases(C, F, HH, WW):
    return F * C * HH * WW


def count_bias_per_input_channel(C, F, HH, WW):
    return F * C * HH * WW + C


def count_without_channels(C, F, HH, WW):
    return F * HH * WW + F


def count_one_bias(C, F, HH, WW):
    return F * C * HH * WW + 1


def conv_forward_flipped_kernel(x, w, b, conv_param):
    return _conv(x, w, b, conv_param["stride"], conv_param["pad"], flip=True), (x, w, b, conv_param)


def conv_forward_stride_ignored(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    H_out, W_out = _out_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], stride, pad)
    return _conv(x, w, b, 1, pad)[:, :, :H_out, :W_out], (x, w, b, conv_param)


def conv_forward_1x1_shortcut(x, w, b, conv_param):
    # "A 1x1 convolution is a matrix product over the channels": true only with stride 1 and no padding. Only
    # the degenerate 1x1-kernel case (stride 2, pad 1) catches it; the random cases never draw a 1x1 kernel.
    if w.shape[2:] == (1, 1):
        out = np.einsum("nchw,fc->nfhw", x, w[:, :, 0, 0]) + b[None, :, None, None]
    else:
        out = _conv(x, w, b, conv_param["stride"], conv_param["pad"])
    return out, (x, w, b, conv_param)


def conv_forward_padding_ignored(x, w, b, conv_param):
    stride = conv_param["stride"]
    if w.shape[2] > x.shape[2] or w.shape[3] > x.shape[3]:
        # No window fits the unpadded input (the 1x1-image case): loops over windows leave out at zero. A crash
        # here would leave the backward item's case without a forward, and the proof is about this item alone.
        H_out, W_out = _out_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], stride, conv_param["pad"])
        return np.zeros((x.shape[0], w.shape[0], H_out, W_out)), (x, w, b, conv_param)
    return _conv(x, w, b, stride, 0), (x, w, b, conv_param)


def conv_forward_off_by_one(x, w, b, conv_param):
    out = _conv(x, w, b, conv_param["stride"], conv_param["pad"])
    return out[:, :, :-1, :-1], (x, w, b, conv_param)


def conv_forward_no_bias(x, w, b, conv_param):
    return _conv(x, w, 0 * b, conv_param["stride"], conv_param["pad"]), (x, w, b, conv_param)


def _naive_backward(dout, cache, crop=True, flip=False, stride_ignored=False):
    x, w, b, conv_param = cache
    stride, pad = (1 if stride_ignored else conv_param["stride"]), conv_param["pad"]
    F, C, HH, WW = w.shape
    x_pad = _pad(x, pad)
    dx_pad, dw = np.zeros_like(x_pad), np.zeros_like(w)
    wk = w[:, :, ::-1, ::-1] if flip else w
    for n in range(dout.shape[0]):
        for f in range(F):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    r, c = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
                    dx_pad[n, :, r, c] += wk[f] * dout[n, f, i, j]
                    dw[f] += x_pad[n, :, r, c] * dout[n, f, i, j]
    dx = dx_pad[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]] if crop else dx_pad
    return dx, dw, dout.sum(axis=(0, 2, 3))


def conv_backward_dx_not_cropped(dout, cache):
    return _naive_backward(dout, cache, crop=False)


def conv_backward_db_not_summed_over_positions(dout, cache):
    dx, dw, _ = _naive_backward(dout, cache)
    return dx, dw, dout.sum(axis=0)


def conv_backward_db_first_position_only(dout, cache):
    dx, dw, _ = _naive_backward(dout, cache)
    return dx, dw, dout[:, :, 0, 0].sum(axis=0)


def conv_backward_flipped_kernel_in_dx(dout, cache):
    return _naive_backward(dout, cache, flip=True)


def conv_backward_stride_ignored(dout, cache):
    return _naive_backward(dout, cache, stride_ignored=True)


def _im2col_windows(x, HH, WW, stride, pad):
    return sliding_window_view(_pad(x, pad), (HH, WW), axis=(2, 3))[:, :, ::stride, ::stride]


def im2col_channel_last_columns(x, HH, WW, stride, pad):
    win = _im2col_windows(x, HH, WW, stride, pad)              # (N, C, Ho, Wo, HH, WW)
    N, C, Ho, Wo = win.shape[:4]
    return win.transpose(0, 2, 3, 4, 5, 1).reshape(N * Ho * Wo, -1)   # (kh, kw, c): column order mismatch


def im2col_position_major_rows(x, HH, WW, stride, pad):
    win = _im2col_windows(x, HH, WW, stride, pad)
    N, C, Ho, Wo = win.shape[:4]
    return win.transpose(2, 3, 0, 1, 4, 5).reshape(N * Ho * Wo, -1)   # rows (i, j, n)


def im2col_padding_ignored(x, HH, WW, stride, pad):
    win = _im2col_windows(x, HH, WW, stride, 0)
    N, C, Ho, Wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, -1)


def im2col_stride_ignored(x, HH, WW, stride, pad):
    H_out, W_out = _out_size(x.shape[2], x.shape[3], HH, WW, stride, pad)
    win = _im2col_windows(x, HH, WW, 1, pad)[:, :, :H_out, :W_out]
    N, C, Ho, Wo = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(N * Ho * Wo, -1)


def _col2im(cols, x_shape, HH, WW, stride, pad, assign=False, crop=True, average=False):
    N, C, H, W = x_shape
    H_out, W_out = _out_size(H, W, HH, WW, stride, pad)
    win = cols.reshape(N, H_out, W_out, C, HH, WW)
    x_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    count = np.zeros_like(x_pad)
    for i in range(H_out):
        for j in range(W_out):
            r, c = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            if assign:
                x_pad[:, :, r, c] = win[:, i, j]
            else:
                x_pad[:, :, r, c] += win[:, i, j]
            count[:, :, r, c] += 1
    if average:
        x_pad = x_pad / np.maximum(count, 1)
    return x_pad[:, :, pad:pad + H, pad:pad + W] if crop else x_pad


def col2im_assigns_instead_of_adding(cols, x_shape, HH, WW, stride, pad):
    return _col2im(cols, x_shape, HH, WW, stride, pad, assign=True)


def col2im_padding_not_cropped(cols, x_shape, HH, WW, stride, pad):
    return _col2im(cols, x_shape, HH, WW, stride, pad, crop=False)


def col2im_averages_overlaps(cols, x_shape, HH, WW, stride, pad):
    return _col2im(cols, x_shape, HH, WW, stride, pad, average=True)


def _im2col_forward_cache(x, w, b, conv_param):
    return sol("conv_forward_im2col")(x, w, b, conv_param)[1]


def conv_im2col_column_order_mismatch(x, w, b, conv_param):
    cols = im2col_channel_last_columns(x, w.shape[2], w.shape[3], conv_param["stride"], conv_param["pad"])
    N, F = x.shape[0], w.shape[0]
    H_out, W_out = _out_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], conv_param["stride"], conv_param["pad"])
    out = (cols @ w.reshape(F, -1).T + b).reshape(N, H_out, W_out, F).transpose(0, 3, 1, 2)
    return out, _im2col_forward_cache(x, w, b, conv_param)


def conv_im2col_reshape_without_transpose(x, w, b, conv_param):
    cols = sol("im2col")(x, w.shape[2], w.shape[3], conv_param["stride"], conv_param["pad"])
    N, F = x.shape[0], w.shape[0]
    H_out, W_out = _out_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], conv_param["stride"], conv_param["pad"])
    out = (cols @ w.reshape(F, -1).T + b).reshape(N, F, H_out, W_out)
    return out, _im2col_forward_cache(x, w, b, conv_param)


def conv_im2col_flipped_kernel(x, w, b, conv_param):
    return conv_forward_flipped_kernel(x, w, b, conv_param)[0], _im2col_forward_cache(x, w, b, conv_param)


def conv_im2col_stride_ignored(x, w, b, conv_param):
    return conv_forward_stride_ignored(x, w, b, conv_param)[0], _im2col_forward_cache(x, w, b, conv_param)


def conv_im2col_1x1_shortcut(x, w, b, conv_param):
    return conv_forward_1x1_shortcut(x, w, b, conv_param)[0], _im2col_forward_cache(x, w, b, conv_param)


def _im2col_backward(dout, cache, db_axes=(0,), dx_from_padded=False, dw_rows_unordered=False):
    x_shape, w, conv_param, cols = cache
    F, C, HH, WW = w.shape
    rows = dout.transpose(0, 2, 3, 1).reshape(-1, F)
    dw_rows = dout.transpose(1, 0, 2, 3).reshape(F, -1).T if not dw_rows_unordered else dout.reshape(-1, F)
    dw = (dw_rows.T @ cols).reshape(w.shape)
    if dx_from_padded:
        dx = col2im_padding_not_cropped(rows @ w.reshape(F, -1), x_shape, HH, WW, conv_param["stride"],
                                        conv_param["pad"])
    else:
        dx = _col2im(rows @ w.reshape(F, -1), x_shape, HH, WW, conv_param["stride"], conv_param["pad"])
    db = rows.sum(axis=0) if db_axes == (0,) else dout.sum(axis=db_axes)
    return dx, dw, db


def conv_im2col_backward_db_not_summed_over_positions(dout, cache):
    return _im2col_backward(dout, cache, db_axes=(0, 2))


def conv_im2col_backward_dx_padded(dout, cache):
    return _im2col_backward(dout, cache, dx_from_padded=True)


def conv_im2col_backward_dout_rows_not_transposed(dout, cache):
    return _im2col_backward(dout, cache, dw_rows_unordered=True)


def _pool(x, pool_param):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    return sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::s, ::s]


def pool_forward_stride_is_window(x, pool_param):
    p = dict(pool_param, stride=pool_param["pool_height"])
    return _pool(x, p).max(axis=(4, 5)), (x, pool_param)


def pool_forward_average(x, pool_param):
    return _pool(x, pool_param).mean(axis=(4, 5)), (x, pool_param)


def pool_forward_global_shortcut(x, pool_param):
    # "A window covering the whole map is global max pooling": right values, but of shape (N, C) instead of
    # (N, C, 1, 1). Only the degenerate whole-window case catches it.
    if (pool_param["pool_height"], pool_param["pool_width"]) == x.shape[2:]:
        return x.max(axis=(2, 3)), (x, pool_param)
    return _pool(x, pool_param).max(axis=(4, 5)), (x, pool_param)


def pool_forward_height_width_swapped(x, pool_param):
    # (clipped to the input, so that a whole-input window does not crash: the backward item's cases need an out)
    p = dict(pool_param, pool_height=min(pool_param["pool_width"], x.shape[2]),
             pool_width=min(pool_param["pool_height"], x.shape[3]))
    return _pool(x, p).max(axis=(4, 5)), (x, pool_param)


def _pool_backward(dout, cache, mode):
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            r, c = slice(i * s, i * s + ph), slice(j * s, j * s + pw)
            window = x[:, :, r, c]
            g = dout[:, :, i, j][:, :, None, None]
            if mode == "spread":
                dx[:, :, r, c] += g / (ph * pw)
            elif mode == "assign":
                dx[:, :, r, c] = (window == window.max(axis=(2, 3), keepdims=True)) * g
            elif mode == "first":
                dx[:, :, i * s, j * s] += dout[:, :, i, j]
            elif mode == "mask_only":
                dx[:, :, r, c] += window == window.max(axis=(2, 3), keepdims=True)
    return dx


def pool_backward_spread_over_window(dout, cache):
    return _pool_backward(dout, cache, "spread")


def pool_backward_assigns_overlaps(dout, cache):
    return _pool_backward(dout, cache, "assign")


def pool_backward_first_entry_of_window(dout, cache):
    return _pool_backward(dout, cache, "first")


def pool_backward_ignores_dout(dout, cache):
    return _pool_backward(dout, cache, "mask_only")


def _bn_rows(rows, gamma, beta, bn_param):
    return sol("batchnorm_forward")(rows, gamma, beta, bn_param)


def sbn_forward_reshape_without_transpose(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    out, _ = _bn_rows(x.reshape(-1, C), gamma, beta, bn_param)
    _, cache = sol("spatial_batchnorm_forward")(x, gamma, beta, dict(bn_param))
    return out.reshape(x.shape), cache


def sbn_forward_over_batch_only(x, gamma, beta, bn_param):
    N, C, H, W = x.shape
    mean, var = x.mean(axis=0), x.var(axis=0)
    out = gamma[None, :, None, None] * (x - mean) / np.sqrt(var + 1e-5) + beta[None, :, None, None]
    _, cache = sol("spatial_batchnorm_forward")(x, gamma, beta, dict(bn_param))
    return out, cache


def sbn_forward_per_sample(x, gamma, beta, bn_param):
    mean, var = x.mean(axis=(1, 2, 3), keepdims=True), x.var(axis=(1, 2, 3), keepdims=True)
    out = gamma[None, :, None, None] * (x - mean) / np.sqrt(var + 1e-5) + beta[None, :, None, None]
    _, cache = sol("spatial_batchnorm_forward")(x, gamma, beta, dict(bn_param))
    return out, cache


def sbn_forward_over_height_width_only(x, gamma, beta, bn_param):
    mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
    out = gamma[None, :, None, None] * (x - mean) / np.sqrt(var + 1e-5) + beta[None, :, None, None]
    _, cache = sol("spatial_batchnorm_forward")(x, gamma, beta, dict(bn_param))
    return out, cache


def sbn_backward_reshape_without_transpose(dout, cache):
    shape, bn_cache = cache
    dx, dgamma, dbeta = sol("batchnorm_backward")(dout.reshape(-1, shape[1]), bn_cache)
    return dx.reshape(shape), dgamma, dbeta


def sbn_backward_rows_not_reshaped_back(dout, cache):
    shape, bn_cache = cache
    C = shape[1]
    dx, dgamma, dbeta = sol("batchnorm_backward")(dout.transpose(0, 2, 3, 1).reshape(-1, C), bn_cache)
    return dx, dgamma, dbeta


def sbn_backward_squeezed_parameter_gradients(dout, cache):
    # dgamma and dbeta squeezed "to drop the extra axis": for one channel they become 0-d. Only the
    # single-channel case catches it (the random cases have C >= 2).
    (N, C, H, W), bn_cache = cache
    dx, dgamma, dbeta = sol("batchnorm_backward")(dout.transpose(0, 2, 3, 1).reshape(-1, C), bn_cache)
    return dx.reshape(N, H, W, C).transpose(0, 3, 1, 2), np.squeeze(dgamma), np.squeeze(dbeta)


def sbn_backward_wrong_transpose_back(dout, cache):
    (N, C, H, W), bn_cache = cache
    dx, dgamma, dbeta = sol("batchnorm_backward")(dout.transpose(0, 2, 3, 1).reshape(-1, C), bn_cache)
    return dx.reshape(N, H, W, C).transpose(0, 3, 2, 1).reshape(N, C, H, W), dgamma, dbeta


def _block_forward(x, params, bn_params, final_relu=True, shortcut=True, relu_after_shortcut=True):
    conv = sol("conv_forward_im2col")
    sbn = sol("spatial_batchnorm_forward")
    same = {"stride": 1, "pad": (params["w1"].shape[2] - 1) // 2}
    zero = np.zeros(params["w1"].shape[0])
    a1 = sbn(conv(x, params["w1"], zero, same)[0], params["gamma1"], params["beta1"], bn_params[0])[0]
    a2 = sbn(conv(np.maximum(a1, 0), params["w2"], zero, same)[0], params["gamma2"], params["beta2"], bn_params[1])[0]
    if not relu_after_shortcut:
        out = np.maximum(a2, 0) + x
    else:
        z = a2 + x if shortcut else a2
        out = np.maximum(z, 0) if final_relu else z
    _, cache = sol("residual_block_forward")(x, params, [{"mode": "train"}, {"mode": "train"}])
    return out, cache


def block_forward_no_final_relu(x, params, bn_params):
    return _block_forward(x, params, bn_params, final_relu=False)


def block_forward_no_shortcut(x, params, bn_params):
    return _block_forward(x, params, bn_params, shortcut=False)


def block_forward_shortcut_after_relu(x, params, bn_params):
    return _block_forward(x, params, bn_params, relu_after_shortcut=False)


def _block_backward(dout, cache, shortcut="dsum", swap_gammas=False):
    conv1, bn1, relu1, conv2, bn2, relu2 = cache
    dsum = sol("relu_backward")(dout, relu2)
    dc2, dgamma2, dbeta2 = sol("spatial_batchnorm_backward")(dsum, bn2)
    dh1, dw2, _ = sol("conv_backward_im2col")(dc2, conv2)
    da1 = sol("relu_backward")(dh1, relu1)
    dc1, dgamma1, dbeta1 = sol("spatial_batchnorm_backward")(da1, bn1)
    dx, dw1, _ = sol("conv_backward_im2col")(dc1, conv1)
    dx = dx + {"dsum": dsum, "dout": dout, "none": 0.0}[shortcut]
    if swap_gammas:
        dgamma1, dgamma2 = dgamma2, dgamma1
    return dx, {"w1": dw1, "gamma1": dgamma1, "beta1": dbeta1, "w2": dw2, "gamma2": dgamma2, "beta2": dbeta2}


def block_backward_no_shortcut_gradient(dout, cache):
    return _block_backward(dout, cache, shortcut="none")


def block_backward_shortcut_skips_final_relu(dout, cache):
    return _block_backward(dout, cache, shortcut="dout")


def block_backward_gammas_swapped(dout, cache):
    return _block_backward(dout, cache, swap_gammas=True)


WRONG = {
    "conv_output_size": [size_no_plus_one, size_pad_once, size_ceil, size_stride_ignored],
    "conv_param_count": [count_without_biases, count_bias_per_input_channel, count_without_channels, count_one_bias],
    "conv_forward_naive": [conv_forward_flipped_kernel, conv_forward_stride_ignored, conv_forward_padding_ignored,
                           conv_forward_off_by_one, conv_forward_no_bias,
                           (conv_forward_1x1_shortcut, "w of shape (1, 1, 1, 1)")],
    "conv_backward_naive": [conv_backward_dx_not_cropped, conv_backward_db_not_summed_over_positions,
                            conv_backward_db_first_position_only, conv_backward_flipped_kernel_in_dx,
                            conv_backward_stride_ignored],
    "im2col": [im2col_channel_last_columns, im2col_position_major_rows, im2col_padding_ignored, im2col_stride_ignored],
    "col2im": [col2im_assigns_instead_of_adding, col2im_padding_not_cropped, col2im_averages_overlaps],
    "conv_forward_im2col": [conv_im2col_column_order_mismatch, conv_im2col_reshape_without_transpose,
                            conv_im2col_flipped_kernel, conv_im2col_stride_ignored,
                            (conv_im2col_1x1_shortcut, "w of shape (1, 1, 1, 1)")],
    "conv_backward_im2col": [conv_im2col_backward_db_not_summed_over_positions, conv_im2col_backward_dx_padded,
                             conv_im2col_backward_dout_rows_not_transposed],
    "max_pool_forward_naive": [pool_forward_stride_is_window, pool_forward_average, pool_forward_height_width_swapped,
                               (pool_forward_global_shortcut, "shape")],
    "max_pool_backward_naive": [pool_backward_spread_over_window, pool_backward_assigns_overlaps,
                                pool_backward_first_entry_of_window, pool_backward_ignores_dout],
    "spatial_batchnorm_forward": [sbn_forward_reshape_without_transpose, sbn_forward_over_batch_only,
                                  sbn_forward_per_sample, sbn_forward_over_height_width_only],
    "spatial_batchnorm_backward": [sbn_backward_reshape_without_transpose, sbn_backward_rows_not_reshaped_back,
                                   sbn_backward_wrong_transpose_back,
                                   (sbn_backward_squeezed_parameter_gradients, "shape")],
    "residual_block_forward": [block_forward_no_final_relu, block_forward_no_shortcut,
                               block_forward_shortcut_after_relu],
    "residual_block_backward": [block_backward_no_shortcut_gradient, block_backward_shortcut_skips_final_relu,
                                block_backward_gammas_swapped],
}


# --- alternative correct implementations -------------------------------------------------

def size_with_floats(H, W, HH, WW, stride, pad):
    return int(np.floor((H + 2 * pad - HH) / stride)) + 1, int(np.floor((W + 2 * pad - WW) / stride)) + 1


def size_as_list(H, W, HH, WW, stride, pad):
    return [np.int64((H + 2 * pad - HH) // stride + 1), np.int64((W + 2 * pad - WW) // stride + 1)]


def count_factored(C, F, HH, WW):
    return np.int64(F * (C * HH * WW + 1))


def conv_forward_position_loops(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    F, C, HH, WW = w.shape
    H_out, W_out = _out_size(x.shape[2], x.shape[3], HH, WW, stride, pad)
    xp = _pad(x, pad)
    out = np.empty((x.shape[0], F, H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            window = xp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
            out[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, {"xp": xp, "w": w, "stride": stride, "pad": pad, "shape": x.shape}


def conv_backward_position_loops(dout, cache):
    xp, w, stride, pad, shape = cache["xp"], cache["w"], cache["stride"], cache["pad"], cache["shape"]
    F, C, HH, WW = w.shape
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            r, c = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            dxp[:, :, r, c] += np.tensordot(dout[:, :, i, j], w, axes=(1, 0))
            dw += np.tensordot(dout[:, :, i, j], xp[:, :, r, c], axes=(0, 0))
    return dxp[:, :, pad:pad + shape[2], pad:pad + shape[3]], dw, np.einsum("nfij->f", dout)


def im2col_stride_tricks(x, HH, WW, stride, pad):
    win = _im2col_windows(x, HH, WW, stride, pad)
    N, C, Ho, Wo = win.shape[:4]
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(N * Ho * Wo, C * HH * WW)


def im2col_channels_first_buffer(x, HH, WW, stride, pad):
    """The nine slices copied into an (N, C, HH, WW, Ho, Wo) buffer, transposed at the end (a second copy)."""
    N, C, H, W = x.shape
    H_out, W_out = _out_size(H, W, HH, WW, stride, pad)
    x_pad = _pad(x, pad)
    cols = np.empty((N, C, HH, WW, H_out, W_out))
    for kh in range(HH):
        for kw in range(WW):
            cols[:, :, kh, kw] = x_pad[:, :, kh:kh + stride * H_out:stride, kw:kw + stride * W_out:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(N * H_out * W_out, C * HH * WW)


def col2im_channels_first_buffer(cols, x_shape, HH, WW, stride, pad):
    N, C, H, W = x_shape
    H_out, W_out = _out_size(H, W, HH, WW, stride, pad)
    windows = cols.reshape(N, H_out, W_out, C, HH, WW).transpose(0, 3, 4, 5, 1, 2)
    x_pad = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    for kh in range(HH):
        for kw in range(WW):
            x_pad[:, :, kh:kh + stride * H_out:stride, kw:kw + stride * W_out:stride] += windows[:, :, kh, kw]
    return x_pad[:, :, pad:pad + H, pad:pad + W]     # a view into the padded array: fine to return


def col2im_add_at(cols, x_shape, HH, WW, stride, pad):
    N, C, H, W = x_shape
    H_out, W_out = _out_size(H, W, HH, WW, stride, pad)
    n, i, j, c, k, l = np.indices((N, H_out, W_out, C, HH, WW)).reshape(6, -1)
    xp = np.zeros((N, C, H + 2 * pad, W + 2 * pad))
    np.add.at(xp, (n, c, i * stride + k, j * stride + l), cols.reshape(-1))
    return xp[:, :, pad:pad + H, pad:pad + W]


def conv_im2col_recompute_in_backward(x, w, b, conv_param):
    F = w.shape[0]
    cols = im2col_stride_tricks(x, w.shape[2], w.shape[3], conv_param["stride"], conv_param["pad"])
    H_out, W_out = _out_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], conv_param["stride"], conv_param["pad"])
    out = (w.reshape(F, -1) @ cols.T + b[:, None]).reshape(F, x.shape[0], H_out, W_out).transpose(1, 0, 2, 3)
    return out, [x, w, conv_param]


def conv_im2col_backward_recompute(dout, cache):
    x, w, conv_param = cache
    F, C, HH, WW = w.shape
    cols = im2col_stride_tricks(x, HH, WW, conv_param["stride"], conv_param["pad"])
    rows = np.moveaxis(dout, 1, -1).reshape(-1, F)
    dx = col2im_add_at(rows @ w.reshape(F, -1), x.shape, HH, WW, conv_param["stride"], conv_param["pad"])
    return dx, (cols.T @ rows).T.reshape(w.shape), rows.sum(axis=0)


def pool_forward_argmax_cache(x, pool_param):
    win = _pool(x, pool_param)
    N, C, Ho, Wo, ph, pw = win.shape
    flat = win.reshape(N, C, Ho, Wo, ph * pw)
    return flat.max(axis=-1), {"x_shape": x.shape, "arg": flat.argmax(axis=-1), "p": pool_param}


def pool_backward_argmax_cache(dout, cache):
    dx = np.zeros(cache["x_shape"])
    p = cache["p"]
    s, pw = p["stride"], p["pool_width"]
    N, C, Ho, Wo = dout.shape
    for n in range(N):
        for c in range(C):
            for i in range(Ho):
                for j in range(Wo):
                    k, l = divmod(int(cache["arg"][n, c, i, j]), pw)
                    dx[n, c, i * s + k, j * s + l] += dout[n, c, i, j]
    return dx


def sbn_forward_moveaxis(x, gamma, beta, bn_param):
    C = x.shape[1]
    rows = np.moveaxis(x, 1, -1).reshape(-1, C)
    out, cache = sol("batchnorm_forward")(rows, gamma, beta, bn_param)
    return np.moveaxis(out.reshape(np.moveaxis(x, 1, -1).shape), -1, 1), {"bn": cache, "shape": x.shape}


def sbn_backward_moveaxis(dout, cache):
    N, C, H, W = cache["shape"]
    dx, dgamma, dbeta = sol("batchnorm_backward")(np.moveaxis(dout, 1, -1).reshape(-1, C), cache["bn"])
    return np.moveaxis(dx.reshape(N, H, W, C), -1, 1), dgamma, dbeta


def block_forward_naive_conv_dict_cache(x, params, bn_params):
    pad = (params["w1"].shape[2] - 1) // 2
    zero = np.zeros(params["w1"].shape[0])
    cache = {}
    c1, cache["conv1"] = sol("conv_forward_naive")(x, params["w1"], zero, {"stride": 1, "pad": pad})
    a1, cache["bn1"] = sol("spatial_batchnorm_forward")(c1, params["gamma1"], params["beta1"], bn_params[0])
    h1 = np.maximum(a1, 0)
    c2, cache["conv2"] = sol("conv_forward_naive")(h1, params["w2"], zero, {"stride": 1, "pad": pad})
    a2, cache["bn2"] = sol("spatial_batchnorm_forward")(c2, params["gamma2"], params["beta2"], bn_params[1])
    z = a2 + x
    cache["mask1"], cache["mask2"] = a1 > 0, z > 0
    return z * cache["mask2"], cache


def block_backward_naive_conv_dict_cache(dout, cache):
    dz = dout * cache["mask2"]
    dc2, dg2, db2 = sol("spatial_batchnorm_backward")(dz, cache["bn2"])
    dh1, dw2, _ = sol("conv_backward_naive")(dc2, cache["conv2"])
    dc1, dg1, db1 = sol("spatial_batchnorm_backward")(dh1 * cache["mask1"], cache["bn1"])
    dx, dw1, _ = sol("conv_backward_naive")(dc1, cache["conv1"])
    return dz + dx, dict(w2=dw2, gamma2=dg2, beta2=db2, w1=dw1, gamma1=dg1, beta1=db1)


ALTERNATIVES = {
    "float formula, list of numpy ints": {"conv_output_size": size_with_floats, "conv_param_count": count_factored},
    "returns a list": {"conv_output_size": size_as_list},
    "loops over positions with tensordot, dict cache": {"conv_forward_naive": conv_forward_position_loops,
                                                        "conv_backward_naive": conv_backward_position_loops},
    "stride tricks and np.add.at": {"im2col": im2col_stride_tricks, "col2im": col2im_add_at},
    "channels-first buffers, transposed at the end": {"im2col": im2col_channels_first_buffer,
                                                       "col2im": col2im_channels_first_buffer},
    "cols recomputed in backward, list cache": {"conv_forward_im2col": conv_im2col_recompute_in_backward,
                                                "conv_backward_im2col": conv_im2col_backward_recompute},
    "argmax cache, scalar loops": {"max_pool_forward_naive": pool_forward_argmax_cache,
                                   "max_pool_backward_naive": pool_backward_argmax_cache},
    "moveaxis, dict cache": {"spatial_batchnorm_forward": sbn_forward_moveaxis,
                             "spatial_batchnorm_backward": sbn_backward_moveaxis},
    "naive convolutions, masks in a dict cache": {"residual_block_forward": block_forward_naive_conv_dict_cache,
                                                  "residual_block_backward": block_backward_naive_conv_dict_cache},
}

globals().update(chapter_proofs(CHAPTER, WRONG, ALTERNATIVES))   # the standard proofs: tests/chapter_proofs.py


# --- tests -----------------------------------------------------------------------------------


def test_residual_block_inputs_keep_away_from_the_relu_kinks():
    from grader.judge.cases import Streams
    from grader.judge.items.ch06_cnn import KINK_MARGIN, PARAM_NAMES, _residual_inputs
    from grader.judge.references.ch06_cnn import residual_block_parts

    for seed in range(20):
        arrays = _residual_inputs(Streams.from_seed(seed))
        _, a, z = residual_block_parts(*[arrays[n] for n in ("x",) + PARAM_NAMES])
        assert min(np.abs(a).min(), np.abs(z).min()) > KINK_MARGIN


# --- faults charged where they are --------------------------------------------------------------

def _identity_pool_forward(x, pool_param):
    return x.copy(), None


def _pass_through_pool_backward(dout, cache):
    return dout.copy()


def _identity_sbn_forward(x, gamma, beta, bn_param):
    return x.copy(), gamma.copy()


def _pass_through_sbn_backward(dout, cache):
    return dout.copy(), np.zeros_like(cache), np.zeros_like(cache)


FORWARDS = {"conv_backward_naive": "conv_forward_naive", "conv_backward_im2col": "conv_forward_im2col",
            "max_pool_backward_naive": "max_pool_forward_naive",
            "spatial_batchnorm_backward": "spatial_batchnorm_forward",
            "residual_block_backward": "residual_block_forward"}
GAMES = {"identity max pool with a pass-through backward":
         ("max_pool_backward_naive", {"max_pool_forward_naive": _identity_pool_forward,
                                      "max_pool_backward_naive": _pass_through_pool_backward}),
         "identity spatial batch norm with a pass-through backward":
         ("spatial_batchnorm_backward", {"spatial_batchnorm_forward": _identity_sbn_forward,
                                         "spatial_batchnorm_backward": _pass_through_sbn_backward})}

globals().update(fault_proofs(CHAPTER, FORWARDS, GAMES))


@pytest.mark.parametrize("wrong_sbn", [sbn_forward_over_batch_only, sbn_forward_per_sample],
                         ids=lambda f: f.__name__)
def test_a_block_built_on_a_wrong_spatial_batchnorm_is_told_to_fix_it_first(solution, wrong_sbn):
    """The solution's block, calling a wrong spatial_batchnorm_forward: the message names the building block."""
    namespace = dict(solution, spatial_batchnorm_forward=wrong_sbn,
                     residual_block_forward=rebind(solution["residual_block_forward"],
                                                   spatial_batchnorm_forward=wrong_sbn))
    names = ["spatial_batchnorm_forward", "residual_block_forward", "residual_block_backward"]
    for seed in SEEDS[:3]:
        verdicts = grade_items(CHAPTER, namespace, seed, names)
        assert not verdicts["spatial_batchnorm_forward"].passed
        message = verdicts["residual_block_forward"].message
        assert not verdicts["residual_block_forward"].passed
        assert "because spatial_batchnorm_forward fails its own hidden test" in message, message
        assert "Fix spatial_batchnorm_forward first" in message, message
        backward = verdicts["residual_block_backward"]
        assert backward.passed or "Fix residual_block_forward first" in backward.message, backward.message


def test_conv_forward_im2col_on_a_wrong_im2col_is_told_to_fix_im2col_first(solution):
    wrong = im2col_channel_last_columns
    namespace = dict(solution, im2col=wrong,
                     conv_forward_im2col=rebind(solution["conv_forward_im2col"], im2col=wrong))
    for seed in SEEDS[:3]:
        verdict = grade_items(CHAPTER, namespace, seed, ["conv_forward_im2col"])["conv_forward_im2col"]
        assert not verdict.passed and "Fix im2col first" in verdict.message, verdict.message


# --- output sizes that must round down, on every seed --------------------------------------------

def _rounded(n, k, stride, pad):
    return int(round((n + 2 * pad - k) / stride)) + 1


def _divisible(n, k, stride, pad):
    assert (n + 2 * pad - k) % stride == 0, "the window does not fit evenly"
    return (n + 2 * pad - k) // stride + 1


def _grow(x, rows, cols):
    """x with zero rows/columns added at the bottom/right so that the rounded-up windows fit."""
    return np.pad(x, ((0, 0), (0, 0), (0, max(0, rows - x.shape[2])), (0, max(0, cols - x.shape[3]))))


def size_rounds(H, W, HH, WW, stride, pad):
    return _rounded(H, HH, stride, pad), _rounded(W, WW, stride, pad)


def size_asserts_divisible(H, W, HH, WW, stride, pad):
    return _divisible(H, HH, stride, pad), _divisible(W, WW, stride, pad)


def _conv_sized(x, w, b, conv_param, size):
    stride, pad = conv_param["stride"], conv_param["pad"]
    HH, WW = w.shape[2:]
    H_out, W_out = size(x.shape[2], HH, stride, pad), size(x.shape[3], WW, stride, pad)
    xp = _grow(_pad(x, pad), (H_out - 1) * stride + HH, (W_out - 1) * stride + WW)
    return _conv(xp, w, b, stride, 0)[:, :, :H_out, :W_out], (x, w, b, conv_param)


def conv_forward_rounds(x, w, b, conv_param):
    return _conv_sized(x, w, b, conv_param, _rounded)


def conv_forward_asserts_divisible(x, w, b, conv_param):
    return _conv_sized(x, w, b, conv_param, _divisible)


def _pool_sized(x, pool_param, size):
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    H_out, W_out = size(x.shape[2], ph, s, 0), size(x.shape[3], pw, s, 0)
    xg = _grow(x, (H_out - 1) * s + ph, (W_out - 1) * s + pw)
    return _pool(xg, pool_param).max(axis=(4, 5))[:, :, :H_out, :W_out], (x, pool_param)


def pool_forward_rounds(x, pool_param):
    return _pool_sized(x, pool_param, _rounded)


def pool_forward_asserts_divisible(x, pool_param):
    return _pool_sized(x, pool_param, _divisible)


def _im2col_sized(x, HH, WW, stride, pad, size):
    H_out, W_out = size(x.shape[2], HH, stride, pad), size(x.shape[3], WW, stride, pad)
    xg = _grow(_pad(x, pad), (H_out - 1) * stride + HH, (W_out - 1) * stride + WW)
    return sol("im2col")(xg, HH, WW, stride, 0)


def im2col_rounds(x, HH, WW, stride, pad):
    return _im2col_sized(x, HH, WW, stride, pad, _rounded)


def im2col_asserts_divisible(x, HH, WW, stride, pad):
    return _im2col_sized(x, HH, WW, stride, pad, _divisible)


ROUNDING = [("conv_output_size", size_rounds), ("conv_output_size", size_asserts_divisible),
            ("conv_forward_naive", conv_forward_rounds), ("conv_forward_naive", conv_forward_asserts_divisible),
            ("conv_forward_im2col", conv_forward_rounds), ("conv_forward_im2col", conv_forward_asserts_divisible),
            ("im2col", im2col_rounds), ("im2col", im2col_asserts_divisible),
            ("max_pool_forward_naive", pool_forward_rounds), ("max_pool_forward_naive", pool_forward_asserts_divisible)]


@pytest.mark.parametrize("item, wrong", ROUNDING, ids=[f"{i}-{f.__name__}" for i, f in ROUNDING])
def test_output_size_rounding_or_divisibility_fails_on_every_seed(item, wrong):
    for seed in range(25):
        verdict = grade_items(CHAPTER, {item: wrong}, seed, [item])[item]
        assert not verdict.passed, f"seed {seed}: {wrong.__name__} passes {item}"


@pytest.mark.parametrize("item", ["conv_forward_naive", "max_pool_forward_naive", "conv_output_size"])
def test_every_seed_has_stride_above_one_no_padding_and_non_square_shapes(item):
    from grader.judge.cases import Streams
    from grader.judge.items import chapter_items

    for seed in range(25):
        cases = [c for c in chapter_items(CHAPTER)[item].cases(Streams.from_seed(seed)) if "probe_of" not in c.context]
        settings = []
        for case in cases:
            if item == "conv_output_size":
                ctx = case.context
                settings.append((ctx["stride"], ctx["pad"], ctx["H"] != ctx["W"], ctx["HH"] != ctx["WW"]))
                continue
            params = next(iter(case.context["kwargs"].values()))
            x = case.arrays["x"]
            window = case.arrays["w"].shape[2:] if "w" in case.arrays else (params["pool_height"], params["pool_width"])
            settings.append((params["stride"], params.get("pad", 0), x.shape[2] != x.shape[3], window[0] != window[1]))
        assert any(stride > 1 and pad == 0 and odd_x and odd_k for stride, pad, odd_x, odd_k in settings), \
            f"seed {seed}: no case with stride > 1, no padding, non-square input and kernel: {settings}"
