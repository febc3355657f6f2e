"""Predictions of named architectures (`cobench predict`, and the prediction stored beside a profile).

A prediction record is one candidate's prediction as data: latencies with their interval when the model
is calibrated, what bounds each phase, bytes and FLOPs, memory and whether it fits, and which model made
it — so every number can be shown next to how wrong it can be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from cobench.arch.architecture import Architecture
from cobench.arch.workload import Workload
from cobench.hardware.devices import DeviceSpec
from cobench.predict.latency_model import LatencyModel
from cobench.predict.operators import Counting
from cobench.predict.roofline import Prediction, breakdown, predict
from cobench.store import Store


def prediction_record(a: Architecture, d: DeviceSpec, w: Workload, p: Prediction, m: LatencyModel) -> dict[str, Any]:
    """One candidate's prediction as data (index 0 of a 1-candidate Prediction), with its interval if known."""
    intervals = m.interval_fields(float(p.ttft_s[0]), float(p.tpot_s[0]))
    return {
        "arch": a.name,
        "device": d.name,
        "power_mode": d.mode,
        "workload": w.to_dict(),
        "ttft_s": float(p.ttft_s[0]),
        "tpot_s": float(p.tpot_s[0]),
        "tpot_refill_s": float(p.tpot_refill_s[0]),
        "tpot_release_s": float(p.tpot_release_s[0]),
        "e2e_s": float(p.e2e_s[0]),
        "decode_tokens_per_s": 1 / float(p.tpot_s[0]),
        "prefill_bound": "compute" if p.prefill.compute_bound[0] else "memory",
        "decode_bound": "compute" if p.decode.compute_bound[0] else "memory",
        "prefill_flops": float(p.prefill.flops[0]),
        "prefill_bytes": float(p.prefill.bytes[0]),
        "decode_flops_per_token": float(p.decode.flops[0]),
        "decode_bytes_per_token": float(p.decode.bytes[0]),
        "weight_bytes": float(p.weight_bytes[0]),
        "kv_cache_bytes": float(p.kv_cache_bytes[0]),
        "activation_bytes": float(p.activation_bytes[0]),
        "peak_memory_bytes": float(p.peak_memory_bytes[0]),
        "usable_memory_bytes": d.usable_memory_bytes,
        "fits": bool(p.fits[0]),
        "params_source": p.params_source,
        **intervals,
        "interval_level": m.calibration.intervals["ttft"]["level"] if intervals["ttft_interval_s"] else None,
        "calibration": m.calibration.label if m.calibration else None,
        "model": m.describe,
    }


def predicted_beside_profile(
    a: Architecture, d: DeviceSpec, w: Workload, contexts: tuple[int, ...], m: LatencyModel
) -> dict[str, Any]:
    """The prediction stored beside a measurement: the record plus one decode step at each timed context (a step
    repeated on one cache: warm, no refill)."""
    step = {c: Workload(w.batch, c, 1, w.precision, w.kv_precision) for c in contexts}
    per_context = {c: float(predict(a, d, s, m.params, m.counting).decode.time_s[0]) for c, s in step.items()}
    return prediction_record(a, d, w, predict(a, d, w, m.params, m.counting), m) | {"decode_s": per_context}


@dataclass(frozen=True)
class Predicted:
    """What `cobench predict` shows: a record per (device, architecture), and the per-operator breakdown
    when exactly one pair was asked for."""

    records: list[dict[str, Any]]
    operators: list[dict[str, Any]]
    workload: Workload

    def to_json(self) -> Any:
        return self.records[0] | {"operators": self.operators} if self.operators else self.records


def predict_all(
    archs: list[Architecture],
    devices: list[DeviceSpec],
    w: Workload,
    model_for: Callable[[DeviceSpec], LatencyModel],
    counting_override: dict[str, Any],
    store: Store | None,
    with_operators: bool,
) -> Predicted:
    """Every architecture on every device; stored as predictions unless `store` is None. An engine that keeps
    its cache in a type of its own (llama.cpp: F16) is predicted, recorded and shown with that KV type."""
    records, details, used = [], [], set()
    for d in devices:
        m = model_for(d)
        counting: Counting = replace(m.counting, **counting_override)
        wd = counting.workload(w)
        used.add(wd)
        for a in archs:
            p = predict(a, d, wd, m.params, counting)
            rec = prediction_record(a, d, wd, p, m)
            records.append(rec)
            if store is not None:
                arch_id, device_id = store.catalog.put_architecture(a), store.catalog.put_device(d)
                store.predictions.put(arch_id, device_id, wd.to_dict(), asdict(m.params), rec)
            if with_operators and len(archs) * len(devices) == 1:
                details = [asdict(r) for r in breakdown(a, d, wd, m.params, counting)]
    return Predicted(records, details, used.pop() if len(used) == 1 else w)
