"""Kernel microbenchmarks: the ceilings a device really attains, per operator class and precision.

A suite (kernels/*.yaml) lists kernels of one kind with their shapes: GEMM at prefill shapes, GEMV /
skinny GEMM at decode shapes, attention (prefill, and decode against a KV cache), element-wise ops,
embedding gather, and memory copy / triad. Each kernel is timed by the harness on torch tensors. By
default the cache is kept cold by rotating through enough copies of the inputs to exceed twice the
last-level cache (L2 on a GPU, LLC on a CPU), so no iteration finds its operands cached. A suite marked
`warm: true` (kernels/cache.yaml) is timed on the same operands call after call instead: copies of growing
footprint then read from whichever level holds them, which is how calibration finds the cache tier.

FLOPs and bytes follow the operator model's conventions (2 per multiply-add; each operand read once and
each result written once), so attained FLOP/s and GB/s are comparable with the roofline's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import qkv_width
from cobench.arch.space import SearchSpace, load_space
from cobench.catalogue import data_files
from cobench.errors import InputError
from cobench.files import read_mapping
from cobench.validate import mapping, number, sequence, show, text

MAX_KERNEL_SIZE = 2**34  # any one dimension of a kernel shape (the footprint bounds their product)
MAX_KERNEL_BYTES = 16e9  # what one kernel's operands may occupy (a Jetson Orin NX has 16 GB in all)

KINDS = ("gemm", "attention", "rmsnorm", "softmax", "silu_mul", "add", "gather", "copy", "triad")
KERNEL_PRECISIONS = ("fp32", "fp16", "bf16")
ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}


@dataclass(frozen=True)
class KernelSpec:
    suite: str
    kind: str
    shape: dict[str, int]
    precision: str
    warm: bool = False  # timed on the same operands call after call, whatever the run's cache state

    def timed_cold(self, run_cold: bool) -> bool:
        """Whether this kernel is timed cold in a run of that cache state (a warm suite never is)."""
        return run_cold and not self.warm

    def key_fields(self) -> dict[str, Any]:
        """What identifies the kernel in the store (its warmth is part of the cache state beside it)."""
        return {"suite": self.suite, "kind": self.kind, "shape": self.shape, "precision": self.precision}

    @property
    def label(self) -> str:
        return f"{self.kind}[{','.join(f'{k}={v}' for k, v in self.shape.items())}]"


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
        name = text(data.get("name") or path.stem, f"{path.name}.name")
        suites[name] = _parse_suite(name, data, path.name)
    if names:
        unknown = [n for n in names if n not in suites]
        if unknown:
            raise InputError("suite", f"unknown suite {unknown[0]!r} (suites: {', '.join(sorted(suites))})")
    chosen = [k for n, specs in sorted(suites.items()) if not names or n in names for k in specs]
    return chosen + (space_kernels(load_space(space)) if space else [])


def _parse_suite(name: str, data: dict[str, Any], where: str) -> list[KernelSpec]:
    """A suite: `precisions` and `kernels: [{kind, shapes: [{...}]}]` (or a single top-level kind/shapes)."""
    precisions = sequence(data.get("precisions", ["fp32"]), f"{where}.precisions", 16)
    warm = data.get("warm", False)
    if not isinstance(warm, bool):
        raise InputError(f"{where}.warm", f"true or false, got {show(warm)}")
    for p in precisions:
        if not isinstance(p, str) or p not in KERNEL_PRECISIONS:
            raise InputError(f"{where}.precisions", f"{show(p)} is not one of {', '.join(KERNEL_PRECISIONS)}")
    groups = sequence(
        data.get("kernels") or [{"kind": data.get("kind"), "shapes": data.get("shapes")}], f"{where}.kernels", 1000
    )
    specs = []
    for g, group in enumerate(groups):
        kind = mapping(group, f"{where}.kernels[{g}]").get("kind")
        if not isinstance(kind, str) or kind not in KINDS:
            raise InputError(f"{where}.kernels[{g}].kind", f"one of {', '.join(KINDS)}, got {show(kind)}")
        keys = SHAPE_KEYS[kind]
        for i, shape in enumerate(sequence(group.get("shapes") or [], f"{where}.kernels[{g}].shapes", 10_000)):
            at = f"{where}.kernels[{g}].shapes[{i}]"
            if not isinstance(shape, dict) or set(shape) != set(keys):
                raise InputError(at, f"a {kind} shape has exactly {', '.join(keys)}")
            for key, size in shape.items():
                number(size, f"{at}.{key}", integer=True, low=1, high=MAX_KERNEL_SIZE)
            footprint = cost(kind, shape, 4)[1]  # fp32: the largest of the kernel precisions
            if footprint > MAX_KERNEL_BYTES:
                raise InputError(
                    at, f"needs {footprint / 1e9:.3g} GB; a kernel shape may use {MAX_KERNEL_BYTES / 1e9:g} GB"
                )
            specs += [KernelSpec(name, kind, dict(shape), p, warm) for p in precisions]
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
