"""Trusted references for chapter 07 (PyTorch).

Used only by hidden tests, in the grader's process. The autograd.Function items are judged
against NumPy forwards (their gradients against centered differences of these forwards); the
module, dataset and loop items against torch itself, run here in float64 on the CPU on the very
objects the kernel was handed (``course_harness.build_sequential`` and friends build both), so
nothing depends on a torch random stream: weights come from the case, loaders do not shuffle.
"""
from __future__ import annotations

import contextlib

import numpy as np

import course_harness

from .ch02_backprop import affine_forward, relu_forward
from .ch06_cnn import conv_forward

__all__ = ["affine_forward", "relu_forward", "conv2d_forward", "two_layer_net_forward", "dataset_item",
           "train_one_epoch", "evaluate", "predictions", "predictions_in_training_mode"]


def conv2d_forward(x, w, b, stride, pad):
    return conv_forward(x, w, b, {"stride": stride, "pad": pad})


def two_layer_net_forward(x, W1, b1, W2, b2):
    """fc2(relu(fc1(x))) with nn.Linear's convention: weight (out_features, in_features); x flattened to (N, D)."""
    h = np.maximum(x.reshape(len(x), -1) @ W1.T + b1, 0.0)
    return h @ W2.T + b2


def dataset_item(images, index, scale=None, shift=None):
    """What DigitsDataset[index] holds: the image with a channel axis, (1, H, W) in float32, then the transform."""
    image = np.asarray(images[index], dtype=np.float32)[None]
    if scale is not None:
        image = image * np.float32(scale) + np.float32(shift)
    return image


@contextlib.contextmanager
def _one_thread():
    """These models are tiny: one thread is fastest, and several threads on a busy CPU are very slow."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _model(layers, state):
    return course_harness.build_sequential(layers, state)


def train_one_epoch(layers, state, X, y, batch_size, lr, momentum, zero_grad=True):
    """One epoch of SGD over unshuffled minibatches: (mean batch loss, final state_dict as arrays).

    ``zero_grad=False`` gives what a loop that forgets ``optimizer.zero_grad()`` computes (for the message).
    """
    import torch

    with _one_thread():
        return _train_one_epoch(torch, layers, state, X, y, batch_size, lr, momentum, zero_grad)


def _train_one_epoch(torch, layers, state, X, y, batch_size, lr, momentum, zero_grad):
    model = _model(layers, state)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    for start in range(0, len(X), batch_size):
        xb = torch.from_numpy(X[start:start + batch_size].astype(np.float64))
        yb = torch.from_numpy(y[start:start + batch_size].astype(np.int64))
        if zero_grad:
            optimizer.zero_grad()
        loss = loss_fn(model(xb), yb)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return float(np.mean(losses)), {k: v.detach().double().numpy().copy() for k, v in model.state_dict().items()}


def predictions(layers, state, X):
    """The classes a trusted model in eval mode predicts for X."""
    import torch

    with _one_thread(), torch.no_grad():
        model = _model(layers, state)
        model.eval()
        return model(torch.from_numpy(X.astype(np.float64))).argmax(dim=1).numpy()


def predictions_in_training_mode(layers, state, X, batch_size):
    """The classes the same model predicts in training mode, batch by batch (batch norm uses each batch's
    statistics): what an evaluate that forgets model.eval() sees."""
    import torch

    with _one_thread(), torch.no_grad():
        model = _model(layers, state)
        model.train()
        return np.concatenate([model(torch.from_numpy(X[i:i + batch_size].astype(np.float64))).argmax(dim=1).numpy()
                               for i in range(0, len(X), batch_size)])


def evaluate(layers, state, X, y):
    """Accuracy (a fraction) of the trusted model in eval mode."""
    return float(np.mean(predictions(layers, state, X) == y))
