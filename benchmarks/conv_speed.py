"""Convolution speed on the CPU: naive loops vs im2col (chapter 06's solutions) vs torch.nn.functional.conv2d.

    .venv/bin/python benchmarks/conv_speed.py [--batch 8 --channels 16 --size 32 --filters 32]

A realistic early layer of a CIFAR-sized network (3x3, stride 1, padding 1), forward and
backward, in float64 like the course's NumPy layers; PyTorch also in float32. Prints a
table and the ratios quoted in the chapter 06 notebook; asserts nothing.
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
from grader.notebooks import solution_namespace  # noqa: E402


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
    implementations = {
        "naive loops": (solution["conv_forward_naive"], solution["conv_backward_naive"]),
        "im2col": (solution["conv_forward_im2col"], solution["conv_backward_im2col"]),
        "im2col float32": cnn_explorer.in_precision("float32", solution["conv_forward_im2col"],
                                                    solution["conv_backward_im2col"]),
        "torch conv2d float64": cnn_explorer.torch_conv_pair("float64"),
        "torch conv2d float32": cnn_explorer.torch_conv_pair("float32"),
    }
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads")
    print(f"layer: x {x.shape}, w {w.shape}, stride 1, pad 1; best of {args.repeat} (naive: 1 run)\n")
    times = cnn_explorer.time_conv(implementations, x, w, b, conv_param, repeat=args.repeat)
    print("| implementation | forward | backward |")
    print("|---|---|---|")
    for name, (forward, backward) in times.items():
        print(f"| {name} | {forward * 1e3:.1f} ms | {backward * 1e3:.1f} ms |")
    naive, fast = times["naive loops"], times["im2col"]
    print()
    print(f"naive / im2col: forward {naive[0] / fast[0]:.0f}x, backward {naive[1] / fast[1]:.0f}x")
    for mine, name in (("im2col", "torch conv2d float64"), ("im2col float32", "torch conv2d float32")):
        ref, ours = times[name], times[mine]
        print(f"{mine} / {name}: forward {ours[0] / ref[0]:.1f}x, backward {ours[1] / ref[1]:.1f}x")


if __name__ == "__main__":
    main()
