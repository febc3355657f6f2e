"""A candidate as a Hugging Face model folder: config.json, model.safetensors and a tokenizer, from cobench's
own torch module, for the engines whose builders start from one (ONNX Runtime GenAI).

The weights are the module's (random, seeded), so the parameter count and the numerics an engine is checked
against are cobench's. Layouts: Llama (SwiGLU, RMSNorm, no biases or an MLP/attention bias), Qwen2 (q/k/v
bias only) and Qwen3 (no biases, an RMSNorm of each query and key head before RoPE). `hf_type` also says
which layouts llama.cpp takes (measure/gguf_layout.py writes them: those, Mixtral's, Gemma 3's and
StarCoder2's for GELU with LayerNorm). The tokenizer is a word-level vocabulary `t0 … t{V−1}`: engines need
one; nothing reads text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cobench.arch.architecture import Architecture
from cobench.errors import InputError

RMS_EPS = 1e-6  # arch/model.py's RMSNorm
LAYER_NORM_EPS = 1e-5  # and its LayerNorm (torch's default)

_RENAME = (  # cobench module name → Hugging Face (Llama/Qwen2/Qwen3) name, applied in order
    ("layers.", "model.layers."),
    (".attn.", ".self_attn."),
    (".attn_norm.", ".input_layernorm."),
    (".ffn_norm.", ".post_attention_layernorm."),
    (".ffn.", ".mlp."),
)
_TOP = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
ENGINE_LAYOUTS = {  # the layouts each engine's own tools take from cobench
    "ort-genai": ("llama", "qwen2", "qwen3"),
    "llama.cpp": ("llama", "qwen2", "qwen3", "mixtral", "gemma3", "starcoder2"),
}
_VARIANTS = {  # the variants each layout can say
    "llama": {"rope_theta"},
    "qwen2": {"rope_theta"},
    "mixtral": {"rope_theta"},
    "starcoder2": {"rope_theta"},
    "qwen3": {"rope_theta", "qk_norm"},
    "gemma3": {
        "rope_theta",
        "qk_norm",
        "norm_layout",
        "embedding_multiplier",
        "attention_multiplier",
        "layer_types",
        "sliding_window",
    },
}
_REFUSED = {  # why an engine refuses a layout another engine takes
    "mixtral": "routed experts",
    "gemma3": "Gemma 3's layout, which ORT GenAI 0.18's builder cannot read under transformers 5 (its RoPE per "
    "layer type)",
    "starcoder2": "a GELU MLP and LayerNorm in sequence (StarCoder2's layout), which ORT GenAI 0.18's builder does "
    "not build (its Phi is parallel)",
}
_TAKES = ("ort-genai gets the dense Llama/Qwen2/Qwen3 layouts cobench writes (SwiGLU, RMSNorm, full attention), "
          "llama.cpp those, Mixtral's routed experts, Gemma 3's layout and StarCoder2's (GELU, LayerNorm, output "
          "and MLP biases)")  # fmt: skip


def _layout(a: Architecture) -> tuple[str, list[tuple[bool, str]]]:
    """The layout `a` comes closest to, and what in `a` that layout cannot say."""
    biases = a.qkv_bias or a.o_bias or a.mlp_bias
    common = [(a.n_shared_experts > 0, "shared experts"), (a.qk_norm == "proj", "a QK-norm over the whole projection")]
    if a.ffn == "geglu" or a.norm_layout == "sandwich":  # Gemma's parts: Gemma 3's layout, all of it
        scale = a.attention_multiplier
        return "gemma3", common + [
            (a.norm != "rmsnorm", f"{a.norm}"),
            (a.ffn != "geglu" or a.norm_layout != "sandwich" or a.qk_norm != "head",
             "some of Gemma 3's parts but not all (GeGLU, norms around each sub-layer, per-head QK-norm)"),
            (a.is_moe or biases, "Gemma 3's layout with experts or biases"),
            (not set(a.kinds) <= {"full", "sliding"}, "layers other than full and sliding attention"),
            (not math.isclose(a.embedding_multiplier, math.sqrt(a.d_model), rel_tol=1e-6),
             "an embedding scale other than Gemma's √d_model"),
            (bool(scale) and not math.isclose(scale, a.head_dim**-0.5, rel_tol=1e-6),
             "an attention scale other than 1/√head_dim"),
        ]  # fmt: skip
    if a.ffn == "gelu" or a.norm == "layernorm":  # GPT-2's parts, sequential with RoPE: StarCoder2's layout
        return "starcoder2", common + [
            (a.ffn != "gelu" or a.norm != "layernorm", f"a {a.ffn} MLP with {a.norm} (StarCoder2's layout is GELU "
             "with LayerNorm)"),
            (not (a.o_bias and a.mlp_bias), "GELU and LayerNorm without output and MLP biases, which llama.cpp's "
             "starcoder2 requires"),
            (a.is_moe, "GELU and LayerNorm with experts"),
            (a.qk_norm != "none", "a QK-norm with GELU and LayerNorm"),
        ]  # fmt: skip
    wrong = common + [
        (a.ffn != "swiglu", f"a {a.ffn} MLP"),
        (a.norm != "rmsnorm", f"{a.norm}"),
        (a.o_bias and not a.qkv_bias, "an output-projection bias without q/k/v biases"),
    ]
    if a.qk_norm == "head":
        return "qwen3", wrong + [(a.is_moe or biases, "a per-head QK-norm beside experts or biases")]
    if a.is_moe:
        return "mixtral", wrong
    return ("qwen2" if a.qkv_bias and not a.o_bias and not a.mlp_bias else "llama"), wrong


def hf_type(a: Architecture, engine: str = "ort-genai") -> str:
    """The Hugging Face model type whose layout `a` has, among those `engine` takes (ENGINE_LAYOUTS), or an
    error naming what in `a` no such layout has."""
    kind, wrong = _layout(a)
    extra = sorted(set(a.variants) - _VARIANTS[kind])
    refused = (kind not in ENGINE_LAYOUTS[engine], _REFUSED.get(kind, kind))
    for bad, what in [*wrong, refused, (bool(extra), f"{', '.join(extra)} set")]:
        if bad:
            raise InputError("arch", f"{a.name} has {what}: {_TAKES}")
    return kind


def hf_config(a: Architecture) -> dict[str, Any]:
    kind = hf_type(a)
    config: dict[str, Any] = {
        "architectures": [{"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}.get(kind, "LlamaForCausalLM")],
        "model_type": kind,
        "hidden_size": a.d_model,
        "intermediate_size": a.d_ff,
        "num_hidden_layers": a.n_layers,
        "num_attention_heads": a.n_heads,
        "num_key_value_heads": a.n_kv_heads,
        "head_dim": a.head_dim,
        "vocab_size": a.vocab_size,
        "max_position_embeddings": a.max_seq_len,
        "rms_norm_eps": RMS_EPS,
        "rope_theta": a.rope_theta,
        "tie_word_embeddings": a.tie_embeddings,
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "bos_token_id": 0,
        "eos_token_id": 1,
    }
    if kind == "llama":
        config |= {"attention_bias": a.qkv_bias, "mlp_bias": a.mlp_bias}
    return config


def hf_name(name: str) -> str:
    if name in _TOP:
        return _TOP[name]
    for old, new in _RENAME:
        name = name.replace(old, new)
    return name


def write_hf(a: Architecture, folder: Path, seed: int = 0) -> Any:
    """Write `a` (weights from `build_model(a, seed)`) as a Hugging Face folder; return the module."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, pre_tokenizers

    from cobench.arch.model import build_model

    config = hf_config(a)
    model = build_model(a, seed)
    tensors = {hf_name(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if a.tie_embeddings:
        tensors.pop("lm_head.weight")
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    tokenizer = Tokenizer(models.WordLevel({f"t{i}": i for i in range(a.vocab_size)}, unk_token="t0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(folder / "tokenizer.json"))
    special = {"unk_token": "t0", "bos_token": "t0", "eos_token": "t1"}
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "PreTrainedTokenizerFast"} | special))
    return model
