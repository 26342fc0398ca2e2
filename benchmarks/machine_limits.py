"""The machine's own limits, so that a benchmark figure can be read as a share of what the hardware offers.

    python benchmarks/machine_limits.py                # fp32 and bf16, on the CPU (or --device cuda)
    python benchmarks/machine_limits.py --repeats 3    # fewer timed runs

Two rates, each in fp32 and bf16:
- matrix products, C = A @ B with n x n matrices (2·n³ floating-point operations each), in GFLOP/s: what a
  training step's matrix products could reach;
- matrix-vector products, y = W @ x with W the shape of GPT-2's output head (50,257 x 768), in GB/s of W
  read: decoding one sequence reads every weight once per token, so at batch 1 it can go no faster than
  the weights can be read.
Each rate is the median of the timed runs after one warm-up, with PyTorch's threads as they are. bf16 is
measured everywhere: where the hardware has no bf16 arithmetic it is emulated, and the figure shows what
that costs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def median_seconds(function, repeats, device):
    """The median wall time of `repeats` calls of function(), after one call to warm up (on a GPU, each
    call waited for: its kernels run asynchronously)."""
    finish = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    function()
    finish()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        finish()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(dtype, size, repeats, device):
    """GFLOP/s of an n x n by n x n matrix product (n = size): 2·n³ operations per product."""
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    return 2 * size ** 3 / median_seconds(lambda: a @ b, repeats, device) / 1e9


def matvec_gbytes(dtype, rows, cols, repeats, device):
    """GB/s of weights read by a (rows x cols) matrix times a vector: the matrix's bytes per product."""
    weight, vector = torch.randn(rows, cols, device=device).to(dtype), torch.randn(cols, device=device).to(dtype)
    return weight.numel() * weight.element_size() / median_seconds(lambda: weight @ vector, repeats, device) / 1e9


def measure(size=2048, rows=50257, cols=768, repeats=5, device="cpu"):
    """{"fp32": {"matmul GFLOP/s": ..., "matvec GB/s": ...}, "bf16": {...}}"""
    device = torch.device(device)
    return {name: {"matmul GFLOP/s": matmul_gflops(dtype, size, repeats, device),
                   "matvec GB/s": matvec_gbytes(dtype, rows, cols, repeats, device)}
            for name, dtype in DTYPES.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python benchmarks/machine_limits.py", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="n of the n x n matrix products (default 2048)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each product (default 5)")
    parser.add_argument("--device", default="cpu")
    arguments = parser.parse_args(argv)
    limits = measure(arguments.size, repeats=arguments.repeats, device=arguments.device)
    print(f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, device {arguments.device}")
    for name, rates in limits.items():
        print(f"{name}: matrix products {rates['matmul GFLOP/s']:,.0f} GFLOP/s "
              f"({arguments.size} x {arguments.size}); matrix-vector {rates['matvec GB/s']:,.1f} GB/s (50,257 x 768)")
    return limits


if __name__ == "__main__":
    main()
