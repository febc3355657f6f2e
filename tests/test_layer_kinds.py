"""Every layer kind built in torch: parameters equal the analytic count, matmul and attention FLOPs equal
torch.utils.flop_counter's (the counting conventions of tests/test_model.py), a cached step equals the
forward pass, and the batch view of a pattern round-trips."""

from __future__ import annotations

import pytest
import torch
from conftest import variant_architectures
from hypothesis import given, settings
from test_model import COUNTER

from cobench.arch.architecture import ArchBatch, Architecture, param_counts
from cobench.arch.model import StaticCache, build_model, parameter_count, uncached_kinds
from cobench.predict.operators import Counting, forward_ops, total
from torch.utils.flop_counter import FlopCounterMode

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


@given(variant_architectures(kinds=("full", "sliding")))
@settings(max_examples=25)
def test_cached_steps_equal_the_forward_pass(a: Architecture) -> None:
    """Windows, sinks, soft-caps, QK-norm, output gates, partial and no RoPE: prompt then steps in a
    preallocated cache give the logits of one forward over the whole sequence."""
    model = build_model(a, seed=1)
    ids = torch.randint(0, a.vocab_size, (1, 9))
    cache = StaticCache.allocate(a, 1, 16, torch.float32, "cpu")
    with torch.no_grad():
        model.step(ids[:, :6], cache, torch.arange(6), 6)
        for p in range(6, 9):
            step = model.step(ids[:, p : p + 1], cache, torch.tensor([p]), p + 1)
        whole = model(ids)[0]
    torch.testing.assert_close(step, whole, rtol=1e-4, atol=1e-4)


def test_hybrid_layers_refuse_a_kv_cache_with_their_kinds() -> None:
    a = Architecture(
        vocab_size=50, d_model=32, n_layers=2, n_heads=4, d_ff=64, layer_types=("conv", "full"), max_seq_len=32
    )
    assert uncached_kinds(a) == ["conv"]
    with pytest.raises(ValueError, match="conv layers"):
        StaticCache.allocate(a, 1, 8, torch.float32, "cpu")


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
