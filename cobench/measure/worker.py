"""Measure one candidate; run as `python -m cobench.measure.worker` in its own process by `cobench profile`.

Reads a task (JSON) on stdin, writes one result (JSON) on stdout. Isolation is the point: a crash, an
out-of-memory kill or a hang here is recorded by the parent, which goes on with the next candidate.

Per candidate: an idle-power baseline, then prefill of the prompt, and whole generations of G tokens
after the P-token prompt with every decode step timed inside them (measure/generation.py: the TPOT a user
experiences); a decode step on a fixed cache only at the extra contexts asked for. Each phase is timed
by the harness with telemetry sampled in the background.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.measure import interference, timing
from cobench.measure.environment import environment
from cobench.measure.generation import Generations, time_generation
from cobench.measure.runners import Runner, open_runner
from cobench.measure.stats import summarize
from cobench.measure.telemetry import Sampler, TelemetrySource, select_source


def measure(
    sample: Callable[[], timing.Samples],
    source: TelemetrySource | None,
    rate_hz: float,
    calls_per_step: int = 1,
) -> dict[str, Any]:
    """One phase timed by the harness (`sample` runs it) with telemetry; raw samples, statistics, energy."""
    if source is None:
        samples = sample()
        series = None
    else:
        with Sampler(source, rate_hz) as sampler:
            samples = sample()
        series = sampler.series
    calls = (1 + samples.warmup_iters + len(samples.samples_s)) * calls_per_step
    energy = series.energy_j() if series else None
    return {
        "first_s": samples.first_s,
        "warmup_iters": samples.warmup_iters,
        "stopped_by": samples.stopped_by,
        "wall_s": samples.wall_s,
        "samples_s": samples.samples_s.tolist(),
        "summary": asdict(summarize(samples.samples_s)),
        "energy_j": energy,
        "energy_per_call_j": energy / calls if energy is not None else None,
        "mean_power_mw": series.mean("power_mw") if series else None,
        "telemetry": series.to_dict() if series else None,
    }


def idle_baseline(source: TelemetrySource | None, seconds: float, rate_hz: float) -> dict[str, Any] | None:
    if source is None or seconds <= 0:
        return None
    with Sampler(source, rate_hz) as sampler:
        time.sleep(seconds)
    return {"seconds": seconds, "mean_power_mw": sampler.series.mean("power_mw"), "energy_j": sampler.series.energy_j()}


def task_runner(task: dict[str, Any]) -> Runner:
    """The runner a task measures with (the truth benches open the same one in their own process)."""
    arch, device = Architecture.from_dict(task["arch"]), task.get("runner_device", "cpu")
    options = task.get("options", {})
    return open_runner(task["backend"], arch, task["precision"], device, Path(task["cache_dir"]), options)


def task_prompt(task: dict[str, Any]) -> np.ndarray:
    """The task's prompt: (batch, prompt) token ids, seeded, so every round and every bench feeds the same."""
    w, rng = task["workload"], np.random.default_rng(int(task.get("seed", 0)))
    return rng.integers(0, task["arch"]["vocab_size"], (w["batch"], w["prompt"]), dtype=np.int64)


def profile_candidate(task: dict[str, Any]) -> dict[str, Any]:
    batch, generate = task["workload"]["batch"], task["workload"]["generate"]
    cfg = timing.HarnessConfig(**task.get("harness", {}))
    e2e_cfg = timing.HarnessConfig(**(task.get("harness", {}) | task.get("e2e_harness", {"min_iters": 3})))
    tele = task.get("telemetry", {})
    rate = float(tele.get("rate_hz", 20.0))
    device = task.get("runner_device", "cpu")
    source = None if tele.get("kind") == "off" else select_source(tele.get("kind", "auto"), device)
    t0 = time.perf_counter()
    runner = task_runner(task)
    open_s = time.perf_counter() - t0
    idle = idle_baseline(source, float(task.get("idle_s", 0.0)), rate)
    ids = task_prompt(task)
    token = ids[:, -1:]
    before = interference.snapshot()
    prefill = lambda: runner.timed(lambda: runner.prefill(ids))  # noqa: E731
    phases: dict[str, Any] = {"prefill": measure(lambda: timing.run(prefill, cfg), source, rate)}
    for context in task["contexts"]:  # fixed-cache steps, only where asked for (not the TPOT)
        step = runner.fixed_decode(token, runner.make_cache(batch, context))
        timed = lambda step=step: timing.run(lambda: runner.timed(step), cfg)  # noqa: E731
        phases[f"decode@{context}"] = measure(timed, source, rate) | {"context": context}
    found: dict[str, Generations] = {}

    def generations() -> timing.Samples:
        samples, found["g"] = time_generation(runner, ids, token, generate, e2e_cfg)
        return samples

    phases["e2e"] = measure(generations, source, rate) | found["g"].to_json()
    disturbed = interference.between(before, interference.snapshot())
    info = runner.info() | {"open_s": open_s}
    return {
        "status": "ok",
        "phases": phases,
        "idle": idle,
        "interference": disturbed.to_json(),
        "environment": environment(info, source.describe() if source else {"source": "off"}, asdict(cfg), device),
    }


def die_with_parent() -> None:
    """Linux: end with the process that started us (`cobench profile` killed by -9, a Ray node lost), so a
    measurement nobody waits for never keeps loading the machine the next one runs on."""
    if sys.platform != "linux":
        return
    import ctypes
    import os
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was gone before the call took effect
        sys.exit(1)


def main() -> None:
    die_with_parent()
    task = json.loads(sys.stdin.read())
    result = profile_candidate(task)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
