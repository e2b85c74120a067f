"""Trusted reference implementations for chapter 06 (convolutional networks).

Used only by hidden tests, in the grader's process; never shipped inside a
learner notebook. Written plainly and vectorised (sliding windows + einsum), so
that centered-difference gradients through them stay fast. Only forwards are
needed: gradients are checked against numerical gradients of these forwards.

Conventions (the same as the chapter, CS231n and ``torch.nn.functional.conv2d``):
- a "convolution" is a cross-correlation: the kernel is NOT flipped;
- x (N, C, H, W), w (F, C, HH, WW), b (F,); zero padding ``pad`` on every side;
- H_out = (H + 2 pad - HH) // stride + 1 (floor, as PyTorch);
- im2col rows are output positions in (n, i, j) order, columns are kernel
  entries in (c, kh, kw) order, the order of ``w.reshape(F, -1)``.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .ch02_backprop import relu_forward
from .ch04_batchnorm import batchnorm_test_forward, batchnorm_train_forward


def conv_output_size(H, W, HH, WW, stride, pad):
    return (H + 2 * pad - HH) // stride + 1, (W + 2 * pad - WW) // stride + 1


def conv_param_count(C, F, HH, WW):
    """F filters of C x HH x WW weights, plus one bias per filter."""
    return F * C * HH * WW + F


def _windows(x, HH, WW, stride, pad):
    """(N, C, H_out, W_out, HH, WW) view of the zero-padded input's windows."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    return sliding_window_view(xp, (HH, WW), axis=(2, 3))[:, :, ::stride, ::stride]


def conv_forward(x, w, b, conv_param):
    F, C, HH, WW = w.shape
    win = _windows(x, HH, WW, conv_param["stride"], conv_param["pad"])
    return np.einsum("ncijkl,fckl->nfij", win, w) + b[None, :, None, None]


def im2col(x, HH, WW, stride, pad):
    """(N * H_out * W_out, C * HH * WW): one row per output position, one column per kernel entry."""
    win = _windows(x, HH, WW, stride, pad)
    N, C, H_out, W_out = win.shape[:4]
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(N * H_out * W_out, C * HH * WW)


def max_pool_forward(x, pool_param):
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    win = sliding_window_view(x, (ph, pw), axis=(2, 3))[:, :, ::stride, ::stride]
    return win.max(axis=(4, 5))


def spatial_batchnorm_forward(x, gamma, beta, mode="train", running_mean=None, running_var=None, eps=1e-5):
    """Batch norm per channel over (N, H, W): chapter 04's batch norm on (N*H*W, C) rows."""
    N, C, H, W = x.shape
    rows = x.transpose(0, 2, 3, 1).reshape(-1, C)
    if mode == "train":
        out = batchnorm_train_forward(rows, gamma, beta, eps)
    else:
        out = batchnorm_test_forward(rows, gamma, beta, running_mean, running_var, eps)
    return out.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def residual_block_parts(x, w1, gamma1, beta1, w2, gamma2, beta2):
    """The block's output and the inputs of its two ReLUs (to keep test inputs away from the kinks)."""
    F = w1.shape[0]
    same = {"stride": 1, "pad": (w1.shape[2] - 1) // 2}
    zero = np.zeros(F)
    a = spatial_batchnorm_forward(conv_forward(x, w1, zero, same), gamma1, beta1)
    h = relu_forward(a)
    z = spatial_batchnorm_forward(conv_forward(h, w2, zero, same), gamma2, beta2) + x
    return relu_forward(z), a, z


def residual_block_forward(x, w1, gamma1, beta1, w2, gamma2, beta2):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + x), 'same' convolutions without bias, BN in train mode."""
    return residual_block_parts(x, w1, gamma1, beta1, w2, gamma2, beta2)[0]
