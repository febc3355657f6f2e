"""The architecture of a decoder-only transformer, validated, and its exact parameter counts.

One `Architecture` describes dense and MoE models, MHA/GQA/MQA, an explicit head_dim, SwiGLU or GELU
FFNs, optional q/k/v, output and MLP biases, RMSNorm or LayerNorm, tied or untied embeddings, and
shared experts. Counting functions are written once with numpy arithmetic so that they work on a
single `Architecture` (Python ints) and on an `ArchBatch` of 10^5 candidates (int64 arrays) alike.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from cobench.errors import InputError
from cobench.validate import number, text

FFN_KINDS = ("swiglu", "gelu")
NORM_KINDS = ("rmsnorm", "layernorm")


@dataclass(frozen=True)
class Architecture:
    """A decoder-only transformer. Optional sizes are resolved on construction (see `__post_init__`)."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int = field(metadata={"help": "dense FFN width (MoE: width of each shared expert if d_ff_shared unset)"})
    name: str = "custom"
    n_kv_heads: int | None = field(default=None, metadata={"help": "KV heads: = n_heads MHA, 1 MQA"})
    head_dim: int | None = field(default=None, metadata={"help": "defaults to d_model / n_heads"})
    ffn: str = "swiglu"
    norm: str = "rmsnorm"
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    tie_embeddings: bool = False
    max_seq_len: int = 4096
    n_experts: int = 0
    top_k: int = 0
    d_ff_expert: int | None = None
    n_shared_experts: int = 0
    d_ff_shared: int | None = None
    shared_expert_gate: bool = False

    def __post_init__(self) -> None:
        _validate(self)
        resolve = {
            "n_kv_heads": self.n_kv_heads if self.n_kv_heads is not None else self.n_heads,
            "head_dim": self.head_dim if self.head_dim is not None else self.d_model // self.n_heads,
            "d_ff_expert": (self.d_ff_expert or self.d_ff) if self.n_experts else None,
            "d_ff_shared": (self.d_ff_shared or self.d_ff_expert or self.d_ff) if self.n_shared_experts else None,
        }
        for key, value in resolve.items():
            object.__setattr__(self, key, value)
        total = param_counts(self).total  # Python integers here: exact, whatever the sizes
        if not 0 < total <= MAX_PARAMS:
            raise InputError("architecture", f"{total:.3g} parameters; cobench models at most {MAX_PARAMS:.0e}")

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "architecture") -> Architecture:
        """Build from a plain mapping (YAML/JSON); unknown or mistyped fields name themselves."""
        if not isinstance(data, dict):
            raise InputError(where, f"expected a mapping of architecture fields, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InputError(f"{where}.{unknown[0]}", f"unknown field (known: {', '.join(known)})")
        missing = [n for n, f in known.items() if f.default is MISSING and n not in data]
        if missing:
            raise InputError(f"{where}.{missing[0]}", "required field is missing")
        clean = {k: _coerce(f"{where}.{k}", v, known[k].type) for k, v in data.items()}
        try:
            return cls(**clean)
        except InputError as e:
            raise InputError(f"{where}.{e.field.split('.', 1)[-1]}", e.problem) from None


def _coerce(where: str, value: Any, type_name: Any) -> Any:
    """YAML gives ints, bools and strings; reject anything else early with the field's name."""
    kind = str(type_name)
    if value is None and "None" in kind:
        return None
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise InputError(where, f"expected true/false, got {value!r}")
        return value
    if kind.startswith("int"):
        return number(value, where, integer=True, high=MAX_SIZE)
    return text(value, where)


MAX_SIZE = 2**24  # any one size of an architecture (16.7 M: past every vocabulary, width and context)
MAX_PARAMS = 10**15  # so that every count and FLOP stays exact in int64 and float64


def _validate(a: Architecture) -> None:
    positive = ["vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"]
    for key in positive:
        if getattr(a, key) <= 0:
            raise InputError(f"architecture.{key}", f"must be a positive integer, got {getattr(a, key)}")
    for key in ["n_kv_heads", "head_dim", "d_ff_expert", "d_ff_shared"]:
        value = getattr(a, key)
        if value is not None and value <= 0:
            raise InputError(f"architecture.{key}", f"must be a positive integer, got {value}")
    for key in ["n_experts", "top_k", "n_shared_experts"]:
        if getattr(a, key) < 0:
            raise InputError(f"architecture.{key}", f"must be zero or positive, got {getattr(a, key)}")
    if a.ffn not in FFN_KINDS:
        raise InputError("architecture.ffn", f"unknown FFN kind {a.ffn!r} (one of {', '.join(FFN_KINDS)})")
    if a.norm not in NORM_KINDS:
        raise InputError("architecture.norm", f"unknown norm kind {a.norm!r} (one of {', '.join(NORM_KINDS)})")
    if a.head_dim is None and a.d_model % a.n_heads:
        raise InputError(
            "architecture.n_heads",
            f"{a.n_heads} does not divide d_model={a.d_model}; set head_dim explicitly",
        )
    kv = a.n_kv_heads if a.n_kv_heads is not None else a.n_heads
    if kv > a.n_heads or a.n_heads % kv:
        raise InputError("architecture.n_kv_heads", f"{kv} does not divide n_heads={a.n_heads}")
    if a.n_experts:
        if not 1 <= a.top_k <= a.n_experts:
            raise InputError("architecture.top_k", f"{a.top_k} must be between 1 and n_experts={a.n_experts}")
    elif a.top_k or a.n_shared_experts or a.d_ff_expert or a.shared_expert_gate:
        raise InputError("architecture.n_experts", "MoE fields are set but n_experts is 0")


class ArchLike(Protocol):
    """Anything with resolved architecture sizes: an `Architecture` or an `ArchBatch` of arrays."""

    vocab_size: Any
    d_model: Any
    n_layers: Any
    n_heads: Any
    n_kv_heads: Any
    head_dim: Any
    d_ff: Any
    gated: Any
    layernorm: Any
    qkv_bias: Any
    o_bias: Any
    mlp_bias: Any
    tie_embeddings: Any
    n_experts: Any
    top_k: Any
    d_ff_expert: Any
    n_shared_experts: Any
    d_ff_shared: Any
    shared_expert_gate: Any


@dataclass(frozen=True)
class ArchBatch:
    """Struct-of-arrays view of N architectures, so that counting and prediction are vectorised.

    Derived columns: `gated` (SwiGLU: 3 matrices) and `layernorm`; for MoE the `d_ff_*` columns are
    0 where they do not apply, so formulas need no branches.
    """

    vocab_size: np.ndarray
    d_model: np.ndarray
    n_layers: np.ndarray
    n_heads: np.ndarray
    n_kv_heads: np.ndarray
    head_dim: np.ndarray
    d_ff: np.ndarray
    gated: np.ndarray
    layernorm: np.ndarray
    qkv_bias: np.ndarray
    o_bias: np.ndarray
    mlp_bias: np.ndarray
    tie_embeddings: np.ndarray
    n_experts: np.ndarray
    top_k: np.ndarray
    d_ff_expert: np.ndarray
    n_shared_experts: np.ndarray
    d_ff_shared: np.ndarray
    shared_expert_gate: np.ndarray

    def __len__(self) -> int:
        return int(self.d_model.shape[0])

    @classmethod
    def of(cls, archs: list[Architecture]) -> ArchBatch:
        cols: dict[str, list[Any]] = {f.name: [] for f in fields(cls)}
        for a in archs:
            row = _row(a)
            for key in cols:
                cols[key].append(row[key])
        return cls(**{k: np.asarray(v, dtype=np.int64) for k, v in cols.items()})

    def take(self, index: np.ndarray) -> ArchBatch:
        return ArchBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def architecture(self, i: int, name: str = "candidate") -> Architecture:
        """Back to a validated `Architecture`, for export and profiling of a chosen candidate."""
        v = {f.name: int(getattr(self, f.name)[i]) for f in fields(self)}
        return Architecture(
            name=name,
            vocab_size=v["vocab_size"],
            d_model=v["d_model"],
            n_layers=v["n_layers"],
            n_heads=v["n_heads"],
            n_kv_heads=v["n_kv_heads"],
            head_dim=v["head_dim"],
            d_ff=v["d_ff"],
            ffn="swiglu" if v["gated"] else "gelu",
            norm="layernorm" if v["layernorm"] else "rmsnorm",
            qkv_bias=bool(v["qkv_bias"]),
            o_bias=bool(v["o_bias"]),
            mlp_bias=bool(v["mlp_bias"]),
            tie_embeddings=bool(v["tie_embeddings"]),
            n_experts=v["n_experts"],
            top_k=v["top_k"],
            d_ff_expert=v["d_ff_expert"] or None,
            n_shared_experts=v["n_shared_experts"],
            d_ff_shared=v["d_ff_shared"] or None,
            shared_expert_gate=bool(v["shared_expert_gate"]),
        )


def _row(a: Architecture) -> dict[str, Any]:
    row = {k: v for k, v in asdict(a).items() if k in ArchBatch.__dataclass_fields__}
    row.update(
        gated=a.ffn == "swiglu",
        layernorm=a.norm == "layernorm",
        d_ff_expert=a.d_ff_expert or 0,
        d_ff_shared=a.d_ff_shared or 0,
    )
    return row


def as_arch_like(a: Architecture | ArchBatch) -> ArchLike:
    """Counting formulas read `gated`/`layernorm`; give a single Architecture those columns."""
    return a if isinstance(a, ArchBatch) else ArchBatch.of([a])


# --- exact parameter counts (work on scalars and arrays) -------------------------------------------


def ffn_matrices(a: ArchLike) -> Any:
    """SwiGLU has gate, up and down projections; a GELU MLP has up and down."""
    return np.where(a.gated, 3, 2)


def ffn_params(a: ArchLike, width: Any) -> Any:
    """One FFN (or one expert) of the given intermediate width, biases included."""
    bias = np.where(a.mlp_bias, (ffn_matrices(a) - 1) * width + a.d_model, 0)
    return ffn_matrices(a) * a.d_model * width + bias * (width > 0)


def dense_ffn_width(a: ArchLike) -> Any:
    """Width of the always-active FFN: the dense FFN, or for MoE the shared experts side by side."""
    return np.where(a.n_experts > 0, a.n_shared_experts * a.d_ff_shared, a.d_ff)


def qkv_width(a: ArchLike) -> Any:
    return (a.n_heads + 2 * a.n_kv_heads) * a.head_dim


def attention_params(a: ArchLike) -> Any:
    qkv = a.d_model * qkv_width(a) + a.qkv_bias * qkv_width(a)
    out = a.n_heads * a.head_dim * a.d_model + a.o_bias * a.d_model
    return qkv + out


def norm_params(a: ArchLike) -> Any:
    return np.where(a.layernorm, 2, 1) * a.d_model


def layer_params(a: ArchLike, experts: Any) -> Any:
    """One decoder layer with `experts` routed experts counted (all of them, or the top-k active)."""
    moe = a.n_experts > 0
    dense = np.where(moe, a.n_shared_experts * ffn_params(a, a.d_ff_shared), ffn_params(a, a.d_ff))
    routed = np.where(moe, experts * ffn_params(a, a.d_ff_expert) + a.d_model * a.n_experts, 0)
    gate = np.where(moe & (a.shared_expert_gate > 0), a.d_model, 0)
    return attention_params(a) + 2 * norm_params(a) + dense + routed + gate


def embedding_params(a: ArchLike) -> Any:
    """Input embedding plus an untied LM head (tied heads share the embedding matrix)."""
    return a.vocab_size * a.d_model * np.where(a.tie_embeddings, 1, 2)


@dataclass(frozen=True)
class ParamCounts:
    total: Any
    non_embedding: Any
    active: Any  # per token: top-k routed experts instead of all (= total for dense models)
    embedding: Any


def param_counts(a: Architecture | ArchBatch) -> ParamCounts:
    """Exact counts; `non_embedding` excludes the embedding and an untied LM head (Qwen/Chinchilla style)."""
    x = as_arch_like(a)
    body = x.n_layers * layer_params(x, x.n_experts) + norm_params(x)
    active_body = x.n_layers * layer_params(x, x.top_k) + norm_params(x)
    emb = embedding_params(x)
    counts = ParamCounts(total=body + emb, non_embedding=body, active=active_body + emb, embedding=emb)
    if isinstance(a, Architecture):
        return ParamCounts(**{k: int(v[0]) for k, v in asdict(counts).items()})
    return counts


def kv_cache_bytes_per_token(a: Architecture | ArchBatch, kv_bytes: float) -> Any:
    """2 (K and V) · layers · KV heads · head_dim · bytes: KV heads, not attention heads."""
    x = as_arch_like(a)
    value = 2 * x.n_layers * x.n_kv_heads * x.head_dim * kv_bytes
    return float(value[0]) if isinstance(a, Architecture) else value
