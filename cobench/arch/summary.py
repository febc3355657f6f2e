"""What `cobench arch show` reports about one architecture, as plain data."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture, as_arch_like, kv_cache_bytes_per_token, param_counts
from cobench.arch.precision import KV_PRECISIONS, PRECISIONS
from cobench.arch.spec import presets
from cobench.predict.operators import Counting, forward_ops


def _first(x: Any) -> float:
    """Op sizes are scalars or 1-element arrays here (one architecture)."""
    return float(np.asarray(x).flat[0])


def arch_summary(a: Architecture, prompt: int = 1024) -> dict[str, Any]:
    """Everything `arch show` reports, as data (the human view renders this same dict)."""
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
    return {
        "architecture": a.to_dict(),
        "params": asdict(counts),
        "published_total": preset.published_total if preset else None,
        "matches_published": (preset.published_total == counts.total) if preset and preset.published_total else None,
        "kv_cache_bytes_per_token": {k: kv_cache_bytes_per_token(a, PRECISIONS[k].weight_bytes) for k in KV_PRECISIONS},
        "weight_bytes": {k: counts.total * p.weight_bytes for k, p in PRECISIONS.items()},
        "flops_per_token": {
            "prefill": sum(_first(o.count) * _first(o.flops) for o in prefill) / prompt,
            "decode": sum(_first(o.count) * _first(o.flops) for o in decode),
            "at_context": prompt,
        },
        "operators": ops,
    }
