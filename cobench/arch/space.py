"""Search spaces: a YAML grid of architecture axes plus constraints, enumerated in vectorised chunks.

A candidate's id is its flat index in the full grid, so enumeration is deterministic and a sweep can
resume chunk by chunk. Invalid combinations (KV heads not dividing heads, heads not dividing d_model
without a head_dim axis, top_k > experts) and constraint violations are masked out with numpy; a
dense candidate is kept once, not once per MoE-only axis value.

```yaml
name: small-llms
fixed: {vocab_size: 32000, ffn: swiglu, tie_embeddings: true}
grid:
  d_model: [512, 768, 1024]
  n_layers: {range: [4, 32, 2]}        # start, stop (inclusive), step
  n_heads: [8, 16]
  n_kv_heads: [1, 2, 4, 8]             # 0: as many as the query heads (MHA)
  ffn_ratio: [2.0, 2.67, 4.0]          # d_ff = ffn_ratio · d_model rounded up to ffn_multiple
  n_experts: [0, 8]
  top_k: [1, 2]
  local_global: [0, 5]                 # k sliding-window layers per full-attention one (0: all full)
  sliding_window: [512, 1024]          # only varies where there are sliding layers
  linear_fraction: [0.0, 0.75]         # share of layers that are gated delta-net (Qwen3-Next: 0.75)
  mla_rank: [0, 256]                   # the full-attention layers as MLA with this latent rank (0: GQA)
constraints: {max_params: 1.0e9, ffn_multiple: 64, fits_memory: true}
workload: {batch: 1, prompt: 1024, generate: 16, precision: fp16}
```

Layer-pattern axes: of the n_layers, round(linear_fraction · n) are gated delta-net and round(conv_fraction · n)
short convolutions; of the attention layers left, one in local_global + 1 is global (full, or MLA with
mla_rank > 0) and the rest slide over sliding_window tokens; a candidate needs one global layer. Sizes the
axes do not set come from `fixed` or default to the attention's: linear-attention heads = n_heads and head
dims = head_dim; MLA's nope and value head dims = head_dim, its RoPE dims head_dim / 2.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import FFN_KINDS, MAX_SIZE, NORM_KINDS, NORM_LAYOUTS, QK_NORMS, ArchBatch, param_counts
from cobench.arch.workload import Workload
from cobench.errors import InputError
from cobench.files import read_mapping
from cobench.validate import number

INT_AXES = (
    "d_model",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "head_dim",
    "d_ff",
    "vocab_size",
    "n_experts",
    "top_k",
    "n_shared_experts",
    "local_global",
    "sliding_window",
    "mla_rank",
)
RATIO_AXES = ("ffn_ratio", "expert_ratio", "linear_fraction", "conv_fraction")
PATTERN_FIELDS = ("local_global", "sliding_window", "mla_rank", "linear_fraction", "conv_fraction")
FRACTION_AXES = ("linear_fraction", "conv_fraction")
MOE_ONLY_AXES = ("top_k", "expert_ratio", "n_shared_experts")
FIXED_FIELDS = (
    "vocab_size",
    "ffn",
    "norm",
    "qkv_bias",
    "o_bias",
    "mlp_bias",
    "tie_embeddings",
    "n_experts",
    "top_k",
    "n_shared_experts",
    "shared_expert_gate",
    "head_dim",
    "n_kv_heads",
    "d_ff",
    "qk_norm",
    "norm_layout",
    "attention_sinks",
    "attn_output_gate",
    "local_global",
    "sliding_window",
    "mla_rank",
    "q_lora_rank",
    "qk_nope_head_dim",
    "qk_rope_head_dim",
    "v_head_dim",
    "linear_fraction",
    "conv_fraction",
    "linear_key_heads",
    "linear_value_heads",
    "linear_key_dim",
    "linear_value_dim",
    "linear_conv_kernel",
    "conv_kernel",
)
CONSTRAINTS = {
    "max_params": "total parameters at most",
    "min_params": "total parameters at least",
    "max_active_params": "active parameters per token at most (MoE)",
    "ffn_multiple": "round d_ff (and expert widths) up to a multiple of this (default 64)",
    "head_dim_multiple": "head_dim must be a multiple of this (default 8)",
    "fits_memory": "keep only candidates whose predicted peak memory fits the device (default true)",
    "max_ttft_ms": "latency budget on time to first token",
    "max_tpot_ms": "latency budget on time per output token",
    "max_e2e_ms": "latency budget on end-to-end latency",
}
CHUNK = 65536


@dataclass(frozen=True)
class SearchSpace:
    name: str
    axes: dict[str, np.ndarray]  # ordered: the grid's shape follows this order
    fixed: dict[str, Any]
    constraints: dict[str, Any]
    workload: Workload
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for v in self.axes.values())

    @property
    def grid_size(self) -> int:
        return math.prod(self.shape)  # a Python int: exact, however large the grid

    @property
    def n_chunks(self) -> int:
        return max(1, -(-self.grid_size // CHUNK))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.source, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def chunk(self, k: int) -> tuple[np.ndarray, ArchBatch]:
        """The valid candidates of chunk k: (their grid indices, their architectures)."""
        index = np.arange(k * CHUNK, min((k + 1) * CHUNK, self.grid_size), dtype=np.int64)
        coords = np.unravel_index(index, self.shape)
        values = {name: axis[c] for (name, axis), c in zip(self.axes.items(), coords, strict=True)}
        first = {name: c == 0 for name, c in zip(self.axes, coords, strict=True)}
        batch, valid = self._columns(values, first, len(index))
        counts = param_counts(batch)
        c = self.constraints
        valid &= counts.total <= c.get("max_params", np.inf)
        valid &= counts.total >= c.get("min_params", 0)
        valid &= counts.active <= c.get("max_active_params", np.inf)
        keep = np.flatnonzero(valid)
        return index[keep], batch.take(keep)

    def chunks(self) -> Iterator[tuple[int, np.ndarray, ArchBatch]]:
        for k in range(self.n_chunks):
            yield (k, *self.chunk(k))

    def _columns(self, v: dict[str, np.ndarray], first: dict[str, np.ndarray], n: int) -> tuple[ArchBatch, np.ndarray]:
        def col(name: str, default: Any) -> np.ndarray:
            if name in v:
                return v[name].astype(np.float64) if name in RATIO_AXES else v[name].astype(np.int64)
            return np.full(n, self.fixed.get(name, default))

        fm = int(self.constraints.get("ffn_multiple", 64))
        d_model, n_heads = col("d_model", 0), col("n_heads", 0)
        n_kv = col("n_kv_heads", 0)
        n_kv = np.where(n_kv > 0, n_kv, n_heads)
        explicit_hd = "head_dim" in v or "head_dim" in self.fixed
        head_dim = col("head_dim", 0) if explicit_hd else d_model // np.maximum(n_heads, 1)
        d_ff = col("d_ff", 0) if "d_ff" in v or "d_ff" in self.fixed else _round_up(col("ffn_ratio", 4.0) * d_model, fm)
        experts, top_k = col("n_experts", 0), col("top_k", 0)
        moe = experts > 0
        d_ff_expert = np.where(moe, _round_up(col("expert_ratio", 0.0) * d_model, fm), 0)
        d_ff_expert = np.where(moe & (d_ff_expert == 0), d_ff, d_ff_expert)
        shared = np.where(moe, col("n_shared_experts", 0), 0)
        valid = (n_kv <= n_heads) & (n_heads % np.maximum(n_kv, 1) == 0)
        valid &= (head_dim % int(self.constraints.get("head_dim_multiple", 8)) == 0) & (head_dim > 0)
        if not explicit_hd:
            valid &= d_model % np.maximum(n_heads, 1) == 0
        valid &= np.where(moe, (top_k >= 1) & (top_k <= experts), True)
        for axis in MOE_ONLY_AXES:  # a dense model does not vary with MoE-only axes: keep it once
            if axis in first:
                valid &= moe | first[axis]
        if "expert_ratio" in v:  # nor does an MoE without shared experts vary with the dense FFN width
            for axis in ("ffn_ratio", "d_ff"):
                if axis in first:
                    valid &= ~moe | (shared > 0) | first[axis]
        flag = {
            k: np.full(n, bool(self.fixed.get(k, False)), dtype=np.int64)
            for k in ("qkv_bias", "o_bias", "mlp_bias", "tie_embeddings", "shared_expert_gate", "attention_sinks",
                      "attn_output_gate")
        }  # fmt: skip
        pattern, pattern_valid = self._pattern(col, first, n_heads, head_dim)
        valid &= pattern_valid
        ffn = self.fixed.get("ffn", "swiglu")
        batch = ArchBatch(
            vocab_size=col("vocab_size", 32000),
            d_model=d_model,
            n_layers=col("n_layers", 0),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            head_dim=head_dim,
            d_ff=d_ff,
            gated=np.full(n, ffn in ("swiglu", "geglu"), dtype=np.int64),
            geglu=np.full(n, ffn == "geglu", dtype=np.int64),
            layernorm=np.full(n, self.fixed.get("norm", "rmsnorm") == "layernorm", dtype=np.int64),
            qk_norm=np.full(n, QK_NORMS.index(self.fixed.get("qk_norm", "none")), dtype=np.int64),
            norm_layout=np.full(n, NORM_LAYOUTS.index(self.fixed.get("norm_layout", "pre")), dtype=np.int64),
            n_experts=experts,
            top_k=np.where(moe, top_k, 0),
            d_ff_expert=d_ff_expert,
            n_shared_experts=shared,
            d_ff_shared=np.where(shared > 0, d_ff_expert, 0),
            shared_expert_gate=flag["shared_expert_gate"] * moe,
            **{k: flag[k] for k in ("qkv_bias", "o_bias", "mlp_bias", "tie_embeddings", "attention_sinks")},
            attn_output_gate=flag["attn_output_gate"],
            **pattern,
        )
        return batch, valid

    def _pattern(
        self, col: Any, first: dict[str, np.ndarray], n_heads: np.ndarray, head_dim: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Layer counts per kind and the sizes each kind needs, from the layer-pattern axes (module docstring);
        none for a space without them (the batch's defaults: every layer full attention)."""
        if not set(PATTERN_FIELDS) & (set(self.axes) | set(self.fixed)):
            return {}, np.ones(len(n_heads), dtype=bool)
        n_layers = col("n_layers", 0)
        linear = np.rint(col("linear_fraction", 0.0) * n_layers).astype(np.int64)
        conv = np.rint(col("conv_fraction", 0.0) * n_layers).astype(np.int64)
        attention = n_layers - linear - conv
        n_global = attention // (col("local_global", 0) + 1)
        sliding = attention - n_global
        rank = col("mla_rank", 0)
        mla = np.where(rank > 0, n_global, 0)
        window = np.where(sliding > 0, col("sliding_window", 0), 0)
        valid = (n_global >= 1) & np.where(sliding > 0, window > 0, True)
        if "sliding_window" in first:  # without sliding layers the window does not matter: keep one
            valid &= (sliding > 0) | first["sliding_window"]

        def sized(key: str, default: np.ndarray, used: np.ndarray) -> np.ndarray:
            return np.where(used > 0, col(key, 0) if key in self.fixed else default, 0)

        return {
            "n_sliding": sliding,
            "n_mla": mla,
            "n_linear": linear,
            "n_conv": conv,
            "sliding_window": window,
            "kv_lora_rank": np.where(mla > 0, rank, 0),
            "q_lora_rank": sized("q_lora_rank", np.zeros_like(rank), mla),
            "qk_nope_head_dim": sized("qk_nope_head_dim", head_dim, mla),
            "qk_rope_head_dim": sized("qk_rope_head_dim", np.maximum(head_dim // 2, 2), mla),
            "v_head_dim": sized("v_head_dim", head_dim, mla),
            "linear_key_heads": sized("linear_key_heads", n_heads, linear),
            "linear_value_heads": sized("linear_value_heads", n_heads, linear),
            "linear_key_dim": sized("linear_key_dim", head_dim, linear),
            "linear_value_dim": sized("linear_value_dim", head_dim, linear),
            "linear_conv_kernel": col("linear_conv_kernel", 4),
            "conv_kernel": col("conv_kernel", 3),
        }, valid


def _number(value: Any) -> Any:
    """PyYAML reads 1.5e9 (no sign in the exponent) as a string; accept it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _round_up(x: np.ndarray, multiple: int) -> np.ndarray:
    return (np.ceil(np.asarray(x) / multiple) * multiple).astype(np.int64)


MAX_AXIS_VALUES = 10_000  # values of one axis: past any grid a sweep could finish
MAX_RATIO = 1e3


def _axis(name: str, spec: Any) -> np.ndarray:
    where = f"space.grid.{name}"
    integer = name in INT_AXES
    low = 0 if name in ("n_experts", "n_shared_experts", "top_k", "local_global", "mla_rank", "n_kv_heads") else 1
    bounds: dict[str, Any] = (
        {"integer": True, "low": low, "high": MAX_SIZE} if integer else {"low": 0, "open_low": True, "high": MAX_RATIO}
    )
    if name in FRACTION_AXES:  # a share of the layers: 0 allowed, all of them not (one global layer is kept)
        bounds = {"low": 0, "high": 1}
    if isinstance(spec, dict):
        if set(spec) != {"range"} or not isinstance(spec["range"], list) or len(spec["range"]) != 3:
            raise InputError(where, "expected a list of values or {range: [start, stop, step]}")
        start, stop = (number(_number(v), f"{where}.range[{i}]", **bounds) for i, v in enumerate(spec["range"][:2]))
        step = number(_number(spec["range"][2]), f"{where}.range[2]", integer=integer, low=0, open_low=True,
                      high=bounds["high"])  # fmt: skip
        if stop < start:
            raise InputError(where, f"range [start, stop, step] needs stop >= start, got {spec['range']}")
        count = math.floor((stop - start) / step) + 1  # computed before anything is allocated
        if count > MAX_AXIS_VALUES:
            raise InputError(where, f"range gives {count:,} values; an axis may have {MAX_AXIS_VALUES:,}")
        values = np.arange(count) * step + start
    elif isinstance(spec, list) and spec:
        if len(spec) > MAX_AXIS_VALUES:
            raise InputError(where, f"{len(spec):,} values; an axis may have {MAX_AXIS_VALUES:,}")
        values = np.asarray([number(_number(v), f"{where}[{i}]", **bounds) for i, v in enumerate(spec)])
    else:
        raise InputError(where, "expected a non-empty list of values or {range: [start, stop, step]}")
    return values.astype(np.int64 if integer else np.float64)


def parse_space(data: dict[str, Any], name: str = "space") -> SearchSpace:
    """Validate a search-space mapping; every error names the offending key."""
    known = {"name", "description", "fixed", "grid", "constraints", "workload"}
    unknown = set(data) - known
    if unknown:
        raise InputError(f"space.{sorted(unknown)[0]}", f"unknown section (known: {', '.join(sorted(known))})")
    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise InputError("space.grid", "required: a mapping of axis → values")
    for axis in grid:
        if axis not in INT_AXES + RATIO_AXES:
            raise InputError(f"space.grid.{axis}", f"unknown axis (one of {', '.join(INT_AXES + RATIO_AXES)})")
    for required in ("d_model", "n_layers", "n_heads"):
        if required not in grid:
            raise InputError(f"space.grid.{required}", "required axis is missing")
    if "d_ff" in grid and "ffn_ratio" in grid:
        raise InputError("space.grid.ffn_ratio", "give either d_ff or ffn_ratio, not both")
    axes = {k: _axis(k, v) for k, v in grid.items()}
    fixed = data.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise InputError("space.fixed", "expected a mapping")
    for key in fixed:
        if key not in FIXED_FIELDS:
            raise InputError(f"space.fixed.{key}", f"unknown field (one of {', '.join(FIXED_FIELDS)})")
        if key in grid:
            raise InputError(f"space.fixed.{key}", "also a grid axis")
    for key, value in fixed.items():
        if isinstance(value, (dict, list)) or value is None:
            raise InputError(f"space.fixed.{key}", f"expected a single value, got {value!r}")
        if key in INT_AXES + RATIO_AXES or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            number(value, f"space.fixed.{key}", integer=key in INT_AXES, low=0, high=MAX_SIZE)
    if fixed.get("ffn", "swiglu") not in FFN_KINDS:
        raise InputError("space.fixed.ffn", f"one of {', '.join(FFN_KINDS)}")
    for key, kinds in (("norm", NORM_KINDS), ("qk_norm", QK_NORMS), ("norm_layout", NORM_LAYOUTS)):
        if key in fixed and fixed[key] not in kinds:
            raise InputError(f"space.fixed.{key}", f"one of {', '.join(kinds)}")
    local = axes["local_global"] if "local_global" in axes else np.asarray([fixed.get("local_global", 0)])
    if np.any(local > 0) and "sliding_window" not in grid and "sliding_window" not in fixed:
        raise InputError("space.grid.sliding_window", "required where local_global > 0 (the sliding layers' window)")
    for key in FRACTION_AXES:
        if key in fixed and not 0 <= fixed[key] < 1:
            raise InputError(f"space.fixed.{key}", f"a share of the layers in [0, 1), got {fixed[key]!r}")
    constraints = data.get("constraints") or {}
    if not isinstance(constraints, dict):
        raise InputError("space.constraints", "expected a mapping")
    constraints = {k: _number(v) for k, v in constraints.items()}
    for key, value in constraints.items():
        if key not in CONSTRAINTS:
            raise InputError(f"space.constraints.{key}", f"unknown constraint (one of {', '.join(CONSTRAINTS)})")
        if key == "fits_memory" and not isinstance(value, bool):
            raise InputError(f"space.constraints.{key}", f"expected true/false, got {value!r}")
        if key != "fits_memory":
            number(value, f"space.constraints.{key}", low=0, open_low=True, high=1e18)
    if "max_params" in constraints and constraints["max_params"] < constraints.get("min_params", 0):
        raise InputError("space.constraints.min_params", "larger than max_params")
    w = data.get("workload") or {}
    if not isinstance(w, dict) or set(w) - set(Workload.__dataclass_fields__):
        raise InputError("space.workload", f"expected a mapping of {', '.join(Workload.__dataclass_fields__)}")
    return SearchSpace(str(data.get("name", name)), axes, fixed, constraints, Workload(**w), data)


def load_space(path: Path) -> SearchSpace:
    if not path.is_file():
        raise InputError("space", f"file {path} does not exist")
    return parse_space(read_mapping(path, "space"), name=path.stem)
