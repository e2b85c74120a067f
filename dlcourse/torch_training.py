"""Around a torch training loop: progress bars, epoch timing, and the epochs loop that calls your functions.

Chapter 07 asks you to write ``train_one_epoch(model, loader, loss_fn, optimizer, device)``
and ``evaluate(model, loader, device)``. ``fit`` calls them once per epoch, times each epoch
(waiting for the GPU to finish its queue, so the times are honest) and keeps a history;
``progress`` is the tqdm bar your loops wrap around a loader (silent under the autograder).
"""
from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from .devices import synchronize
from .runtime import progress_hidden


def progress(iterable, desc="", total=None):
    """``tqdm(iterable)`` that disappears when done; off under the autograder and while an explorer redraws."""
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=progress_hidden())


def fit(model, train_loader, loss_fn, optimizer, device, *, epochs, train_one_epoch, evaluate=None,
        val_loader=None, desc="epochs"):
    """Train ``model`` for ``epochs`` epochs with *your* ``train_one_epoch`` (and ``evaluate``).

    train_one_epoch(model, loader, loss_fn, optimizer, device) -> mean training loss of the epoch.
    evaluate(model, loader, device) -> accuracy, called on ``val_loader`` after every epoch when both are given.
    Returns {"loss": [...], "val_accuracy": [...], "epoch_seconds": [...]}, one entry per epoch.
    """
    history = {"loss": [], "val_accuracy": [], "epoch_seconds": []}
    bar = tqdm(range(epochs), desc=desc, leave=False, disable=progress_hidden())
    for _ in bar:
        start = time.perf_counter()
        loss = train_one_epoch(model, train_loader, loss_fn, optimizer, device)
        synchronize(device)
        history["epoch_seconds"].append(time.perf_counter() - start)
        history["loss"].append(float(loss))
        if evaluate is not None and val_loader is not None:
            history["val_accuracy"].append(float(evaluate(model, val_loader, device)))
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", val=f"{history['val_accuracy'][-1]:.1%}")
        else:
            bar.set_postfix(loss=f"{history['loss'][-1]:.3f}")
    bar.close()
    return history


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
