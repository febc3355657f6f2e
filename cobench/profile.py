"""`cobench profile`: measure candidates on this machine, each in its own process, next to the prediction.

Each candidate runs in a worker subprocess (`cobench.worker`) with a timeout, so a crash, an OOM kill or
a hang is recorded with its reason and the rest go on. A model whose predicted footprint exceeds the
device's usable memory is refused before anything is built. Results are keyed by a hash of what
determines them (architecture, precision, backend, device, workload, contexts, harness); a candidate
already measured is skipped, so a re-run after a crash or Ctrl-C resumes without redoing work.
Candidates run in a shuffled order (seeded, recorded) with a cool-down between them.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cobench.architecture import Architecture, param_counts
from cobench.calibration import LatencyModel
from cobench.devices import DeviceSpec
from cobench.roofline import predict
from cobench.store import Store, content_id
from cobench.telemetry.nvml import BENIGN
from cobench.timing import HarnessConfig
from cobench.workload import Workload

WORKER = [sys.executable, "-m", "cobench.worker"]
DEFAULT_CACHE = Path(os.environ.get("COBENCH_CACHE", ".cobench/cache"))


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
    threads: int | None = None
    cuda_graphs: bool = False
    cache_dir: Path = DEFAULT_CACHE
    seed: int = 0
    retry_failed: bool = False

    @property
    def contexts(self) -> tuple[int, ...]:
        """Decode contexts: the ends of the generated range (their mean is the TPOT) plus any extra."""
        w = self.workload
        ends = {w.prompt, w.prompt + max(w.generate - 2, 0)}
        return tuple(sorted(ends | set(self.extra_contexts)))


@dataclass(frozen=True)
class Outcome:
    """One candidate's row in the profile table."""

    key: str
    arch: str
    precision: str
    status: str  # ok | failed | refused | skipped
    reason: str | None
    measured: dict[str, Any] | None
    predicted: dict[str, Any]


def task_for(arch: Architecture, precision: str, device: DeviceSpec, s: ProfileSettings) -> dict[str, Any]:
    w = Workload(batch=s.workload.batch, prompt=s.workload.prompt, generate=s.workload.generate, precision=precision)
    return {
        "arch": arch.to_dict(),
        "precision": precision,
        "backend": s.backend,
        "runner_device": s.runner_device,
        "device": device.name,
        "power_mode": device.mode,
        "workload": w.to_dict(),
        "contexts": list(s.contexts),
        "harness": asdict(s.harness),
        "e2e_harness": {"min_iters": s.e2e_min_iters},
        "telemetry": {"kind": s.telemetry, "rate_hz": s.rate_hz},
        "idle_s": s.idle_s,
        "seed": s.seed,
        "options": {"threads": s.threads, "cuda_graphs": s.cuda_graphs, "seed": s.seed},
        "cache_dir": str(s.cache_dir),
    }


def task_key(task: dict[str, Any]) -> str:
    """What determines a measurement (not where the cache lives or what the arch is called)."""
    body = {k: v for k, v in task.items() if k not in ("cache_dir", "idle_s")}
    body["arch"] = {k: v for k, v in task["arch"].items() if k != "name"}
    return content_id(body)


def predicted(
    arch: Architecture, device: DeviceSpec, w: Workload, contexts: tuple[int, ...], model: LatencyModel
) -> dict[str, Any]:
    """The prediction stored beside a measurement, by the backend's counting (or its calibration)."""
    params, counting = model.params, model.counting
    p = predict(arch, device, w, params, counting)
    per_context = {
        c: float(
            predict(arch, device, Workload(w.batch, c, 1, w.precision, w.kv_precision), params, counting).tpot_s[0]
        )
        for c in contexts
    }
    return {
        "ttft_s": float(p.ttft_s[0]),
        "tpot_s": float(p.tpot_s[0]),
        "e2e_s": float(p.e2e_s[0]),
        "decode_s": per_context,
        "peak_memory_bytes": float(p.peak_memory_bytes[0]),
        "fits": bool(p.fits[0]),
        "usable_memory_bytes": device.usable_memory_bytes,
        "params_source": p.params_source,
        "calibration": model.calibration.label if model.calibration else None,
        **model.interval_fields(float(p.ttft_s[0]), float(p.tpot_s[0])),
    }


def summarise_measurement(result: dict[str, Any], w: Workload, contexts: tuple[int, ...]) -> dict[str, Any]:
    """TTFT = prefill median; TPOT = mean decode median over the generated range; energy per token."""
    phases = result["phases"]
    low, high = w.prompt, w.prompt + max(w.generate - 2, 0)
    tpot_phases = [phases[f"decode@{c}"] for c in contexts if low <= c <= high]
    energies = [p["energy_per_call_j"] for p in tpot_phases if p.get("energy_per_call_j") is not None]
    warnings = result["environment"]["telemetry"].get("warnings", [])
    throttled = any(
        int(m) & ~BENIGN
        for p in phases.values()
        if p.get("telemetry")
        for m in p["telemetry"]["values"].get("throttle_mask", [])
        if m == m
    )
    return {
        "ttft_s": phases["prefill"]["summary"]["median_s"],
        "ttft_ci_s": [
            phases["prefill"]["summary"]["median_ci_low_s"],
            phases["prefill"]["summary"]["median_ci_high_s"],
        ],
        "tpot_s": float(np.mean([p["summary"]["median_s"] for p in tpot_phases])),
        "e2e_s": phases["e2e"]["summary"]["median_s"],
        "decode_s": {p["context"]: p["summary"]["median_s"] for k, p in phases.items() if k.startswith("decode@")},
        "energy_per_token_j": float(np.mean(energies)) / w.batch if energies else None,
        "energy_per_generation_j": phases["e2e"].get("energy_per_call_j"),
        "mean_power_mw": phases["e2e"].get("mean_power_mw"),
        "idle_power_mw": (result.get("idle") or {}).get("mean_power_mw"),
        "first_run_s": {k: p["first_s"] for k, p in phases.items()},
        "noisy": sorted(k for k, p in phases.items() if p["summary"]["noisy"]),
        "cv": {k: p["summary"]["cv"] for k, p in phases.items()},
        "throttled": throttled,
        "warnings": warnings,
    }


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


def profile(
    candidates: list[tuple[Architecture, str]],
    device: DeviceSpec,
    settings: ProfileSettings,
    store: Store,
    model_for: Callable[[str], LatencyModel],
    progress: Callable[[Outcome, int, int], None] | None = None,
    worker: list[str] = WORKER,
) -> list[Outcome]:
    """Measure every (architecture, precision) not measured yet; return all rows in candidate order.

    `model_for(precision)` gives the latency model whose prediction is stored beside each measurement."""
    device_id = store.put_device(device.name, device.mode, asdict(device))
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        return _profile_all(candidates, device, device_id, settings, store, model_for, progress, worker)
    previous = signal.signal(signal.SIGTERM, _terminate)  # `kill`/`timeout` must not orphan a running worker
    try:
        return _profile_all(candidates, device, device_id, settings, store, model_for, progress, worker)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM as an exception, so that run_worker kills the worker's process group before we exit."""
    raise SystemExit(128 + signum)


def _profile_all(
    candidates: list[tuple[Architecture, str]],
    device: DeviceSpec,
    device_id: str,
    settings: ProfileSettings,
    store: Store,
    model_for: Callable[[str], LatencyModel],
    progress: Callable[[Outcome, int, int], None] | None,
    worker: list[str],
) -> list[Outcome]:
    order = list(range(len(candidates)))
    random.Random(settings.seed).shuffle(order)  # interleave: drift does not favour the first candidates
    outcomes: dict[int, Outcome] = {}
    ran = 0
    for done, i in enumerate(order, 1):
        arch, precision = candidates[i]
        task = task_for(arch, precision, device, settings)
        key = task_key(task)
        w = Workload(**task["workload"])
        pred = predicted(arch, device, w, settings.contexts, model_for(precision))
        status = store.profile_status(key)
        if status == "ok" or (status == "failed" and not settings.retry_failed):
            outcomes[i] = _stored(store, key, arch, precision, pred)
        elif w.context > arch.max_seq_len:
            reason = (
                f"refused: prompt + generated tokens ({w.context}) exceed the architecture's "
                f"max_seq_len {arch.max_seq_len}"
            )
            outcomes[i] = Outcome(key, arch.name, precision, "refused", reason, None, pred)
        elif not pred["fits"]:
            reason = (
                f"refused: predicted footprint {pred['peak_memory_bytes'] / 1e9:.2f} GB exceeds the usable "
                f"{device.usable_memory_bytes / 1e9:.2f} GB of {device.name}"
            )
            outcomes[i] = Outcome(key, arch.name, precision, "refused", reason, None, pred)
        else:
            if ran and settings.cooldown_s > 0:
                time.sleep(settings.cooldown_s)
            t0 = time.perf_counter()
            result, reason = run_worker(task, settings.timeout_s, worker)
            seconds = time.perf_counter() - t0
            ran += 1
            counts = param_counts(arch)
            row = {
                "key": key,
                "arch_id": store.put_architecture(arch.to_dict(), counts.total, counts.active),
                "arch_name": arch.name,
                "device_id": device_id,
                "backend": settings.backend,
                "precision": precision,
                "workload": task["workload"] | {"contexts": task["contexts"]},
                "predicted": pred,
                "seconds": seconds,
            }
            if result is None:
                store.put_profile(row | {"status": "failed", "reason": reason}, None)
                outcomes[i] = Outcome(key, arch.name, precision, "failed", reason, None, pred)
            else:
                measured = summarise_measurement(result, w, settings.contexts)
                store.put_profile(
                    row
                    | {
                        "status": "ok",
                        "summary": measured,
                        "environment": result["environment"],
                        "ttft_s": measured["ttft_s"],
                        "tpot_s": measured["tpot_s"],
                        "e2e_s": measured["e2e_s"],
                        "energy_per_token_j": measured["energy_per_token_j"],
                    },
                    result["phases"],
                )
                outcomes[i] = Outcome(key, arch.name, precision, "ok", None, measured, pred)
        if progress:
            progress(outcomes[i], done, len(candidates))
    return [outcomes[i] for i in range(len(candidates))]


def _stored(store: Store, key: str, arch: Architecture, precision: str, pred: dict[str, Any]) -> Outcome:
    (row,) = store.profiles([key])
    return Outcome(key, arch.name, precision, "skipped", row["reason"], row["summary"], pred)


def error_pct(predicted_s: float | None, measured_s: float | None) -> float | None:
    if predicted_s is None or not measured_s:
        return None
    return (predicted_s - measured_s) / measured_s * 100
