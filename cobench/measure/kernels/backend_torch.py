"""Kernels as torch calls (CPU or CUDA): what an engine's kernels do for each operator kind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cobench.measure.kernels.suites import KernelSpec

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def native_precisions(device: str) -> set[str]:
    """Precisions this device runs in hardware: a CPU without bf16/fp16 units emulates them ~100x slower,
    which is worth knowing but not worth minutes of default benchmarking."""
    if device == "cuda":
        return set(TORCH_DTYPES)
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return {"fp32"}
    native = {"fp32"}
    if "avx512_bf16" in flags or "amx_bf16" in flags:
        native.add("bf16")
    if "avx512_fp16" in flags or "amx_fp16" in flags:
        native.add("fp16")
    return native


def last_level_cache_bytes(device: str) -> int:
    """L2 of a GPU, or the largest CPU cache level from sysfs (fallback 32 MiB)."""
    import torch

    if device == "cuda":
        return int(torch.cuda.get_device_properties(0).L2_cache_size)
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip()
        scale = {"K": 1 << 10, "M": 1 << 20}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KM")) * scale)
    return max(sizes, default=32 << 20)


def _make(kind: str, s: dict[str, int], dtype: Any, device: str, gen: Any) -> tuple[list[Any], Callable[..., Any]]:
    """Operands and the operation, as torch calls (what an engine's kernels do for this op)."""
    import torch
    from torch.nn import functional as F

    def rnd(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen, dtype=torch.float32, device=device).to(dtype)

    if kind == "gemm":
        return [rnd(s["m"], s["k"]), rnd(s["k"], s["n"])], torch.matmul
    if kind == "attention":
        b, h, q, kv, d = s["batch"], s["heads"], s["q"], s["kv"], s["head_dim"]
        return [rnd(b, h, q, d), rnd(b, h, kv, d), rnd(b, h, kv, d)], F.scaled_dot_product_attention
    if kind == "gather":
        table = rnd(s["vocab"], s["dim"])
        idx = torch.randint(0, s["vocab"], (s["rows"],), generator=gen, device=device)
        return [table, idx], lambda t, i: F.embedding(i, t)
    if kind == "copy":
        return [rnd(s["elements"]), rnd(s["elements"])], lambda dst, src: dst.copy_(src)
    if kind == "triad":  # c = a + 2 b, into a preallocated c (STREAM's triad)
        n = s["elements"]
        return [rnd(n), rnd(n), rnd(n)], lambda a, b, c: torch.add(a, b, alpha=2.0, out=c)
    x = rnd(s["rows"], s["cols"])
    if kind == "rmsnorm":
        w = rnd(s["cols"])
        return [x, w], lambda x, w: F.rms_norm(x, (x.shape[-1],), w)
    if kind == "softmax":
        return [x], lambda x: torch.softmax(x, dim=-1)
    if kind == "silu_mul":
        return [x, rnd(s["rows"], s["cols"])], lambda a, b: F.silu(a) * b
    return [x, rnd(s["rows"], s["cols"])], torch.add


def torch_calls(spec: KernelSpec, device: str) -> tuple[int, Callable[[int], Callable[[], Any]]]:
    """Operand bytes, and a factory of independent calls (copy i > 0 clones the operands)."""
    import torch

    dtype = getattr(torch, TORCH_DTYPES[spec.precision])
    gen = torch.Generator(device=device).manual_seed(0)
    operands, op = _make(spec.kind, spec.shape, dtype, device, gen)

    def call(i: int) -> Callable[[], Any]:
        args = operands if i == 0 else [t.clone() for t in operands]

        def run() -> Any:
            with torch.inference_mode():
                return op(*args)

        return run

    return sum(t.numel() * t.element_size() for t in operands), call
