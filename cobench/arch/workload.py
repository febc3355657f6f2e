"""The operating point a latency is predicted or measured at (batch, prompt, generated tokens, types)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cobench.arch.precision import Precision, kv_bytes, precision
from cobench.errors import InputError

MAX_TOKENS = 2**24  # batch, prompt and generated tokens: past every context window


@dataclass(frozen=True)
class Workload:
    """Defaults are the co-design paper's on-device point: batch 1, 1,024 prompt tokens, 16 generated."""

    batch: int = 1
    prompt: int = 1024
    generate: int = 16
    precision: str = "fp16"
    kv_precision: str | None = None  # default: fp32 for fp32 models, else fp16

    def __post_init__(self) -> None:
        for key in ("batch", "prompt", "generate"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOKENS:
                raise InputError(f"workload.{key}", f"must be an integer from 1 to {MAX_TOKENS:,}, got {value!r}")
        if not isinstance(self.precision, str) or (
            self.kv_precision is not None and not isinstance(self.kv_precision, str)
        ):
            raise InputError("workload.precision", f"expected a precision name, got {self.precision!r}")
        precision(self.precision, "workload.precision")
        if self.kv_precision is None:
            object.__setattr__(self, "kv_precision", "fp32" if self.precision == "fp32" else "fp16")
        kv_bytes(str(self.kv_precision), "workload.kv_precision")

    @property
    def types(self) -> Precision:
        return precision(self.precision)

    @property
    def kv_bytes(self) -> float:
        return kv_bytes(str(self.kv_precision))

    @property
    def context(self) -> int:
        """Tokens held in the KV cache at the end of generation."""
        return self.prompt + self.generate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
