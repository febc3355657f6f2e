"""Hugging Face `config.json` → Architecture, the everyday way users describe a model.

Only the fields that shape the computation are read; each supported `model_type` says which keys mean
what (they differ: `num_local_experts` in Mixtral and gpt-oss, `num_experts` in Qwen, `n_routed_experts`
in DeepSeek) and, where a config may leave a key out, which default transformers' config class gives it
(Gemma 3's nested `text_config` relies on them). Both RoPE layouts are read: the older top-level
`rope_theta` and transformers 5's `rope_parameters` (per layer type for Gemma 3). A per-layer
`layer_types` list is read where a config has one, and rebuilt the way transformers does where it does
not (Gemma's 1-in-2 and 1-in-6 global layers, Qwen3-Next's `full_attention_interval`, SmolLM3's
`no_rope_layers`). Anything an Architecture cannot express is refused, not approximated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cobench.arch.architecture import MAX_SIZE, Architecture
from cobench.errors import InputError
from cobench.validate import number

ACTIVATIONS = {
    "silu": "swiglu",
    "swish": "swiglu",
    "gelu": "gelu",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
}
LAYER_TYPES = {
    "full_attention": "full",
    "sliding_attention": "sliding",
    "linear_attention": "linear",
    "conv": "conv",
}
Config = dict[str, Any]


def _get(c: Config, key: str, where: str, default: Any = ...) -> Any:
    if key in c and c[key] is not None:
        return c[key]
    if default is ...:
        raise InputError(f"{where}.{key}", "required by this model_type but missing")
    return default


def _int(c: Config, key: str, where: str, default: Any = ..., low: int = 0) -> int:
    """An integer setting a reader computes with (the Architecture validates the fields it ends up in)."""
    return int(number(_get(c, key, where, default), f"{where}.{key}", integer=True, low=low, high=MAX_SIZE))


def _float(c: Config, key: str, where: str, default: Any = ...) -> float:
    return float(number(_get(c, key, where, default), f"{where}.{key}", low=0, high=1e12))


def _indices(c: Config, key: str, where: str) -> set[int]:
    """A list of layer indices (or 0/1 flags), each an integer."""
    values = c.get(key) or []
    if not isinstance(values, list):
        raise InputError(f"{where}.{key}", f"expected a list of layer indices, got {type(values).__name__}")
    return {int(number(v, f"{where}.{key}[{i}]", integer=True, low=0, high=MAX_SIZE)) for i, v in enumerate(values)}


def _rope(c: Config, where: str, default_theta: float = 10000.0) -> dict[str, Any]:
    """RoPE base and rotated share, from `rope_parameters` (newer; Gemma 3 keeps one per layer type, the
    global layers' is the one read) or from the top-level keys (older)."""
    params = c.get("rope_parameters")
    if isinstance(params, dict) and isinstance(params.get("full_attention"), dict):
        params = params["full_attention"]
    if params is not None and not isinstance(params, dict):
        raise InputError(f"{where}.rope_parameters", f"expected a mapping, got {type(params).__name__}")
    params = params or {}
    theta = params.get("rope_theta", c.get("rope_theta", default_theta))
    fraction = params.get("partial_rotary_factor", c.get("partial_rotary_factor", 1.0))
    return {"rope_theta": theta, "rope_fraction": fraction}


def _layer_types(c: Config, where: str, n_layers: int, default: Callable[[int], str] | None) -> list[str] | None:
    """The config's own `layer_types`, or transformers' default pattern (`default(i)` for layer i)."""
    types = c.get("layer_types")
    if types is None:
        return None if default is None else [default(i) for i in range(n_layers)]
    if not isinstance(types, list):
        raise InputError(f"{where}.layer_types", f"expected a list, got {type(types).__name__}")
    for i, t in enumerate(types):
        if not isinstance(t, str) or t not in LAYER_TYPES:
            raise InputError(
                f"{where}.layer_types[{i}]", f"unsupported layer type {t!r} (one of {', '.join(LAYER_TYPES)})"
            )
    return list(types)


def _windowed(fields: dict[str, Any], types: list[str] | None, window: Any) -> dict[str, Any]:
    """Layer kinds and window; a window no shorter than the context is no window (Phi-4-mini's 262 144)."""
    if window is not None:
        window = int(number(window, "config.json.sliding_window", integer=True, low=1, high=MAX_SIZE))
    if types is not None and window is not None and window < fields["max_seq_len"] and "sliding_attention" in types:
        return {**fields, "layer_types": [LAYER_TYPES[t] for t in types], "sliding_window": window}
    if types is not None:
        kinds = [LAYER_TYPES[t] if t != "sliding_attention" else "full" for t in types]
        return {**fields, "layer_types": kinds}
    return fields


def _llama_like(c: Config, where: str, qkv_bias: bool | None = None, tie: bool = False) -> dict[str, Any]:
    """The keys every family shares; `tie` is the family's default for an absent tie_word_embeddings."""
    act = _get(c, "hidden_act", where, "silu")
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise InputError(f"{where}.hidden_act", f"unsupported activation {act!r} (one of {', '.join(ACTIVATIONS)})")
    bias = _get(c, "attention_bias", where, False)
    return {
        "vocab_size": _get(c, "vocab_size", where),
        "d_model": _get(c, "hidden_size", where),
        "n_layers": _int(c, "num_hidden_layers", where, low=1),
        "n_heads": _get(c, "num_attention_heads", where),
        "n_kv_heads": c.get("num_key_value_heads") or _get(c, "num_attention_heads", where),
        "head_dim": c.get("head_dim") or None,
        "d_ff": _get(c, "intermediate_size", where),
        "ffn": ACTIVATIONS[act],
        "qkv_bias": bias if qkv_bias is None else qkv_bias,
        "o_bias": bias if qkv_bias is None else False,
        "mlp_bias": bool(c.get("mlp_bias", False)),
        "tie_embeddings": bool(c.get("tie_word_embeddings", tie) or c.get("share_embedding", False)),
        "max_seq_len": _int(c, "max_position_embeddings", where, 4096, low=1),
        **_rope(c, where),
    }


def _dense(c: Config, where: str, qkv_bias: bool | None = None) -> dict[str, Any]:
    """Llama, Mistral, Phi-3/4 (fused q/k/v and gate/up: the same parameters): every layer full attention,
    or, with a `sliding_window`, every layer windowed (as transformers runs Mistral and Phi-3)."""
    fields = _llama_like(c, where, qkv_bias)
    window = c.get("sliding_window")
    return _windowed(fields, _layer_types(c, where, fields["n_layers"], lambda i: "sliding_attention"), window)


def _qwen(c: Config, where: str, qkv_bias: bool | None = None, tie: bool = False) -> dict[str, Any]:
    """Qwen2/Qwen3 (and SmolLM3): windowed layers only with `use_sliding_window`, from `max_window_layers` on."""
    fields = _llama_like(c, where, qkv_bias, tie)
    window = c.get("sliding_window") if c.get("use_sliding_window") else None
    start = _int(c, "max_window_layers", where, fields["n_layers"])
    types = _layer_types(
        c, where, fields["n_layers"], lambda i: "sliding_attention" if i >= start else "full_attention"
    )
    return _windowed(fields, types, window)


def _qwen3(c: Config, where: str) -> dict[str, Any]:
    return {**_qwen(c, where), "qk_norm": "head"}


def _olmo2(c: Config, where: str) -> dict[str, Any]:
    """OLMo 2: norms after each sub-layer only, q and k normed over the whole projection."""
    return {**_llama_like(c, where), "qk_norm": "proj", "norm_layout": "post"}


def _granite(c: Config, where: str) -> dict[str, Any]:
    return {
        **_llama_like(c, where),
        "embedding_multiplier": _get(c, "embedding_multiplier", where, 1.0),
        "residual_multiplier": _get(c, "residual_multiplier", where, 1.0),
        "attention_multiplier": _get(c, "attention_multiplier", where, 0.0),
        "logits_scaling": _get(c, "logits_scaling", where, 1.0),
    }


def _smollm3(c: Config, where: str) -> dict[str, Any]:
    """SmolLM3: `no_rope_layers` marks each layer 1 (RoPE) or 0 (none): every fourth by default."""
    fields = _qwen(c, where, tie=True)
    interval = _int(c, "no_rope_layer_interval", where, 4, low=1)
    flags = c.get("no_rope_layers") or [int((i + 1) % interval != 0) for i in range(fields["n_layers"])]
    if not isinstance(flags, list) or len(flags) != fields["n_layers"] or any(f not in (0, 1) for f in flags):
        raise InputError(f"{where}.no_rope_layers", f"expected a list of {fields['n_layers']} flags (0 or 1)")
    return {**fields, "no_rope_layers": sum(1 for f in flags if not f)}


GEMMA3_DEFAULTS: Config = {  # Gemma3TextConfig's defaults, which gemma3's nested text_config relies on
    "vocab_size": 262_208,
    "hidden_size": 2304,
    "intermediate_size": 9216,
    "num_hidden_layers": 26,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 131_072,
    "tie_word_embeddings": True,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "rope_theta": 1_000_000.0,
}


def _gemma(c: Config, where: str, pattern: int) -> dict[str, Any]:
    """Gemma 2/3: GeGLU, norms before and after each sub-layer, embeddings scaled by √d, attention scaled
    by query_pre_attn_scalar^-½, `pattern − 1` sliding layers per global one, optional soft-capping."""
    act = _get(c, "hidden_activation", where, None) or _get(c, "hidden_act", where, "gelu_pytorch_tanh")
    if act not in ("gelu_pytorch_tanh", "gelu"):
        raise InputError(f"{where}.hidden_activation", f"unsupported activation {act!r} for Gemma (gelu_pytorch_tanh)")
    fields = _llama_like({**c, "hidden_act": "silu"}, where, tie=True)  # the shared keys; the FFN is GeGLU below
    types = _layer_types(
        c, where, fields["n_layers"], lambda i: "sliding_attention" if (i + 1) % pattern else "full_attention"
    )
    return {
        **_windowed(fields, types, c.get("sliding_window")),
        "ffn": "geglu",
        "norm_layout": "sandwich",
        "attention_multiplier": _float(c, "query_pre_attn_scalar", where, fields["head_dim"] or 256) ** -0.5,
        "embedding_multiplier": _float(c, "hidden_size", where) ** 0.5,
        "attn_softcap": c.get("attn_logit_softcapping") or 0.0,
        "final_softcap": c.get("final_logit_softcapping") or 0.0,
    }


def _gemma3_text(c: Config, where: str) -> dict[str, Any]:
    full = {**GEMMA3_DEFAULTS, **{k: v for k, v in c.items() if v is not None}}
    return {**_gemma(full, where, _int(c, "sliding_window_pattern", where, 6, low=1)), "qk_norm": "head"}


def _gemma3(c: Config, where: str) -> dict[str, Any]:
    """Gemma 3 (multimodal): the language model is its `text_config`; the vision tower is not counted."""
    text = c.get("text_config")
    if not isinstance(text, dict):
        raise InputError(f"{where}.text_config", "required for model_type gemma3: a mapping")
    return _gemma3_text(text, f"{where}.text_config")


def _experts(c: Config, where: str, key: str) -> dict[str, Any]:
    return {"n_experts": _get(c, key, where), "top_k": _get(c, "num_experts_per_tok", where)}


def _dense_layer_count(c: Config, n_layers: int) -> int:
    """Layers transformers builds with the dense MLP in a Qwen MoE: off the `decoder_sparse_step` or listed in
    `mlp_only_layers`."""
    step = _int(c, "decoder_sparse_step", "config.json", 1, low=1)
    only = _indices(c, "mlp_only_layers", "config.json")
    return sum(1 for i in range(n_layers) if i in only or (i + 1) % step)


def _mixtral(c: Config, where: str) -> dict[str, Any]:
    return {**_dense(c, where), **_experts(c, where, "num_local_experts")}


def _qwen_moe(c: Config, where: str, qk_norm: str) -> dict[str, Any]:
    fields = _qwen(c, where, qkv_bias=True if qk_norm == "none" else None)
    shared = c.get("shared_expert_intermediate_size") or 0
    return {
        **fields,
        **_experts(c, where, "num_experts"),
        "d_ff_expert": _get(c, "moe_intermediate_size", where),
        "n_dense_layers": _dense_layer_count(c, fields["n_layers"]),
        "n_shared_experts": 1 if shared else 0,
        "d_ff_shared": shared or None,
        "shared_expert_gate": bool(shared),
        "qk_norm": qk_norm,
    }


def _gpt_oss(c: Config, where: str) -> dict[str, Any]:
    """gpt-oss: MoE with biased experts and router, attention sinks, alternating 128-token windows."""
    fields = _llama_like(c, where)
    types = _layer_types(
        c, where, fields["n_layers"], lambda i: "sliding_attention" if (i + 1) % 2 else "full_attention"
    )
    return {
        **_windowed(fields, types, c.get("sliding_window")),
        **_experts(c, where, "num_local_experts"),
        "mlp_bias": True,
        "router_bias": True,
        "attention_sinks": True,
    }


def _deepseek(c: Config, where: str) -> dict[str, Any]:
    """DeepSeek-V2/V3: MLA in every layer; routed plus shared experts after `first_k_dense_replace` dense
    layers (every `moe_layer_freq`-th); V3's router correction bias is a buffer, not a parameter."""
    fields = _llama_like(c, where)
    n = fields["n_layers"]
    experts = c.get("n_routed_experts") or 0
    first = _int(c, "first_k_dense_replace", where, 0)
    freq = _int(c, "moe_layer_freq", where, 1, low=1)
    dense = sum(1 for i in range(n) if i < first or i % freq) if experts else 0
    moe = (
        {
            "n_experts": experts,
            "top_k": _get(c, "num_experts_per_tok", where),
            "d_ff_expert": _get(c, "moe_intermediate_size", where),
            "n_shared_experts": c.get("n_shared_experts") or 0,
            "d_ff_shared": _get(c, "moe_intermediate_size", where) if c.get("n_shared_experts") else None,
            "n_dense_layers": dense,
        }
        if experts
        else {}
    )
    return {
        **fields,
        **moe,
        "head_dim": None,
        "q_lora_rank": c.get("q_lora_rank") or 0,
        "kv_lora_rank": _get(c, "kv_lora_rank", where),
        "qk_nope_head_dim": _get(c, "qk_nope_head_dim", where),
        "qk_rope_head_dim": _get(c, "qk_rope_head_dim", where),
        "v_head_dim": _get(c, "v_head_dim", where),
    }


def _lfm2(c: Config, where: str) -> dict[str, Any]:
    """LFM2: short convolutions with a few attention layers (QK-norm per head); the FFN width is adjusted
    as transformers' Lfm2MLP does (⅔, the multiplier, rounded up to `block_multiple_of`)."""
    fields = _llama_like(
        {**c, "tie_word_embeddings": c.get("tie_embedding", c.get("tie_word_embeddings", True))}, where
    )
    width = _int(c, "block_ff_dim", where, fields["d_ff"], low=1)
    if c.get("block_auto_adjust_ff_dim", True):
        width = int(2 * width / 3)
        if c.get("block_ffn_dim_multiplier", 1.0) is not None:
            multiple = _int(c, "block_multiple_of", where, 256, low=1)
            width = multiple * (
                (int(_float(c, "block_ffn_dim_multiplier", where, 1.0) * width) + multiple - 1) // multiple
            )
    idx = _indices(c, "full_attn_idxs", where) or set(range(fields["n_layers"]))
    types = _layer_types(c, where, fields["n_layers"], lambda i: "full_attention" if i in idx else "conv")
    return {
        **_windowed({**fields, "d_ff": width, **_rope(c, where, 1_000_000.0)}, types, None),
        "qk_norm": "head",
        "conv_kernel": _int(c, "conv_L_cache", where, 3, low=1),
        "conv_bias": bool(c.get("conv_bias", False)),
    }


def _qwen3_next(c: Config, where: str) -> dict[str, Any]:
    """Qwen3-Next: gated delta-net layers with one gated full-attention layer every `full_attention_interval`."""
    fields = _qwen_moe(c, where, "head")
    interval = _int(c, "full_attention_interval", where, 4, low=1)
    types = _layer_types(
        c, where, fields["n_layers"], lambda i: "linear_attention" if (i + 1) % interval else "full_attention"
    )
    return {
        **_windowed(fields, types, None),
        "attn_output_gate": True,
        "linear_key_heads": _get(c, "linear_num_key_heads", where),
        "linear_value_heads": _get(c, "linear_num_value_heads", where),
        "linear_key_dim": _get(c, "linear_key_head_dim", where),
        "linear_value_dim": _get(c, "linear_value_head_dim", where),
        "linear_conv_kernel": _get(c, "linear_conv_kernel_dim", where, 4),
    }


READERS: dict[str, Callable[[Config, str], dict[str, Any]]] = {
    "llama": _dense,
    "mistral": _dense,
    "mobilellm": _dense,
    "phi3": _dense,
    "granite": _granite,
    "smollm3": _smollm3,
    "olmo2": _olmo2,
    "qwen2": lambda c, w: _qwen(c, w, qkv_bias=True),
    "qwen3": _qwen3,
    "gemma2": lambda c, w: _gemma(c, w, 2),
    "gemma3_text": _gemma3_text,
    "gemma3": _gemma3,
    "mixtral": _mixtral,
    "qwen2_moe": lambda c, w: _qwen_moe(c, w, "none"),
    "qwen3_moe": lambda c, w: _qwen_moe(c, w, "head"),
    "gpt_oss": _gpt_oss,
    "deepseek_v2": _deepseek,
    "deepseek_v3": _deepseek,
    "lfm2": _lfm2,
    "qwen3_next": _qwen3_next,
}


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
