"""Hugging Face `config.json` → Architecture, the everyday way users describe a model.

Only the fields that shape the computation are read; each supported `model_type` says which keys mean
what (they differ: `num_local_experts` in Mixtral, `num_experts` in Qwen2-MoE). Layouts that an
Architecture cannot express (dense layers interleaved with MoE layers) are refused, not approximated.
"""

from __future__ import annotations

from typing import Any

from cobench.arch.architecture import Architecture
from cobench.errors import InputError

ACTIVATIONS = {
    "silu": "swiglu",
    "swish": "swiglu",
    "gelu": "gelu",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
}


def _llama_like(c: dict[str, Any], where: str, qkv_bias: bool | None = None) -> dict[str, Any]:
    act = _get(c, "hidden_act", where, "silu")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise InputError(f"{where}.hidden_act", f"unsupported activation {act!r} (one of {', '.join(ACTIVATIONS)})")
    bias = _get(c, "attention_bias", where, False)
    return {
        "vocab_size": _get(c, "vocab_size", where),
        "d_model": _get(c, "hidden_size", where),
        "n_layers": _get(c, "num_hidden_layers", where),
        "n_heads": _get(c, "num_attention_heads", where),
        "n_kv_heads": c.get("num_key_value_heads") or _get(c, "num_attention_heads", where),
        "head_dim": c.get("head_dim") or None,
        "d_ff": _get(c, "intermediate_size", where),
        "ffn": ACTIVATIONS[act],
        "qkv_bias": bias if qkv_bias is None else qkv_bias,
        "o_bias": bias if qkv_bias is None else False,
        "mlp_bias": bool(c.get("mlp_bias", False)),
        "tie_embeddings": bool(c.get("tie_word_embeddings", False) or c.get("share_embedding", False)),
        "max_seq_len": c.get("max_position_embeddings", 4096),
    }


def _mixtral(c: dict[str, Any], where: str) -> dict[str, Any]:
    return {
        **_llama_like(c, where),
        "n_experts": _get(c, "num_local_experts", where),
        "top_k": _get(c, "num_experts_per_tok", where),
    }


def _qwen2_moe(c: dict[str, Any], where: str) -> dict[str, Any]:
    if c.get("decoder_sparse_step", 1) != 1 or c.get("mlp_only_layers"):
        raise InputError(f"{where}.decoder_sparse_step", "dense layers mixed with MoE layers are not supported")
    shared = c.get("shared_expert_intermediate_size") or 0
    return {
        **_llama_like(c, where, qkv_bias=True),
        "n_experts": _get(c, "num_experts", where),
        "top_k": _get(c, "num_experts_per_tok", where),
        "d_ff_expert": _get(c, "moe_intermediate_size", where),
        "n_shared_experts": 1 if shared else 0,
        "d_ff_shared": shared or None,
        "shared_expert_gate": bool(shared),
    }


READERS = {
    "llama": lambda c, w: _llama_like(c, w),
    "mistral": lambda c, w: _llama_like(c, w),
    "mobilellm": lambda c, w: _llama_like(c, w),
    "qwen2": lambda c, w: _llama_like(c, w, qkv_bias=True),
    "mixtral": _mixtral,
    "qwen2_moe": _qwen2_moe,
}


def _get(c: dict[str, Any], key: str, where: str, default: Any = ...) -> Any:
    if key in c and c[key] is not None:
        return c[key]
    if default is ...:
        raise InputError(f"{where}.{key}", "required by this model_type but missing")
    return default


def is_hf_config(data: dict[str, Any]) -> bool:
    return "model_type" in data


def from_hf_config(data: dict[str, Any], name: str, where: str = "config.json") -> Architecture:
    """Read a transformers config dict; an unknown model_type lists the supported ones."""
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or model_type not in READERS:
        raise InputError(
            f"{where}.model_type", f"unsupported model_type {model_type!r} (supported: {', '.join(READERS)})"
        )
    fields = READERS[model_type](data, where)
    return Architecture.from_dict({"name": name, **fields}, where=where)
