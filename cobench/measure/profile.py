"""`cobench profile`: measure candidates on this machine, each in its own process, next to the prediction.

Each candidate runs in a worker subprocess (`cobench.measure.worker`) with a timeout, so a crash, an OOM kill or
a hang is recorded with its reason and the rest go on. A model whose predicted footprint exceeds the
device's usable memory is refused before anything is built. Results are keyed by a hash of what
determines them (architecture, precision, backend, device, workload, contexts, harness); a candidate
already measured is skipped, so a re-run after a crash or Ctrl-C resumes without redoing work.
Candidates run in a shuffled order (seeded, recorded) with a cool-down between them. With a cluster
(`--ray`), each round runs on a node carrying the device as a resource, one at a time per board; only
this process writes the store, and the environment record says which node measured each round.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from cobench.arch.architecture import ArchBatch, Architecture
from cobench.arch.workload import Workload
from cobench.cluster import Cluster, Local
from cobench.errors import ClusterError, InputError
from cobench.hardware.devices import DeviceSpec
from cobench.measure.export import DEFAULT_CACHE
from cobench.measure.generation import E2E_TOLERANCE
from cobench.measure.result import Measured, ProfileResult
from cobench.measure.rounds import bad_rounds, choose, combine
from cobench.measure.stats import median_ci
from cobench.measure.telemetry.nvml import BENIGN
from cobench.measure.timing import HarnessConfig
from cobench.predict.latency_model import LatencyModel, backend_counting
from cobench.predict.predictions import predicted_beside_profile
from cobench.records import content_id
from cobench.store import Store

WORKER = [sys.executable, "-m", "cobench.measure.worker"]
# What a profile measures; part of its key, so a result measured the old way is never reused as a new one.
# 2: TPOT from the decode steps inside real generation (measure/generation.py), not a step on a fixed cache.
# 3: and TTFT from the prefill inside those generations; ORT runs the engine graph (fused
#    GroupQueryAttention, preallocated KV cache written in place).
# 4: torch runs a static KV cache written in place too (arch/model.py StaticCache).
# 5: ORT's engine runner binds a cache once and a step only its token and lengths (~40 µs a step less).
MEASUREMENT = 6  # ORT GenAI runs the threads `--threads` promises (all CPUs), not its own default (one on two cores)


@dataclass(frozen=True)
class ProfileSettings:
    backend: str = "ort"
    runner_device: str = "cpu"  # ort: cpu | cuda | tensorrt; torch: cpu | cuda
    workload: Workload = field(default_factory=Workload)
    extra_contexts: tuple[int, ...] = ()
    harness: HarnessConfig = field(default_factory=HarnessConfig)
    e2e_min_iters: int = 3
    telemetry: str = "auto"  # auto | jetson | nvml | cpu | off
    rate_hz: float = 20.0
    idle_s: float = 1.0
    cooldown_s: float = 1.0
    timeout_s: float = 600.0
    build_timeout_s: float = 1800.0  # added for GPU engines, whose first build can take minutes (then cached)
    threads: int | None = None
    cuda_graphs: bool = False
    cache_dir: Path = DEFAULT_CACHE
    seed: int = 0
    retry_failed: bool = False
    rounds: int = 3  # short rounds per candidate, interleaved across candidates (measure/rounds.py)

    @property
    def generated_contexts(self) -> tuple[int, ...]:
        """Contexts of the decode steps inside generation: step i runs against P + i cached positions."""
        w = self.workload
        return tuple(range(w.prompt, w.prompt + w.generate - 1))

    @property
    def fixed_contexts(self) -> tuple[int, ...]:
        """Contexts timed as a step on a fixed cache: the extra ones asked for, or the prompt when a
        generation has no decode step to time (G = 1)."""
        extra = set(self.extra_contexts) or ({self.workload.prompt} if self.workload.generate < 2 else set())
        return tuple(sorted(extra))

    @property
    def capacity(self) -> int:
        """Positions a preallocated KV cache needs: the whole generation, and each fixed-cache step."""
        w = self.workload
        return max([w.prompt + w.generate, *(c + 1 for c in self.fixed_contexts)])

    @property
    def contexts(self) -> tuple[int, ...]:
        """Every decode context measured (and predicted beside the measurement)."""
        return tuple(sorted(set(self.generated_contexts) | set(self.fixed_contexts)))


class Candidate(NamedTuple):
    """One thing to measure: an architecture at a precision, at the run's workload or at one of its own (a
    queue job's), so that one run interleaves the rounds of a study's every workload: a slow minute of a shared
    machine then lands on one round of many candidates, not on every round of the few at one workload."""

    arch: Architecture
    precision: str
    workload: Workload | None = None  # None: the run's (ProfileSettings.workload)

    def settings(self, run: ProfileSettings) -> ProfileSettings:
        return run if self.workload is None else replace(run, workload=self.workload)


def task_for(arch: Architecture, precision: str, device: DeviceSpec, s: ProfileSettings) -> dict[str, Any]:
    """The worker's task. Its workload's KV type is the one the engine keeps (Counting.workload), so the record
    and the prediction beside it say what ran."""
    w = backend_counting(s.backend, device).workload(
        Workload(batch=s.workload.batch, prompt=s.workload.prompt, generate=s.workload.generate, precision=precision)
    )
    return {
        "arch": arch.to_dict(),
        "precision": precision,
        "backend": s.backend,
        "runner_device": s.runner_device,
        "device": device.name,
        "power_mode": device.mode,
        "workload": w.to_dict(),
        "contexts": list(s.fixed_contexts),
        "measurement": MEASUREMENT,
        "rounds": s.rounds,
        "harness": asdict(s.harness),
        "e2e_harness": {"min_iters": s.e2e_min_iters},
        "telemetry": {"kind": s.telemetry, "rate_hz": s.rate_hz},
        "idle_s": s.idle_s,
        "seed": s.seed,
        "options": {"threads": s.threads, "cuda_graphs": s.cuda_graphs, "seed": s.seed, "capacity": s.capacity}
        | engine_shapes(s),
        "cache_dir": str(s.cache_dir),
    }


def engine_shapes(s: ProfileSettings) -> dict[str, int]:
    """GPU engines (TensorRT, ORT's TensorRT provider) build their profile for the workload's batch and
    prompt, and llama.cpp its context for the batch's sequences; other runs need neither (and their stored
    keys, llama.cpp's at batch 1 included, stay as they were)."""
    if s.backend == "trt" or s.runner_device == "tensorrt":
        return {"batch": s.workload.batch, "prompt": s.workload.prompt}
    if s.backend == "llama.cpp" and s.workload.batch > 1:
        return {"batch": s.workload.batch}
    return {}


def task_key(task: dict[str, Any]) -> str:
    """What determines a measurement (not where the cache lives or what the arch is called)."""
    body = {k: v for k, v in task.items() if k not in ("cache_dir", "idle_s")}
    body["arch"] = {k: v for k, v in task["arch"].items() if k != "name"}
    return content_id(body)


def _throttled(phases: dict[str, Any]) -> bool:
    return any(
        int(m) & ~BENIGN
        for p in phases.values()
        if p.get("telemetry")
        for m in p["telemetry"]["values"].get("throttle_mask", [])
        if m == m
    )


def _energy_per_token(phases: dict[str, Any], w: Workload) -> float | None:
    """A generated token's energy: a generation's less its prefill's, over its decode steps (or, with no
    decode step inside generation, a fixed-cache step's)."""
    gen, pre = phases["e2e"].get("energy_per_call_j"), phases["prefill"].get("energy_per_call_j")
    if w.generate >= 2 and gen is not None and pre is not None:
        return (gen - pre) / (w.generate - 1) / w.batch
    fixed = [
        p["energy_per_call_j"] for k, p in phases.items() if k.startswith("decode@") and p.get("energy_per_call_j")
    ]
    return float(np.mean(fixed)) / w.batch if fixed else None


def summarise_measurement(result: dict[str, Any], w: Workload) -> Measured:
    """TTFT = median prefill inside generation; TPOT = mean of the step medians inside generation (a prefill
    repeated alone and a fixed-cache step only when G = 1); e2e = median generation, checked against
    TTFT + Σ steps of the same generations."""
    phases = result["phases"]
    e2e, prefill = phases["e2e"], phases["prefill"]["summary"]
    fixed = {p["context"]: p["summary"]["median_s"] for k, p in phases.items() if k.startswith("decode@")}
    steps = dict(zip(range(w.prompt, w.prompt + w.generate - 1), e2e.get("step_median_s") or [], strict=False))
    gap = e2e.get("gap") if steps else None
    warnings = list(result["environment"]["telemetry"].get("warnings", []))
    if gap is not None and abs(gap) > E2E_TOLERANCE:
        warnings.append(f"e2e differs from TTFT + Σ steps of the same generations by {gap:+.1%}")
    in_generation = np.asarray(e2e.get("ttft_in_generation_s") or [])
    if steps and len(in_generation):  # the prefill a user waits for: inside generation, like the steps
        ttft, ttft_ci = float(np.median(in_generation)), median_ci(in_generation)
    else:
        ttft, ttft_ci = prefill["median_s"], (prefill["median_ci_low_s"], prefill["median_ci_high_s"])
    return Measured(
        ttft_s=ttft,
        ttft_ci_s=ttft_ci,
        prefill_isolated_s=prefill["median_s"],
        tpot_s=float(np.mean(list(steps.values()))) if steps else float(np.mean(list(fixed.values()))),
        e2e_s=e2e["summary"]["median_s"],
        decode_s=steps or fixed,
        fixed_decode_s=fixed,
        e2e_parts_s=e2e.get("parts_s") if steps else None,
        e2e_gap=gap,
        energy_per_token_j=_energy_per_token(phases, w),
        energy_per_generation_j=e2e.get("energy_per_call_j"),
        mean_power_mw=e2e.get("mean_power_mw"),
        idle_power_mw=(result.get("idle") or {}).get("mean_power_mw"),
        first_run_s={k: p["first_s"] for k, p in phases.items()},
        noisy=tuple(sorted(k for k, p in phases.items() if p["summary"]["noisy"])),
        cv={k: p["summary"]["cv"] for k, p in phases.items()},
        throttled=_throttled(phases),
        warnings=tuple(warnings),
    )


def run_worker(task: dict[str, Any], timeout_s: float, worker: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """Run one task in a fresh process; (result, None) or (None, reason)."""
    proc = subprocess.Popen(
        worker, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )  # its own group: a timeout kills the whole tree
    try:
        out, err = proc.communicate(json.dumps(task), timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timeout: no result after {timeout_s:g} s (killed)"
    except BaseException:  # Ctrl-C: take the worker down with us, record nothing
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    if proc.returncode != 0:
        how = (
            f"signal {-proc.returncode} ({signal.Signals(-proc.returncode).name})"
            if proc.returncode < 0
            else f"exit code {proc.returncode}"
        )
        tail = " | ".join(line.strip() for line in err.strip().splitlines()[-3:])
        return None, f"crashed ({how}): {tail[-400:]}" if tail else f"crashed ({how})"
    try:
        return json.loads(out.strip().splitlines()[-1]), None
    except (json.JSONDecodeError, IndexError):
        return None, f"worker printed no result: {err.strip()[-300:]}"


def measure_round(
    task: dict[str, Any], timeout_s: float, worker: list[str], cooldown_s: float
) -> tuple[dict[str, Any] | None, str | None, float]:
    """One round of one candidate where it was sent: cool down, run the worker; (result, reason, seconds)."""
    if cooldown_s > 0:
        time.sleep(cooldown_s)
    t0 = time.perf_counter()
    result, reason = run_worker(task, timeout_s, worker)
    return result, reason, time.perf_counter() - t0


def check_cluster(cluster: Cluster, device: DeviceSpec) -> None:
    """A cluster run needs at least one live node carrying the device as a resource."""
    if cluster.address and not cluster.nodes_with(device.name):
        raise ClusterError(
            f"ray: no node of the cluster at {cluster.address} carries the resource {device.name!r}; a board joins "
            f"with: ray start --address=HEAD --resources='{{\"{device.name}\": 1}}'"
        )


def profile(
    candidates: Sequence[Candidate | tuple[Architecture, str]],
    device: DeviceSpec,
    settings: ProfileSettings,
    store: Store,
    model_for: Callable[[str], LatencyModel],
    progress: Callable[[ProfileResult, int, int], None] | None = None,
    worker: list[str] = WORKER,
    on_round: RoundProgress | None = None,
    cluster: Cluster | None = None,
) -> list[ProfileResult]:
    """Measure every (architecture, precision[, workload]) not measured yet; return all results in candidate order.

    `model_for(precision)` gives the latency model whose prediction is stored beside each measurement;
    `progress` hears of each finished candidate, `on_round` of each round run; `cluster` says where rounds
    run (this machine by default)."""
    cluster = cluster or Local()
    check_cluster(cluster, device)
    device_id = store.catalog.put_device(device)
    rounds = _Rounds(settings, store, device_id, worker, cluster, {device.name: 1})
    run = lambda: _profile_all(candidates, device, settings, store, model_for, progress, rounds, on_round)  # noqa: E731
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        return run()
    previous = signal.signal(signal.SIGTERM, _terminate)  # `kill`/`timeout` must not orphan a running worker
    try:
        return run()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM as an exception, so that run_worker kills the worker's process group before we exit."""
    raise SystemExit(128 + signum)


def refusal(arch: Architecture, w: Workload, predicted: dict[str, Any], device: DeviceSpec) -> str | None:
    """Why a candidate must not be built here (context past max_seq_len, predicted footprint too large)."""
    if w.context > arch.max_seq_len:
        return (
            f"refused: prompt + generated tokens ({w.context}) exceed the architecture's max_seq_len {arch.max_seq_len}"
        )
    if not predicted["fits"]:
        return (
            f"refused: predicted footprint {predicted['peak_memory_bytes'] / 1e9:.2f} GB exceeds the usable "
            f"{device.usable_memory_bytes / 1e9:.2f} GB of {device.name}"
        )
    return None


RoundProgress = Callable[[ProfileResult, int, int, "str | None"], None]  # (candidate, round, rounds, failure)


@dataclass
class _Pending:
    """A candidate being measured: its rounds so far (round → the worker's result)."""

    index: int
    base: ProfileResult
    task: dict[str, Any]
    results: dict[int, dict[str, Any]]
    timeout_s: float  # a round's time limit, a GPU engine's first build included where it builds per shape
    seconds: float = 0.0

    def measured(self) -> dict[int, Measured]:
        return {r: summarise_measurement(res, self.base.workload) for r, res in self.results.items()}

    def reasons(self) -> dict[int, list[str]]:
        return {r: (res.get("interference") or {}).get("reasons", []) for r, res in self.results.items()}

    def missing_extras(self, n_rounds: int) -> list[int]:
        """Re-measure rounds still to run: one per bad round among the first n_rounds."""
        bad = bad_rounds(self.measured(), self.reasons(), list(range(n_rounds)))
        return [r for r in range(n_rounds, n_rounds + len(bad)) if r not in self.results]


def _profile_all(
    candidates: Sequence[Candidate | tuple[Architecture, str]],
    device: DeviceSpec,
    settings: ProfileSettings,
    store: Store,
    model_for: Callable[[str], LatencyModel],
    progress: Callable[[ProfileResult, int, int], None] | None,
    rounds: _Rounds,
    on_round: RoundProgress | None = None,
) -> list[ProfileResult]:
    results: dict[int, ProfileResult] = {}

    def finish(i: int, r: ProfileResult) -> None:
        results[i] = r
        if progress:
            progress(r, len(results), len(candidates))

    pending = []
    for i, candidate in enumerate(candidates):
        c = Candidate(*candidate)
        arch, precision, s = c.arch, c.precision, c.settings(settings)
        task = task_for(arch, precision, device, s)
        key = task_key(task)
        w = Workload(**task["workload"])
        pred = predicted_beside_profile(arch, device, w, s.contexts, model_for(precision))
        status = store.profiles.status(key)
        base = ProfileResult(key, arch, device.name, device.mode, s.backend, precision, w, s.contexts, "refused", pred)
        retry = status == "failed" and settings.retry_failed
        stored = store.profiles.get(key) if status in ("ok", "failed") and not retry else None
        if stored is not None:
            finish(i, stored.reused(pred))
        elif reason := refusal(arch, w, pred, device):
            finish(i, replace(base, reason=reason))
        else:
            timeout = s.timeout_s + (s.build_timeout_s if engine_shapes(s) else 0)
            pending.append(_Pending(i, base, task, store.profiles.rounds(key), timeout))
    rounds.finish, rounds.on_round = finish, on_round
    for r in range(settings.rounds):  # every candidate's round r before any candidate's round r + 1
        rounds.run([(p, r) for p in pending if r not in p.results and p.index not in results], seed=r)
        if r == settings.rounds - 1:
            for p in pending:
                if p.index not in results and not p.missing_extras(settings.rounds):
                    rounds.combine(p)
    extra = [(p, r) for p in pending if p.index not in results for r in p.missing_extras(settings.rounds)]
    rounds.run(extra, seed=settings.rounds)
    for p in pending:
        if p.index not in results:
            rounds.combine(p)
    return [results[i] for i in range(len(candidates))]


@dataclass
class _Rounds:
    """Runs rounds of pending candidates in a shuffled order (on the cluster: as many at once as there are
    boards), stores each as it comes back, and combines a candidate's rounds."""

    settings: ProfileSettings
    store: Store
    device_id: str
    worker: list[str]
    cluster: Cluster
    resources: dict[str, float]
    finish: Callable[[int, ProfileResult], None] = lambda i, r: None
    on_round: RoundProgress | None = None
    ran: int = 0
    failed: set[int] = field(default_factory=set)

    def run(self, work: list[tuple[_Pending, int]], seed: int) -> None:
        random.Random(self.settings.seed * 1_000_003 + seed).shuffle(work)  # drift favours no candidate
        work = [(p, r) for p, r in work if p.index not in self.failed]
        items = [
            (p.task | {"round": r}, p.timeout_s, self.worker, self.settings.cooldown_s if self.ran or j else 0.0)
            for j, (p, r) in enumerate(work)
        ]
        for j, (result, reason, seconds), node in self.cluster.map_unordered(measure_round, items, self.resources):
            p, r = work[j]
            if p.index in self.failed:  # another of its rounds failed while this one ran elsewhere
                continue
            p.seconds += seconds
            self.ran += 1
            if result is not None:
                result["environment"] = result["environment"] | {"node": node}
            if self.on_round:
                self.on_round(p.base, r, self.settings.rounds, reason)
            if result is None:
                failed = replace(p.base, status="failed", reason=reason, seconds=p.seconds)
                self.store.profiles.put(failed, self.device_id)
                self.failed.add(p.index)
                self.finish(p.index, failed)
            else:
                self.store.profiles.put_round(p.base.key, r, result)
                p.results[r] = result

    def combine(self, p: _Pending) -> None:
        """The candidate's chosen rounds as one stored result (measure/rounds.py)."""
        measured, reasons = p.measured(), p.reasons()
        chosen, left, replaced = choose(self.settings.rounds, measured, reasons)
        m = combine([measured[r] for r in chosen], left, replaced, frozenset(r for r, why in reasons.items() if why))
        last = p.results[chosen[-1]]
        environment = last["environment"] | {
            "rounds": [
                {"round": r, "interference": res.get("interference"), "node": res["environment"].get("node")}
                for r, res in sorted(p.results.items())
            ],
            "rounds_used": chosen,
        }
        ok = replace(p.base, status="ok", measured=m, environment=environment, seconds=p.seconds)
        self.store.profiles.put(ok, self.device_id, _merged_phases([p.results[r] for r in chosen]))
        self.finish(p.index, ok)


def _merged_phases(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per phase: every chosen round's raw samples, the first round's statistics and telemetry."""
    merged = {}
    for phase, data in results[0]["phases"].items():
        samples = [x for res in results for x in res["phases"][phase]["samples_s"]]
        merged[phase] = data | {"samples_s": samples, "rounds": len(results)}
    return merged


PRECISIONS_OF = {
    "ort": ("fp32", "fp16", "int8"),
    "torch": ("fp32", "fp16", "bf16"),
    "trt": ("fp32", "fp16"),
    "ort-genai": ("fp32", "fp16", "int4"),
    "llama.cpp": ("fp32", "fp16", "q8_0", "q4_0", "q4_k_m"),
}


def check_precision(backend: str, precision: str, device: str = "cpu") -> None:
    if backend == "ort-genai":
        from cobench.measure.runners.ort_genai import PRECISIONS

        allowed = PRECISIONS.get(device, PRECISIONS_OF[backend])
        if precision not in allowed:
            raise InputError("precision", f"backend ort-genai on {device} runs {', '.join(allowed)}, not {precision!r}")
        return
    allowed = PRECISIONS_OF[backend]
    if precision not in allowed:
        raise InputError("precision", f"backend {backend} runs {', '.join(allowed)}, not {precision!r}")
    if backend == "ort":
        from cobench.measure.runners.ort_session import check_precision as on_device

        on_device(device, precision)


def sweep_architecture(candidate: dict[str, Any], sweep: str) -> Architecture:
    """A stored sweep candidate (one row of sweep_candidates) as a named architecture."""
    cols = {f: np.asarray([candidate[f]]) for f in ArchBatch.__dataclass_fields__}
    return ArchBatch(**cols).architecture(0, name=f"{sweep}#{candidate['grid_index']}")


def profile_backends(
    archs: Sequence[tuple[Architecture, Workload | None]],
    backends: list[str],
    precisions: list[str],
    device: DeviceSpec,
    settings: ProfileSettings,
    store: Store,
    model_for: Callable[[str, str], LatencyModel],
    progress: Callable[[ProfileResult, int, int], None] | None = None,
    on_round: RoundProgress | None = None,
    cluster: Cluster | None = None,
) -> list[ProfileResult]:
    """`cobench profile`: every architecture (at its own workload, or None: the run's) × precision on every
    backend, in one interleaved run per backend, each backend checked before any worker starts;
    `model_for(precision, backend)` is the latency model stored beside each result; `cluster` says where
    candidates run (this machine by default)."""
    from cobench.measure.runners import BACKENDS, check_available, check_runs

    if not archs:
        raise InputError("arch", "give --arch SPEC (repeatable), --from-sweep ID or --queue FILE")
    for b in backends:
        if b not in BACKENDS:
            raise InputError("backend", f"unknown backend {b!r} (one of {', '.join(BACKENDS)})")
        check_available(b, settings.runner_device)
        for p in precisions:
            check_precision(b, p, settings.runner_device)
        for a, _ in archs:  # layers a backend cannot run: said before any candidate is built
            for p in precisions:
                check_runs(b, a, p, {})
    results: list[ProfileResult] = []
    for b in backends:
        candidates = [Candidate(a, p, w) for a, w in archs for p in precisions]
        models = {p: model_for(p, b) for p in precisions}
        b_settings = replace(settings, backend=b)
        results += profile(
            candidates, device, b_settings, store, models.__getitem__, progress, on_round=on_round, cluster=cluster
        )
    return results
