"""Shared fixtures: small random-but-valid architectures and an isolated store/catalogue per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st

from cobench.arch.architecture import Architecture

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True)
settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
HF = FIXTURES / "hf"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own store and no user catalogue paths from the environment."""
    monkeypatch.setenv("COBENCH_STORE", str(tmp_path / "store.db"))
    for kind in ("DEVICES", "PRESETS", "KERNELS", "SPACES"):
        monkeypatch.delenv(f"COBENCH_{kind}_PATH", raising=False)


@st.composite
def architectures(draw: st.DrawFn, max_layers: int = 3, moe: bool | None = None) -> Architecture:
    """Small valid architectures covering MHA/GQA/MQA, explicit head_dim, both FFNs, biases, MoE."""
    n_kv = draw(st.sampled_from([1, 2, 4]))
    n_heads = n_kv * draw(st.sampled_from([1, 2, 3]))
    explicit_hd = draw(st.booleans())
    head_dim = draw(st.sampled_from([8, 16])) if explicit_hd else None
    d_model = n_heads * draw(st.sampled_from([8, 16])) if not explicit_hd else draw(st.sampled_from([24, 32, 48]))
    use_moe = draw(st.booleans()) if moe is None else moe
    n_experts = draw(st.integers(2, 6)) if use_moe else 0
    shared = draw(st.integers(0, 2)) if use_moe else 0
    return Architecture(
        name="random",
        vocab_size=draw(st.integers(16, 300)),
        d_model=d_model,
        n_layers=draw(st.integers(1, max_layers)),
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=head_dim,
        d_ff=draw(st.integers(8, 96)),
        ffn=draw(st.sampled_from(["swiglu", "gelu"])),
        norm=draw(st.sampled_from(["rmsnorm", "layernorm"])),
        qkv_bias=draw(st.booleans()),
        o_bias=draw(st.booleans()),
        mlp_bias=draw(st.booleans()),
        tie_embeddings=draw(st.booleans()),
        max_seq_len=64,
        n_experts=n_experts,
        top_k=draw(st.integers(1, n_experts)) if use_moe else 0,
        d_ff_expert=draw(st.integers(8, 64)) if use_moe else None,
        n_shared_experts=shared,
        d_ff_shared=draw(st.integers(8, 64)) if shared else None,
        shared_expert_gate=draw(st.booleans()) if shared else False,
    )


@st.composite
def variant_architectures(
    draw: st.DrawFn, kinds: tuple[str, ...] = ("full", "sliding", "mla", "linear", "conv")
) -> Architecture:
    """Small architectures with a random pattern of every layer kind and the variants families add
    (QK-norm, norm layouts, sinks, soft-caps, output gates, leading dense layers, partial and no RoPE)."""
    base = draw(architectures(max_layers=1))
    n_layers = draw(st.integers(1, 5))
    layer_types = tuple(draw(st.lists(st.sampled_from(kinds), min_size=n_layers, max_size=n_layers)))
    used = set(layer_types)
    attention = sum(k in ("full", "sliding") for k in layer_types)
    fields = base.to_dict() | {
        "n_layers": n_layers,
        "layer_types": list(layer_types),
        "ffn": draw(st.sampled_from(["swiglu", "gelu", "geglu"])),
        "qk_norm": draw(st.sampled_from(["none", "head", "proj"])),
        "norm_layout": draw(st.sampled_from(["pre", "sandwich", "post"])),
        "attention_sinks": draw(st.booleans()),
        "attn_output_gate": draw(st.booleans()),
        "attn_softcap": draw(st.sampled_from([0.0, 30.0])),
        "final_softcap": draw(st.sampled_from([0.0, 15.0])),
        "rope_fraction": draw(st.sampled_from([1.0, 0.5])),
        "no_rope_layers": draw(st.integers(0, attention)),
        "residual_multiplier": draw(st.sampled_from([1.0, 0.5])),
        "embedding_multiplier": draw(st.sampled_from([1.0, 2.0])),
        "logits_scaling": draw(st.sampled_from([1.0, 4.0])),
        "max_seq_len": 64,
    }
    if base.n_experts:
        fields |= {"n_dense_layers": draw(st.integers(0, n_layers)), "router_bias": draw(st.booleans())}
    if "sliding" in used:
        fields["sliding_window"] = draw(st.integers(1, 6))
    if "mla" in used:
        fields |= {
            "q_lora_rank": draw(st.sampled_from([0, 12])),
            "kv_lora_rank": draw(st.sampled_from([8, 16])),
            "qk_nope_head_dim": draw(st.sampled_from([8, 16])),
            "qk_rope_head_dim": draw(st.sampled_from([4, 8])),
            "v_head_dim": draw(st.sampled_from([8, 12])),
        }
    if "linear" in used:
        key_heads = draw(st.sampled_from([1, 2]))
        fields |= {
            "linear_key_heads": key_heads,
            "linear_value_heads": key_heads * draw(st.sampled_from([1, 2])),
            "linear_key_dim": draw(st.sampled_from([4, 8])),
            "linear_value_dim": draw(st.sampled_from([4, 8])),
            "linear_conv_kernel": draw(st.integers(1, 4)),
        }
    if "conv" in used:
        fields |= {"conv_kernel": draw(st.integers(1, 4)), "conv_bias": draw(st.booleans())}
    return Architecture.from_dict(fields)
