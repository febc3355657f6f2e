"""The architecture of a decoder-only transformer, validated, and its exact parameter counts.

One `Architecture` describes dense and MoE models (routed, shared and leading dense layers), MHA/GQA/MQA,
an explicit head_dim, SwiGLU, GeGLU or GELU FFNs, biases, RMSNorm or LayerNorm placed before, around or
after each sub-layer, tied or untied embeddings — and a per-layer pattern of token mixers: full attention,
sliding-window attention (with attention sinks), multi-head latent attention (MLA, DeepSeek), gated
delta-net linear attention (Qwen3-Next) and short convolutions (LFM2), with QK-norm, output gates,
soft-capping, layers without RoPE and multipliers. Counting functions are written once with numpy
arithmetic so that they work on a single `Architecture` (Python ints) and on an `ArchBatch` of 10^5
candidates (int64 arrays) alike; per-layer kinds enter as layer counts, since cost does not depend on
the order of the layers.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from cobench.errors import InputError
from cobench.validate import number, sequence, text

FFN_KINDS = ("swiglu", "gelu", "geglu")
NORM_KINDS = ("rmsnorm", "layernorm")
NORM_LAYOUTS = ("pre", "sandwich", "post")  # Llama; Gemma 2/3 (also after each sub-layer); OLMo 2 (after only)
QK_NORMS = ("none", "head", "proj")  # RMSNorm of q and k per head (Qwen3, Gemma 3) or over the projection (OLMo 2)
LAYER_KINDS = ("full", "sliding", "mla", "linear", "conv")
KIND_COLUMNS = {"sliding": "n_sliding", "mla": "n_mla", "linear": "n_linear", "conv": "n_conv"}


def variant(default: Any, help_: str) -> Any:
    """A field that only some families set: left out of `to_dict` at its default, so that the ids of
    architectures that do not use it stay what they were."""
    return field(default=default, metadata={"help": help_, "variant": True})


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
    layer_types: tuple[str, ...] | None = variant(
        None, f"per layer, one of {', '.join(LAYER_KINDS)} (default all full)"
    )
    sliding_window: int | None = variant(None, "tokens a sliding layer sees (its cache keeps no more)")
    attention_sinks: bool = variant(False, "a learned sink logit per head in every attention layer (gpt-oss)")
    qk_norm: str = variant("none", f"one of {', '.join(QK_NORMS)}")
    norm_layout: str = variant("pre", f"one of {', '.join(NORM_LAYOUTS)}")
    attn_output_gate: bool = variant(False, "q_proj also yields a sigmoid gate on attention's output (Qwen3-Next)")
    n_dense_layers: int = variant(0, "MoE: layers whose FFN is the dense d_ff one (DeepSeek's first_k_dense)")
    router_bias: bool = variant(False, "MoE router with a bias (gpt-oss)")
    q_lora_rank: int = variant(0, "MLA: rank of the query compression (0: a plain q_proj)")
    kv_lora_rank: int = variant(0, "MLA: rank of the latent KV an MLA layer caches")
    qk_nope_head_dim: int = variant(0, "MLA: per-head query/key dims without RoPE")
    qk_rope_head_dim: int = variant(0, "MLA: per-head query/key dims with RoPE (the key part is shared)")
    v_head_dim: int = variant(0, "MLA: per-head value dims")
    linear_key_heads: int = variant(0, "gated delta-net: query/key heads")
    linear_value_heads: int = variant(0, "gated delta-net: value heads (each keeps a key_dim x value_dim state)")
    linear_key_dim: int = variant(0, "gated delta-net: key head dim")
    linear_value_dim: int = variant(0, "gated delta-net: value head dim")
    linear_conv_kernel: int = variant(4, "gated delta-net: causal depthwise convolution width")
    conv_kernel: int = variant(3, "short convolution layers: kernel width (LFM2's L_cache)")
    conv_bias: bool = variant(False, "short convolution layers: biases")
    rope_theta: float = variant(10000.0, "RoPE base")
    rope_fraction: float = variant(1.0, "share of each head's dims that RoPE rotates (partial_rotary_factor)")
    no_rope_layers: int = variant(0, "attention layers without RoPE (SmolLM3: every fourth)")
    attn_softcap: float = variant(0.0, "attention logits soft-capped at this (Gemma 2; 0: none)")
    final_softcap: float = variant(0.0, "output logits soft-capped at this (Gemma 2; 0: none)")
    attention_multiplier: float = variant(0.0, "attention score scale (0: 1/sqrt(head_dim))")
    embedding_multiplier: float = variant(1.0, "scale of the input embeddings (Gemma: sqrt(d_model); Granite)")
    residual_multiplier: float = variant(1.0, "scale of each sub-layer's output before the residual add (Granite)")
    logits_scaling: float = variant(1.0, "output logits divided by this (Granite)")

    def __post_init__(self) -> None:
        _validate(self)
        resolve = {
            "n_kv_heads": self.n_kv_heads if self.n_kv_heads is not None else self.n_heads,
            "head_dim": self.head_dim if self.head_dim is not None else self.d_model // self.n_heads,
            "d_ff_expert": (self.d_ff_expert or self.d_ff) if self.n_experts else None,
            "d_ff_shared": (self.d_ff_shared or self.d_ff_expert or self.d_ff) if self.n_shared_experts else None,
            "layer_types": _normalised_layers(self),
        }
        for key, value in resolve.items():
            object.__setattr__(self, key, value)
        total = param_counts(self).total  # Python integers here: exact, whatever the sizes
        if not 0 < total <= MAX_PARAMS:
            raise InputError("architecture", f"{total:.3g} parameters; cobench models at most {MAX_PARAMS:.0e}")

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    @property
    def kinds(self) -> tuple[str, ...]:
        """The token mixer of every layer (the default pattern spelled out)."""
        return self.layer_types or (("mla" if self.kv_lora_rank else "full"),) * self.n_layers

    @property
    def layer_counts(self) -> dict[str, int]:
        return {k: self.kinds.count(k) for k in LAYER_KINDS}

    def dense_layer(self, i: int) -> bool:
        """Whether layer i has the dense FFN: every layer of a dense model, the first n_dense_layers of an MoE."""
        return not self.is_moe or i < self.n_dense_layers

    @property
    def variants(self) -> list[str]:
        """The variant fields (those only some families set) this architecture sets away from their defaults."""
        return [f.name for f in fields(self) if f.metadata.get("variant") and getattr(self, f.name) != f.default]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for f in fields(self):
            if f.metadata.get("variant") and out[f.name] == f.default:
                del out[f.name]
        if out.get("layer_types") is not None:
            out["layer_types"] = list(out["layer_types"])
        return out

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
    """YAML gives ints, floats, bools, strings and lists; reject anything else early with the field's name."""
    kind = str(type_name)
    if value is None and "None" in kind:
        return None
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise InputError(where, f"expected true/false, got {value!r}")
        return value
    if kind.startswith("int"):
        return number(value, where, integer=True, high=MAX_SIZE)
    if kind.startswith("float"):
        return float(number(value, where, low=0, high=1e12))
    if kind.startswith("tuple"):
        return tuple(text(v, f"{where}[{i}]") for i, v in enumerate(sequence(value, where, max_len=MAX_SIZE)))
    return text(value, where)


MAX_SIZE = 2**24  # any one size of an architecture (16.7 M: past every vocabulary, width and context)
MAX_PARAMS = 10**15  # so that every count and FLOP stays exact in int64 and float64


def _normalised_layers(a: Architecture) -> tuple[str, ...] | None:
    """None when every layer has the default mixer, so that one architecture has one spelling (and one id)."""
    default = "mla" if a.kv_lora_rank else "full"
    if a.layer_types is None or all(k == default for k in a.layer_types):
        return None
    return tuple(a.layer_types)


def _validate(a: Architecture) -> None:
    positive = ["vocab_size", "d_model", "n_layers", "n_heads", "d_ff", "max_seq_len"]
    for key in positive:
        if getattr(a, key) <= 0:
            raise InputError(f"architecture.{key}", f"must be a positive integer, got {getattr(a, key)}")
    for key in ["n_kv_heads", "head_dim", "d_ff_expert", "d_ff_shared", "sliding_window"]:
        value = getattr(a, key)
        if value is not None and value <= 0:
            raise InputError(f"architecture.{key}", f"must be a positive integer, got {value}")
    zero_or_more = ["n_experts", "top_k", "n_shared_experts", "n_dense_layers", "q_lora_rank", "kv_lora_rank"]
    zero_or_more += ["qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "no_rope_layers"]
    zero_or_more += [f"linear_{k}" for k in ("key_heads", "value_heads", "key_dim", "value_dim")]
    for key in zero_or_more:
        if getattr(a, key) < 0:
            raise InputError(f"architecture.{key}", f"must be zero or positive, got {getattr(a, key)}")
    for key in ["linear_conv_kernel", "conv_kernel"]:
        if getattr(a, key) < 1:
            raise InputError(f"architecture.{key}", f"must be a positive integer, got {getattr(a, key)}")
    for key, kinds in [("ffn", FFN_KINDS), ("norm", NORM_KINDS), ("norm_layout", NORM_LAYOUTS), ("qk_norm", QK_NORMS)]:
        if getattr(a, key) not in kinds:
            raise InputError(
                f"architecture.{key}", f"unknown {key} kind {getattr(a, key)!r} (one of {', '.join(kinds)})"
            )
    if not 0 < a.rope_fraction <= 1:
        raise InputError("architecture.rope_fraction", f"must be in (0, 1], got {a.rope_fraction}")
    for key in ["rope_theta", "embedding_multiplier", "residual_multiplier", "logits_scaling"]:
        if getattr(a, key) <= 0:
            raise InputError(f"architecture.{key}", f"must be > 0, got {getattr(a, key)}")
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
        if a.n_dense_layers > a.n_layers:
            raise InputError("architecture.n_dense_layers", f"{a.n_dense_layers} exceeds n_layers={a.n_layers}")
    elif a.top_k or a.n_shared_experts or a.d_ff_expert or a.shared_expert_gate or a.n_dense_layers or a.router_bias:
        raise InputError("architecture.n_experts", "MoE fields are set but n_experts is 0")
    _validate_layers(a)


def _validate_layers(a: Architecture) -> None:
    """Every layer kind used has the sizes it needs; sizes of kinds not used must stay unset."""
    kinds = a.layer_types if a.layer_types is not None else (("mla" if a.kv_lora_rank else "full"),) * a.n_layers
    if len(kinds) != a.n_layers:
        raise InputError("architecture.layer_types", f"{len(kinds)} entries for n_layers={a.n_layers}")
    for i, k in enumerate(kinds):
        if k not in LAYER_KINDS:
            raise InputError(
                f"architecture.layer_types[{i}]", f"unknown layer kind {k!r} (one of {', '.join(LAYER_KINDS)})"
            )
    used = set(kinds)
    needs = {
        "sliding": ["sliding_window"],
        "mla": ["kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"],
        "linear": ["linear_key_heads", "linear_value_heads", "linear_key_dim", "linear_value_dim"],
    }
    for kind, keys in needs.items():
        for key in keys:
            if kind in used and not getattr(a, key):
                raise InputError(f"architecture.{key}", f"required by the {kind!r} layers")
            if kind not in used and getattr(a, key):
                raise InputError(f"architecture.{key}", f"set, but no layer is {kind!r}")
    if "mla" not in used and a.q_lora_rank:
        raise InputError("architecture.q_lora_rank", "set, but no layer is 'mla'")
    if "linear" in used and a.linear_value_heads % a.linear_key_heads:
        raise InputError(
            "architecture.linear_value_heads", f"{a.linear_value_heads} is not a multiple of linear_key_heads"
        )
    attention = sum(k in ("full", "sliding", "mla") for k in kinds)
    if a.no_rope_layers > attention:
        raise InputError("architecture.no_rope_layers", f"{a.no_rope_layers} exceeds the {attention} attention layers")


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
    geglu: Any
    n_sliding: Any
    n_mla: Any
    n_linear: Any
    n_conv: Any
    n_dense_layers: Any
    n_nope: Any
    sliding_window: Any
    attention_sinks: Any
    qk_norm: Any
    norm_layout: Any
    attn_output_gate: Any
    router_bias: Any
    attn_softcap: Any
    final_softcap: Any
    q_lora_rank: Any
    kv_lora_rank: Any
    qk_nope_head_dim: Any
    qk_rope_head_dim: Any
    v_head_dim: Any
    linear_key_heads: Any
    linear_value_heads: Any
    linear_key_dim: Any
    linear_value_dim: Any
    linear_conv_kernel: Any
    conv_kernel: Any
    conv_bias: Any


# Columns only some families use; an ArchBatch built without them (a space of plain models) gets these.
VARIANT_COLUMNS = {
    "geglu": 0, "n_sliding": 0, "n_mla": 0, "n_linear": 0, "n_conv": 0, "n_dense_layers": 0, "n_nope": 0,
    "sliding_window": 0, "attention_sinks": 0, "qk_norm": 0, "norm_layout": 0, "attn_output_gate": 0,
    "router_bias": 0, "attn_softcap": 0, "final_softcap": 0, "q_lora_rank": 0, "kv_lora_rank": 0, "qk_nope_head_dim": 0,
    "qk_rope_head_dim": 0, "v_head_dim": 0, "linear_key_heads": 0, "linear_value_heads": 0, "linear_key_dim": 0,
    "linear_value_dim": 0, "linear_conv_kernel": 4, "conv_kernel": 3, "conv_bias": 0,
}  # fmt: skip


@dataclass(frozen=True)
class ArchBatch:
    """Struct-of-arrays view of N architectures, so that counting and prediction are vectorised.

    Derived columns: `gated` (SwiGLU or GeGLU: 3 matrices), `layernorm`, `qk_norm` and `norm_layout` as
    indices into their kinds, and per-kind layer counts (`n_sliding`, `n_mla`, `n_linear`, `n_conv`; the
    rest are full attention); for MoE the `d_ff_*` columns are 0 where they do not apply, so formulas
    need no branches. Columns of `VARIANT_COLUMNS` may be left out and take their defaults.
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
    geglu: Any = None
    n_sliding: Any = None
    n_mla: Any = None
    n_linear: Any = None
    n_conv: Any = None
    n_dense_layers: Any = None
    n_nope: Any = None
    sliding_window: Any = None
    attention_sinks: Any = None
    qk_norm: Any = None
    norm_layout: Any = None
    attn_output_gate: Any = None
    router_bias: Any = None
    attn_softcap: Any = None  # the cap, rounded (at least 1 where there is one): cost needs only whether
    final_softcap: Any = None
    q_lora_rank: Any = None
    kv_lora_rank: Any = None
    qk_nope_head_dim: Any = None
    qk_rope_head_dim: Any = None
    v_head_dim: Any = None
    linear_key_heads: Any = None
    linear_value_heads: Any = None
    linear_key_dim: Any = None
    linear_value_dim: Any = None
    linear_conv_kernel: Any = None
    conv_kernel: Any = None
    conv_bias: Any = None

    def __post_init__(self) -> None:
        for key, default in VARIANT_COLUMNS.items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, np.full(np.shape(self.d_model), default, dtype=np.int64))

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
        """Back to a validated `Architecture`, for export and profiling of a chosen candidate. Layer kinds
        come back in a canonical order (`spread_layers`); float settings (RoPE base, multipliers) that
        neither counts nor cost depend on come back at their defaults."""
        v = {f.name: int(getattr(self, f.name)[i]) for f in fields(self)}
        counts = {kind: v[column] for kind, column in KIND_COLUMNS.items()}
        return Architecture(
            name=name,
            vocab_size=v["vocab_size"],
            d_model=v["d_model"],
            n_layers=v["n_layers"],
            n_heads=v["n_heads"],
            n_kv_heads=v["n_kv_heads"],
            head_dim=v["head_dim"],
            d_ff=v["d_ff"],
            ffn=("geglu" if v["geglu"] else "swiglu") if v["gated"] else "gelu",
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
            layer_types=spread_layers(v["n_layers"], counts),
            sliding_window=v["sliding_window"] or None,
            attention_sinks=bool(v["attention_sinks"]),
            qk_norm=QK_NORMS[v["qk_norm"]],
            norm_layout=NORM_LAYOUTS[v["norm_layout"]],
            attn_output_gate=bool(v["attn_output_gate"]),
            n_dense_layers=v["n_dense_layers"],
            router_bias=bool(v["router_bias"]),
            no_rope_layers=v["n_nope"],
            attn_softcap=float(v["attn_softcap"]),
            final_softcap=float(v["final_softcap"]),
            **{k: v[k] for k in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")},
            **{k: v[k] for k in VARIANT_COLUMNS if k.startswith("linear_")},
            conv_kernel=v["conv_kernel"],
            conv_bias=bool(v["conv_bias"]),
        )


def spread_layers(n_layers: int, counts: dict[str, int]) -> tuple[str, ...]:
    """A layer pattern with these counts of the non-full kinds: the global layers (full, then MLA) spread
    evenly, each closing its group (k local : 1 global is k locals then the global, as Gemma and Qwen3-Next
    order them), the sliding, linear and convolution layers in the slots between."""
    n_global = n_layers - sum(counts.values()) + counts.get("mla", 0)
    globals_ = iter(["full"] * (n_global - counts.get("mla", 0)) + ["mla"] * counts.get("mla", 0))
    kinds: list[str | None] = [None] * n_layers
    for j in range(n_global):
        kinds[(j + 1) * n_layers // n_global - 1] = next(globals_)
    others = iter(k for k, c in counts.items() if k != "mla" for _ in range(c))
    return tuple(k if k is not None else next(others) for k in kinds)


def _row(a: Architecture) -> dict[str, Any]:
    row = {k: v for k, v in asdict(a).items() if k in ArchBatch.__dataclass_fields__}
    counts = a.layer_counts
    row.update(
        gated=a.ffn in ("swiglu", "geglu"),
        geglu=a.ffn == "geglu",
        layernorm=a.norm == "layernorm",
        d_ff_expert=a.d_ff_expert or 0,
        d_ff_shared=a.d_ff_shared or 0,
        sliding_window=a.sliding_window or 0,
        qk_norm=QK_NORMS.index(a.qk_norm),
        norm_layout=NORM_LAYOUTS.index(a.norm_layout),
        n_nope=a.no_rope_layers,
        attn_softcap=_cap(a.attn_softcap),
        final_softcap=_cap(a.final_softcap),
        **{column: counts[kind] for kind, column in KIND_COLUMNS.items()},
    )
    return row


def _cap(value: float) -> int:
    return max(1, round(value)) if value > 0 else 0


def as_arch_like(a: Architecture | ArchBatch) -> ArchLike:
    """Counting formulas read `gated`/`layernorm`; give a single Architecture those columns."""
    return a if isinstance(a, ArchBatch) else ArchBatch.of([a])


# --- exact parameter counts (work on scalars and arrays) -------------------------------------------


def ffn_matrices(a: ArchLike) -> Any:
    """SwiGLU and GeGLU have gate, up and down projections; a GELU MLP has up and down."""
    return np.where(a.gated, 3, 2)


def ffn_params(a: ArchLike, width: Any) -> Any:
    """One FFN (or one expert) of the given intermediate width, biases included."""
    bias = np.where(a.mlp_bias, (ffn_matrices(a) - 1) * width + a.d_model, 0)
    return ffn_matrices(a) * a.d_model * width + bias * (width > 0)


def dense_ffn_width(a: ArchLike) -> Any:
    """Width of the always-active FFN of an MoE layer (the shared experts side by side), or the dense FFN."""
    return np.where(a.n_experts > 0, a.n_shared_experts * a.d_ff_shared, a.d_ff)


def layers_of(a: ArchLike) -> dict[str, Any]:
    """Layers per token mixer: full and sliding attention share one layout (GQA), MLA, linear, conv."""
    full = a.n_layers - a.n_sliding - a.n_mla - a.n_linear - a.n_conv
    return {"full": full, "sliding": a.n_sliding, "mla": a.n_mla, "linear": a.n_linear, "conv": a.n_conv}


def moe_layers(a: ArchLike) -> Any:
    """Layers whose FFN is routed experts (0 for a dense model)."""
    return np.where(a.n_experts > 0, a.n_layers - a.n_dense_layers, 0)


def qkv_width(a: ArchLike) -> Any:
    """Output width of a GQA layer's q/k/v projections (q twice as wide with an output gate)."""
    return (a.n_heads * (1 + a.attn_output_gate) + 2 * a.n_kv_heads) * a.head_dim


def qk_norm_params(a: ArchLike) -> Any:
    return np.select([a.qk_norm == 1, a.qk_norm == 2], [2 * a.head_dim, (a.n_heads + a.n_kv_heads) * a.head_dim], 0)


def attention_params(a: ArchLike) -> Any:
    """One full or sliding attention layer: q/k/v/o, QK-norm and attention sinks."""
    qkv = a.d_model * qkv_width(a) + a.qkv_bias * qkv_width(a)
    out = a.n_heads * a.head_dim * a.d_model + a.o_bias * a.d_model
    extras = qk_norm_params(a) + a.attention_sinks * a.n_heads if np.any(a.qk_norm + a.attention_sinks > 0) else 0
    return qkv + out + extras


def mla_q_width(a: ArchLike) -> Any:
    return a.n_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)


def mla_params(a: ArchLike) -> Any:
    """One MLA layer (DeepSeek-V2/V3): the query (compressed through q_lora_rank, or plain), the shared
    down-projection to the latent plus the RoPE key, the latent's norm, its up-projection to per-head
    keys and values, and the output projection; the down-projections carry the attention bias."""
    latent = a.kv_lora_rank + a.qk_rope_head_dim
    q_low = a.d_model * a.q_lora_rank + a.qkv_bias * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * mla_q_width(a)
    q = np.where(a.q_lora_rank > 0, q_low, a.d_model * mla_q_width(a))
    kv = a.d_model * latent + a.qkv_bias * latent + a.kv_lora_rank
    kv_up = a.kv_lora_rank * a.n_heads * (a.qk_nope_head_dim + a.v_head_dim)
    out = a.n_heads * a.v_head_dim * a.d_model + a.o_bias * a.d_model
    return q + kv + kv_up + out


def linear_widths(a: ArchLike) -> tuple[Any, Any]:
    """Gated delta-net: (key width = key heads · key dim, value width = value heads · value dim)."""
    return a.linear_key_heads * a.linear_key_dim, a.linear_value_heads * a.linear_value_dim


def linear_attention_params(a: ArchLike) -> Any:
    """One gated delta-net layer (Qwen3-Next): q/k/v/z and β/α projections, a depthwise causal convolution
    over q, k and v, per-head decay parameters (A, dt bias), the gated output norm and out_proj."""
    key, value = linear_widths(a)
    conv = (2 * key + value) * a.linear_conv_kernel
    proj = a.d_model * (2 * key + 2 * value) + a.d_model * 2 * a.linear_value_heads
    return conv + proj + 2 * a.linear_value_heads + a.linear_value_dim + value * a.d_model


def conv_params(a: ArchLike) -> Any:
    """One short-convolution layer (LFM2): in_proj to 3·d (B, C, x), a depthwise conv of the kernel width, out_proj."""
    d = a.d_model
    return d * 3 * d + d * a.conv_kernel + d * d + a.conv_bias * (3 * d + d + d)


def norm_params(a: ArchLike) -> Any:
    return np.where(a.layernorm, 2, 1) * a.d_model


def norms_per_layer(a: ArchLike) -> Any:
    """Pre-norm and post-norm layers have two; Gemma's sandwich has four."""
    return np.where(a.norm_layout == 1, 4, 2)


def moe_ffn_params(a: ArchLike, experts: Any) -> Any:
    """One MoE FFN with `experts` routed experts counted, plus shared experts, router and shared gate."""
    shared = a.n_shared_experts * ffn_params(a, a.d_ff_shared)
    router = a.d_model * a.n_experts + a.router_bias * a.n_experts
    gate = np.where(a.shared_expert_gate > 0, a.d_model, 0)
    return shared + experts * ffn_params(a, a.d_ff_expert) + router + gate


def mixer_params(a: ArchLike) -> Any:
    """All layers' token mixers (attention, MLA, linear attention, convolutions) together; a kind no
    candidate has is not computed (most spaces have none but full attention)."""
    n = layers_of(a)
    total = (n["full"] + n["sliding"]) * attention_params(a)
    for kind, params in (("mla", mla_params), ("linear", linear_attention_params), ("conv", conv_params)):
        if np.any(n[kind] > 0):
            total = total + n[kind] * params(a)
    return total


def body_params(a: ArchLike, experts: Any) -> Any:
    """Every decoder layer and the final norm, with `experts` routed experts counted per MoE layer."""
    moe = moe_layers(a)
    dense = (a.n_layers - moe) * ffn_params(a, a.d_ff)
    return (
        mixer_params(a)
        + a.n_layers * norms_per_layer(a) * norm_params(a)
        + dense
        + moe * moe_ffn_params(a, experts)
        + norm_params(a)
    )


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
    body = body_params(x, x.n_experts)
    emb = embedding_params(x)
    counts = ParamCounts(total=body + emb, non_embedding=body, active=body_params(x, x.top_k) + emb, embedding=emb)
    if isinstance(a, Architecture):
        return ParamCounts(**{k: int(v[0]) for k, v in asdict(counts).items()})
    return counts


# --- what a generation keeps between steps ----------------------------------------------------------


def cache_elements(a: ArchLike, context: Any) -> dict[str, Any]:
    """Elements kept per sequence at `context` tokens, by layer kind: full attention keeps K and V of every
    position, a sliding layer at most its window, MLA the latent and the shared RoPE key per position; a
    gated delta-net layer keeps a key_dim × value_dim state per value head plus its convolution's last
    kernel − 1 inputs, a convolution layer its last kernel − 1 inputs: neither grows with the context."""
    n = layers_of(a)
    kv = 2 * a.n_kv_heads * a.head_dim
    key, value = linear_widths(a)
    return {
        "full": n["full"] * context * kv,
        "sliding": n["sliding"] * np.minimum(context, np.maximum(a.sliding_window, 1)) * kv,
        "mla": n["mla"] * context * (a.kv_lora_rank + a.qk_rope_head_dim),
        "linear": n["linear"]
        * (
            a.linear_value_heads * a.linear_key_dim * a.linear_value_dim
            + (2 * key + value) * (a.linear_conv_kernel - 1)
        ),
        "conv": n["conv"] * a.d_model * (a.conv_kernel - 1),
    }


def cache_bytes(a: Architecture | ArchBatch, context: Any, kv_bytes: float) -> Any:
    """Bytes of KV cache and recurrent state one sequence keeps at `context` tokens (what a decode step reads)."""
    x = as_arch_like(a)
    value = sum(cache_elements(x, context).values()) * kv_bytes
    return float(np.asarray(value).flat[0]) if isinstance(a, Architecture) else value


def kv_cache_bytes_per_token(a: Architecture | ArchBatch, kv_bytes: float) -> Any:
    """Cache bytes one more token of context adds while it is inside every window: 2 (K and V) · KV heads ·
    head_dim per attention layer, the latent per MLA layer; linear and convolution layers add none."""
    x = as_arch_like(a)
    n = layers_of(x)
    value = (
        (n["full"] + n["sliding"]) * 2 * x.n_kv_heads * x.head_dim + n["mla"] * (x.kv_lora_rank + x.qk_rope_head_dim)
    ) * kv_bytes
    return float(value[0]) if isinstance(a, Architecture) else value
