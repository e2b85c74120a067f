"""The torch chapters on a GPU: device-agnostic code, results that agree with the CPU, epoch times.

    python benchmarks/gpu_checks.py          # on a machine with CUDA (prints 'no CUDA' and stops elsewhere)
    python benchmarks/gpu_checks.py --device cpu --quick   # the same path on the CPU (a dry run of this script)

Grading never uses a GPU (graded numbers are float64 on the CPU); this checks what learners run:
- ``dlcourse.devices`` picks cuda; chapter 07's worked ``TwoLayerNet``, ``train_one_epoch`` and
  ``evaluate`` train and evaluate on it, and the weights after an epoch agree with the same epoch on the CPU;
- chapter 08's and 09's worked functions (losses, KL, attention, multi-head attention) give the same
  float64 numbers on cuda as on the CPU;
- the kernel-side recorder moves a cuda tensor to a CPU float64 array and names its device;
- chapter 07's table of epoch times (NumPy vs torch CPU vs torch GPU, benchmarks/torch_speed.py).
Prints figures; asserts nothing that would stop the later checks.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def close(a, b):
    import torch

    return float((a.detach().cpu().double() - b.detach().cpu().double()).abs().max())


def main():
    import argparse

    import numpy as np
    import torch

    from dlcourse import devices
    from grader.workflow.earlier_chapters import solution_namespace

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="skip the epoch-time table")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA here: nothing to check")
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = devices.pick_device()
    print(f"torch {torch.__version__}; course device: {devices.describe_device(device)}")
    gpu = torch.device(args.device)

    ch07 = solution_namespace(ROOT / "solutions" / "07_pytorch" / "07_pytorch.ipynb")
    torch.manual_seed(0)
    X = torch.randn(256, 64, dtype=torch.float64)
    y = torch.randint(0, 10, (256,))
    results = {}
    for where in ("cpu", args.device):
        torch.manual_seed(1)
        model = ch07["TwoLayerNet"](64, 32, 10).double().to(where)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=32)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        start = time.perf_counter()
        loss = ch07["train_one_epoch"](model, loader, torch.nn.CrossEntropyLoss(), optimizer, torch.device(where))
        accuracy = ch07["evaluate"](model, loader, torch.device(where))
        results[where] = (loss, accuracy, {k: v.detach().cpu() for k, v in model.state_dict().items()},
                          time.perf_counter() - start)
    diff = max(float((results["cpu"][2][k] - results[args.device][2][k]).abs().max()) for k in results["cpu"][2])
    other = results[args.device]
    print(f"ch07 one epoch, float64: loss cpu {results['cpu'][0]:.10f} {args.device} {other[0]:.10f}; "
          f"accuracy {results['cpu'][1]:.4f} / {other[1]:.4f}; max weight difference {diff:.2e}; "
          f"{results['cpu'][3]:.2f} s / {other[3]:.2f} s")

    ch08 = solution_namespace(ROOT / "solutions" / "08_vae_gan" / "08_vae_gan.ipynb")
    mu, logvar = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 4, dtype=torch.float64) * 0.5
    x = torch.rand(16, 20, dtype=torch.float64)
    recon = torch.rand(16, 20, dtype=torch.float64) * 0.8 + 0.1
    logits = torch.randn(16, 1, dtype=torch.float64) * 3
    for name, inputs in (("kl_divergence", (mu, logvar)), ("vae_loss", (recon, x, mu, logvar)),
                       ("discriminator_loss", (logits, -logits)), ("generator_loss", (logits,))):
        on_gpu = ch08[name](*[a.to(gpu) for a in inputs])
        print(f"ch08 {name}: |cuda - cpu| = {close(on_gpu, ch08[name](*inputs)):.2e} (device {on_gpu.device})")
    z = ch08["reparameterize"](mu.to(gpu), logvar.to(gpu))
    print(f"ch08 reparameterize on cuda: device {z.device}, dtype {z.dtype}")

    ch09 = solution_namespace(ROOT / "solutions" / "09_rnn_attention" / "09_rnn_attention.ipynb")
    q, k, v = (torch.randn(2, 3, 5, 8, dtype=torch.float64) for _ in range(3))
    mask = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    out_cpu, w_cpu = ch09["scaled_dot_product_attention"](q, k, v, mask=mask)
    out_gpu, w_gpu = ch09["scaled_dot_product_attention"](q.to(gpu), k.to(gpu), v.to(gpu), mask=mask.to(gpu))
    print(f"ch09 scaled_dot_product_attention: |cuda - cpu| out {close(out_gpu, out_cpu):.2e}, "
          f"weights {close(w_gpu, w_cpu):.2e}")
    torch.manual_seed(2)
    mha = ch09["MultiHeadAttention"](8, 2).double()
    query = torch.randn(2, 5, 8, dtype=torch.float64)
    out_cpu, _ = mha(query, query, query)
    out_gpu, _ = mha.to(gpu)(query.to(gpu), query.to(gpu), query.to(gpu))
    print(f"ch09 MultiHeadAttention: |cuda - cpu| = {close(out_gpu, out_cpu):.2e}")

    import course_harness

    arrays = {}
    record = course_harness._encode(torch.arange(6, dtype=torch.float32, device=gpu).reshape(2, 3), "o", arrays,
                                    [2**20])
    print(f"recorder on a cuda tensor: {record}; array {arrays['o'].dtype} {arrays['o'].shape} "
          f"equal {np.array_equal(arrays['o'], np.arange(6.0).reshape(2, 3))}")

    if args.quick:
        return
    print("\nchapter 07's epoch-time table (benchmarks/torch_speed.py, 3 timed epochs):", flush=True)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "torch_speed.py"), "--epochs", "3"], check=False)
    print("\nthe same with one CPU thread (a hub runs many learners per machine):", flush=True)
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "torch_speed.py"), "--epochs", "3", "--threads", "1"],
                   check=False)


if __name__ == "__main__":
    main()
