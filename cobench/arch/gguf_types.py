"""The GGUF type llama.cpp's quantiser gives each weight tensor, and so the bytes a pass really reads.

A GGUF file type names a mix, not one type. These are the rules of llama.cpp's `llama_tensor_get_type` for its
`llama` and `qwen3` architectures (the layouts measure/gguf_layout.py writes), checked tensor by tensor against
files the installed llama.cpp quantised (tests/test_gguf_types.py):
- The output matrix (the token embedding when tied) is Q6_K, unless the file type is Q8_0.
- Q4_K_M gives attn_v and ffn_down Q6_K in the layers llama.cpp's `use_more_bits` picks (the first and last
  eighth of the layers and every third one between), Q4_K elsewhere.
- A k-quant whose rows do not split into 256-value super-blocks falls back to a 32-value type (Q4_K → Q5_0,
  Q6_K → Q8_0): mobilellm-125m (d_model 576) at "Q4_K_M" is mostly Q5_0 and Q8_0. A row that does not split
  into 32 either is F16.
- Routed experts (Mixtral's layout): the router stays F32; ffn_down_exps follows ffn_down's rule, the other
  experts the base type. With exactly 8 experts (Mixtral 8x7B's case) attn_k and attn_v are Q8_0 and, at Q4_K_M,
  attn_output Q5_K.
- Vectors (norms, QK-norms, biases) stay F32.
Everything is vectorised over architecture columns, as operators.py is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cobench.arch.architecture import (
    ArchLike,
    layers_of,
    moe_layers,
    param_counts,
    qkv_width,
)
from cobench.arch.precision import precision

BLOCKS = {  # GGUF type → (values per block, bytes per block) (ggml's block structs)
    "F32": (1, 4),
    "F16": (1, 2),
    "Q8_0": (32, 34),
    "Q5_0": (32, 22),
    "Q4_0": (32, 18),
    "Q5_1": (32, 24),
    "Q4_K": (256, 144),
    "Q5_K": (256, 176),
    "Q6_K": (256, 210),
}
FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q8_0": "F16", "Q5_0": "F16", "Q5_1": "F16", "Q4_0": "F16"}
FILE_TYPES = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_k_m": "Q4_K"}  # cobench precision → the mix's base type


def type_bytes(gguf_type: str, row: Any) -> Any:
    """Bytes per weight of a tensor asked to be `gguf_type` whose rows are `row` values long (fallbacks applied)."""
    chosen = np.zeros(np.shape(row))
    settled = np.zeros(np.shape(row), dtype=bool)
    t: str | None = gguf_type
    while t is not None:
        per_block, nbytes = BLOCKS[t]
        fits = ~settled & (np.asarray(row) % per_block == 0)
        chosen = np.where(fits, nbytes / per_block, chosen)
        settled |= fits
        t = FALLBACK.get(t)
    return chosen


def more_bits_share(n_layers: Any) -> Any:
    """Share of the layers llama.cpp's `use_more_bits(i, n)` picks: i < n/8, i ≥ 7n/8 or (i − n/8) % 3 == 2."""
    n = np.asarray(n_layers)[..., None]
    i = np.arange(int(np.max(n_layers)) + 1)
    picked = (i < n // 8) | (i >= 7 * n // 8) | ((i - n // 8) % 3 == 2)
    return (picked & (i < n)).sum(axis=-1) / np.maximum(np.asarray(n_layers), 1)


def op_weight_bytes(a: ArchLike, name: str) -> dict[str, Any]:
    """Real bytes per weight of the operators whose matrices a GGUF file type stores in its own mix; {} for a
    precision that is one type throughout."""
    if name not in FILE_TYPES:
        return {}
    base = FILE_TYPES[name]
    d, q_width, kv_width = a.d_model, a.n_heads * a.head_dim, a.n_kv_heads * a.head_dim
    eight = a.n_experts == 8
    output = type_bytes("Q8_0" if base == "Q8_0" else "Q6_K", d)
    mixed = more_bits_share(a.n_layers) if name == "q4_k_m" else 0

    def down(row: Any) -> Any:  # attn_v and ffn_down: Q6_K in the layers use_more_bits picks (Q4_K_M)
        return mixed * type_bytes("Q6_K", row) + (1 - mixed) * type_bytes(base, row)

    qk = type_bytes(base, d)
    k = np.where(eight, type_bytes("Q8_0", d), qk)
    v = np.where(eight, type_bytes("Q8_0", d), down(d))
    return {
        "embed": np.where(a.tie_embeddings, output, qk),
        "lm_head": output,
        "qkv_proj": (qk * (qkv_width(a) - 2 * kv_width) + (k + v) * kv_width) / qkv_width(a),
        "o_proj": np.where(eight & (name == "q4_k_m"), type_bytes("Q5_K", q_width), type_bytes(base, q_width)),
        "ffn_up": qk,
        "ffn_down": down(a.d_ff),
        "router": np.full(np.shape(d), 4.0),
        "experts_up": qk,
        "experts_down": down(a.d_ff_expert),
    }


def op_weights(a: ArchLike) -> dict[str, Any]:
    """Weights of each of those operators' matrices, over the whole model (the tied embedding counted once)."""
    d, q_width = a.d_model, a.n_heads * a.head_dim
    kinds = layers_of(a)
    attention, dense = kinds["full"] + kinds["sliding"], a.n_layers - moe_layers(a)
    moe, gated = moe_layers(a), np.where(a.gated, 2, 1)
    return {
        "embed": a.vocab_size * d,
        "lm_head": a.vocab_size * d * np.where(a.tie_embeddings, 0, 1),
        "qkv_proj": attention * d * qkv_width(a),
        "o_proj": attention * q_width * d,
        "ffn_up": dense * d * a.d_ff * gated,
        "ffn_down": dense * a.d_ff * d,
        "router": moe * d * (a.n_experts + (a.shared_expert_gate > 0)),
        "experts_up": moe * a.n_experts * d * a.d_ff_expert * gated,
        "experts_down": moe * a.n_experts * a.d_ff_expert * d,
    }


def weight_bytes(a: ArchLike, name: str) -> Any:
    """Resident weight bytes at precision `name`: a GGUF mix counted tensor by tensor (every parameter outside
    its matrices — norms, QK-norms, biases — a vector llama.cpp keeps in F32), any other precision as
    parameters × its bytes per weight."""
    total = param_counts(a).total
    real = op_weight_bytes(a, name)
    if not real:
        return total * precision(name).weight_bytes
    counted = op_weights(a)
    return sum(counted[k] * real[k] for k in real) + (total - sum(counted.values())) * 4
