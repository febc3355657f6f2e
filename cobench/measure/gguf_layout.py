"""A candidate as a GGUF file for llama.cpp, from cobench's own torch module, written with `gguf`.

llama.cpp's `llama` architecture: the names of its converter (token_embd, blk.N.attn_q, …, output), q and k rows
permuted from rotate-half RoPE (cobench, Hugging Face) to llama.cpp's interleaved pairs as its converter
does, the output matrix left out when tied; dense SwiGLU/RMSNorm layouts (hf_layout.hf_type) and Mixtral's
routed experts (a softmax router, the top k renormalised: cobench's MoE without shared experts). A per-head
QK-norm is llama.cpp's `qwen3` architecture: the same names plus attn_q_norm/attn_k_norm, and rows left as
they are (its RoPE is rotate-half, NeoX's). Gemma 3's layout is its `gemma3`: those names plus
post_attention_norm/post_ffw_norm, rows as they are, norms stored as the multipliers cobench's module
applies (Hugging Face's Gemma keeps weight − 1), and which layers slide, their window and their RoPE base
written out (llama.cpp's defaults would be every sixth layer global and a base of 10,000 for the sliding
ones). GELU with LayerNorm is its `starcoder2`: the same names plus the norms' biases, rows as they are, and
the output and MLP biases its loader requires (hf_layout refuses a candidate without them). The vocabulary
is 256 byte tokens `<0xNN>` and `t256 …` (llama.cpp's SentencePiece loader wants the bytes; nothing reads
text). F32 or F16; llama.cpp quantises from F32 (runners/llama_cpp.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.measure.hf_layout import LAYER_NORM_EPS, RMS_EPS, hf_type

_LAYER = {  # cobench module name inside layers.N → llama.cpp tensor name inside blk.N
    "attn_norm.weight": "attn_norm.weight",
    "attn.q_proj.weight": "attn_q.weight",
    "attn.k_proj.weight": "attn_k.weight",
    "attn.v_proj.weight": "attn_v.weight",
    "attn.o_proj.weight": "attn_output.weight",
    "attn.q_proj.bias": "attn_q.bias",
    "attn.k_proj.bias": "attn_k.bias",
    "attn.v_proj.bias": "attn_v.bias",
    "attn.o_proj.bias": "attn_output.bias",
    "attn_norm.bias": "attn_norm.bias",
    "attn.q_norm.weight": "attn_q_norm.weight",
    "attn.k_norm.weight": "attn_k_norm.weight",
    "attn_post_norm.weight": "post_attention_norm.weight",
    "ffn_post_norm.weight": "post_ffw_norm.weight",
    "ffn_norm.weight": "ffn_norm.weight",
    "ffn_norm.bias": "ffn_norm.bias",
    "ffn.gate_proj.weight": "ffn_gate.weight",
    "ffn.up_proj.weight": "ffn_up.weight",
    "ffn.down_proj.weight": "ffn_down.weight",
    "ffn.gate_proj.bias": "ffn_gate.bias",
    "ffn.up_proj.bias": "ffn_up.bias",
    "ffn.down_proj.bias": "ffn_down.bias",
    "ffn.router.weight": "ffn_gate_inp.weight",
}
_EXPERTS = {"gate_proj": "ffn_gate_exps.weight", "up_proj": "ffn_up_exps.weight", "down_proj": "ffn_down_exps.weight"}
_TOP = {
    "embed.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "norm.bias": "output_norm.bias",
    "lm_head.weight": "output.weight",
}


def interleave_rope(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q/k projection (or bias) from rotate-half halves to llama.cpp's interleaved pairs, per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_architecture(a: Architecture) -> str:
    """llama.cpp's architecture for `a`: `qwen3` for a per-head QK-norm, `gemma3` for Gemma 3's layout,
    `starcoder2` for GELU with LayerNorm, else `llama` (biases and experts included); a clear error for what
    none runs."""
    kind = hf_type(a, "llama.cpp")
    return kind if kind in ("qwen3", "gemma3", "starcoder2") else "llama"


def gguf_tensors(a: Architecture, state: dict[str, Any], architecture: str) -> dict[str, np.ndarray]:
    """The module's state dict as llama.cpp's tensors (numpy, float32) for `architecture` (gguf_architecture);
    a layer's experts stacked into one tensor per projection, (experts, rows, columns), as llama.cpp's
    converter stacks Mixtral's."""
    interleaved = architecture == "llama"  # llama.cpp's `llama` rotates pairs; the others halves (NeoX)
    found: dict[str, np.ndarray] = {}
    experts: dict[str, list[np.ndarray]] = {}
    for name, t in state.items():
        w = t.detach().float().numpy()
        if name in _TOP:
            if name == "lm_head.weight" and a.tie_embeddings:
                continue
            found[_TOP[name]] = w
            continue
        _, i, rest = name.split(".", 2)
        if rest.startswith("ffn.experts."):
            projection = rest.split(".")[3]  # ffn.experts.E.<projection>.weight, E in order
            experts.setdefault(f"blk.{i}.{_EXPERTS[projection]}", []).append(w)
            continue
        if interleaved and rest.startswith("attn.q_proj"):
            w = interleave_rope(w, a.n_heads)
        elif interleaved and rest.startswith("attn.k_proj"):
            w = interleave_rope(w, a.n_kv_heads)
        found[f"blk.{i}.{_LAYER[rest]}"] = w
    return found | {name: np.stack(ws) for name, ws in experts.items()}


def write_gguf(a: Architecture, path: Path, seed: int = 0, f16: bool = False) -> Any:
    """Write `a` (weights from `build_model(a, seed)`) as GGUF; return the module."""
    import gguf

    from cobench.arch.model import build_model

    architecture = gguf_architecture(a)  # a clear error for what llama.cpp cannot take
    model = build_model(a, seed)
    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name(a.name)
    w.add_block_count(a.n_layers)
    w.add_context_length(a.max_seq_len)
    w.add_embedding_length(a.d_model)
    w.add_feed_forward_length(a.d_ff_expert if a.is_moe else a.d_ff)  # llama.cpp's llama: an expert's width
    if a.is_moe:
        w.add_expert_count(a.n_experts)
        w.add_expert_used_count(a.top_k)
    w.add_head_count(a.n_heads)
    w.add_head_count_kv(a.n_kv_heads)
    w.add_key_length(a.head_dim)
    w.add_value_length(a.head_dim)
    w.add_rope_dimension_count(a.head_dim)
    w.add_rope_freq_base(a.rope_theta)
    if architecture == "gemma3":
        w.add_float32(gguf.Keys.Rope.FREQ_BASE_SWA.format(arch=architecture), a.rope_theta)
        w.add_sliding_window(a.sliding_window or a.max_seq_len)
        w.add_sliding_window_pattern([kind == "sliding" for kind in a.kinds])
    if architecture == "starcoder2":
        w.add_layer_norm_eps(LAYER_NORM_EPS)
    else:
        w.add_layer_norm_rms_eps(RMS_EPS)
    w.add_vocab_size(a.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"<0x{i:02X}>" if i < 256 else f"t{i}" for i in range(a.vocab_size)])
    w.add_token_scores([0.0] * a.vocab_size)
    w.add_token_types([gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (a.vocab_size - 256))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for name, t in gguf_tensors(a, model.state_dict(), architecture).items():
        w.add_tensor(name, t.astype(np.float16) if f16 and t.ndim == 2 else t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model
