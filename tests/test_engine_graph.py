"""Engine-like decode: what ORT and torch run is what a deployment engine runs — attention on a KV cache
preallocated for the generation and written in place — and it computes what cobench's torch module
computes with the plain past ++ new forward."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from cobench.arch.architecture import Architecture
from cobench.arch.model import build_model
from cobench.measure.export import export_engine
from cobench.measure.generation import time_generation
from cobench.measure.runners import open_runner
from cobench.measure.timing import HarnessConfig

TINY = Architecture(
    name="tiny", vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq_len=256
)
VARIANTS = {
    "gqa": TINY,
    "mqa-gelu-layernorm": replace(TINY, n_kv_heads=1, ffn="gelu", norm="layernorm"),
    "mha-bias-untied": replace(TINY, n_kv_heads=4, qkv_bias=True, o_bias=True, mlp_bias=True, tie_embeddings=False),
    "head_dim-32": replace(TINY, head_dim=32),
    "moe-top2-gated-shared": replace(
        TINY, n_experts=4, top_k=2, d_ff_expert=48, n_shared_experts=1, d_ff_shared=32, shared_expert_gate=True
    ),
    # the 2026 families' attention and layout variants, through GroupQueryAttention's own attributes
    "gemma-like": replace(
        TINY,
        ffn="geglu",
        norm_layout="sandwich",
        qk_norm="head",
        layer_types=("sliding", "full"),
        sliding_window=4,
        attn_softcap=20.0,
        final_softcap=10.0,
        attention_multiplier=0.2,
        embedding_multiplier=8.0,
        tie_embeddings=True,
    ),
    "olmo-granite-like": replace(
        TINY, norm_layout="post", qk_norm="proj", residual_multiplier=0.5, logits_scaling=4.0, rope_theta=5e5
    ),
    "gpt-oss-like": replace(
        TINY,
        attention_sinks=True,
        layer_types=("sliding", "full"),
        sliding_window=3,
        qkv_bias=True,
        o_bias=True,
        mlp_bias=True,
        n_experts=4,
        top_k=2,
        router_bias=True,
        n_layers=2,
        n_dense_layers=1,
    ),
    "qwen3-next-attention": replace(TINY, attn_output_gate=True, qk_norm="head", head_dim=64, rope_fraction=0.25),
    "smollm3-like": replace(TINY, no_rope_layers=1),
    "lfm2-like": replace(TINY, n_layers=3, layer_types=("conv", "full", "conv"), qk_norm="head", conv_bias=True),
    "qwen3-next-like": replace(
        TINY,
        n_layers=4,
        layer_types=("linear", "linear", "linear", "full"),
        linear_key_heads=2,
        linear_value_heads=4,
        linear_key_dim=16,
        linear_value_dim=8,
        attn_output_gate=True,
        qk_norm="head",
    ),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


ENGINES = ("ort", "torch")


def _cache_memory(backend: str, state: Any) -> np.ndarray:
    """Layer 0's keys of batch row 0, read from the cache's own memory."""
    return state.arrays[0][0] if backend == "ort" else state.keys[0, 0].numpy()


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("name", VARIANTS)
def test_decode_steps_equal_torch(cache: Path, name: str, backend: str) -> None:
    """Prompt, then five greedy steps written in place: the logits of every step are those of the torch
    module's forward pass over the whole sequence so far (no cache: an independent reference)."""
    a = VARIANTS[name]
    runner = open_runner(backend, a, "fp32", "cpu", cache, {"capacity": 32})
    assert "in place" in runner.info()["graph" if backend == "ort" else "kv_cache"]
    model = build_model(a)
    ids = np.random.default_rng(1).integers(0, a.vocab_size, (1, 9))
    state = runner.new_cache(1)
    logits = runner.logits(ids, state)
    with torch.no_grad():
        ref, k, _ = model(torch.from_numpy(ids))
        for _ in range(5):
            np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-3, atol=1e-4)
            ids = np.concatenate([ids, [[int(ref[0, -1].argmax())]]], axis=1)
            logits = runner.logits(ids[:, -1:], state)
            ref, k, _ = model(torch.from_numpy(ids))
    np.testing.assert_allclose(logits, ref.numpy(), rtol=1e-3, atol=1e-4)
    assert state.length == 14 and state.capacity == 32
    written = _cache_memory(backend, state)[:, :14]  # in the cache's own memory: written in place
    np.testing.assert_allclose(written, k[0, 0].numpy(), rtol=1e-4, atol=1e-5)
    assert runner.allocations == 1


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_only_attention_touches_the_cache(cache: Path, precision: str) -> None:
    """No node reads or writes the whole cache except the fused attention itself (no concat, no copy)."""
    exported = export_engine(TINY, precision, cache)
    graph = onnx.load(str(exported.graph("model")), load_external_data=False).graph
    cache_names = {i.name for i in graph.input if i.name.startswith("past_")}
    cache_names |= {o.name for o in graph.output if o.name.startswith("present_")}
    touching = [n for n in graph.node if cache_names & {*n.input, *n.output}]
    assert touching and all(n.op_type == "GroupQueryAttention" for n in touching)
    assert not any(n.op_type == "Concat" for n in graph.node)


@pytest.mark.parametrize("backend", ENGINES)
def test_the_cache_is_allocated_once_per_generation(cache: Path, backend: str) -> None:
    runner = open_runner(backend, TINY, "fp32", "cpu", cache, {"capacity": 64})
    ids = np.zeros((1, 16), dtype=np.int64)
    cfg = HarnessConfig(warmup_s=0.0, min_iters=3, min_time_s=0.0, max_time_s=1.0, target_rel_ci=1.0)
    samples, g = time_generation(runner, ids, ids[:, -1:], 8, cfg)
    generations = 1 + samples.warmup_iters + len(samples.samples_s)
    assert runner.allocations == generations  # one cache per generation, none per step
    assert g.steps_s.shape[1] == 7


@pytest.mark.parametrize("backend", ENGINES)
def test_a_generation_past_the_capacity_is_refused(cache: Path, backend: str) -> None:
    runner = open_runner(backend, TINY, "fp32", "cpu", cache, {"capacity": 10})
    state = runner.prefill(np.zeros((1, 9), dtype=np.int64))
    state = runner.decode(np.zeros((1, 1), dtype=np.int64), state)
    with pytest.raises(ValueError, match="holds 10 positions"):
        runner.decode(np.zeros((1, 1), dtype=np.int64), state)


def test_fp16_engine_graph_is_validated_and_cached(tmp_path: Path) -> None:
    cache = tmp_path
    first = export_engine(TINY, "fp16", cache)
    assert not first.meta["cache_hit"] and first.meta["validation"]["decode"] < 5e-2
    again = export_engine(replace(TINY, name="renamed"), "fp16", cache)
    assert again.meta["cache_hit"] and again.key == first.key


@pytest.mark.parametrize("name", ["gqa", "moe-top2-gated-shared"])
def test_the_capturable_step_equals_the_eager_one(name: str) -> None:
    """The step CUDA graphs capture (whole capacity under a mask, positions as a tensor) computes what the
    eager step computes, and the cache it leaves is the same: checked on CPU, where it also runs."""
    from cobench.arch.model import StaticCache

    a = VARIANTS[name]
    model = build_model(a)
    ids = torch.from_numpy(np.random.default_rng(2).integers(0, a.vocab_size, (2, 7)))
    caches = [StaticCache.allocate(a, 2, 16, torch.float32, "cpu") for _ in range(2)]
    with torch.no_grad():
        for c in caches:
            model.step(ids, c, torch.arange(7), 7)
        token = ids[:, -1:]
        for position in range(7, 12):
            eager = model.step(token, caches[0], torch.tensor([position]), position + 1)
            masked = model.step(token, caches[1], torch.tensor([position]), None)
            np.testing.assert_allclose(masked.numpy(), eager.numpy(), rtol=1e-4, atol=1e-5)
            token = eager[:, -1].argmax(-1, keepdim=True)
    np.testing.assert_allclose(caches[1].values.numpy(), caches[0].values.numpy(), rtol=1e-5, atol=1e-6)


def test_a_torch_step_touches_the_cache_only_to_write_one_position_and_attend() -> None:
    """Every aten op that sees the cache's memory during a decode step: views, a one-position write per
    layer for keys and values, and attention's read. No cat, no copy of the cache."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from cobench.arch.model import StaticCache

    model = build_model(TINY)
    state = StaticCache.allocate(TINY, 1, 32, torch.float32, "cpu")
    memory = {state.keys.untyped_storage().data_ptr(), state.values.untyped_storage().data_ptr()}
    seen: list[tuple[str, list[tuple[int, ...]]]] = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            tensors = [x for x in [*args, *(kwargs or {}).values()] if isinstance(x, torch.Tensor)]
            if any(x.untyped_storage().data_ptr() in memory for x in tensors):
                seen.append((func.overloadpacket.__name__, [tuple(x.shape) for x in tensors]))
            return func(*args, **(kwargs or {}))

    with torch.inference_mode():
        model.step(torch.zeros(1, 9, dtype=torch.long), state, torch.arange(9), 9)
        with Record():
            model.step(torch.zeros(1, 1, dtype=torch.long), state, torch.tensor([9]), 10)
    ops = [name for name, _ in seen]
    assert set(ops) == {"select", "slice", "index_copy_", "scaled_dot_product_attention"}
    writes = [shapes for name, shapes in seen if name == "index_copy_"]
    assert len(writes) == 2 * TINY.n_layers and all(s[2][2] == 1 for s in writes)  # one position each
    assert ops.count("scaled_dot_product_attention") == TINY.n_layers


def test_int8_engine_graph_quantises_every_projection_and_keeps_the_cache(cache: Path) -> None:
    """int8: every projection and the LM head are W8A8 DynamicQuantizeMatMul on int8 weights (routing
    stays at full precision), the KV cache is the same in-place GQA buffer, and the logits stay close."""
    a = VARIANTS["moe-top2-gated-shared"]
    exported = export_engine(a, "int8", cache)
    # rms relative error against fp32 torch: 0.010–0.026 where MLAS has VNNI; 0.073 on an AMD EPYC with AVX2
    # only, whose u8·s8 multiply-adds (vpmaddubsw) saturate, and a MoE routing flip follows from it
    assert exported.meta["validation"]["decode"] < 0.15
    graph = onnx.load(str(exported.graph("model")), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    experts, shared = a.n_experts * 3, a.n_shared_experts * 3
    assert ops.count("DynamicQuantizeMatMul") == a.n_layers * (4 + experts + shared) + 1
    assert ops.count("MatMul") == a.n_layers * 2  # the router and the shared expert's gate
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    assert all(n.input[1] in int8 for n in graph.node if n.op_type == "DynamicQuantizeMatMul")
    runner = open_runner("ort", a, "int8", "cpu", cache, {"capacity": 16})
    state = runner.prefill(np.zeros((1, 5), dtype=np.int64))
    assert runner.decode(np.zeros((1, 1), dtype=np.int64), state).length == 6
