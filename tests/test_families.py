"""The 2026 model families: every config reads to transformers' exact total and to the layer pattern
transformers builds; caches follow the layer kinds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import HF

from cobench.arch.architecture import (
    Architecture,
    as_arch_like,
    cache_bytes,
    cache_elements,
    kv_cache_bytes_per_token,
    param_counts,
)
from cobench.arch.hf_config import from_hf_config
from cobench.errors import InputError

FAMILIES = sorted(
    p.stem
    for p in HF.glob("*.json")
    if json.loads(p.read_text())["model_type"] not in ("llama", "mistral", "mobilellm", "qwen2", "mixtral", "qwen2_moe")
)


def hf(name: str) -> dict:
    return json.loads((HF / f"{name}.json").read_text())


def transformers_total(config: dict) -> int:
    """What transformers counts: the causal LM built from the config on the meta device (no memory)."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    transformers.logging.set_verbosity_error()
    if "text_config" in config:
        config = config["text_config"]
    c = transformers.AutoConfig.for_model(
        config["model_type"], **{k: v for k, v in config.items() if k != "model_type"}
    )
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(c)
    return sum(p.numel() for p in model.parameters())


def test_every_family_of_the_issue_has_a_config() -> None:
    types = {hf(n)["model_type"] for n in FAMILIES}
    wanted = {"qwen3", "qwen3_moe", "gemma2", "gemma3_text", "gemma3", "phi3", "smollm3", "granite", "olmo2"}
    assert wanted | {"gpt_oss", "deepseek_v2", "deepseek_v3", "lfm2", "qwen3_next"} <= types


@pytest.mark.parametrize("name", FAMILIES)
def test_total_equals_transformers(name: str) -> None:
    config = hf(name)
    assert param_counts(from_hf_config(config, name)).total == transformers_total(config)


def test_qwen_moe_dense_layers_follow_mlp_only_layers_and_sparse_step() -> None:
    for extra, dense in [({"mlp_only_layers": [0, 1]}, 2), ({"decoder_sparse_step": 2}, 12)]:
        config = json.loads((HF / "qwen1.5-moe-a2.7b.json").read_text()) | extra
        a = from_hf_config(config, "x")
        assert a.n_dense_layers == dense
        assert param_counts(a).total == transformers_total(config)


def test_both_rope_layouts_and_partial_rotary() -> None:
    old, new = from_hf_config(hf("qwen3-0.6b"), "a"), from_hf_config(hf("qwen3-1.7b-rope-parameters"), "b")
    assert old.rope_theta == new.rope_theta == 1e6
    assert from_hf_config(hf("qwen3-next-80b-a3b"), "c").rope_fraction == 0.25
    moved = hf("qwen3-next-80b-a3b") | {"rope_parameters": {"rope_theta": 5e6, "partial_rotary_factor": 0.5}}
    a = from_hf_config(moved, "d")
    assert (a.rope_theta, a.rope_fraction) == (5e6, 0.5)


@pytest.mark.parametrize(
    ("name", "counts", "window"),
    [
        ("gemma-3-1b-it", {"full": 4, "sliding": 22}, 512),  # 5 local : 1 global
        ("gemma-2-2b", {"full": 13, "sliding": 13}, 4096),
        ("gpt-oss-20b", {"full": 12, "sliding": 12}, 128),
        ("qwen3-next-80b-a3b", {"full": 12, "linear": 36}, None),
        ("lfm2-350m", {"full": 6, "conv": 10}, None),
        ("deepseek-v3", {"mla": 61}, None),
        ("phi-3-mini-4k-instruct", {"sliding": 32}, 2047),
        ("phi-4-mini-instruct", {"full": 32}, None),  # its 262 144-token window is longer than the context
        ("qwen3-0.6b", {"full": 28}, None),
    ],
)
def test_layer_patterns_are_transformers(name: str, counts: dict, window: int | None) -> None:
    a = from_hf_config(hf(name), name)
    assert {k: v for k, v in a.layer_counts.items() if v} == counts
    assert a.sliding_window == window
    if name == "gemma-3-1b-it":  # the global layer closes each group of six, as transformers orders them
        assert [i for i, k in enumerate(a.kinds) if k == "full"] == [5, 11, 17, 23]


def test_family_specifics() -> None:
    smol = from_hf_config(hf("smollm3-3b"), "s")
    assert smol.no_rope_layers == 9 and smol.tie_embeddings
    gemma = from_hf_config(hf("gemma-2-2b"), "g")
    assert (gemma.ffn, gemma.norm_layout, gemma.attn_softcap, gemma.final_softcap) == ("geglu", "sandwich", 50.0, 30.0)
    assert gemma.embedding_multiplier == pytest.approx(2304**0.5) and gemma.attention_multiplier == 256**-0.5
    olmo = from_hf_config(hf("olmo-2-0425-1b"), "o")
    assert (olmo.qk_norm, olmo.norm_layout) == ("proj", "post")
    granite = from_hf_config(hf("granite-3.3-2b-instruct"), "gr")
    assert (granite.embedding_multiplier, granite.residual_multiplier, granite.logits_scaling) == (12.0, 0.22, 8.0)
    v3 = from_hf_config(hf("deepseek-v3"), "v3")
    assert (v3.n_dense_layers, v3.q_lora_rank, v3.kv_lora_rank) == (3, 1536, 512)
    counts = param_counts(v3)
    assert 36e9 < counts.active < 38e9  # DeepSeek-V3: 37B activated per token (model card)


def test_unsupported_layer_type_and_missing_text_config_name_the_field() -> None:
    with pytest.raises(InputError) as e:
        from_hf_config(hf("gpt-oss-20b") | {"layer_types": ["chunked_attention"] * 24}, "x")
    assert e.value.field == "config.json.layer_types[0]"
    with pytest.raises(InputError) as e:
        from_hf_config({"model_type": "gemma3"}, "x")
    assert e.value.field == "config.json.text_config"


# --- what a decode step reads, by layer kind ---------------------------------------------------------


def test_five_local_to_one_global_reads_a_sixth_of_full_attention_at_32k() -> None:
    gemma = from_hf_config(hf("gemma-3-1b-it"), "g")
    full = Architecture(**{**gemma.to_dict(), "layer_types": None, "sliding_window": None, "name": "all-global"})
    c = 32768
    local, dense = cache_bytes(gemma, c, 2), cache_bytes(full, c, 2)
    per_layer = 2 * gemma.n_kv_heads * gemma.head_dim * 2
    assert local == 4 * c * per_layer + 22 * 512 * per_layer  # the globals' full KV plus the windows
    assert local / dense == pytest.approx(1 / 6, rel=0.15)
    assert cache_bytes(gemma, 256, 2) == cache_bytes(full, 256, 2)  # inside every window: no saving


def test_mla_caches_the_latent_per_token_per_layer() -> None:
    v3 = from_hf_config(hf("deepseek-v3"), "v3")
    assert kv_cache_bytes_per_token(v3, 2) == 61 * (512 + 64) * 2
    assert cache_bytes(v3, 1000, 2) == 1000 * 61 * (512 + 64) * 2


def test_linear_and_conv_state_does_not_grow_with_context() -> None:
    nxt, lfm = from_hf_config(hf("qwen3-next-80b-a3b"), "n"), from_hf_config(hf("lfm2-350m"), "l")
    for a, kind in [(nxt, "linear"), (lfm, "conv")]:
        short, long = (cache_elements(as_arch_like(a), c)[kind] for c in (1024, 32768))
        assert np.all(short == long) and np.all(short > 0)
    # Qwen3-Next: 36 delta-net layers hold 32 heads × 128 × 128 plus the conv's last 3 inputs of q, k, v
    state = cache_elements(as_arch_like(nxt), 10)["linear"]
    assert int(state[0]) == 36 * (32 * 128 * 128 + (2 * 16 * 128 + 32 * 128) * 3)


# --- the CLI and the pipeline around the layer kinds ---------------------------------------------------


def test_arch_show_reports_the_cache_at_a_context_by_kind() -> None:
    from test_cli import run, run_json

    s = run_json("arch", "show", str(HF / "gemma-3-1b-it.json"), "--context", "32768")
    assert s["params"]["total"] == 999_885_952 and s["layer_kinds"] == {"full": 4, "sliding": 22}
    c = s["cache_at_context"]
    per_layer = 2 * 1 * 256
    assert c["elements_by_kind"] == {"full": 4 * 32768 * per_layer, "sliding": 22 * 512 * per_layer}
    assert c["bytes"]["fp16"] == 2 * (4 * 32768 + 22 * 512) * per_layer
    assert s["peak_memory_bytes_at_context"]["fp16"] > s["weight_bytes"]["fp16"] + c["bytes"]["fp16"]
    nxt = run_json("arch", "show", str(HF / "qwen3-next-80b-a3b.json"), "-c", "1000")
    assert set(nxt["cache_at_context"]["elements_by_kind"]) == {"full", "linear"}
    assert "22 sliding" in run("arch", "show", str(HF / "gemma-3-1b-it.json")).stdout


def test_profile_says_which_kinds_a_backend_cannot_run(tmp_path) -> None:
    from typer.testing import CliRunner

    from cobench.cli import app

    tiny = tmp_path / "hybrid.yaml"
    tiny.write_text(
        "architecture: {vocab_size: 64, d_model: 64, n_layers: 2, n_heads: 4, d_ff: 64, layer_types: [mla, full],"
        " kv_lora_rank: 16, qk_nope_head_dim: 16, qk_rope_head_dim: 16, v_head_dim: 16}\n"
    )
    result = CliRunner().invoke(
        app, ["profile", "-a", str(tiny), "--backend", "ort", "--store", str(tmp_path / "s.db")]
    )
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "hybrid has mla layers: backend ort cannot run it" in result.stderr


def test_engines_refuse_variants_their_builders_do_not_get() -> None:
    from cobench.measure.runners import check_runs

    check_runs("llama.cpp", from_hf_config(hf("qwen3-0.6b"), "q"), "fp32", {})  # Qwen3's per-head QK-norm: both
    check_runs("ort-genai", from_hf_config(hf("qwen3-0.6b"), "q"), "fp32", {})
    a = from_hf_config(hf("olmo-2-0425-1b"), "o")
    with pytest.raises(InputError, match="a QK-norm over the whole projection"):
        check_runs("llama.cpp", a, "fp32", {})
    check_runs("ort", a, "fp32", {})  # QK-norm runs on the engine graph
    with pytest.raises(InputError, match="mla layers"):
        check_runs("ort", from_hf_config(hf("deepseek-v2-lite"), "v2"), "fp32", {})


def test_torch_profiles_a_hybrid_of_every_kind_and_its_numbers_agree(tmp_path) -> None:
    """A real profile (worker process, harness, store) of a model with every layer kind on the torch backend:
    it runs, and its end-to-end time agrees with TTFT + the generated steps as for any other candidate."""
    from test_profile import quick_profile_flags
    from typer.testing import CliRunner

    from cobench.cli import app

    spec = tmp_path / "every-kind.yaml"
    spec.write_text(
        "architecture: {vocab_size: 128, d_model: 64, n_layers: 5, n_heads: 4, n_kv_heads: 2, d_ff: 128,"
        " layer_types: [conv, sliding, linear, mla, full], sliding_window: 16, kv_lora_rank: 16,"
        " qk_nope_head_dim: 16, qk_rope_head_dim: 8, v_head_dim: 16, linear_key_heads: 2, linear_value_heads: 4,"
        " linear_key_dim: 8, linear_value_dim: 8, qk_norm: head, max_seq_len: 128}\n"
    )
    args = ["profile", "-a", str(spec), "--backend", "torch", "--telemetry", "off"]
    result = CliRunner().invoke(app, args + quick_profile_flags(tmp_path / "cache", str(tmp_path / "s.db")))
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["status"] == "ok", row
    m = row["measured"]
    assert m["ttft_s"] > 0 and len(m["decode_s"]) == 3  # the generated steps, each at its own context
    assert abs(m["e2e_gap"]) < 0.1  # e2e against TTFT + Σ steps (the tool flags over 3 %; a 5 ms run here)


def test_a_masked_window_costs_what_full_attention_costs_and_a_skipped_one_less() -> None:
    """Counting.window_skip: engines with local-window kernels read and compute the window only; ORT's CPU
    GroupQueryAttention and the torch module mask (BACKEND_COUNTING)."""
    from cobench.arch.architecture import ArchBatch
    from cobench.predict.latency_model import BACKEND_COUNTING
    from cobench.predict.operators import Counting, forward_ops, total

    gemma = from_hf_config(hf("gemma-3-1b-it"), "g")
    full = Architecture(**{**gemma.to_dict(), "layer_types": None, "sliding_window": None, "name": "all-global"})

    def cost(a: Architecture, counting: Counting) -> tuple[float, float]:
        ops = forward_ops(ArchBatch.of([a]), 1, 1, 8192, 2, 2, 2, counting)
        return float(total(ops, "flops", ("attention",))[0]), float(total(ops, "kv_bytes")[0])

    assert cost(gemma, BACKEND_COUNTING["ort"]) == cost(full, BACKEND_COUNTING["ort"])
    skipped, dense = cost(gemma, Counting()), cost(full, Counting())
    share = (4 + 22 * 512 / 8192) / 26  # 4 of 26 layers see all 8192 keys, 22 their 512
    assert skipped[1] / dense[1] == pytest.approx(share, rel=0.02) and skipped[0] / dense[0] == pytest.approx(
        share, rel=0.02
    )


def test_an_moe_without_dense_layers_has_no_dense_ffn_transient() -> None:
    """d_ff of an MoE with neither dense layers nor shared experts is no layer's width: the prefill
    transient must not grow with it (it did while the leading dense layers were being added)."""
    from cobench.arch.architecture import ArchBatch
    from cobench.arch.workload import Workload
    from cobench.predict.operators import Counting
    from cobench.predict.roofline import memory_footprint

    base = {
        "vocab_size": 100,
        "d_model": 64,
        "n_layers": 2,
        "n_heads": 4,
        "n_experts": 4,
        "top_k": 1,
        "d_ff_expert": 64,
    }
    small, wide = (Architecture(**base, d_ff=d_ff) for d_ff in (64, 8192))
    w = Workload(prompt=128)
    assert (
        memory_footprint(ArchBatch.of([small]), w, Counting())[2]
        == memory_footprint(ArchBatch.of([wide]), w, Counting())[2]
    )
    dense_first = Architecture(**base, d_ff=8192, n_dense_layers=1)
    assert (
        memory_footprint(ArchBatch.of([dense_first]), w, Counting())[2]
        > memory_footprint(ArchBatch.of([wide]), w, Counting())[2]
    )
