"""Epoch time of chapter 06's digits CNN: NumPy layers vs torch on the CPU vs torch on the GPU (when present).

    .venv/bin/python benchmarks/torch_speed.py [--threads 1] [--batch 32] [--epochs 3]

Torch runs on one CPU thread by default, as the chapter 07 notebook sets (``--threads 0``: torch's choice).

The NumPy network is built from the course's worked solutions of chapters 02 and 06 (float64,
as the NumPy chapters train); the torch network is the same five layers, trained with chapter
07's worked ``train_one_epoch``. Prints seconds per epoch and each setting's speed relative to
NumPy (the table the chapter 07 notebook prints, from ``dlcourse.torch_speed``); asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlcourse import data, devices, torch_speed  # noqa: E402
from grader.workflow.earlier_chapters import solution_namespace  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1, as the chapter 07 notebook sets; 0: torch's choice)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per torch setting (after a warm-up)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    solution = solution_namespace(ROOT / "solutions" / "07_pytorch" / "07_pytorch.ipynb")
    layers = {name: solution[name] for name in torch_speed.NUMPY_LAYERS}
    X_train, y_train, _, _ = data.load_digits_split(test_fraction=0.25, rng=0)
    X = X_train.reshape(-1, 1, 8, 8)
    print(f"machine: {os.cpu_count()} cores; torch {torch.__version__}; course device: "
          f"{devices.describe_device(devices.pick_device())}")
    times = torch_speed.epoch_times(layers, solution["train_one_epoch"], X, y_train, batch_size=args.batch,
                                    epochs=args.epochs)
    print(torch_speed.epoch_time_report(times, len(X), args.batch))
    print(torch_speed.what_the_times_say(times))
    if "torch GPU (float32)" in times:
        cpu, gpu = times["torch CPU (float32)"], times["torch GPU (float32)"]
        print(f"GPU vs CPU (float32): {cpu / gpu:.2f}x")


if __name__ == "__main__":
    main()
