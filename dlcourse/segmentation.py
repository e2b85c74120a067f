"""Data, models, training and pictures of chapter 10 (segmentation).

- ``make_shapes`` / ``shapes_split``: a generated dataset, no download: grey images of a few random shapes
  (circles, squares, triangles) on textured noise, with a per-pixel class mask; a fixed held-out split.
- ``SumSkipNet``: the FCN-style net the chapter compares with your ``UNet``: the same encoder, but the
  skips are ADDED to the upsampled features instead of concatenated.
- ``train_segmenter`` / ``predict``: a plain torch loop (chapter 07's) with Adam and per-pixel cross-entropy.
- ``conv_flops`` / ``activation_bytes``: what a forward pass costs, counted with forward hooks.
- pictures: samples, predictions beside masks, upsampling, the checkerboard, receptive-field coverage;
  two explorers (dilation rates, skip strength).

Nothing here computes a graded function of the chapter: metrics, unpooling, transposed convolution, the
U-Net and NMS are passed in (yours).
"""
from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from torch import nn

from . import runtime

CLASS_NAMES = ("background", "circle", "square", "triangle")
CLASS_COLORS = ListedColormap(["#222222", "#e4572e", "#29a3a3", "#f3a712"])


# --- the dataset ---------------------------------------------------------------------------------------

def _texture(rng, size):
    """Low-frequency waves plus pixel noise: a background that is never flat."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    field = np.zeros((size, size))
    for _ in range(4):
        fx, fy = rng.uniform(0.5, 3.0, size=2)
        field += rng.uniform(0.05, 0.12) * np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    return 0.5 + field + rng.normal(0.0, 0.08, size=(size, size))


def _shape_mask(kind, cy, cx, r, size):
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == 1:                                   # circle
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
    if kind == 2:                                   # square
        return (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
    top, bottom = cy - r, cy + r                    # upright triangle: width grows from the apex down
    half = (yy - top) / (2 * r) * r * 1.1
    return (yy >= top) & (yy <= bottom) & (np.abs(xx - cx) <= half)


def _fill(rng, kind, size):
    """A shape's inside: circles lighter than the background, squares darker, triangles striped (light and
    dark rows), each by a random amount and with pixel noise."""
    noise = rng.normal(0.0, 0.08, size=(size, size))
    if kind == 1:
        return 0.5 + rng.uniform(0.2, 0.45) + noise
    if kind == 2:
        return 0.5 - rng.uniform(0.2, 0.45) + noise
    rows = np.arange(size)[:, None] + np.zeros((1, size))
    return 0.5 + rng.uniform(0.2, 0.4) * np.sign(np.sin(np.pi * (rows + rng.uniform(0, 2)) / 2) + 1e-9) + noise


def make_shapes(n, size=32, seed=0, max_shapes=3):
    """``n`` images (n, 1, size, size) float32 and masks (n, size, size) int64 (0 background, 1 circle,
    2 square, 3 triangle). Later shapes are painted over earlier ones. Circles are lighter than the
    background, squares darker, triangles striped, each by a random amount: local brightness and texture
    hint at the class, the outline says exactly where it ends."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    for i in range(n):
        image = _texture(rng, size)
        mask = np.zeros((size, size), dtype=np.int64)
        for _ in range(int(rng.integers(1, max_shapes + 1))):
            kind = int(rng.integers(1, 4))
            r = rng.uniform(size * 0.14, size * 0.26)
            cy, cx = rng.uniform(r, size - r, size=2)
            region = _shape_mask(kind, cy, cx, r, size)
            image = np.where(region, _fill(rng, kind, size), image)
            mask[region] = kind
        images[i, 0] = image
        masks[i] = mask
    return images, masks


def shapes_split(n_train=480, n_test=160, size=32):
    """The chapter's fixed split: training and held-out images drawn from different seeds (0 and 1)."""
    return make_shapes(n_train, size, seed=0), make_shapes(n_test, size, seed=1)


# --- models and training ----------------------------------------------------------------------------------

def double_conv(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.Conv2d(c_out, c_out, 3, padding=1),
                         nn.ReLU())


class SumSkipNet(nn.Module):
    """FCN-style: two poolings down, two transposed convolutions up, the encoder's maps ADDED to the
    upsampled ones (so both must have the same channels). Same submodule names as the chapter's UNet."""

    def __init__(self, in_channels, num_classes, base_channels):
        super().__init__()
        B = base_channels
        self.enc1, self.enc2, self.bottleneck = double_conv(in_channels, B), double_conv(B, 2 * B), double_conv(2 * B, 4 * B)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * B, 2 * B, 2, stride=2), double_conv(2 * B, 2 * B)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * B, B, 2, stride=2), double_conv(B, B)
        self.head = nn.Conv2d(B, num_classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        mid = self.bottleneck(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(e2 + self.up2(mid))
        return self.head(self.dec1(e1 + self.up1(d2)))


class DilatedContextNet(nn.Module):
    """No pooling at all: 3x3 convolutions at full resolution with dilation rates ``rates`` (each followed by a
    ReLU, padding = rate keeps the size), then a 1x1 head. Its receptive field grows with the sum of the rates."""

    def __init__(self, in_channels, num_classes, width=12, rates=(1, 2, 5, 1, 2, 5)):
        super().__init__()
        layers, c = [], in_channels
        for r in rates:
            layers += [nn.Conv2d(c, width, 3, padding=r, dilation=r), nn.ReLU()]
            c = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x):
        return self.head(self.body(x))


def unet_with_skip_scale(model, x, scale1=1.0, scale2=1.0):
    """The forward pass of a UNet of the chapter's contract (submodules enc1, enc2, bottleneck, up2, dec2, up1,
    dec1, head; skip first in the concatenation) with the skips multiplied by ``scale1`` (full resolution)
    and ``scale2`` (half resolution): 0 removes what a skip carries, 1 is the trained net."""
    e1 = model.enc1(x)
    e2 = model.enc2(nn.functional.max_pool2d(e1, 2))
    mid = model.bottleneck(nn.functional.max_pool2d(e2, 2))
    d2 = model.dec2(torch.cat([scale2 * e2, model.up2(mid)], dim=1))
    return model.head(model.dec1(torch.cat([scale1 * e1, model.up1(d2)], dim=1)))


def train_segmenter(model, images, masks, *, epochs, batch_size=32, lr=3e-3, seed=0, desc="training"):
    """Adam on per-pixel cross-entropy, shuffled minibatches, CPU float32: the loop of chapter 07.

    Returns {"loss": mean loss per epoch, "seconds": wall time}."""
    from .torch_training import progress

    generator = torch.Generator().manual_seed(seed)
    X, Y = torch.from_numpy(images), torch.from_numpy(masks)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    history = {"loss": []}
    start = time.perf_counter()
    model.train()
    for _ in progress(range(epochs), desc=desc):
        order = torch.randperm(len(X), generator=generator)
        total = 0.0
        for i in range(0, len(X), batch_size):
            idx = order[i:i + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(X[idx]), Y[idx])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(idx)
        history["loss"].append(total / len(X))
    history["seconds"] = time.perf_counter() - start
    return history


@torch.no_grad()
def predict(model, images, batch_size=128, skips=None):
    """The class of every pixel, (N, H, W) int64, the model in eval mode.

    ``skips=(full_res, half_res)``: a UNet of the chapter's contract run with its skips scaled
    (``unet_with_skip_scale``)."""
    model.eval()

    def forward(x):
        return model(x) if skips is None else unet_with_skip_scale(model, x, *skips)

    out = [forward(torch.from_numpy(images[i:i + batch_size])).argmax(dim=1) for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


# --- cost ----------------------------------------------------------------------------------------------

def valid_conv_flops(channels, kernels, side):
    """FLOPs (2 per multiply-add) of a stack of unpadded stride-1 square convolutions on a side x side input:
    ``channels`` = [C_in, C_1, ..., C_L], ``kernels`` = [k_1, ..., k_L]. Returns (flops, output side)."""
    flops = 0
    for c_in, c_out, k in zip(channels[:-1], channels[1:], kernels):
        side = side - k + 1
        flops += 2 * c_in * k * k * c_out * side * side
    return flops, side


def _hooked_forward(model, input_shape, probe_side, count):
    """Run ``model`` on a zero input of ``input_shape`` shrunk to probe_side x probe_side, calling ``count`` on
    every leaf module's output, and return the factor (H * W) / probe_side**2 that scales the counts up: exact
    for nets whose every map scales with the input ('same' padding, poolings that divide evenly)."""
    N, C, H, W = input_shape
    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(N, C, probe_side, probe_side))
    finally:
        for h in hooks:
            h.remove()
    return H * W / probe_side ** 2


def conv_flops(model, input_shape, probe_side=32):
    """FLOPs (2 per multiply-add) of the convolutions in one forward pass of a fully convolutional ``model``
    with 'same' padding on ``input_shape`` (counted on a probe_side x probe_side input and scaled by the area)."""
    total = [0]

    def count(module, inputs, output):
        if isinstance(module, nn.ConvTranspose2d):       # every INPUT pixel writes C_out * k values
            total[0] += 2 * inputs[0].numel() * module.out_channels * module.weight[0, 0].numel()
        elif isinstance(module, nn.Conv2d):               # every OUTPUT pixel reads C_in * k values
            total[0] += 2 * output.numel() * module.weight[0].numel()

    return int(_scaled(model, input_shape, probe_side, count, total))


def _scaled(model, input_shape, probe_side, count, total):
    factor = _hooked_forward(model, input_shape, probe_side, count)     # fills total[0] on the probe
    return total[0] * factor


def activation_bytes(model, input_shape, bytes_per_value=4, probe_side=32):
    """Bytes of every layer output of one forward pass (what training keeps for the backward pass), for the
    same kind of net as ``conv_flops``."""
    total = [0]

    def count(module, inputs, output):
        total[0] += output.numel()

    return int(_scaled(model, input_shape, probe_side, count, total) * bytes_per_value)


# --- pictures ----------------------------------------------------------------------------------------------

def _mask_axes(ax, mask, title):
    ax.imshow(mask, cmap=CLASS_COLORS, vmin=0, vmax=len(CLASS_NAMES) - 1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def show_samples(images, masks, n=6):
    """Images (top) and their class masks (bottom)."""
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 4.0))
    for i in range(n):
        axes[0, i].imshow(images[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(f"image {i}", fontsize=9)
        axes[0, i].axis("off")
        _mask_axes(axes[1, i], masks[i], "mask")
    _legend(fig)
    fig.suptitle("Generated shapes on textured noise and their per-pixel classes")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def _legend(fig):
    handles = [plt.Rectangle((0, 0), 1, 1, color=CLASS_COLORS(i)) for i in range(len(CLASS_NAMES))]
    fig.legend(handles, CLASS_NAMES, loc="lower center", ncol=len(CLASS_NAMES), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))


def show_predictions(images, masks, predictions, n=5):
    """One column per image: the image, its mask, then each model's prediction (``predictions``: name -> (N, H, W))."""
    rows = 2 + len(predictions)
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n, 1.7 * rows + 0.3))
    for i in range(n):
        axes[0, i].imshow(images[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, i].axis("off")
        axes[0, i].set_title("image", fontsize=9)
        _mask_axes(axes[1, i], masks[i], "true mask")
        for r, (name, pred) in enumerate(predictions.items()):
            _mask_axes(axes[2 + r, i], pred[i], name)
    _legend(fig)
    fig.suptitle("Held-out images: true masks and predictions")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def show_upsampling(maps, titles, suptitle="Upsampling a 4x4 map to 8x8"):
    """Maps side by side with their values written in (small maps only)."""
    fig, axes = plt.subplots(1, len(maps), figsize=(2.7 * len(maps), 2.9))
    for ax, m, t in zip(axes, maps, titles):
        ax.imshow(m, cmap="viridis")
        if m.size <= 64:
            for (r, c), v in np.ndenumerate(m):
                ax.text(c, r, f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}", ha="center", va="center",
                        fontsize=7, color="white")
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("column (pixel)")
        ax.set_ylabel("row (pixel)")
    fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_checkerboard(transposed, resized, title="Stride 2, kernel 3: uneven overlap vs resize-then-convolve"):
    """Two outputs on a constant input: a transposed convolution's checkerboard and the even resize-conv."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, m, t in ((axes[0], transposed, "transposed conv (stride 2, 3x3)"),
                     (axes[1], resized, "nearest x2, then 3x3 conv")):
        im = ax.imshow(m, cmap="magma")
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("column (pixel)")
        ax.set_ylabel("row (pixel)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    axes[2].plot(transposed[transposed.shape[0] // 2], "o-", label="transposed conv")
    axes[2].plot(resized[resized.shape[0] // 2], "s-", label="resize + conv")
    axes[2].set_title("the middle row", fontsize=9)
    axes[2].set_xlabel("column (pixel)")
    axes[2].set_ylabel("output value")
    axes[2].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_losses(histories, title="Training loss per epoch"):
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, h in histories.items():
        ax.plot(range(1, len(h["loss"]) + 1), h["loss"], "o-", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean cross-entropy per pixel")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


# --- receptive fields of stacked dilated convolutions ---------------------------------------------------

def coverage(rates, kernel=3):
    """How many paths lead from each input pixel to ONE output pixel through stacked ``kernel`` x ``kernel``
    convolutions with the given dilation rates (0: that pixel never reaches it)."""
    reach = np.ones((1, 1))
    for r in rates:
        span = (kernel - 1) * r
        grown = np.zeros((reach.shape[0] + span, reach.shape[1] + span))
        for i in range(kernel):
            for j in range(kernel):
                grown[i * r:i * r + reach.shape[0], j * r:j * r + reach.shape[1]] += reach
        reach = grown
    return reach


def show_coverage(schedules):
    """Coverage maps side by side (``schedules``: label -> list of rates), zero pixels marked as holes."""
    fig, axes = plt.subplots(1, len(schedules), figsize=(3.3 * len(schedules), 3.4))
    axes = np.atleast_1d(axes)
    for ax, (label, rates) in zip(axes, schedules.items()):
        c = coverage(rates)
        holes = int(np.sum(c == 0))
        im = ax.imshow(np.ma.masked_equal(c, 0), cmap="viridis")
        fig.colorbar(im, ax=ax, fraction=0.046, label="paths to the output pixel")
        ax.set_facecolor("white")
        ax.set_title(f"rates {list(rates)}\nfield {c.shape[0]}x{c.shape[1]}, {holes} holes", fontsize=9)
        ax.set_xlabel("input column (pixel)")
        ax.set_ylabel("input row (pixel)")
    fig.suptitle("Which input pixels reach one output pixel (white: never)")
    fig.tight_layout()
    return fig


def dilation_explorer():
    """Pick three dilation rates: the coverage map of one output pixel of three stacked 3x3 convolutions."""
    import ipywidgets as widgets

    sliders = {f"rate{i + 1}": widgets.IntSlider(value=v, min=1, max=6, description=f"layer {i + 1} rate")
               for i, v in enumerate((2, 2, 2))}

    def show(rate1, rate2, rate3):
        show_coverage({"your choice": [rate1, rate2, rate3], "hybrid": [1, 2, 5]})
        plt.show()

    return runtime.interact(show, **sliders)


def skip_explorer(model, images, masks, n=4):
    """Scale the trained UNet's two skips (0: removed, 1: as trained): its predictions on held-out images."""
    import ipywidgets as widgets

    def show(full_res_skip=1.0, half_res_skip=1.0):
        pred = predict(model, images[:n], skips=(full_res_skip, half_res_skip))
        fig, axes = plt.subplots(2, n, figsize=(1.7 * n, 3.6))
        for i in range(n):
            _mask_axes(axes[0, i], masks[i], "true mask")
            _mask_axes(axes[1, i], pred[i], "prediction")
        fig.suptitle(f"skips scaled by {full_res_skip:.2f} (full resolution) and {half_res_skip:.2f} (half)")
        fig.tight_layout()
        plt.show()

    slider = dict(min=0.0, max=1.0, step=0.1, value=1.0)
    return runtime.interact(show, full_res_skip=widgets.FloatSlider(description="skip 1", **slider),
                            half_res_skip=widgets.FloatSlider(description="skip 2", **slider))


# --- boxes -------------------------------------------------------------------------------------------------

def show_boxes(boxes, scores, kept, title="Non-maximum suppression"):
    """All candidate boxes (thin, grey) and the kept ones (thick), with their scores."""
    fig, ax = plt.subplots(figsize=(4.5, 4.0))
    for i, (b, s) in enumerate(zip(boxes, scores)):
        keep = i in set(int(k) for k in kept)
        ax.add_patch(plt.Rectangle(b[:2], b[2] - b[0], b[3] - b[1], fill=False, lw=2.5 if keep else 1,
                                   ec="#e4572e" if keep else "#999999", ls="-" if keep else "--"))
        ax.text(b[0], b[1] - 0.3, f"{i}: {s:.2f}", fontsize=7, color="#e4572e" if keep else "#666666")
    ax.set_xlim(boxes[:, 0].min() - 1, boxes[:, 2].max() + 1)
    ax.set_ylim(boxes[:, 3].max() + 1, boxes[:, 1].min() - 1.5)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    ax.plot([], [], color="#e4572e", lw=2.5, label="kept")
    ax.plot([], [], color="#999999", ls="--", label="suppressed")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig
