"""The torch builder: its parameters and matmul FLOPs equal the analytic model.

Attention convention for this comparison: torch.utils.flop_counter counts scaled_dot_product_attention
as two dense bmm's (QK^T and AV over all T·(C+T) pairs, no causal halving), so the analytic side uses
`Counting(causal=False)`. The roofline itself halves causal attention (flash kernels skip masked blocks).
"""

from __future__ import annotations

import torch
from conftest import architectures
from hypothesis import given, settings
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from cobench.arch.architecture import ArchBatch, Architecture, param_counts
from cobench.arch.model import build_model, parameter_count
from cobench.predict.operators import Counting, forward_ops, total

aten = torch.ops.aten


def _cpu_sdpa(query, key, value, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
    """The CPU flash kernel is not in torch's FLOP registry; count it like the CUDA kernels."""
    return sdpa_flop_count(query, key, value)


COUNTER = {aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa}


def torch_flops(model: torch.nn.Module, *inputs: torch.Tensor) -> int:
    with FlopCounterMode(display=False, custom_mapping=COUNTER) as counter:
        model(*inputs)
    return counter.get_total_flops()


def analytic_matmul_flops(a: Architecture, batch: int, tokens: int, past: int) -> float:
    ops = forward_ops(ArchBatch.of([a]), batch, tokens, past, 4, 4, 4, Counting(causal=False))
    return float(total(ops, "flops", ("matmul", "attention"))[0])


@given(architectures())
@settings(max_examples=30)
def test_module_parameters_equal_analytic_count(a: Architecture) -> None:
    assert parameter_count(build_model(a)) == param_counts(a).total


@given(architectures(moe=False))
@settings(max_examples=15)
def test_matmul_flops_match_flop_counter_dense(a: Architecture) -> None:
    model = build_model(a)
    ids = torch.randint(0, a.vocab_size, (2, 7))
    assert torch_flops(model, ids) == analytic_matmul_flops(a, 2, 7, 0)
    _, k, v = model(ids)
    step = torch.randint(0, a.vocab_size, (2, 1))
    assert torch_flops(model, step, k, v) == analytic_matmul_flops(a, 2, 1, 7)


def test_matmul_flops_match_flop_counter_moe() -> None:
    """Routed experts: every token runs exactly top_k experts, so the count is exact whatever the routing."""
    a = Architecture(
        vocab_size=97,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        d_ff=48,
        n_experts=5,
        top_k=2,
        d_ff_expert=24,
        n_shared_experts=1,
        d_ff_shared=16,
        shared_expert_gate=True,
        max_seq_len=64,
    )
    model = build_model(a, seed=3)
    ids = torch.randint(0, a.vocab_size, (3, 9))
    assert torch_flops(model, ids) == analytic_matmul_flops(a, 3, 9, 0)


def test_decode_with_cache_equals_full_forward() -> None:
    """The KV-cache path is the same function as the full forward (what export relies on)."""
    a = Architecture(vocab_size=50, d_model=32, n_layers=2, n_heads=4, n_kv_heads=1, d_ff=64, max_seq_len=32)
    model = build_model(a, seed=1)
    ids = torch.randint(0, 50, (1, 6))
    full, _, _ = model(ids)
    _, k, v = model(ids[:, :5])
    step, k2, _ = model(ids[:, 5:], k, v)
    torch.testing.assert_close(step, full, rtol=1e-5, atol=1e-5)
    assert k2.shape == (2, 1, 1, 6, 8)  # (layers, batch, kv_heads, context, head_dim)


def test_seed_determines_weights() -> None:
    a = Architecture(vocab_size=50, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_seq_len=16)
    p1 = torch.cat([p.flatten() for p in build_model(a, seed=7).parameters()])
    p2 = torch.cat([p.flatten() for p in build_model(a, seed=7).parameters()])
    p3 = torch.cat([p.flatten() for p in build_model(a, seed=8).parameters()])
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
