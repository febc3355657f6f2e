"""What `cobench arch show` reports about one architecture, as plain data."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from cobench.arch.architecture import (
    Architecture,
    as_arch_like,
    cache_elements,
    kv_cache_bytes_per_token,
    param_counts,
)
from cobench.arch.gguf_types import weight_bytes
from cobench.arch.precision import KV_PRECISIONS, PRECISIONS
from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.predict.operators import Counting, forward_ops
from cobench.predict.roofline import memory_footprint


def _first(x: Any) -> float:
    """Op sizes are scalars or 1-element arrays here (one architecture)."""
    return float(np.asarray(x).flat[0])


def arch_summary(a: Architecture, prompt: int = 1024, context: int | None = None) -> dict[str, Any]:
    """Everything `arch show` reports, as data (the human view renders this same dict); the cache (and the
    recurrent state of linear and convolution layers) per sequence at `context` tokens (default: the prompt),
    by layer kind, and the peak memory of one sequence there at each precision."""
    context = context or prompt
    counts = param_counts(a)
    counting = Counting()
    x = as_arch_like(a)
    prefill = forward_ops(x, 1, prompt, 0, 2, 2, 2, counting)
    decode = forward_ops(x, 1, 1, prompt, 2, 2, 2, counting)
    ops = [
        {
            "name": p.name,
            "class": p.op_class,
            "count": int(_first(p.count)),
            "prefill_flops": _first(p.flops),
            "decode_flops": _first(d.flops),
            "decode_weight_bytes_fp16": _first(d.weight_bytes),
        }
        for p, d in zip(prefill, decode, strict=True)
        if _first(p.flops) or _first(p.bytes)
    ]
    preset = presets().get(a.name)
    elements = {k: float(np.asarray(v).flat[0]) for k, v in cache_elements(x, context).items()}
    peak = {}
    for k in PRECISIONS:
        w = Workload(batch=1, prompt=max(context - 1, 1), generate=1, precision=k)  # the cache holds `context`
        weights, kv, acts = memory_footprint(as_arch_like(a), w, counting)  # type: ignore[arg-type]
        peak[k] = float(np.asarray(weights + kv + acts).flat[0])
    return {
        "architecture": a.to_dict(),
        "params": asdict(counts),
        "published_total": preset.published_total if preset else None,
        "matches_published": (preset.published_total == counts.total) if preset and preset.published_total else None,
        "layer_kinds": {k: n for k, n in a.layer_counts.items() if n},
        "kv_cache_bytes_per_token": {k: kv_cache_bytes_per_token(a, PRECISIONS[k].weight_bytes) for k in KV_PRECISIONS},
        "cache_at_context": {
            "context": context,
            "elements_by_kind": {k: v for k, v in elements.items() if v},
            "bytes": {k: sum(elements.values()) * PRECISIONS[k].weight_bytes for k in KV_PRECISIONS},
        },
        "peak_memory_bytes_at_context": peak,
        "weight_bytes": {k: _first(weight_bytes(x, k)) for k in PRECISIONS},
        "flops_per_token": {
            "prefill": sum(_first(o.count) * _first(o.flops) for o in prefill) / prompt,
            "decode": sum(_first(o.count) * _first(o.flops) for o in decode),
            "at_context": prompt,
        },
        "operators": ops,
    }
