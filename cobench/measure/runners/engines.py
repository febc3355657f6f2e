"""What the deployment-engine runners (ort_genai.py, llama_cpp.py) share: the check of an engine's logits
against cobench's torch module, the threads they run, and the part of the environment record every built
engine has."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.measure.export import Exported, ExportError, rel_error


def check_last_logits(
    engine: str,
    arch: Architecture,
    precision: str,
    module: Any,
    logits_after: Callable[[np.ndarray], np.ndarray],
    tolerance: float,
    norm: str,
) -> float:
    """The engine's last logits after a random 16-token prompt (`logits_after(ids)`, ids (1, 16)) against
    the torch module's, relative to their spread; an ExportError past `tolerance`."""
    import torch

    ids = np.random.default_rng(1).integers(0, arch.vocab_size, (1, 16))
    got = np.asarray(logits_after(ids), dtype=np.float32).reshape(-1)
    with torch.no_grad():
        want = module(torch.from_numpy(ids))[0].numpy().reshape(-1)
    error = rel_error(got, want, norm)
    if not error <= tolerance:
        raise ExportError(f"{engine} model of {arch.name} ({precision}) differs from torch by {error:.3g} "
                          f"(tolerance {tolerance})")  # fmt: skip
    return error


def cpu_threads(options: dict[str, Any]) -> int:
    """The CPU threads an engine is told to run: `--threads`, else every CPU this process may run on (what
    `--threads` promises). Always set explicitly: an engine's own default is not that (ORT GenAI 0.18 left
    to itself ran one intra-op thread on a 2-core VM, half the machine, while the record said two)."""
    if options.get("threads"):
        return int(options["threads"])
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return max(1, len(usable))


def built_record(built: Exported, load_s: float, capacity: int) -> dict[str, Any]:
    """How the engine's model was built and loaded, for the environment record."""
    meta = built.meta
    return {
        "export_key": built.key,
        "export_cache_hit": meta.get("cache_hit"),
        "export_sha256": meta["sha256"],
        "export_validation": meta["validation"],
        "export_s": meta["build_s"],
        "session_create_s": load_s,
        "kv_capacity": capacity,
        "search": "greedy",
    }
