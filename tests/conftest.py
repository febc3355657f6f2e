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
