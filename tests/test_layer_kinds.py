"""Every layer kind built in torch: parameters equal the analytic count, matmul and attention FLOPs equal
torch.utils.flop_counter's (the counting conventions of tests/test_model.py), a cached step equals the
forward pass, and the batch view of a pattern round-trips."""

from __future__ import annotations

import torch
from conftest import variant_architectures
from hypothesis import given, settings
from test_model import COUNTER
from torch.utils.flop_counter import FlopCounterMode

from cobench.arch.architecture import ArchBatch, Architecture, param_counts
from cobench.arch.model import StaticCache, build_model, parameter_count, uncached_kinds
from cobench.predict.operators import Counting, forward_ops, total

aten = torch.ops.aten
MATMULS = (aten.mm, aten.addmm)  # nn.Linear; the delta rule's einsums are bmm's, convolutions their own op


def counted(model: torch.nn.Module, ids: torch.Tensor) -> dict:
    with FlopCounterMode(display=False, custom_mapping=COUNTER) as counter:
        model(ids)
    return {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}


def analytic(a: Architecture, batch: int, tokens: int, classes: tuple[str, ...], names: tuple[str, ...] = ()) -> float:
    ops = forward_ops(ArchBatch.of([a]), batch, tokens, 0, 4, 4, 4, Counting(causal=False))
    if names:
        ops = [o for o in ops if o.name in names]
    return float(total(ops, "flops", classes)[0])


@given(variant_architectures())
@settings(max_examples=60)
def test_module_parameters_equal_analytic_count_for_every_kind(a: Architecture) -> None:
    assert parameter_count(build_model(a)) == param_counts(a).total


@given(variant_architectures())
@settings(max_examples=25)
def test_linear_flops_equal_flop_counter_for_every_kind(a: Architecture) -> None:
    model = build_model(a)
    ids = torch.randint(0, a.vocab_size, (2, 5))
    flops = counted(model, ids)
    linear = sum(n for op, n in flops.items() if op in {str(m) for m in MATMULS})
    assert linear == analytic(a, 2, 5, ("matmul",))
    logits = model(ids)[0]
    assert torch.isfinite(logits).all() and logits.shape == (2, 1, a.vocab_size)


@given(variant_architectures(kinds=("full", "mla")))
@settings(max_examples=15)
def test_attention_flops_of_full_and_mla_prefill_equal_flop_counter(a: Architecture) -> None:
    """Unwindowed attention only: torch computes a sliding layer's masked scores in full, an engine does not.
    Where query and value head dims differ (MLA) SDPA falls back to its math kernel: bmm's, counted too."""
    flops = counted(build_model(a), torch.randint(0, a.vocab_size, (2, 6)))
    sdpa = sum(n for op, n in flops.items() if "attention" in op or "bmm" in op)
    assert sdpa == analytic(a, 2, 6, ("attention",), ("attention", "mla_attention"))


@given(variant_architectures())
@settings(max_examples=40)
def test_cached_steps_equal_the_forward_pass(a: Architecture) -> None:
    """Every kind (windows, sinks, soft-caps, QK-norm, output gates, partial and no RoPE; MLA absorbed on
    its latent cache; linear and convolution layers on their state): prompt then steps in a preallocated
    cache give the logits of one forward over the whole sequence."""
    model = build_model(a, seed=1)
    ids = torch.randint(0, a.vocab_size, (1, 9))
    cache = StaticCache.allocate(a, 1, 16, torch.float32, "cpu", model)
    with torch.no_grad():
        model.step(ids[:, :6], cache, torch.arange(6), 6)
        for p in range(6, 9):
            step = model.step(ids[:, p : p + 1], cache, torch.tensor([p]), p + 1)
        whole = model(ids)[0]
    torch.testing.assert_close(step, whole, rtol=1e-4, atol=1e-4)


def test_the_cache_holds_each_kind_its_own_state_allocated_once() -> None:
    """K/V for the attention layers only, the latent for MLA, fixed-size state for linear and conv layers;
    the exported graphs' stacked past/present cannot hold the latter, and say so."""
    a = Architecture(vocab_size=50, d_model=32, n_layers=4, n_heads=4, d_ff=64, layer_types=("conv", "full", "linear",
                     "mla"), kv_lora_rank=8, qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8, linear_key_heads=2,
                     linear_value_heads=2, linear_key_dim=4, linear_value_dim=4, max_seq_len=32)  # fmt: skip
    assert uncached_kinds(a) == ["conv", "linear", "mla"]
    cache = StaticCache.allocate(a, 2, 8, torch.float32, "cpu")
    assert cache.keys.shape == (1, 2, 4, 8, 8) and cache.slots == [-1, 0, -1, -1]
    assert cache.layer(3).shape == (2, 8, 12) and cache.layer(0).shape == (2, 32, 2)
    assert {k: tuple(v.shape) for k, v in cache.layer(2).items()} == {"state": (2, 2, 4, 4), "conv": (2, 24, 3)}


@given(variant_architectures())
@settings(max_examples=40)
def test_batch_round_trip_keeps_counts_and_layer_counts(a: Architecture) -> None:
    back = ArchBatch.of([a]).architecture(0, name=a.name)
    assert param_counts(back) == param_counts(a)
    assert back.layer_counts == a.layer_counts


def test_windowed_attention_sees_only_its_window() -> None:
    """A token outside every window cannot change a sliding layer's output: change it and compare."""
    a = Architecture(vocab_size=40, d_model=16, n_layers=1, n_heads=2, d_ff=32, layer_types=("sliding",),
                     sliding_window=3, max_seq_len=32)  # fmt: skip
    model = build_model(a, seed=2)
    ids = torch.randint(1, a.vocab_size, (1, 8))
    other = ids.clone()
    other[0, 0] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(ids)[0], model(other)[0])
        full = build_model(Architecture.from_dict(a.to_dict() | {"layer_types": None, "sliding_window": None}), seed=2)
        assert not torch.allclose(full(ids)[0], full(other)[0])
