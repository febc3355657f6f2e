"""Sweep: predict every candidate of a search space on a device, chunk by chunk, into the store.

The sweep id is a hash of everything that determines the results (space, device spec at its power
mode, workload, roofline parameters), so re-running the same sweep resumes: finished chunks are
skipped, and a chunk interrupted half-way was never committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import ArchBatch, kv_cache_bytes_per_token, param_counts
from cobench.arch.space import SearchSpace
from cobench.errors import InputError
from cobench.hardware.devices import DeviceSpec
from cobench.predict.latency_model import LatencyModel
from cobench.predict.operators import Counting
from cobench.predict.roofline import RooflineParams, predict
from cobench.records import content_id
from cobench.store import Store
from cobench.store.export import export_rows
from cobench.store.schema import CANDIDATE_COLUMNS

Progress = Callable[[int, int], None]  # (chunks done, chunks total)


ENGINE = Counting()  # a serving engine's conventions, unless a calibration says otherwise


@dataclass(frozen=True)
class SweepResult:
    sweep_id: str
    grid_size: int
    valid: int
    kept: int
    chunks_run: int
    chunks_skipped: int
    seconds: float


def keep_mask(
    space: SearchSpace, device: DeviceSpec, batch: ArchBatch, params: RooflineParams, counting: Counting = ENGINE
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Predict a batch; return which candidates meet the memory and latency constraints, and the columns."""
    w = space.workload
    p = predict(batch, device, w, params, counting)
    c = space.constraints
    keep = np.ones(len(batch), dtype=bool)
    if c.get("fits_memory", True):
        keep &= p.fits
    for key, value in (("max_ttft_ms", p.ttft_s), ("max_tpot_ms", p.tpot_s), ("max_e2e_ms", p.e2e_s)):
        if key in c:
            keep &= value * 1e3 <= c[key]
    counts = param_counts(batch)
    columns = {f.name: getattr(batch, f.name) for f in fields(batch)}
    columns.update(
        params_total=counts.total,
        params_active=counts.active,
        kv_bytes_per_token=kv_cache_bytes_per_token(batch, w.kv_bytes),
        ttft_s=p.ttft_s,
        tpot_s=p.tpot_s,
        e2e_s=p.e2e_s,
        peak_memory_bytes=p.peak_memory_bytes,
        fits=p.fits,
        prefill_compute_bound=p.prefill.compute_bound,
        decode_compute_bound=p.decode.compute_bound,
    )
    return keep, columns


MAX_CANDIDATES = 10_000_000  # about a minute of prediction and a GB of store on a laptop


def sweep_id(space: SearchSpace, device: DeviceSpec, params: RooflineParams, counting: Counting = ENGINE) -> str:
    """Same space, device, parameters and counting: same sweep (so it resumes); any change: a new one."""
    fingerprint = [space.source, space.workload.to_dict(), device_fingerprint(device), asdict(params)]
    if counting != ENGINE:
        fingerprint.append(asdict(counting))
    return content_id(fingerprint)


def device_fingerprint(device: DeviceSpec) -> dict[str, object]:
    return {f.name: getattr(device, f.name) for f in fields(device) if f.name != "path"}


def run_sweep(
    space: SearchSpace,
    device: DeviceSpec,
    store: Store,
    params: RooflineParams,
    device_id: str,
    progress: Progress | None = None,
    counting: Counting = ENGINE,
) -> SweepResult:
    """Predict and store every chunk not yet done; a chunk commits atomically with its marker."""
    start = time.perf_counter()
    sid = sweep_id(space, device, params, counting)
    store.sweeps.begin(
        sid,
        space.name,
        space.source,
        device_id,
        space.workload.to_dict(),
        asdict(params),
        space.grid_size,
        space.n_chunks,
    )
    done = store.sweeps.done_chunks(sid)
    ran = 0
    for k in range(space.n_chunks):
        if k in done:
            if progress:
                progress(k + 1, space.n_chunks)
            continue
        t0 = time.perf_counter()
        index, batch = space.chunk(k)
        keep, columns = keep_mask(space, device, batch, params, counting)
        columns["grid_index"] = index
        table = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in CANDIDATE_COLUMNS])[keep]
        rows = [_row(r) for r in table.tolist()]
        store.sweeps.put_chunk(sid, k, len(batch), time.perf_counter() - t0, rows)
        ran += 1
        if progress:
            progress(k + 1, space.n_chunks)
    store.sweeps.finish(sid)
    stats = store.sweeps.stats(sid)
    return SweepResult(sid, space.grid_size, stats["valid"], stats["kept"], ran, len(done), time.perf_counter() - start)


FLOAT_COLUMNS = {"kv_bytes_per_token", "ttft_s", "tpot_s", "e2e_s", "peak_memory_bytes"}


def _row(values: list[float]) -> tuple[object, ...]:
    return tuple(v if c in FLOAT_COLUMNS else int(v) for c, v in zip(CANDIDATE_COLUMNS, values, strict=True))


@dataclass(frozen=True)
class SweepSummary:
    """What `cobench sweep` reports: the run, the best candidates, and the model that predicted them."""

    result: SweepResult
    device: DeviceSpec
    space: SearchSpace
    model: LatencyModel
    sort: str
    k: int
    top: list[dict[str, Any]]

    @property
    def candidates_per_s(self) -> float | None:
        r = self.result
        return r.valid / r.seconds if r.chunks_run else None

    def to_json(self) -> dict[str, Any]:
        c = self.model.calibration
        return asdict(self.result) | {
            "device": self.device.name,
            "power_mode": self.device.mode,
            "workload": self.space.workload.to_dict(),
            "candidates_per_s": self.candidates_per_s,
            "params_source": self.model.params.source,
            "calibration": c.label if c else None,
            "intervals": c.intervals if c else None,
            "model": self.model.describe,
            "top": self.top,
        }


def sweep(
    space: SearchSpace,
    device: DeviceSpec,
    model: LatencyModel,
    store: Store,
    sort: str = "e2e_s",
    top: int = 10,
    export_to: Path | None = None,
    progress: Progress | None = None,
    max_candidates: int = MAX_CANDIDATES,
) -> SweepSummary:
    """Run (or resume) the sweep, rank its kept candidates by `sort`, and export them all if asked.
    The grid is counted exactly first: one above `max_candidates` is refused before anything is stored."""
    if space.grid_size > max_candidates:
        raise InputError(
            "space",
            f"{space.name} has {space.grid_size:,} candidates; the limit is {max_candidates:,} "
            "(narrow the grid, or raise it with --max-candidates)",
        )
    device_id = store.catalog.put_device(device)
    result = run_sweep(space, device, store, model.params, device_id, progress, model.counting)
    best = store.sweeps.candidates(result.sweep_id, sort, top)
    if export_to:
        export_rows(store.sweeps.candidates(result.sweep_id, sort), export_to)
    return SweepSummary(result, device, space, model, sort, top, best)
