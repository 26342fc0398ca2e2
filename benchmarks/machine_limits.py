"""The machine's own limits, so that a benchmark figure can be read as a share of what the hardware offers.

    python benchmarks/machine_limits.py                # fp32 and bf16, on the CPU (or --device cuda)
    python benchmarks/machine_limits.py --repeats 3    # fewer timed runs (default 10)

Two rates, each in fp32 and bf16:
- matrix products, C = A @ B with n x n matrices (2·n³ floating-point operations each), in GFLOP/s: what a
  training step's matrix products could reach;
- matrix-vector products, F.linear(x, W) with x of shape (1, 768) and W the shape of GPT-2's output head
  (50,257 x 768), in GB/s of W read and in billions of weights read a second: decoding one sequence reads
  every weight once per token, so at batch 1 it can go no faster than the weights can be read. F.linear
  with a (1, 768) input is how the model's linear layers compute at batch 1; `W @ x` with a 1-D x takes
  another kernel, slower in bf16 on some CPUs.
Each rate is that of the fastest timed run after one warm-up (a limit is the best the hardware
reaches), with PyTorch's threads as they are. bf16 is
measured everywhere: where the hardware has no bf16 arithmetic it is emulated, and the figure shows what
that costs.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from gpt2_from_scratch.pretraining import fastest_seconds, matmul_flops_per_second  # 02, section 6

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_gflops(dtype, size, repeats, device):
    """GFLOP/s of an n x n by n x n matrix product (n = size): 2·n³ operations per product, as 02 times it."""
    return matmul_flops_per_second(dtype, device, size, repeats) / 1e9


def matvec_rates(dtype, rows, cols, repeats, device):
    """(GB/s, billions of weights a second) read by F.linear(x, W), W (rows x cols), x (1, cols): as a linear
    layer computes one token."""
    weight = torch.randn(rows, cols, device=device).to(dtype)
    x = torch.randn(1, cols, device=device).to(dtype)
    seconds = fastest_seconds(lambda: F.linear(x, weight), device, repeats)
    return weight.numel() * weight.element_size() / seconds / 1e9, weight.numel() / seconds / 1e9


def measure(size=2048, rows=50257, cols=768, repeats=10, device="cpu"):
    """{"fp32": {"matmul GFLOP/s": ..., "matvec GB/s": ..., "matvec G weights/s": ...}, "bf16": {...}}"""
    device = torch.device(device)
    limits = {}
    for name, dtype in DTYPES.items():
        gbytes, gweights = matvec_rates(dtype, rows, cols, repeats, device)
        limits[name] = {"matmul GFLOP/s": matmul_gflops(dtype, size, repeats, device),
                        "matvec GB/s": gbytes, "matvec G weights/s": gweights}
    return limits


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/machine_limits.py", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="n of the n x n matrix products (default 2048)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each product (default 10)")
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args(argv)
    limits = measure(arguments.size, repeats=arguments.repeats, device=arguments.device)
    print(f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, device {arguments.device}")
    for name, rates in limits.items():
        print(f"{name}: matrix products {rates['matmul GFLOP/s']:,.0f} GFLOP/s "
              f"({arguments.size} x {arguments.size}); matrix-vector {rates['matvec GB/s']:,.1f} GB/s, "
              f"{rates['matvec G weights/s']:,.2f} billion weights/s (F.linear, 1 x 768 by 50,257 x 768)")
    return limits


if __name__ == "__main__":
    main()
