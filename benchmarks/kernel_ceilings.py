"""Kernel ceilings are honest: cobench's GEMM attains >= 90 % of what a bare torch.matmul loop and
numpy's BLAS attain on the same shapes in the same run, and its copy >= 90 % of a plain tensor.copy_
of a large tensor. (cobench times cold-cache with rotating operands; the bare loops reuse one set.)
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from cobench.measure.kernels.run import run_kernel
from cobench.measure.kernels.suites import KernelSpec

SHAPES = [(1024, 1024, 1024), (1024, 4096, 1024), (2048, 2048, 2048)]
COPY_ELEMENTS = 1 << 26  # 256 MiB per fp32 tensor: far beyond any cache


def best_rate(fn, work: float, seconds: float = 1.5) -> float:  # noqa: ANN001
    """Median rate of a bare loop (after warm-up)."""
    for _ in range(3):
        fn()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return work / float(np.median(times))


def main() -> int:
    ok = True
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; numpy {np.__version__}")
    for m, n, k in SHAPES:
        flops = 2 * m * n * k
        ours = run_kernel(KernelSpec("bench", "gemm", {"m": m, "n": n, "k": k}, "fp32")).flops_per_s
        a, b = torch.randn(m, k), torch.randn(k, n)
        bare = best_rate(lambda a=a, b=b: torch.matmul(a, b), flops)
        an, bn = a.numpy(), b.numpy()
        nump = best_rate(lambda an=an, bn=bn: an @ bn, flops)
        ratio = ours / max(bare, nump)
        ok &= ratio >= 0.9
        print(
            f"gemm {m}x{n}x{k} fp32: cobench {ours / 1e9:.1f} GFLOP/s, torch.matmul {bare / 1e9:.1f}, "
            f"numpy {nump / 1e9:.1f} -> {ratio:.0%} of the best {'PASS' if ratio >= 0.9 else 'FAIL'}"
        )
    ours = run_kernel(KernelSpec("bench", "copy", {"elements": COPY_ELEMENTS}, "fp32")).bytes_per_s
    src, dst = torch.randn(COPY_ELEMENTS), torch.empty(COPY_ELEMENTS)
    bare = best_rate(lambda: dst.copy_(src), 2 * COPY_ELEMENTS * 4)
    ratio = ours / bare
    ok &= ratio >= 0.9
    print(
        f"copy {COPY_ELEMENTS * 4 / 2**20:.0f} MiB fp32: cobench {ours / 1e9:.2f} GB/s, tensor.copy_ {bare / 1e9:.2f} "
        f"GB/s -> {ratio:.0%} {'PASS' if ratio >= 0.9 else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
