"""Training jobs into the store (`cobench train`): finished runs are skipped, interrupted ones resume
from their checkpoint, every run is recorded as `running` when it starts and `done` when it ends.

Here the jobs run one after another in this process; on a cluster (`--ray`) they all go at once, each
on its GPUs (or CPUs), `world` processes per run as one DDP group, with checkpoints in a folder every node
sees; only this process writes the store, as runs finish."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Protocol

from cobench.arch.architecture import Architecture, param_counts
from cobench.arch.precision import precision
from cobench.cluster import Cluster, Node
from cobench.errors import ClusterError, InputError
from cobench.fit.corpus import Corpus
from cobench.fit.train import Progress, TrainConfig, TrainResult, run_key, train
from cobench.fit.training_run import TrainingRun
from cobench.hardware.devices import DeviceSpec
from cobench.store import Store

DEFAULT_CHECKPOINTS = Path(".cobench/train")


class Reporter(Protocol):
    """How a caller follows a queue: per job skipped or started, and per step while it trains."""

    def skipped(self, index: int, total: int, run: TrainingRun) -> None: ...

    def started(self, index: int, total: int, arch: Architecture, cfg: TrainConfig) -> Callable[[Progress], None]: ...

    def finished(self) -> None: ...

    def ran(self, index: int, total: int, run: TrainingRun) -> None: ...  # a run that finished on a cluster


def throughput(r: TrainResult, cfg: TrainConfig, peak: DeviceSpec | None) -> dict[str, float | str | bool]:
    """Achieved training FLOP/s and, given the device trained on, model FLOPs utilisation: against the
    device's matmul peak (bf16 on a GPU, fp32 on a CPU) times the GPUs of the run, or on a CPU the share of
    its cores the run's threads had. A peak the catalogue marks uncertain (the generic CPU's is a
    placeholder) is said so beside the MFU; an MFU over 1 shows that peak is too low."""
    achieved = r.tokens_per_s * r.flops_per_token
    if peak is None:
        return {"flops_per_s": achieved}
    env = r.environment
    share = 1.0 if cfg.device == "cuda" else min(1.0, env["threads"] / (env["cpu_count"] or env["threads"]))
    chain = precision("bf16" if cfg.device == "cuda" else "fp32").matmul_peaks
    key = next(k for k in (*chain, "fp32") if k in peak.peak_tflops)
    ceiling = peak.peak_flops(chain) * share * env.get("world", 1)
    return {
        "flops_per_s": achieved,
        "mfu": achieved / ceiling,
        "peak_flops_per_s": ceiling,
        "peak_device": peak.name,
        "peak_uncertain": peak.peak_tflops[key].uncertain,
    }


def train_jobs(
    jobs: list[tuple[Architecture, int | None]],
    corpus: Corpus,
    base: TrainConfig,
    store: Store,
    checkpoints: Path = DEFAULT_CHECKPOINTS,
    tokens_multiplier: float = 1.0,
    reporter: Reporter | None = None,
    cluster: Cluster | None = None,
    world: int = 1,
    peak: DeviceSpec | None = None,
) -> list[TrainingRun]:
    """Train each (architecture, token budget) job — a job without a budget takes `base.tokens` — scaled by
    `tokens_multiplier`, here or on `cluster` with `world` processes per run; return the finished runs in
    job order."""
    if not tokens_multiplier > 0:
        raise InputError("tokens_multiplier", f"must be positive, got {tokens_multiplier}")
    if world < 1 or base.batch % world:
        raise InputError("gpus-per-run", f"{world} processes per run must split the batch of {base.batch} sequences")
    if world > 1 and cluster is None:
        raise ClusterError(f"gpus-per-run: {world} processes per run need a cluster: give --ray ADDRESS")
    results: dict[int, TrainingRun] = {}
    todo: list[tuple[int, TrainingRun, TrainConfig]] = []
    for i, (a, budget) in enumerate(jobs, 1):
        cfg = replace(base, tokens=int((budget or base.tokens) * tokens_multiplier))
        key = run_key(a, corpus, cfg)
        done = store.runs.get(key) if store.runs.status(key) == "done" else None
        if done is not None:
            results[i] = done
            if reporter:
                reporter.skipped(i, len(jobs), done)
            continue
        counts = param_counts(a)
        started = TrainingRun(
            key,
            a,
            f"{corpus.source} sha256:{corpus.sha256}",
            asdict(cfg),
            "running",
            n_params=counts.active - counts.embedding,
            n_params_total=counts.total,
        )
        todo.append((i, started, cfg))
    checkpoints = checkpoints.absolute()  # the same folder, seen from every node
    if cluster is None:  # here, one after another, with a progress bar each
        for i, started, cfg in todo:
            store.runs.put(started)
            show = reporter.started(i, len(jobs), started.arch, cfg) if reporter else None
            r = train(started.arch, corpus, cfg, checkpoints / started.key / "checkpoint.pt", show)
            if reporter:
                reporter.finished()
            results[i] = _finished(store, started, r, cfg, peak, None)
    else:
        for _, started, _ in todo:
            store.runs.put(started)
        items = [(started.arch, corpus, cfg, checkpoints / started.key / "checkpoint.pt") for _, started, cfg in todo]
        for n, r, node in cluster.map_groups(train, items, world, base.device == "cuda", checkpoints / "ray"):
            i, started, cfg = todo[n]
            results[i] = _finished(store, started, r, cfg, peak, node)
            if reporter:
                reporter.ran(i, len(jobs), results[i])
    return [results[i] for i in sorted(results)]


def _finished(
    store: Store, started: TrainingRun, r: TrainResult, cfg: TrainConfig, peak: DeviceSpec | None, node: Node | None
) -> TrainingRun:
    where = {"node": node} if node else {}
    finished = replace(
        started,
        status="done",
        steps=r.steps,
        tokens=r.tokens,
        final_loss=r.final_loss,
        final_bpb=r.final_bpb,
        tokens_per_s=r.tokens_per_s,
        curve=r.curve,
        environment=r.environment | {"resumed_from_step": r.resumed_from} | throughput(r, cfg, peak) | where,
    )
    store.runs.put(finished)
    return finished
