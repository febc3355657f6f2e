"""Sweep: predict every candidate of a search space on a device, chunk by chunk, into the store.

The sweep id is a hash of everything that determines the results (space, device spec at its power
mode, workload, roofline parameters, what is kept), so re-running the same sweep resumes: finished chunks
are skipped, and a chunk interrupted half-way was never committed. Chunks are pure work items: they run
here one after another, or spread over a cluster's CPUs (`--ray`), and only the driver writes the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import VARIANT_COLUMNS, ArchBatch, kv_cache_bytes_per_token, param_counts
from cobench.arch.space import SearchSpace
from cobench.cluster import Cluster, Local
from cobench.errors import InputError
from cobench.hardware.devices import DeviceSpec
from cobench.predict.latency_model import LatencyModel
from cobench.predict.operators import Counting
from cobench.predict.roofline import RooflineParams, predict
from cobench.records import content_id
from cobench.search.pareto import frontier
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
    kept: int  # meeting the constraints
    stored: int  # kept and stored: all of them, or only the best (`Keep.best`)
    chunks_run: int
    chunks_skipped: int
    seconds: float


LATENCIES = ("ttft_s", "tpot_s", "e2e_s")


@dataclass(frozen=True)
class Keep:
    """What a sweep stores of the candidates meeting its constraints: all of them, or (`best`) only each
    chunk's `top` by `sort` and its frontier of latency (the sort column when it is a latency, else e2e)
    against size (more parameters, lower loss). The chunks' best hold the whole grid's: a candidate in the
    grid's top k or on its frontier is so in its own chunk. That is all a cluster sends back."""

    best: bool = False
    top: int = 10
    sort: str = "e2e_s"

    @property
    def latency(self) -> str:
        column = self.sort.lstrip("-")
        return column if column in LATENCIES else "e2e_s"

    def mask(self, table: np.ndarray) -> np.ndarray:
        """Rows (CANDIDATE_COLUMNS) to store: the top k in the store's own order (ties by grid index), and
        the frontier."""
        if not self.best:
            return np.ones(len(table), dtype=bool)
        col = CANDIDATE_COLUMNS.index
        column = self.sort.lstrip("-")
        if column not in CANDIDATE_COLUMNS:
            raise InputError("sort", f"unknown column {column!r} (one of {', '.join(CANDIDATE_COLUMNS)})")
        value = table[:, col(column)] * (-1 if self.sort.startswith("-") else 1)
        keep = frontier(table[:, col(self.latency)], -table[:, col("params_total")])
        keep[np.lexsort((table[:, col("grid_index")], value))[: self.top]] = True
        return keep

    def fingerprint(self) -> dict[str, object] | None:
        return asdict(self) if self.best else None


@dataclass(frozen=True)
class Chunk:
    """One chunk predicted: what a worker sends back to the driver."""

    index: int
    n_valid: int
    n_kept: int
    seconds: float
    rows: list[tuple[object, ...]]


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
        kv_bytes_per_token=kv_cache_bytes_per_token(batch, counting.kv_element_bytes(w.kv_bytes)),
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


def sweep_id(
    space: SearchSpace, device: DeviceSpec, params: RooflineParams, counting: Counting = ENGINE, keep: Keep = Keep()
) -> str:
    """Same space, device, parameters, counting and keep: same sweep (so it resumes); any change: a new one."""
    fingerprint: list[object] = [space.source, space.workload.to_dict(), device_fingerprint(device), asdict(params)]
    if counting != ENGINE:
        fingerprint.append(asdict(counting))
    if keep.best:
        fingerprint.append(keep.fingerprint())
    return content_id(fingerprint)


def device_fingerprint(device: DeviceSpec) -> dict[str, object]:
    return {f.name: getattr(device, f.name) for f in fields(device) if f.name != "path"}


def predict_chunk(
    space: SearchSpace, device: DeviceSpec, params: RooflineParams, counting: Counting, k: int, keep: Keep
) -> Chunk:
    """Chunk k predicted and reduced to what is kept: pure, so it runs on any node."""
    t0 = time.perf_counter()
    index, batch = space.chunk(k)
    meets, columns = keep_mask(space, device, batch, params, counting)
    columns["grid_index"] = index
    table = np.column_stack([np.asarray(columns[c], dtype=np.float64) for c in CANDIDATE_COLUMNS])[meets]
    variants = np.column_stack([np.asarray(columns[c], dtype=np.int64) for c in VARIANT_COLUMNS])[meets]
    stored = keep.mask(table)
    rows = _rows(table[stored], variants[stored])
    return Chunk(k, len(batch), len(table), time.perf_counter() - t0, rows)


def run_sweep(
    space: SearchSpace,
    device: DeviceSpec,
    store: Store,
    params: RooflineParams,
    device_id: str,
    progress: Progress | None = None,
    counting: Counting = ENGINE,
    keep: Keep = Keep(),
    cluster: Cluster | None = None,
) -> SweepResult:
    """Predict and store every chunk not yet done (here, or one per CPU of `cluster`, as they finish); a
    chunk commits atomically with its marker."""
    start = time.perf_counter()
    sid = sweep_id(space, device, params, counting, keep)
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
    if progress and done:
        progress(len(done), space.n_chunks)
    items = [(space, device, params, counting, k, keep) for k in range(space.n_chunks) if k not in done]
    for ran, (_, chunk, _node) in enumerate((cluster or Local()).map_unordered(predict_chunk, items, {"CPU": 1}), 1):
        store.sweeps.put_chunk(sid, chunk.index, chunk.n_valid, chunk.seconds, chunk.rows, chunk.n_kept)
        if progress:
            progress(len(done) + ran, space.n_chunks)
    store.sweeps.finish(sid)
    stats = store.sweeps.stats(sid)
    return SweepResult(sid, space.grid_size, stats["valid"], stats["kept"], stats["stored"], len(items), len(done),
                       time.perf_counter() - start)  # fmt: skip


FLOAT_COLUMNS = {"kv_bytes_per_token", "ttft_s", "tpot_s", "e2e_s", "peak_memory_bytes"}


def _rows(table: np.ndarray, variants: np.ndarray) -> list[tuple[object, ...]]:
    """Stored rows, built column by column (a Python loop per value cost more than the prediction): the
    numeric columns, then the variant columns that differ from their defaults as JSON — None for a plain
    model, so most spaces store no text at all."""
    columns = [table[:, j].tolist() if c in FLOAT_COLUMNS else table[:, j].astype(np.int64).tolist()
               for j, c in enumerate(CANDIDATE_COLUMNS)]  # fmt: skip
    texts: list[str | None] = [None] * len(table)
    defaults = np.array(list(VARIANT_COLUMNS.values()))
    for i in np.flatnonzero(np.any(variants != defaults, axis=1)):
        changed = {k: int(v) for k, v, d in zip(VARIANT_COLUMNS, variants[i], defaults, strict=True) if v != d}
        texts[i] = json.dumps(changed, sort_keys=True)
    return list(zip(*columns, texts, strict=True))


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
    best_only: bool = False,
    cluster: Cluster | None = None,
) -> SweepSummary:
    """Run (or resume) the sweep, rank its kept candidates by `sort`, and export them all if asked.
    Storing every candidate, the grid is counted exactly first: one above `max_candidates` is refused before
    anything is stored; keeping only the best (`best_only`), any size goes."""
    if space.grid_size > max_candidates and not best_only:
        raise InputError(
            "space",
            f"{space.name} has {space.grid_size:,} candidates; the limit is {max_candidates:,} "
            "(narrow the grid, keep only the best with --keep best, or raise it with --max-candidates)",
        )
    keep = Keep(best_only, top, sort)
    keep.mask(np.zeros((0, len(CANDIDATE_COLUMNS))))  # a bad --sort says so before any work
    device_id = store.catalog.put_device(device)
    result = run_sweep(space, device, store, model.params, device_id, progress, model.counting, keep, cluster)
    best = store.sweeps.candidates(result.sweep_id, sort, top)
    if export_to:
        export_rows(store.sweeps.candidates(result.sweep_id, sort), export_to)
    return SweepSummary(result, device, space, model, sort, top, best)
