"""The one place where the torch chapters choose where tensors live.

Every torch chapter calls ``pick_device()`` once, in its set-up cell, and passes the
result on: ``cuda`` when an NVIDIA GPU is usable, else ``mps`` (Apple silicon), else
``cpu``. Setting the environment variable ``COURSE_DEVICE`` (``cpu``, ``cuda``,
``cuda:1``, ``mps``) overrides the choice, e.g. to time the CPU on a GPU machine::

    COURSE_DEVICE=cpu jupyter lab

The same notebook runs unchanged everywhere; only what ``describe_device`` prints differs.
"""
from __future__ import annotations

import os

import torch

DEVICE_ENV = "COURSE_DEVICE"


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The device types torch can use here, best first (always ends with 'cpu')."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return found + ["cpu"]


def pick_device(override: str | None = None) -> torch.device:
    """The course's device: ``override``, else $COURSE_DEVICE, else cuda, mps or cpu, whichever is usable first.

    Raises ValueError with the fix when the requested device is not usable on this machine
    (asking for ``cuda`` on a laptop), instead of failing later inside a training loop.
    """
    wanted = (override or os.environ.get(DEVICE_ENV, "")).strip().lower()
    if not wanted:
        return torch.device(available_devices()[0])
    try:
        device = torch.device(wanted)
    except RuntimeError:
        raise ValueError(f"{DEVICE_ENV}={wanted!r} is not a device name: use cpu, cuda, cuda:N or mps") from None
    if device.type not in available_devices():
        raise ValueError(f"{DEVICE_ENV}={wanted!r} asks for {device.type}, but this machine only has "
                         f"{', '.join(available_devices())}: unset {DEVICE_ENV} or set it to cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"{DEVICE_ENV}={wanted!r}: there are only {torch.cuda.device_count()} CUDA devices")
    return device


def describe_device(device: torch.device | str | None = None) -> str:
    """One line for the top of a chapter, e.g. 'cuda:0 (NVIDIA H200, 139 GiB)' or 'cpu (2 threads)'."""
    device = torch.device(device) if device is not None else pick_device()
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work to finish, so that a wall-clock timing measures the work, not the queueing."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
