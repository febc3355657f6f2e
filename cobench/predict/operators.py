"""Operator model: FLOPs and bytes of every operator of one forward pass, vectorised over candidates.

Counting conventions (the FLOP-counter test and the exported graphs follow the same ones):
- 2 FLOPs per multiply-add everywhere, the LM head included.
- Causal attention is halved by default: T new tokens after C cached ones attend T·C + T(T+1)/2
  (query, key) pairs, as flash-style kernels skip masked blocks. `causal=False` counts T·(C+T), which
  is what `torch.utils.flop_counter` reports for scaled_dot_product_attention.
- Logits are computed for the last position only (`logits="last"`), as a generation engine does;
  training uses `logits="all"`.
- Embedding gather, norms, RoPE, softmax, activations and residuals are memory traffic (their few
  FLOPs are counted but never make them compute-bound).
- Bytes are split into weights, activations and KV cache, so it is visible why an op is memory-bound.
  Each weight and each KV element is read once per forward (batch and GQA groups share the read).
- KV-cache update (op class "kv", memory only): "append" writes only the new positions; "concat" (what
  the exported graphs and the eager module do) also copies the cached ones into a new tensor every step.
- GQA/MQA K/V expansion: with `kv_expand` the graph repeats K and V to all query heads before attention
  (the eager module's repeat_interleave, hence the exported graphs), writing and reading the wide copy.
- MoE: each token runs top_k experts; the weights read are those of the expected number of distinct
  experts that n routed tokens touch, E·(1 − (1 − k/E)^n) — k for batch-1 decode, up to E in prefill.
  With `moe_loop` (the eager module and its exported graphs) every expert's kernels are launched each
  forward, even for experts no token chose: E launches per expert op.

Every array broadcasts: architecture columns may be (N, 1) and `past` (1, S), giving (N, S) ops.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from cobench.arch.architecture import ArchLike, dense_ffn_width, norm_params, qkv_width
from cobench.errors import InputError

OP_CLASSES = ("matmul", "attention", "elementwise", "gather", "kv")


@dataclass(frozen=True)
class Op:
    """One operator of a forward pass; sizes are per occurrence, `count` occurrences per forward."""

    name: str
    op_class: str
    count: Any
    flops: Any
    weight_bytes: Any
    act_bytes: Any
    kv_bytes: Any = 0
    launches: Any = 1  # kernel launches per occurrence (a looped MoE runs every expert's kernels)

    @property
    def bytes(self) -> Any:
        return self.weight_bytes + self.act_bytes + self.kv_bytes


@dataclass(frozen=True)
class Counting:
    """How a forward pass is counted; see the module docstring."""

    causal: bool = True
    fused_attention: bool = True
    logits: str = "last"
    kv_update: str = "append"  # "append": new K/V written in place (serving engines); "concat": the step
    # returns past ++ new as a fresh tensor, so the whole cache is read and written again (cobench's
    # exported ONNX graphs and the eager torch module do this)
    kv_expand: bool = False  # K/V repeated to n_heads before attention (cobench's graphs), not shared
    moe_loop: bool = False  # experts run one after another, each its own kernels (cobench's graphs), not grouped

    @classmethod
    def from_json(cls, data: Any, where: str = "counting") -> Counting:
        """From a stored or user-given mapping: booleans must be booleans, kinds one of theirs."""
        if not isinstance(data, dict):
            raise InputError(where, f"expected a mapping, got {type(data).__name__}")
        choices = {"logits": ("last", "all"), "kv_update": ("append", "concat")}
        known = {f.name: f for f in fields(cls)}
        for key, value in data.items():
            if key not in known:
                raise InputError(f"{where}.{key}", f"unknown field (known: {', '.join(known)})")
            if key in choices and value not in choices[key]:
                raise InputError(f"{where}.{key}", f"one of {', '.join(choices[key])}, got {value!r}")
            if key not in choices and not isinstance(value, bool):
                raise InputError(f"{where}.{key}", f"expected true/false, got {value!r}")
        return cls(**data)


def linear(
    name: str, rows: Any, d_in: Any, d_out: Any, bias: Any, count: Any, wb: float, ab: float, copies: Any = 1
) -> Op:
    """rows × d_in @ d_in × d_out; `copies` distinct weight matrices read (MoE experts touched)."""
    return Op(
        name,
        "matmul",
        count,
        flops=2 * rows * d_in * d_out,
        weight_bytes=copies * (d_in * d_out + bias * d_out) * wb,
        act_bytes=rows * (d_in + d_out) * ab,
    )


def elementwise(name: str, elems_in: Any, elems_out: Any, flops_per_out: float, count: Any, ab: float) -> Op:
    return Op(name, "elementwise", count, flops_per_out * elems_out, 0, (elems_in + elems_out) * ab)


def expected_experts(n_experts: Any, top_k: Any, tokens: Any) -> Any:
    """Distinct experts touched when `tokens` tokens each pick top_k of n_experts (uniform routing)."""
    e = np.maximum(n_experts, 1)
    return np.where(n_experts > 0, e * (1 - (1 - top_k / e) ** tokens), 0)


def attention_pairs(tokens: Any, past: Any, causal: bool) -> Any:
    """(query, key) pairs per sequence and head for T new tokens after `past` cached ones."""
    return tokens * past + (tokens * (tokens + 1) / 2 if causal else tokens * tokens)


def forward_ops(
    a: ArchLike, batch: Any, tokens: Any, past: Any, wb: float, ab: float, kvb: float, counting: Counting
) -> list[Op]:
    """All operators of one forward pass of `batch` sequences × `tokens` new tokens after `past` cached."""
    d, layers = a.d_model, a.n_layers
    n = batch * tokens
    q_width = a.n_heads * a.head_dim
    kv_width = a.n_kv_heads * a.head_dim
    pairs = batch * a.n_heads * attention_pairs(tokens, past, counting.causal)
    materialised = 0 if counting.fused_attention else 1
    moe = (a.n_experts > 0).astype(np.int64)
    gated_in = np.where(a.gated, 2, 1)  # gate and up projections read the same input: one fused matmul
    dense_w = dense_ffn_width(a)
    gate = np.where(a.shared_expert_gate > 0, 1, 0) * moe
    routed = n * a.top_k
    touched = expected_experts(a.n_experts, a.top_k, n)
    logit_rows = batch if counting.logits == "last" else n
    copied = batch * past * 2 if counting.kv_update == "concat" else 0  # read + write of the old positions
    kv_written = n + copied
    norm = norm_params(a)
    # K/V bytes per cached position that attention reads: compact, or (expanded) compact read + wide write + wide read
    grouped = (a.n_kv_heads < a.n_heads) & counting.kv_expand
    attended_width = np.where(grouped, kv_width + 2 * q_width, kv_width)
    expert_launches = np.maximum(a.n_experts, 1) if counting.moe_loop else 1
    return [
        Op("embed", "gather", 1, 0, np.minimum(n, a.vocab_size) * d * wb, n * d * ab),
        Op("attn_norm", "elementwise", layers, 4 * n * d, norm * ab, 2 * n * d * ab),
        linear("qkv_proj", n, d, qkv_width(a), a.qkv_bias, layers, wb, ab),
        elementwise("rope", n * (q_width + kv_width), n * (q_width + kv_width), 3, layers, ab),
        Op("kv_write", "kv", layers, 0, 0, n * 2 * kv_width * ab, kv_written * 2 * kv_width * kvb),
        Op(
            "attention",
            "attention",
            layers,
            flops=4 * a.head_dim * pairs,  # QK^T and AV
            weight_bytes=0,
            act_bytes=2 * n * q_width * ab + materialised * 4 * pairs * ab,
            kv_bytes=batch * (past + tokens) * 2 * attended_width * kvb,
        ),
        Op("softmax", "elementwise", layers, 5 * pairs, 0, materialised * 2 * pairs * ab),
        linear("o_proj", n, q_width, d, a.o_bias, layers, wb, ab),
        elementwise("residual_add", 2 * n * d, n * d, 1, 2 * layers, ab),
        Op("ffn_norm", "elementwise", layers, 4 * n * d, norm * ab, 2 * n * d * ab),
        linear("router", n * moe, d, a.n_experts + gate, 0, layers, wb, ab),
        linear("ffn_up", n * (dense_w > 0), d, gated_in * dense_w, a.mlp_bias, layers, wb, ab, copies=dense_w > 0),
        elementwise("ffn_act", gated_in * n * dense_w, n * dense_w, 5, layers, ab),
        linear("ffn_down", n * (dense_w > 0), dense_w, d, a.mlp_bias, layers, wb, ab, copies=dense_w > 0),
        replace(
            linear("experts_up", routed, d, gated_in * a.d_ff_expert, a.mlp_bias, layers, wb, ab, copies=touched),
            launches=expert_launches,
        ),
        replace(
            elementwise("experts_act", gated_in * routed * a.d_ff_expert, routed * a.d_ff_expert, 5, layers, ab),
            launches=expert_launches,
        ),
        replace(
            linear("experts_down", routed, a.d_ff_expert, d, a.mlp_bias, layers, wb, ab, copies=touched),
            launches=expert_launches,
        ),
        Op("final_norm", "elementwise", 1, 4 * logit_rows * d, norm * ab, 2 * logit_rows * d * ab),
        linear("lm_head", logit_rows, d, a.vocab_size, 0, 1, wb, ab),
    ]


def total(ops: list[Op], attr: str, classes: tuple[str, ...] = OP_CLASSES) -> Any:
    """Sum of count · attr over the ops of the given classes."""
    return sum(op.count * getattr(op, attr) for op in ops if op.op_class in classes)
