"""Chapter 06's digits CNN twice, your NumPy layers and torch, and what an epoch of each costs.

conv 3x3 (16 filters, pad 1) - ReLU - max pool 2x2 - affine (256 -> 10) - softmax loss, trained
with minibatch SGD (batch 32, learning rate 0.1). The NumPy version is built from the layer
functions you wrote in chapters 02 and 06 (passed in as a dict); the torch version is the same
network in ``nn`` layers, trained by the ``train_one_epoch`` you write in chapter 07. The
chapter 07 notebook and ``benchmarks/torch_speed.py`` print the same report from here.
"""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from . import training
from .torch_training import fit

NUMPY_LAYERS = ("conv_forward_im2col", "conv_backward_im2col", "relu_forward", "relu_backward",
                "max_pool_forward_naive", "max_pool_backward_naive", "affine_forward", "affine_backward",
                "softmax_loss")
CONV_PARAM = {"stride": 1, "pad": 1}
POOL_PARAM = {"pool_height": 2, "pool_width": 2, "stride": 2}


def numpy_cnn_loss(layers):
    """loss_and_grads(params, X, y) of the CNN, from your layer functions ({name: function}, NUMPY_LAYERS)."""
    L = {name: layers[name] for name in NUMPY_LAYERS}

    def loss_and_grads(params, X, y):
        c, conv_cache = L["conv_forward_im2col"](X, params["W1"], params["b1"], CONV_PARAM)
        r, relu_cache = L["relu_forward"](c)
        p, pool_cache = L["max_pool_forward_naive"](r, POOL_PARAM)
        scores, affine_cache = L["affine_forward"](p, params["W2"], params["b2"])
        loss, dscores = L["softmax_loss"](scores, y)
        dp, dW2, db2 = L["affine_backward"](dscores, affine_cache)
        dc = L["relu_backward"](L["max_pool_backward_naive"](dp, pool_cache), relu_cache)
        _, dW1, db1 = L["conv_backward_im2col"](dc, conv_cache)
        return loss, {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}

    return loss_and_grads


def init_cnn_params(rng=11):
    """He-initialised NumPy parameters: W1 (16, 1, 3, 3), b1 (16,), W2 (256, 10), b2 (10,)."""
    rng = np.random.default_rng(rng)
    return {"W1": rng.normal(0, np.sqrt(2 / 9), size=(16, 1, 3, 3)), "b1": np.zeros(16),
            "W2": rng.normal(0, np.sqrt(1 / 256), size=(256, 10)), "b2": np.zeros(10)}


def torch_cnn():
    """The same network in torch layers; its state_dict keys are conv.*, fc.*."""
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 16, 3, padding=1), relu=nn.ReLU(), pool=nn.MaxPool2d(2),
                                     flatten=nn.Flatten(), fc=nn.Linear(256, 10)))


def load_numpy_params(model, params):
    """Copy NumPy parameters into ``torch_cnn()`` (nn.Linear keeps its weight as (out, in): W2 transposed)."""
    state = {"conv.weight": params["W1"], "conv.bias": params["b1"], "fc.weight": params["W2"].T,
             "fc.bias": params["b2"]}
    reference = next(model.parameters())
    model.load_state_dict({k: torch.as_tensor(np.ascontiguousarray(v), dtype=reference.dtype) for k, v in state.items()})
    return model


def time_numpy_epoch(layers, X, y, batch_size=32, learning_rate=0.1, repeat=3):
    """Seconds of the fastest of ``repeat`` epochs of the NumPy CNN (float64, as the NumPy chapters train)."""
    loss_and_grads, times = numpy_cnn_loss(layers), []
    for r in range(repeat):
        params = init_cnn_params()
        start = time.perf_counter()
        training.train(loss_and_grads, params, X, y, learning_rate=learning_rate, epochs=1, batch_size=batch_size,
                       rng=r, progress=False)
        times.append(time.perf_counter() - start)
    return min(times)


def time_torch_epoch(train_one_epoch, X, y, device, dtype=torch.float32, batch_size=32, learning_rate=0.1,
                     epochs=3):
    """Seconds of the fastest epoch of the torch CNN after one warm-up epoch (GPU start-up, caches)."""
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    model = torch_cnn().to(device=device, dtype=dtype)
    data = TensorDataset(torch.as_tensor(X, dtype=dtype), torch.as_tensor(y, dtype=torch.long))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    history = fit(model, loader, nn.CrossEntropyLoss(), optimizer, device, epochs=epochs + 1,
                  train_one_epoch=train_one_epoch, desc="timing")
    return min(history["epoch_seconds"][1:])


def epoch_times(layers, train_one_epoch, X, y, batch_size=32, epochs=3):
    """{setting: seconds per epoch}: NumPy (float64), torch on the CPU (float64, float32), torch on the GPU if any."""
    times = {"NumPy, your layers (float64)": time_numpy_epoch(layers, X, y, batch_size, repeat=max(1, epochs))}
    for dtype in (torch.float64, torch.float32):
        name = str(dtype).replace("torch.", "")
        times[f"torch CPU ({name})"] = time_torch_epoch(train_one_epoch, X, y, torch.device("cpu"), dtype,
                                                        batch_size, epochs=epochs)
    if torch.cuda.is_available():
        times["torch GPU (float32)"] = time_torch_epoch(train_one_epoch, X, y, torch.device("cuda"), torch.float32,
                                                        batch_size, epochs=epochs)
    return times


def epoch_time_report(times, n_examples, batch_size=32):
    """The table the notebook and the benchmark print: seconds per epoch and the speed-up over NumPy."""
    numpy_time = next(iter(times.values()))
    lines = [f"one epoch over {n_examples} digits, batches of {batch_size} ({torch.get_num_threads()} torch CPU "
             f"threads)"]
    lines += [f"  {name:<30} {seconds * 1000:8.1f} ms   {numpy_time / seconds:5.2f}x NumPy's speed"
              for name, seconds in times.items()]
    return "\n".join(lines)


def _compare(a_name, a, b_name, b):
    """'a is 1.8x as fast as b', 'a is slower than b (0.6x its speed)' or 'about as fast', from two times."""
    ratio = b / a
    if abs(ratio - 1) < 0.1:
        return f"{a_name} is about as fast as {b_name} ({ratio:.2f}x)"
    if ratio > 1:
        return f"{a_name} is {ratio:.2f}x as fast as {b_name}"
    return f"{a_name} is slower than {b_name} ({ratio:.2f}x its speed)"


def _why(a, b, faster, otherwise):
    """The reason that fits: ``faster`` when a clearly beats b (by more than 10 %), else ``otherwise``."""
    return faster if a < b / 1.1 else otherwise


def what_the_times_say(times):
    """Sentences that read the measured ``epoch_times`` (never a number measured elsewhere).

    Compares torch on the CPU with your NumPy layers (same float64 arithmetic), float32 with float64 on
    the CPU, and the GPU with the CPU when there is one, and says for each why it may come out that way.
    """
    numpy_time = next(iter(times.values()))
    f64, f32 = times["torch CPU (float64)"], times["torch CPU (float32)"]
    lines = ["What these times say on this machine:",
             "- " + _compare("torch on the CPU (float64)", f64, "your NumPy layers", numpy_time) + ": "
             + _why(f64, numpy_time,
                    "the same float64 arithmetic, with torch's compiled convolution, pooling and backward passes in "
                    "place of NumPy calls glued together by Python.",
                    "for a network this small torch's per-call overhead (and a busy CPU) eats what its compiled "
                    "kernels save."),
             "- " + _compare("float32", f32, "float64", f64) + " on the CPU: "
             + _why(f32, f64,
                    "half the bytes to move, and twice as many numbers per vector instruction.",
                    "at 8x8 pixels and 16 filters an epoch goes to per-call overhead and to whichever CPU kernel "
                    "torch picks for each dtype, not to arithmetic; float32's gain (half the memory, twice the "
                    "numbers per vector instruction) shows on larger layers and on a GPU.")]
    if "torch GPU (float32)" in times:
        gpu = times["torch GPU (float32)"]
        lines.append("- " + _compare("the GPU", gpu, "the CPU (float32)", f32) + ": "
                     + _why(gpu, f32, "the batches carry enough work to pay for launching its kernels.",
                            "each of the many small kernel launches costs as much as the arithmetic it does, or "
                            "more; a GPU pays off with larger images, more channels and larger batches."))
    else:
        lines.append("- no CUDA GPU here, so no GPU time: on a GPU the same cell adds a row.")
    return "\n".join(lines)
