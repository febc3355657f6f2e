"""Sweep: predict every candidate of a search space on a device, chunk by chunk, into the store.

The sweep id is a hash of everything that determines the results (space, device spec at its power
mode, workload, roofline parameters), so re-running the same sweep resumes: finished chunks are
skipped, and a chunk interrupted half-way was never committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np

from cobench.architecture import ArchBatch, kv_cache_bytes_per_token, param_counts
from cobench.devices import DeviceSpec
from cobench.operators import Counting
from cobench.roofline import RooflineParams, predict
from cobench.space import SearchSpace
from cobench.store import CANDIDATE_COLUMNS, Store, content_id

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
    store.begin_sweep(
        sid,
        space.name,
        space.source,
        device_id,
        space.workload.to_dict(),
        asdict(params),
        space.grid_size,
        space.n_chunks,
    )
    done = store.done_chunks(sid)
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
        store.put_chunk(sid, k, len(batch), time.perf_counter() - t0, rows)
        ran += 1
        if progress:
            progress(k + 1, space.n_chunks)
    store.finish_sweep(sid)
    stats = store.sweep_stats(sid)
    return SweepResult(sid, space.grid_size, stats["valid"], stats["kept"], ran, len(done), time.perf_counter() - start)


FLOAT_COLUMNS = {"kv_bytes_per_token", "ttft_s", "tpot_s", "e2e_s", "peak_memory_bytes"}


def _row(values: list[float]) -> tuple[object, ...]:
    return tuple(v if c in FLOAT_COLUMNS else int(v) for c, v in zip(CANDIDATE_COLUMNS, values, strict=True))
