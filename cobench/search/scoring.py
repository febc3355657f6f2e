"""Scoring a search space: every candidate × precision gets a predicted latency (the latency model), a
predicted loss (the loss law) and its budgets; Pareto and selection work on the result.

Training tokens default to Chinchilla's 20 per active parameter — the one place that rule lives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import ArchBatch, Architecture, param_counts
from cobench.arch.space import load_space
from cobench.errors import InputError
from cobench.fit.loss_law import LawFit
from cobench.hardware.devices import DeviceSpec
from cobench.predict.latency_model import LatencyModel
from cobench.predict.roofline import Prediction, predict
from cobench.search.pareto import runs_of
from cobench.validate import number

METRICS = ("e2e", "ttft", "tpot")
TOKENS_PER_PARAM = 20.0  # Chinchilla-optimal training tokens per (active) parameter
BUDGETS = ("latency", "memory", "params", "energy")


def default_tokens(active_params: Any, tokens: int | None) -> np.ndarray:
    """Training tokens per candidate: the given budget, else TOKENS_PER_PARAM per active parameter."""
    active = np.asarray(active_params, dtype=float)
    return np.full(active.shape, float(tokens)) if tokens else TOKENS_PER_PARAM * active


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise InputError("metric", f"one of {', '.join(METRICS)}, got {metric!r}")
    return metric


def latency_of(p: Prediction, metric: str) -> np.ndarray:
    """The latency traded against loss: end-to-end, time to first token, or time per output token."""
    return {"e2e": p.e2e_s, "ttft": p.ttft_s, "tpot": p.tpot_s}[check_metric(metric)]


def budgets(
    latency_ms: float | None, memory_gb: float | None, params: float | None, energy: float | None
) -> dict[str, float | None]:
    """Budgets in SI units (seconds, bytes, parameters, J/token) from the CLI's ms, GB, count, J/token."""
    for name, v in (
        ("max_latency_ms", latency_ms),
        ("max_memory_gb", memory_gb),
        ("max_params", params),
        ("max_energy_per_token", energy),
    ):
        if v is not None:
            number(v, name, low=0, open_low=True)  # NaN and ±inf refused, not silently "no budget"
    return {
        "latency": latency_ms / 1e3 if latency_ms else None,
        "memory": memory_gb * 1e9 if memory_gb else None,
        "params": params,
        "energy": energy,
    }


def features_of(batch: ArchBatch, tokens: np.ndarray) -> np.ndarray:
    """Architecture features that matter to both models: size, data, aspect ratio, KV sharing, FFN ratio, sparsity."""
    counts = param_counts(batch)
    return np.c_[
        np.log(np.maximum(counts.active, 1)),
        np.log(np.maximum(tokens, 1)),
        np.log(batch.d_model / batch.n_layers),
        batch.n_kv_heads / batch.n_heads,
        batch.d_ff / batch.d_model,
        np.where(batch.n_experts > 0, batch.top_k / np.maximum(batch.n_experts, 1), 1.0),
    ]


def measured_features(archs: list[Architecture]) -> np.ndarray:
    """Features of architectures already measured (trained or profiled), at their default token budget."""
    if not archs:
        return np.zeros((0, 6))
    batch = ArchBatch.of(archs)
    return features_of(batch, default_tokens(param_counts(batch).active, None))


@dataclass(frozen=True)
class Scored:
    """Every candidate × precision: architecture columns, predicted latency and loss, and the budgets."""

    batch: ArchBatch
    precision: np.ndarray
    tokens: np.ndarray
    latency: np.ndarray
    loss: np.ndarray
    memory: np.ndarray
    params: np.ndarray
    energy: np.ndarray  # J/token at the power budget (an upper bound)
    feasible: np.ndarray
    features: np.ndarray
    model: str

    def row(self, i: int) -> dict[str, Any]:
        """One candidate as data, with its architecture."""
        return {
            "index": int(i),
            "precision": str(self.precision[i]),
            "latency_s": float(self.latency[i]),
            "loss": float(self.loss[i]),
            "tokens": float(self.tokens[i]),
            "params_total": float(self.params[i]),
            "peak_memory_bytes": float(self.memory[i]),
            "energy_per_token_j": float(self.energy[i]) if np.isfinite(self.energy[i]) else None,
            "architecture": self.batch.architecture(int(i), name=f"candidate-{i}").to_dict(),
        }


@dataclass(frozen=True)
class Scoring:
    """What a space is scored at: the space and device, the loss law (a stored fit's id or law name; None for
    the newest) and token budget, the latency traded against loss, the precisions, the budgets, and the
    latency model to use per precision."""

    space: Path
    device: DeviceSpec
    law: str | None
    tokens: int | None
    metric: str
    precisions: list[str] | None
    limits: dict[str, float | None]
    model_for: Callable[[str], LatencyModel]


def _score_chunk(
    batch: ArchBatch, p: Prediction, precision: str, law: LawFit | None, tokens: int | None, metric: str, power: float
) -> dict[str, Any]:
    counts = param_counts(batch)
    d_tokens = default_tokens(counts.active, tokens)
    return {
        "batch": batch,
        "precision": np.full(len(batch), precision),
        "tokens": d_tokens,
        "latency": latency_of(p, metric),
        # without a law (select before any training run): a monotone stand-in, −log(active params)
        "loss": law.predict(runs_of(batch, d_tokens)) if law else -np.log(counts.active),
        "memory": p.peak_memory_bytes,
        "params": counts.total.astype(float),
        "energy": p.tpot_s * power,
        "fits": p.fits,
    }


def score(r: Scoring, law: LawFit | None) -> Scored:
    """Predict latency and loss of every candidate of the space at each precision, and mark the feasible."""
    space_path, d, tokens, metric, limits = r.space, r.device, r.tokens, check_metric(r.metric), r.limits
    s = load_space(space_path)
    power = d.power_max_w.value if d.power_max_w else None
    if limits.get("energy") is not None and power is None:
        raise InputError("max_energy_per_token", f"{d.name} has no power figure in its device file")
    parts, described = [], []
    for p in r.precisions or [s.workload.precision]:
        w = replace(s.workload, precision=p, kv_precision=None)
        m = r.model_for(p)
        described.append(m.describe)
        for _, _, batch in s.chunks():
            pred = predict(batch, d, w, m.params, m.counting)
            parts.append(_score_chunk(batch, pred, p, law, tokens, metric, power or np.nan))
    if not parts:
        raise InputError("space", f"{space_path} has no valid candidates")
    cat = {k: np.concatenate([x[k] for x in parts]) for k in parts[0] if k != "batch"}
    columns = {f.name: np.concatenate([getattr(x["batch"], f.name) for x in parts]) for f in fields(ArchBatch)}
    batch = ArchBatch(**columns)
    feasible = cat["fits"].copy()
    for key, limit in limits.items():
        if limit is not None:
            feasible &= cat[key] <= limit
    return Scored(
        batch,
        cat["precision"],
        cat["tokens"],
        cat["latency"],
        cat["loss"],
        cat["memory"],
        cat["params"],
        cat["energy"],
        feasible,
        features_of(batch, cat["tokens"]),
        "; ".join(dict.fromkeys(described)),
    )
