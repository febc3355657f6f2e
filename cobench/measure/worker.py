"""Measure one candidate; run as `python -m cobench.measure.worker` in its own process by `cobench profile`.

Reads a task (JSON) on stdin, writes one result (JSON) on stdout. Isolation is the point: a crash, an
out-of-memory kill or a hang here is recorded by the parent, which goes on with the next candidate.

Per candidate: an idle-power baseline, then prefill of the prompt, a decode step at each requested
context, and end-to-end generation of G tokens after the P-token prompt, each timed by the harness
with telemetry sampled in the background.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.measure import timing
from cobench.measure.environment import environment
from cobench.measure.runners import Runner, open_runner
from cobench.measure.stats import summarize
from cobench.measure.telemetry import Sampler, TelemetrySource, select_source


def measure(
    step: timing.Step,
    cfg: timing.HarnessConfig,
    source: TelemetrySource | None,
    rate_hz: float,
    calls_per_step: int = 1,
) -> dict[str, Any]:
    """Harness run of one phase with telemetry; returns raw samples, statistics and energy."""
    if source is None:
        samples = timing.run(step, cfg)
        series = None
    else:
        with Sampler(source, rate_hz) as sampler:
            samples = timing.run(step, cfg)
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


def profile_candidate(task: dict[str, Any]) -> dict[str, Any]:
    arch = Architecture.from_dict(task["arch"])
    w = task["workload"]
    batch, prompt, generate = w["batch"], w["prompt"], w["generate"]
    cfg = timing.HarnessConfig(**task.get("harness", {}))
    e2e_cfg = timing.HarnessConfig(**(task.get("harness", {}) | task.get("e2e_harness", {"min_iters": 3})))
    tele = task.get("telemetry", {})
    rate = float(tele.get("rate_hz", 20.0))
    source = None if tele.get("kind") == "off" else select_source(tele.get("kind", "auto"))
    t0 = time.perf_counter()
    runner: Runner = open_runner(
        task["backend"],
        arch,
        task["precision"],
        task.get("runner_device", "cpu"),
        Path(task["cache_dir"]),
        task.get("options", {}),
    )
    open_s = time.perf_counter() - t0
    idle = idle_baseline(source, float(task.get("idle_s", 0.0)), rate)
    rng = np.random.default_rng(int(task.get("seed", 0)))
    ids = rng.integers(0, arch.vocab_size, (batch, prompt), dtype=np.int64)
    token = ids[:, -1:]
    phases: dict[str, Any] = {"prefill": measure(lambda: runner.timed(lambda: runner.prefill(ids)), cfg, source, rate)}
    for context in task["contexts"]:
        cache = runner.make_cache(batch, context)
        step = runner.fixed_decode(token, cache)
        phases[f"decode@{context}"] = measure(lambda step=step: runner.timed(step), cfg, source, rate) | {
            "context": context
        }

    def generate_all() -> None:
        cache = runner.prefill(ids)
        for _ in range(generate - 1):
            cache = runner.decode(token, cache)

    phases["e2e"] = measure(lambda: runner.timed(generate_all), e2e_cfg, source, rate)
    info = runner.info() | {"open_s": open_s}
    return {
        "status": "ok",
        "phases": phases,
        "idle": idle,
        "environment": environment(info, source.describe() if source else {"source": "off"}, asdict(cfg)),
    }


def main() -> None:
    task = json.loads(sys.stdin.read())
    result = profile_candidate(task)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
