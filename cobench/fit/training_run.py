"""The training-run record: one architecture trained for a token budget on one corpus, with its curve.

Written when a run starts (status `running`) and again when it finishes (`done`); `cobench fit` reads
the finished ones. Its JSON layout is documented in docs/schema.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cobench.arch.architecture import Architecture

STATUSES = ("running", "done")


@dataclass(frozen=True)
class TrainingRun:
    key: str  # hash of architecture (not its name), corpus and every hyper-parameter (fit/train.py run_key)
    arch: Architecture
    corpus: str  # "<source> sha256:<digest>"
    config: dict[str, Any]  # fit/train.py TrainConfig as JSON
    status: str  # one of STATUSES
    n_params: int  # active non-embedding parameters: the loss law's N
    n_params_total: int
    steps: int = 0
    tokens: int = 0
    final_loss: float | None = None  # nats per token on the validation split
    final_bpb: float | None = None  # bits per byte (byte-level corpora)
    tokens_per_s: float | None = None  # training steps only
    curve: list[dict[str, float]] = field(default_factory=list)
    environment: dict[str, Any] | None = None

    @property
    def arch_name(self) -> str:
        return self.arch.name

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"arch": self.arch.to_dict(), "arch_name": self.arch_name}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainingRun:
        fields = {k: v for k, v in data.items() if k != "arch_name"}
        return cls(**(fields | {"arch": Architecture.from_dict(data["arch"])}))
