"""Architecture model: exact published parameter counts, HF configs, validation errors, KV bytes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import HF, architectures
from hypothesis import given

from cobench.arch.architecture import ArchBatch, Architecture, kv_cache_bytes_per_token, param_counts
from cobench.arch.hf_config import from_hf_config
from cobench.arch.spec import load_architecture, presets
from cobench.errors import InputError

# Published totals (model cards / safetensors indices), written here independently of the preset files.
PUBLISHED = {
    "qwen2.5-0.5b": 494_032_768,
    "llama-3.2-1b": 1_235_814_400,
    "smollm2-135m": 134_515_008,
    "tinyllama-1.1b": 1_100_048_384,
    "mixtral-8x7b": 46_702_792_704,
    "mobilellm-125m": 124_635_456,
    "mistral-7b-v0.1": 7_241_732_096,
    "qwen1.5-moe-a2.7b": 14_315_784_192,
    "qwen3-0.6b": 596_049_920,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_counts_equal_published(name: str) -> None:
    p = presets()[name]
    assert param_counts(p.arch).total == PUBLISHED[name] == p.published_total


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_hf_config_counts_equal_published(name: str) -> None:
    arch = load_architecture(str(HF / f"{name}.json"))
    assert param_counts(arch).total == PUBLISHED[name]


def test_published_secondary_figures() -> None:
    """Non-embedding and active counts that the model cards state."""
    qwen = param_counts(presets()["qwen2.5-0.5b"].arch)
    assert round(qwen.non_embedding / 1e9, 2) == 0.36
    mixtral = param_counts(presets()["mixtral-8x7b"].arch)
    assert round(mixtral.active / 1e9, 1) == 12.9
    qmoe = param_counts(presets()["qwen1.5-moe-a2.7b"].arch)
    assert round(qmoe.active / 1e9, 1) == 2.7


def test_kv_cache_counts_kv_heads_not_attention_heads() -> None:
    a = presets()["llama-3.2-1b"].arch  # 32 heads, 8 KV heads, head_dim 64, 16 layers
    assert kv_cache_bytes_per_token(a, 2) == 2 * 16 * 8 * 64 * 2
    mha = Architecture(vocab_size=100, d_model=64, n_layers=2, n_heads=8, d_ff=128)
    mqa = Architecture(vocab_size=100, d_model=64, n_layers=2, n_heads=8, n_kv_heads=1, d_ff=128)
    assert kv_cache_bytes_per_token(mha, 2) == 8 * kv_cache_bytes_per_token(mqa, 2)


def test_explicit_head_dim_is_respected() -> None:
    a = Architecture(vocab_size=100, d_model=64, n_layers=1, n_heads=4, head_dim=32, d_ff=128)
    assert a.head_dim == 32  # not d_model / n_heads = 16
    assert param_counts(a).total == 100 * 64 + (64 * (4 + 8) * 32 + 4 * 32 * 64) + 3 * 64 * 128 + 2 * 64 + 64 + 100 * 64


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"n_heads": 5}, "architecture.n_heads", "does not divide d_model"),
        ({"n_kv_heads": 3}, "architecture.n_kv_heads", "does not divide n_heads"),
        ({"n_experts": 4, "top_k": 5}, "architecture.top_k", "between 1 and n_experts"),
        ({"d_model": 0}, "architecture.d_model", "positive"),
        ({"n_layers": -2}, "architecture.n_layers", "positive"),
        ({"ffn": "relu"}, "architecture.ffn", "unknown ffn kind"),
        ({"top_k": 2}, "architecture.n_experts", "MoE fields are set"),
    ],
)
def test_invalid_architectures_name_the_field(fields: dict, field: str, words: str) -> None:
    base = {"vocab_size": 100, "d_model": 64, "n_layers": 2, "n_heads": 8, "d_ff": 128}
    with pytest.raises(InputError) as e:
        Architecture.from_dict(base | fields)
    assert e.value.field == field and words in e.value.problem
    assert "\n" not in str(e.value)


def test_unknown_and_mistyped_fields() -> None:
    base = {"vocab_size": 100, "d_model": 64, "n_layers": 2, "n_heads": 8, "d_ff": 128}
    with pytest.raises(InputError, match=r"architecture\.n_layer: unknown field"):
        Architecture.from_dict(base | {"n_layer": 3})
    with pytest.raises(InputError, match=r"architecture\.d_model: expected an integer"):
        Architecture.from_dict(base | {"d_model": "wide"})
    with pytest.raises(InputError, match=r"architecture\.vocab_size: required"):
        Architecture.from_dict({k: v for k, v in base.items() if k != "vocab_size"})


def test_unknown_model_type_lists_supported() -> None:
    with pytest.raises(InputError) as e:
        from_hf_config({"model_type": "gpt_bigcode"}, name="x")
    assert e.value.field == "config.json.model_type"
    for supported in ("llama", "qwen2", "mistral", "mixtral", "qwen2_moe"):
        assert supported in e.value.problem


def test_cobench_yaml_file_and_missing_file(tmp_path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("architecture:\n  vocab_size: 1000\n  d_model: 128\n  n_layers: 2\n  n_heads: 4\n  d_ff: 256\n")
    assert load_architecture(str(f)).name == "mine"
    with pytest.raises(InputError, match="does not exist"):
        load_architecture(str(tmp_path / "nope.yaml"))
    with pytest.raises(InputError, match="unknown preset"):
        load_architecture("no-such-preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("architecture: [1, 2")
    with pytest.raises(InputError, match="not valid YAML"):
        load_architecture(str(bad))


@given(architectures())
def test_batch_counts_equal_single_counts_and_round_trip(a: Architecture) -> None:
    batch = ArchBatch.of([a, a])
    counts = param_counts(batch)
    single = param_counts(a)
    assert np.all(counts.total == single.total) and np.all(counts.active == single.active)
    again = batch.architecture(1, name=a.name)
    assert param_counts(again) == single
    assert single.active <= single.total
