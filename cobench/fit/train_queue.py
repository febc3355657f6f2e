"""Training jobs into the store (`cobench train`): finished runs are skipped, interrupted ones resume
from their checkpoint, every run is recorded as `running` when it starts and `done` when it ends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Protocol

from cobench.arch.architecture import Architecture, param_counts
from cobench.errors import InputError
from cobench.fit.corpus import Corpus
from cobench.fit.train import Progress, TrainConfig, run_key, train
from cobench.fit.training_run import TrainingRun
from cobench.store import Store

DEFAULT_CHECKPOINTS = Path(".cobench/train")


class Reporter(Protocol):
    """How a caller follows a queue: per job skipped or started, and per step while it trains."""

    def skipped(self, index: int, total: int, run: TrainingRun) -> None: ...

    def started(self, index: int, total: int, arch: Architecture, cfg: TrainConfig) -> Callable[[Progress], None]: ...

    def finished(self) -> None: ...


def train_jobs(
    jobs: list[tuple[Architecture, int | None]],
    corpus: Corpus,
    base: TrainConfig,
    store: Store,
    checkpoints: Path = DEFAULT_CHECKPOINTS,
    tokens_multiplier: float = 1.0,
    reporter: Reporter | None = None,
) -> list[TrainingRun]:
    """Train each (architecture, token budget) job — a job without a budget takes `base.tokens` — scaled by
    `tokens_multiplier`; return the finished runs in job order."""
    if not tokens_multiplier > 0:
        raise InputError("tokens_multiplier", f"must be positive, got {tokens_multiplier}")
    results = []
    for i, (a, budget) in enumerate(jobs, 1):
        cfg = replace(base, tokens=int((budget or base.tokens) * tokens_multiplier))
        key = run_key(a, corpus, cfg)
        done = store.runs.get(key) if store.runs.status(key) == "done" else None
        if done is not None:
            results.append(done)
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
        store.runs.put(started)
        show = reporter.started(i, len(jobs), a, cfg) if reporter else None
        r = train(a, corpus, cfg, checkpoints / key / "checkpoint.pt", show)
        if reporter:
            reporter.finished()
        finished = replace(
            started,
            status="done",
            steps=r.steps,
            tokens=r.tokens,
            final_loss=r.final_loss,
            final_bpb=r.final_bpb,
            tokens_per_s=r.tokens_per_s,
            curve=r.curve,
            environment=r.environment | {"resumed_from_step": r.resumed_from},
        )
        store.runs.put(finished)
        results.append(finished)
    return results
