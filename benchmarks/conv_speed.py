"""Convolution speed on the CPU: naive loops vs im2col (chapter 06's solutions) vs torch.nn.functional.conv2d.

    .venv/bin/python benchmarks/conv_speed.py [--batch 8 --channels 16 --size 32 --filters 32]

A realistic early layer of a CIFAR-sized network (3x3, stride 1, padding 1), forward and
backward, in float64 like the course's NumPy layers, and in float32. Prints the times and
the ratios quoted in the chapter 06 notebook (the same report its benchmark cell prints);
asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlcourse import cnn_explorer  # noqa: E402
from grader.workflow.earlier_chapters import solution_namespace  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--filters", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import torch

    solution = solution_namespace(ROOT / "solutions" / "06_cnn" / "06_cnn.ipynb")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch, args.channels, args.size, args.size))
    w = rng.normal(size=(args.filters, args.channels, 3, 3))
    b = rng.normal(size=args.filters)
    conv_param = {"stride": 1, "pad": 1}
    implementations = cnn_explorer.conv_implementations(
        (solution["conv_forward_naive"], solution["conv_backward_naive"]),
        (solution["conv_forward_im2col"], solution["conv_backward_im2col"]))
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"layer: x {x.shape}, w {w.shape}, stride 1, pad 1; best of {args.repeat} (naive: 1 run)\n")
    times = cnn_explorer.time_conv(implementations, x, w, b, conv_param, repeat=args.repeat)
    print(cnn_explorer.conv_speed_report(times))

if __name__ == "__main__":
    main()
