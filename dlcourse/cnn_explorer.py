"""Experiments and plots of chapter 06 (convolutional networks).

Every layer used here is passed in: the benchmark, the photo demo, the CNN plots
and the degradation experiment run *your* functions. The receptive-field and
ReLU-manifold thought experiments need no graded function.
"""
from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from . import runtime, training
from .timing import best_time


# --- a convolution on a real photo ---------------------------------------------------------

EDGE_FILTERS = {
    "vertical edges (Sobel x)": np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]),
    "horizontal edges (Sobel y)": np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]]),
    "blur (3x3 mean)": np.full((3, 3), 1.0 / 9.0),
}


def sample_photo(step=4):
    """A grayscale photo from scikit-learn (shipped with the package), subsampled by ``step``: (H, W) in [0, 1]."""
    from sklearn.datasets import load_sample_image

    image = load_sample_image("china.jpg").astype(np.float64) / 255.0     # decodes only this one of the two
    return image.mean(axis=2)[::step, ::step]


def show_photo_filters(conv_forward, image, filters=None, stride=1, pad=1):
    """The photo and its convolution with each filter, computed by ``conv_forward(x, w, b, conv_param)``."""
    filters = filters or EDGE_FILTERS
    w = np.stack(list(filters.values()))[:, None]                 # (F, 1, 3, 3)
    out, _ = conv_forward(image[None, None], w, np.zeros(len(filters)), {"stride": stride, "pad": pad})
    fig, axes = plt.subplots(1, len(filters) + 1, figsize=(3.0 * (len(filters) + 1), 2.6))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title(f"input {image.shape[0]}x{image.shape[1]}", fontsize=9)
    for ax, name, fmap in zip(axes[1:], filters, out[0]):
        ax.imshow(fmap, cmap="gray")
        ax.set_title(f"{name}\noutput {fmap.shape[0]}x{fmap.shape[1]}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"One convolution layer, {len(filters)} hand-made 3x3 filters (stride {stride}, pad {pad})",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.86))          # room for the suptitle above the two-line panel titles
    return fig


# --- speed: naive loops vs im2col vs PyTorch --------------------------------------------------

def torch_conv_pair(dtype="float64"):
    """(forward, backward) with the course's contract, running torch.nn.functional.conv2d on the CPU.

    dtype: "float64" (the precision of your NumPy layers) or "float32" (what networks are trained in).
    """
    import torch

    torch_dtype = getattr(torch, dtype)

    def forward(x, w, b, conv_param):
        tensors = [torch.tensor(a, dtype=torch_dtype, requires_grad=True) for a in (x, w, b)]
        out = torch.nn.functional.conv2d(*tensors, stride=conv_param["stride"], padding=conv_param["pad"])
        return out.detach().numpy(), (tensors, out)

    def backward(dout, cache):
        tensors, out = cache
        grads = torch.autograd.grad(out, tensors, torch.tensor(dout, dtype=torch_dtype), retain_graph=True)
        return tuple(g.numpy() for g in grads)

    return forward, backward


def in_precision(dtype, forward, backward):
    """Your (forward, backward) pair run on inputs cast to ``dtype`` ("float32"), the cast timed too (as for torch)."""
    def cast_forward(x, w, b, conv_param):
        return forward(x.astype(dtype), w.astype(dtype), b.astype(dtype), conv_param)

    def cast_backward(dout, cache):
        return backward(dout.astype(dtype), cache)

    return cast_forward, cast_backward


def conv_implementations(naive, fast, with_torch=True):
    """{name: (forward, backward)} to time: your naive and im2col pairs, im2col on float32 inputs and,
    ``with_torch``, PyTorch's conv2d in float64 and float32 (importing torch costs a few seconds)."""
    implementations = {"naive loops": naive, "im2col": fast, "im2col float32": in_precision("float32", *fast)}
    if with_torch:
        implementations.update({"torch float64": torch_conv_pair("float64"),
                                "torch float32": torch_conv_pair("float32")})
    return implementations


def conv_speed_report(times):
    """Text: every implementation's times (``time_conv``'s result), then the ratios the chapter quotes."""
    lines = [f"{name:<15} forward {f * 1e3:9.2f} ms   backward {b * 1e3:9.2f} ms" for name, (f, b) in times.items()]
    pairs = [("naive loops", "im2col", "{:.0f}x"), ("im2col", "torch float64", "{:.1f}x"),
             ("im2col float32", "torch float32", "{:.1f}x")]
    for slow, fast, fmt in pairs:
        if slow in times and fast in times:
            (sf, sb), (ff, fb) = times[slow], times[fast]
            lines.append(f"{slow} / {fast}: forward {fmt.format(sf / ff)}, backward {fmt.format(sb / fb)}")
    return "\n".join(lines)


def time_conv(implementations, x, w, b, conv_param, repeat=5, repeat_slow=1, slow=("naive loops",)):
    """{name: (forward seconds, backward seconds)} for each (forward, backward) pair.

    Each is run once to warm up (the first call of a library pays for set-up), then timed as the best of
    ``repeat`` runs, or of ``repeat_slow`` runs (without warm-up) for the names listed in ``slow``.
    """
    times = {}
    rng = np.random.default_rng(0)
    for name, (forward, backward) in implementations.items():
        out, cache = forward(x, w, b, conv_param)
        dout = rng.normal(size=out.shape)
        runs = repeat_slow if name in slow else repeat
        if name not in slow:
            backward(dout, cache)
        times[name] = (best_time(lambda: forward(x, w, b, conv_param), runs),
                       best_time(lambda: backward(dout, cache), runs))
    return times


def plot_conv_times(times, title="One convolution layer on the CPU"):
    """Horizontal bars (log scale) of forward and backward times per implementation."""
    names = list(times)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(5.5, 0.6 * len(names) + 1.6))
    ax.barh(y - 0.2, [times[n][0] * 1e3 for n in names], height=0.4, label="forward")
    ax.barh(y + 0.2, [times[n][1] * 1e3 for n in names], height=0.4, label="backward")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set(title=title, xlabel="time (milliseconds, log scale)")
    ax.grid(alpha=0.3, axis="x", which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- receptive fields and dilation ---------------------------------------------------------

def receptive_field_paths(dilations, kernel=3):
    """How many paths lead from each input pixel to ONE output pixel through stacked dilated convolutions.

    dilations: one dilation rate per layer (1 = an ordinary kxk convolution).
    Returns a square array; zero where an input pixel cannot influence the output at all.
    """
    size = 1 + sum((kernel - 1) * d for d in dilations)
    paths = np.zeros((size, size))
    paths[size // 2, size // 2] = 1.0
    for d in reversed(dilations):
        spread = np.zeros_like(paths)
        offsets = (np.arange(kernel) - kernel // 2) * d
        for di in offsets:
            for dj in offsets:
                spread += np.roll(np.roll(paths, di, axis=0), dj, axis=1)
        paths = spread
    return paths


SCHEDULES = {
    "3x3, 3 layers, dilation 1, 1, 1": [1, 1, 1],
    "3x3, 3 layers, dilation 2, 2, 2 (gridding)": [2, 2, 2],
    "3x3, 3 layers, dilation 1, 2, 5 (hybrid)": [1, 2, 5],
    "3x3, 3 layers, dilation 1, 2, 4": [1, 2, 4],
    "3x3, 6 layers, dilation 2, 2, 2, 2, 2, 2 (gridding)": [2] * 6,
    "3x3, 6 layers, dilation 1, 2, 5, 1, 2, 5 (hybrid)": [1, 2, 5, 1, 2, 5],
}


def plot_receptive_field(dilations, ax=None, title=None):
    """Heat map of path counts from each input pixel to the centre output pixel; white = never reached."""
    ax = ax or plt.subplots(figsize=(4.2, 3.8))[1]
    paths = receptive_field_paths(dilations)
    shown = np.ma.masked_equal(paths, 0)
    image = ax.imshow(shown, cmap="viridis", vmin=1, vmax=max(2, paths.max()))
    reached = int((paths > 0).sum())
    size = paths.shape[0]
    ax.set_title(title or f"dilations {dilations}: {reached} of {size}x{size} = {size * size} pixels reach the output",
                 fontsize=9)
    ax.set(xlabel="input column (pixels)", ylabel="input row (pixels)")
    plt.colorbar(image, ax=ax, label="number of paths", shrink=0.85)
    return ax


def receptive_field_explorer():
    """A dropdown of dilation schedules: which input pixels reach one output pixel, and receptive-field growth."""
    def show(schedule):
        dilations = SCHEDULES[schedule]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.0), gridspec_kw={"width_ratios": [1.15, 1]})
        plot_receptive_field(dilations, ax=axes[0])
        depth = np.arange(1, 13)
        families = {"dilation 1 everywhere": lambda L: [1] * L,
                    "dilation 2 everywhere": lambda L: [2] * L,
                    "hybrid 1, 2, 5 repeated": lambda L: ([1, 2, 5] * L)[:L],
                    "dilation doubling 1, 2, 4, 8, ...": lambda L: [2 ** k for k in range(L)]}
        for name, schedule_of in families.items():
            axes[1].plot(depth, [1 + 2 * sum(schedule_of(L)) for L in depth], marker="o", ms=3, label=name)
        axes[1].set_yscale("log")
        axes[1].set(title="Receptive-field width, stacked 3x3 convs", xlabel="number of layers",
                    ylabel="width (input pixels, log scale)")
        axes[1].grid(alpha=0.3, which="both")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        plt.show()

    return runtime.interact(show, schedule=widgets.Dropdown(options=list(SCHEDULES), value=list(SCHEDULES)[1],
                                                            description="schedule", style={"description_width": "initial"}, layout={"width": "480px"}))


# --- ReLU and low-dimensional manifolds --------------------------------------------------------

def spiral_2d(n=600):
    t = np.linspace(0.0, 3.0 * np.pi, n)
    return np.column_stack([t * np.cos(t), t * np.sin(t)]) / (3.0 * np.pi), t


def relu_round_trip(points, n, rng=0):
    """Embed 2-D points in n dimensions with a random matrix T, apply ReLU, map back linearly.

    The way back is the best linear map (least squares, with an offset) from the n ReLU outputs to the 2-D
    points: if it cannot recover the points, no linear layer after the ReLU could.
    """
    T = np.random.default_rng(rng).normal(size=(n, 2))
    features = np.maximum(0.0, points @ T.T)
    design = np.column_stack([features, np.ones(len(points))])
    decoder, *_ = np.linalg.lstsq(design, points, rcond=None)
    return design @ decoder


def relu_manifold_explorer(n=2):
    """A slider for the embedding dimension n: the spiral before and after ReLU in n dimensions."""
    points, t = spiral_2d()

    def show(n=n):
        fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
        axes[0].scatter(*points.T, c=t, s=4, cmap="viridis")
        axes[0].set_title("input: a 2-D spiral", fontsize=10)
        back = relu_round_trip(points, n)
        error = np.mean(np.linalg.norm(back - points, axis=1))
        axes[1].scatter(*back.T, c=t, s=4, cmap="viridis")
        axes[1].set_title(f"ReLU in n = {n} dimensions, mapped back linearly\nmean distance to the input {error:.3f}",
                          fontsize=10)
        for ax in axes:
            ax.set(xlabel="coordinate 1", ylabel="coordinate 2", aspect="equal")
            ax.grid(alpha=0.3)
        fig.tight_layout()
        plt.show()

    return runtime.interact(show, n=widgets.IntSlider(value=n, min=2, max=30, continuous_update=False,
                                                      description="n", style={"description_width": "initial"}))


# --- the degradation problem: a deep plain net vs the same net with identity shortcuts ------------

def init_deep_mlp(input_dim, width, depth, num_classes, rng=0, batchnorm=False):
    """W0 (input_dim, width), then ``depth`` hidden (width, width) layers, then an output layer; He init.

    With ``batchnorm``, every hidden layer also gets gamma{layer} = 1 and beta{layer} = 0 (shape (width,))."""
    rng = np.random.default_rng(rng)
    params = {"W_in": rng.normal(0, np.sqrt(2.0 / input_dim), size=(input_dim, width)), "b_in": np.zeros(width)}
    for layer in range(depth):
        params[f"W{layer}"] = rng.normal(0, np.sqrt(2.0 / width), size=(width, width))
        params[f"b{layer}"] = np.zeros(width)
    params["W_out"] = rng.normal(0, np.sqrt(1.0 / width), size=(width, num_classes))
    params["b_out"] = np.zeros(num_classes)
    if batchnorm:
        for layer in range(depth):
            params[f"gamma{layer}"], params[f"beta{layer}"] = np.ones(width), np.zeros(width)
    return params


def deep_mlp_loss(layers, depth, shortcuts, batchnorm=False):
    """loss_and_grads(params, X, y) of a deep fully connected net built from your layers.

    layers: dict with affine_forward, affine_backward, relu_forward, relu_backward, softmax_loss (and
    batchnorm_forward, batchnorm_backward when ``batchnorm``).
    Every hidden layer is h <- relu(h W + b) (plain) or h <- h + relu(h W + b) / sqrt(depth) (shortcuts):
    the same layers and the same parameters; the shortcut only adds the identity path. With ``batchnorm``
    the branch is relu(bn(h W + b)) (training mode, batch statistics).
    """
    L = layers
    branch_scale = 1.0 / np.sqrt(depth) if shortcuts else 1.0

    def loss_and_grads(params, X, y):
        h, cache_in = L["affine_forward"](X, params["W_in"], params["b_in"])
        caches = []
        for layer in range(depth):
            a, c1 = L["affine_forward"](h, params[f"W{layer}"], params[f"b{layer}"])
            cb = None
            if batchnorm:
                a, cb = L["batchnorm_forward"](a, params[f"gamma{layer}"], params[f"beta{layer}"], {"mode": "train"})
            r, c2 = L["relu_forward"](a)
            h = h + branch_scale * r if shortcuts else r
            caches.append((c1, cb, c2))
        scores, cache_out = L["affine_forward"](h, params["W_out"], params["b_out"])
        loss, dscores = L["softmax_loss"](scores, y)
        grads = {}
        dh, grads["W_out"], grads["b_out"] = L["affine_backward"](dscores, cache_out)
        for layer in reversed(range(depth)):
            c1, cb, c2 = caches[layer]
            da = L["relu_backward"](branch_scale * dh, c2)
            if batchnorm:
                da, grads[f"gamma{layer}"], grads[f"beta{layer}"] = L["batchnorm_backward"](da, cb)
            dbranch, grads[f"W{layer}"], grads[f"b{layer}"] = L["affine_backward"](da, c1)
            dh = dh + dbranch if shortcuts else dbranch
        _, grads["W_in"], grads["b_in"] = L["affine_backward"](dh, cache_in)
        return loss, grads

    return loss_and_grads


def degradation_experiment(layers, X, y, depths=(2, 30), width=32, epochs=60, learning_rate=0.05, rng=0,
                           variants=(("plain", False, False), ("with shortcuts", True, False))):
    """Train nets of each depth from the same initial weights; {label: history}.

    variants: (name, shortcuts, batchnorm) triples, e.g. ("plain with batch norm", False, True)."""
    histories = {}
    for name, shortcuts, batchnorm in variants:
        for depth in depths:
            params = init_deep_mlp(X.shape[1], width, depth, int(y.max()) + 1, rng=rng, batchnorm=batchnorm)
            histories[f"{name}, {depth} hidden layers"] = training.train(
                deep_mlp_loss(layers, depth, shortcuts, batchnorm), params, X, y, learning_rate=learning_rate,
                epochs=epochs, batch_size=32, drop_last=batchnorm, rng=rng + 1, progress=False)
    return histories


def plot_degradation(histories):
    """Training loss per epoch, one panel per variant (the label's text before the comma)."""
    kinds = list(dict.fromkeys(label.split(",")[0] for label in histories))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.3 * len(kinds) if len(kinds) > 2 else 9.5, 3.6), sharey=True)
    for ax, kind in zip(np.atleast_1d(axes), kinds):
        for label, history in histories.items():
            if label.split(",")[0] == kind:
                ax.plot(np.arange(1, len(history["epoch_loss"]) + 1), history["epoch_loss"],
                        label=label.split(", ")[1])
        ax.set(title=kind, xlabel="epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("training loss (cross-entropy)")
    fig.tight_layout()
    return fig


# --- what a small CNN learned ----------------------------------------------------------------

def _grid(count, ncols, cell=1.05, title_space=0.55):
    nrows = int(np.ceil(count / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + title_space), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def plot_filters(w, title="First-layer filters", ncols=8):
    """w: (F, 1, HH, WW) filters, one small image each (blue negative, red positive weights)."""
    fig, axes = _grid(w.shape[0], ncols)
    limit = np.abs(w).max()
    for f, ax in zip(range(w.shape[0]), axes):
        ax.imshow(w[f, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {f}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_feature_maps(image, maps, title="Feature maps of one test digit", ncols=9):
    """image: (H, W) input; maps: (F, H', W') first-layer activations for that image (input first, then maps)."""
    fig, axes = _grid(maps.shape[0] + 1, ncols)
    axes = list(axes)
    axes[0].imshow(image, cmap="gray_r")
    axes[0].set_title("input", fontsize=8, fontweight="bold")
    for f, ax in enumerate(axes[1:maps.shape[0] + 1]):
        ax.imshow(maps[f], cmap="magma")
        ax.set_title(f"map {f}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
