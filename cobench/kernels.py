"""Kernel microbenchmarks: the ceilings a device really attains, per operator class and precision.

A suite (kernels/*.yaml) lists kernels of one kind with their shapes: GEMM at prefill shapes, GEMV /
skinny GEMM at decode shapes, attention (prefill, and decode against a KV cache), element-wise ops,
embedding gather, and memory copy / triad. Each kernel is timed by the harness on torch tensors. By
default the cache is kept cold by rotating through enough copies of the inputs to exceed twice the
last-level cache (L2 on a GPU, LLC on a CPU), so no iteration finds its operands cached.

FLOPs and bytes follow the operator model's conventions (2 per multiply-add; each operand read once and
each result written once), so attained FLOP/s and GB/s are comparable with the roofline's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench.architecture import qkv_width
from cobench.catalogue import data_files
from cobench.errors import InputError
from cobench.runners import time_cuda, time_host
from cobench.space import SearchSpace, load_space
from cobench.spec import read_mapping
from cobench.stats import summarize
from cobench.timing import HarnessConfig, run

KINDS = ("gemm", "attention", "rmsnorm", "softmax", "silu_mul", "add", "gather", "copy", "triad")
TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
KERNEL_BACKENDS = ("torch", "ort", "trt")
KERNEL_HARNESS = HarnessConfig(warmup_s=0.2, min_iters=10, min_time_s=0.3, max_time_s=2.0, target_rel_ci=0.01)


@dataclass(frozen=True)
class KernelSpec:
    suite: str
    kind: str
    shape: dict[str, int]
    precision: str

    @property
    def label(self) -> str:
        return f"{self.kind}[{','.join(f'{k}={v}' for k, v in self.shape.items())}]"


@dataclass(frozen=True)
class KernelResult:
    spec: KernelSpec
    flops: float
    bytes: float
    median_s: float
    summary: dict[str, Any]
    cold: bool

    @property
    def flops_per_s(self) -> float:
        return self.flops / self.median_s

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.median_s

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else float("inf")


def from_row(row: dict[str, Any]) -> KernelResult:
    """A stored kernel result (`Store.kernels`) as a KernelResult."""
    spec = KernelSpec(row["suite"], row["kind"], row["shape"], row["precision"])
    return KernelResult(spec, row["flops"], row["bytes"], row["median_s"], row["summary"], bool(row["cold"]))


SHAPE_KEYS = {
    "gemm": ("m", "n", "k"),
    "attention": ("batch", "heads", "q", "kv", "head_dim"),
    "rmsnorm": ("rows", "cols"),
    "softmax": ("rows", "cols"),
    "silu_mul": ("rows", "cols"),
    "add": ("rows", "cols"),
    "gather": ("vocab", "dim", "rows"),
    "copy": ("elements",),
    "triad": ("elements",),
}


def cost(kind: str, s: dict[str, int], elem_bytes: float) -> tuple[float, float]:
    """(FLOPs, bytes) of one call, with the operator model's conventions."""
    if kind == "gemm":
        m, n, k = s["m"], s["n"], s["k"]
        return 2 * m * n * k, (m * k + k * n + m * n) * elem_bytes
    if kind == "attention":
        b, h, q, kv, d = s["batch"], s["heads"], s["q"], s["kv"], s["head_dim"]
        return 4 * b * h * q * kv * d, (2 * b * h * q * d + 2 * b * h * kv * d) * elem_bytes
    if kind == "gather":
        return 0.0, 2 * s["rows"] * s["dim"] * elem_bytes
    if kind in ("copy", "triad"):
        n = s["elements"]
        return (2 * n if kind == "triad" else 0.0), (3 if kind == "triad" else 2) * n * elem_bytes
    rows, cols = s["rows"], s["cols"]
    reads = {"rmsnorm": 1, "softmax": 1, "silu_mul": 2, "add": 2}[kind]
    per_element = {"rmsnorm": 4, "softmax": 5, "silu_mul": 5, "add": 1}[kind]
    return per_element * rows * cols, (reads + 1) * rows * cols * elem_bytes


def load_suites(
    names: list[str] | None = None, extra: list[Path] | None = None, space: Path | None = None
) -> list[KernelSpec]:
    """Kernel specs from kernels/*.yaml (plus user paths, plus a search space's shapes); unknown suites
    or kinds are named."""
    suites: dict[str, list[KernelSpec]] = {}
    for path in data_files("kernels", extra):
        data = read_mapping(path, "kernels")
        name = data.get("name") or path.stem
        suites[name] = _parse_suite(name, data, path.name)
    if names:
        unknown = [n for n in names if n not in suites]
        if unknown:
            raise InputError("suite", f"unknown suite {unknown[0]!r} (suites: {', '.join(sorted(suites))})")
    chosen = [k for n, specs in sorted(suites.items()) if not names or n in names for k in specs]
    return chosen + (space_kernels(load_space(space)) if space else [])


def _parse_suite(name: str, data: dict[str, Any], where: str) -> list[KernelSpec]:
    """A suite: `precisions` and `kernels: [{kind, shapes: [{...}]}]` (or a single top-level kind/shapes)."""
    precisions = data.get("precisions", ["fp32"])
    for p in precisions:
        if p not in TORCH_DTYPES:
            raise InputError(f"{where}.precisions", f"{p!r} is not one of {', '.join(TORCH_DTYPES)}")
    groups = data.get("kernels") or [{"kind": data.get("kind"), "shapes": data.get("shapes")}]
    specs = []
    for g, group in enumerate(groups):
        kind = group.get("kind")
        if kind not in KINDS:
            raise InputError(f"{where}.kernels[{g}].kind", f"one of {', '.join(KINDS)}, got {kind!r}")
        keys = SHAPE_KEYS[kind]
        for i, shape in enumerate(group.get("shapes") or []):
            if not isinstance(shape, dict) or set(shape) != set(keys):
                raise InputError(f"{where}.kernels[{g}].shapes[{i}]", f"a {kind} shape has exactly {', '.join(keys)}")
            if any(not isinstance(v, int) or v < 1 for v in shape.values()):
                raise InputError(f"{where}.kernels[{g}].shapes[{i}]", "sizes must be positive integers")
            specs += [KernelSpec(name, kind, dict(shape), p) for p in precisions]
    if not specs:
        raise InputError(f"{where}.kernels", "a suite needs at least one kernel shape")
    return specs


def space_kernels(space: SearchSpace, per_kind: int = 8) -> list[KernelSpec]:
    """The kernel shapes a search space's candidates run at its workload: GEMMs of the prefill (m = B·P)
    and GEMVs of decode (m = B), attention over the prompt and one decode step against the full cache,
    norms / activations / softmax / residuals at the prompt's rows, and the embedding gather. Of the
    distinct shapes of each kind, `per_kind` are kept, spread evenly over their size."""
    w = space.workload
    kernel_precision = "fp32" if w.precision == "fp32" else "fp16"  # activation type of the other precisions
    rows_p, ctx = w.batch * w.prompt, w.prompt + w.generate
    found: dict[str, list[np.ndarray]] = {}
    for _, _, a in space.chunks():
        moe = a.n_experts > 0
        gated = np.where(a.gated, 2, 1)
        ffn = np.where(moe, a.d_ff_expert, a.d_ff)  # a routed expert's GEMMs see ~tokens·k/E rows
        m_ffn = np.where(moe, np.ceil(rows_p * a.top_k / np.maximum(a.n_experts, 1)), rows_p).astype(np.int64)
        q_width = a.n_heads * a.head_dim
        n = np.ones_like(a.d_model)
        linear = ((qkv_width(a), a.d_model), (a.d_model, q_width))
        shapes = {
            "gemm": [np.c_[m * n, out, inp] for m in (rows_p, w.batch) for out, inp in linear]
            + [np.c_[m, gated * ffn, a.d_model] for m in (m_ffn, w.batch * n)]
            + [np.c_[m, a.d_model, ffn] for m in (m_ffn, w.batch * n)]
            + [np.c_[w.batch * n, a.vocab_size, a.d_model]],
            "attention": [
                np.c_[w.batch * n, a.n_heads, w.prompt * n, w.prompt * n, a.head_dim],
                np.c_[w.batch * n, a.n_heads, n, ctx * n, a.head_dim],
            ],
            "rmsnorm": [np.c_[rows_p * n, a.d_model]],
            "add": [np.c_[rows_p * n, a.d_model]],
            "silu_mul": [np.c_[m_ffn, ffn]],
            "softmax": [np.c_[w.batch * a.n_heads * w.prompt, w.prompt * n]],
            "gather": [np.c_[a.vocab_size, a.d_model, rows_p * n]],
        }
        for kind, arrays in shapes.items():
            found.setdefault(kind, []).append(np.unique(np.concatenate(arrays), axis=0))
    specs = []
    for kind, parts in found.items():
        unique = np.unique(np.concatenate(parts), axis=0)
        size = np.prod(unique.astype(np.float64), axis=1)
        picks = unique[np.argsort(size)][
            np.unique(np.linspace(0, len(unique) - 1, min(per_kind, len(unique))).round().astype(int))
        ]
        keys = SHAPE_KEYS[kind]
        specs += [
            KernelSpec(f"space:{space.name}", kind, dict(zip(keys, map(int, row), strict=True)), kernel_precision)
            for row in picks
        ]
    return specs


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


def _torch_calls(spec: KernelSpec, device: str) -> tuple[int, Callable[[int], Callable[[], Any]]]:
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


def run_kernel(
    spec: KernelSpec,
    device: str = "cpu",
    cold: bool = True,
    cfg: HarnessConfig = KERNEL_HARNESS,
    cache_bytes: int | None = None,
    backend: str = "torch",
) -> KernelResult:
    """Time one kernel on torch, ORT (CPU) or TensorRT; cold: rotate through copies of the operands totalling > 2x the
    last-level cache, so no call finds its operands cached."""
    if backend in ("ort", "trt"):
        from cobench.kernels_onnx import ort_calls, trt_calls

        operand_bytes, make_call = (ort_calls if backend == "ort" else trt_calls)(spec)
    else:
        operand_bytes, make_call = _torch_calls(spec, device)
    flops, nbytes = cost(spec.kind, spec.shape, ELEMENT_BYTES[spec.precision])
    copies = 1
    if cold:
        copies = max(1, int(np.ceil(2 * (cache_bytes or last_level_cache_bytes(device)) / max(operand_bytes, 1))) + 1)
        copies = min(copies, 256)
    calls = [make_call(i) for i in range(copies)]
    state = {"i": 0}
    timer = time_cuda if backend == "trt" or (device == "cuda" and backend == "torch") else time_host

    def step() -> float:
        fn = calls[state["i"] % copies]
        state["i"] += 1
        return timer(fn)

    samples = run(step, cfg)
    summary = summarize(samples.samples_s)
    return KernelResult(spec, flops, nbytes, summary.median_s, asdict(summary), cold)


@dataclass(frozen=True)
class Ceilings:
    """Measured peaks: FLOP/s per precision (best GEMM) and bytes/s (best copy/triad)."""

    flops_per_s: dict[str, float]
    bytes_per_s: float | None


def ceilings(results: list[KernelResult]) -> Ceilings:
    compute: dict[str, float] = {}
    for r in results:
        if r.spec.kind == "gemm":
            compute[r.spec.precision] = max(compute.get(r.spec.precision, 0.0), r.flops_per_s)
    bandwidth = [r.bytes_per_s for r in results if r.spec.kind in ("copy", "triad")]
    return Ceilings(compute, max(bandwidth) if bandwidth else None)
