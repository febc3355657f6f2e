"""Operator model and roofline: boundedness, KV heads, MoE reads, monotonicity, vectorised = loop."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from conftest import architectures
from hypothesis import given
from hypothesis import strategies as st

from cobench.arch.architecture import ArchBatch, Architecture, as_arch_like
from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.errors import InputError
from cobench.hardware.devices import get_device
from cobench.predict.latency_model import BACKEND_COUNTING, backend_counting
from cobench.predict.operators import OP_CLASSES, Counting, Op, expected_experts, ffn_ops, forward_ops, total
from cobench.predict.roofline import RooflineParams, breakdown, decode_contexts, phase_ops, predict, working_set

ISSUE_PRESETS = [
    "qwen2.5-0.5b",
    "llama-3.2-1b",
    "smollm2-135m",
    "tinyllama-1.1b",
    "mixtral-8x7b",
    "mobilellm-125m",
]
ORIN = ["jetson-agx-orin-64gb", "jetson-orin-nx-16gb", "jetson-orin-nano-8gb"]


@pytest.mark.parametrize("device", ORIN)
@pytest.mark.parametrize("name", ISSUE_PRESETS)
def test_decode_memory_bound_prefill_compute_bound_on_orin(device: str, name: str) -> None:
    p = predict(presets()[name].arch, get_device(device), Workload(batch=1, prompt=1024, generate=16))
    assert not p.decode.compute_bound[0]
    assert p.prefill.compute_bound[0]


@pytest.mark.parametrize("name", ["llama-3.2-1b", "tinyllama-1.1b", "mistral-7b-v0.1"])
def test_thor_prefill_compute_bound_for_wide_models(name: str) -> None:
    """Thor's ridge is ~950 FLOP/B (dense fp16 / 273 GB/s): a 1,024-token prefill of d_model < 2048 models
    (whose GEMMs read and write their activations: intensity ~450) sits below it and is predicted
    memory-bound there; from d_model 2048 the GEMMs dominate again."""
    p = predict(presets()[name].arch, get_device("jetson-thor"), Workload())
    assert p.prefill.compute_bound[0] and not p.decode.compute_bound[0]


def test_batch1_decode_is_memory_bound_everywhere() -> None:
    archs = ArchBatch.of([p.arch for p in presets().values()])
    for device in ("jetson-thor", "h100-sxm", "a100-80gb", "l4", "rtx-4090", "h200", "cpu", *ORIN):
        assert not predict(archs, get_device(device), Workload()).decode.compute_bound.any(), device


def _decode_op(a: Architecture, name: str, batch: int = 1, past: int = 100):
    ops = forward_ops(ArchBatch.of([a]), batch, 1, past, 2, 2, 2, Counting())
    return next(o for o in ops if o.name == name)


def test_decode_reads_kv_cache_of_kv_heads() -> None:
    gqa = presets()["llama-3.2-1b"].arch
    attn = _decode_op(gqa, "attention", past=100)
    assert float(attn.kv_bytes[0]) == 101 * 2 * gqa.n_kv_heads * gqa.head_dim * 2  # not n_heads
    q = _decode_op(gqa, "qkv_proj")
    assert float(q.flops[0]) == 2 * gqa.d_model * (gqa.n_heads + 2 * gqa.n_kv_heads) * gqa.head_dim


def test_moe_decode_reads_only_active_experts() -> None:
    mixtral = presets()["mixtral-8x7b"].arch
    up = _decode_op(mixtral, "experts_up")
    one_expert_up = 2 * mixtral.d_model * mixtral.d_ff_expert * 2  # gate+up, fp16
    assert float(up.weight_bytes[0]) == pytest.approx(mixtral.top_k * one_expert_up)
    prefill = forward_ops(ArchBatch.of([mixtral]), 1, 1024, 0, 2, 2, 2, Counting())
    up_prefill = next(o for o in prefill if o.name == "experts_up")
    assert float(up_prefill.weight_bytes[0]) == pytest.approx(mixtral.n_experts * one_expert_up)


def test_a_moe_steps_working_set_holds_every_expert_it_cycles_through() -> None:
    """A top-1 MoE's decode step reads one expert per layer, but the next steps pick others, so what must stay in
    the cache is all of them: counted as the experts one step reads, llama.cpp's 8-expert held-out model (17 MiB
    read, 59 MiB cycled) was priced as if it sat deep in the cache, −20 % per token on llama.cpp."""
    moe = Architecture(8192, 256, 4, 8, 704, name="moe", n_kv_heads=2, n_experts=8, top_k=1, d_ff_expert=512)
    ops = forward_ops(ArchBatch.of([moe]), 1, 1, 512, 4, 4, 2, Counting())
    one = {o.name: float(np.sum(o.count * o.weight_bytes)) for o in ops if o.name in ("experts_up", "experts_down")}
    dense = float(np.sum(working_set([o for o in ops if o.name not in one])))
    assert float(np.sum(working_set(ops))) == pytest.approx(dense + 8 * sum(one.values()))
    read = float(np.sum(total(ops, "weight_bytes")))
    assert read == pytest.approx(dense - float(np.sum(total(ops, "kv_bytes"))) + sum(one.values()))  # reads: one


@given(st.integers(1, 64), st.integers(1, 8), st.integers(1, 10_000))
def test_expected_experts_bounds(e: int, k: int, n: int) -> None:
    k = min(k, e)
    touched = float(expected_experts(np.array(e), np.array(k), np.array(n)))
    assert k - 1e-9 <= touched <= e + 1e-9
    assert float(expected_experts(np.array(e), np.array(k), np.array(1))) == pytest.approx(k)


DEVICE = get_device("jetson-orin-nx-16gb")


@given(architectures(max_layers=4), st.sampled_from(["d_model", "n_layers", "d_ff", "vocab_size"]))
def test_predictions_monotone_in_model_size(a: Architecture, field: str) -> None:
    bigger_value = {"d_model": a.d_model + a.n_heads * 8 if a.head_dim is None else a.d_model * 2}.get(
        field, getattr(a, field) * 2
    )
    bigger = replace(a, **{field: bigger_value, "head_dim": a.head_dim})
    w = Workload(prompt=64, generate=8)
    p = predict(ArchBatch.of([a, bigger]), DEVICE, w)
    for key in ("ttft_s", "tpot_s", "e2e_s", "peak_memory_bytes"):
        value = getattr(p, key)
        assert value[1] >= value[0], key


@given(architectures(max_layers=3), st.integers(1, 8), st.integers(1, 512), st.integers(2, 64))
def test_predictions_monotone_in_batch_and_context(a: Architecture, batch: int, prompt: int, generate: int) -> None:
    base = predict(a, DEVICE, Workload(batch=batch, prompt=prompt, generate=generate))
    more_batch = predict(a, DEVICE, Workload(batch=batch + 1, prompt=prompt, generate=generate))
    longer = predict(a, DEVICE, Workload(batch=batch, prompt=prompt * 2, generate=generate))
    assert more_batch.ttft_s[0] >= base.ttft_s[0] and more_batch.tpot_s[0] >= base.tpot_s[0]
    assert longer.ttft_s[0] >= base.ttft_s[0] and longer.tpot_s[0] >= base.tpot_s[0]
    assert longer.peak_memory_bytes[0] >= base.peak_memory_bytes[0]


def test_vectorised_equals_per_candidate_loop() -> None:
    archs = [p.arch for p in presets().values()]
    w = Workload(prompt=512, generate=40)
    together = predict(ArchBatch.of(archs), DEVICE, w)
    for i, a in enumerate(archs):
        alone = predict(a, DEVICE, w)
        for key in ("ttft_s", "tpot_s", "e2e_s", "peak_memory_bytes"):
            assert getattr(alone, key)[0] == pytest.approx(getattr(together, key)[i], rel=1e-12)


def test_ideal_roofline_is_the_lower_bound_and_breakdown_sums_to_phase() -> None:
    a = presets()["qwen2.5-0.5b"].arch
    w = Workload()
    ideal, default = predict(a, DEVICE, w, RooflineParams.ideal()), predict(a, DEVICE, w)
    assert ideal.ttft_s[0] < default.ttft_s[0] and ideal.tpot_s[0] < default.tpot_s[0]
    rows = breakdown(a, DEVICE, w)
    assert sum(r.time_s for r in rows if r.phase == "prefill") == pytest.approx(default.ttft_s[0])
    assert sum(r.time_s for r in rows if r.phase == "decode") == pytest.approx(default.tpot_s[0])
    assert {r.bound for r in rows if r.name == "lm_head" and r.phase == "decode"} == {"memory"}


def test_long_generation_is_sampled_not_looped() -> None:
    """TPOT over 4096 generated tokens uses 64 evenly spaced contexts; the mean matches the exact one."""
    a = presets()["smollm2-135m"].arch
    sampled = predict(a, DEVICE, Workload(prompt=128, generate=4096)).tpot_s[0]
    exact = np.mean([predict(a, DEVICE, Workload(prompt=128 + c, generate=1)).tpot_s[0] for c in range(0, 4095, 7)])
    assert sampled == pytest.approx(exact, rel=1e-3)


def test_power_mode_slows_the_device() -> None:
    a = presets()["qwen2.5-0.5b"].arch
    fast = predict(a, get_device("jetson-orin-nano-8gb", "MAXN_SUPER"), Workload())
    slow = predict(a, get_device("jetson-orin-nano-8gb", "15W"), Workload())
    assert slow.ttft_s[0] > fast.ttft_s[0] and slow.tpot_s[0] > fast.tpot_s[0]


def test_memory_fit() -> None:
    mixtral = presets()["mixtral-8x7b"].arch
    assert not predict(mixtral, get_device("jetson-orin-nano-8gb"), Workload()).fits[0]
    assert predict(mixtral, get_device("h200"), Workload()).fits[0]
    assert predict(mixtral, get_device("jetson-agx-orin-64gb"), Workload(precision="int4")).fits[0]


def test_a_kernel_that_loops_over_query_heads_reads_the_group_once_per_head() -> None:
    """ORT's CPU GroupQueryAttention and ggml's attention read a group's K/V once per query head: a step of an MQA
    model streams as many K/V bytes as its MHA twin, though its cache (the working set) is the compact one."""
    gqa, mha = presets()["tiny-gqa-4l"].arch, replace(presets()["tiny-gqa-4l"].arch, n_kv_heads=8)
    per_head = Counting(kv_per_query_head=True)

    def attention(a: Architecture, counting: Counting) -> Any:
        return next(o for o in forward_ops(ArchBatch.of([a]), 1, 1, 100, 4, 4, 4, counting) if o.name == "attention")

    compact, looped, twin = attention(gqa, Counting()), attention(gqa, per_head), attention(mha, per_head)
    assert float(looped.bytes[0]) == float(twin.bytes[0]) > float(compact.bytes[0])
    assert float(looped.kv_bytes[0]) == float(compact.kv_bytes[0]) == 101 * 2 * gqa.n_kv_heads * gqa.head_dim * 4
    assert float(attention(mha, Counting()).bytes[0]) == float(twin.bytes[0])  # MHA: nothing read twice
    expanded = replace(per_head, kv_expand=True)  # the graph's wide copy is what is read then
    assert float(attention(gqa, expanded).bytes[0]) == float(attention(gqa, Counting(kv_expand=True)).bytes[0])


def test_a_step_over_a_cache_whose_rows_hold_every_kv_head_strides_over_the_other_heads_bytes() -> None:
    """llama.cpp keeps every KV head of a position in one row and ggml's attention walks one head's slice per query
    head: a step's walk strides over the other heads' bytes (class "walk"), K and V, per query head and cached
    position. One KV head has no stride; a prompt's queries find their slices again in the cache; ORT's cache is
    head-major; a GPU's kernels are not walked so. The walk re-reads the cache the pass attends over, so it adds
    nothing to the working set (the tier would otherwise count the same cache many times)."""
    llama = BACKEND_COUNTING["llama.cpp"]
    mha = Architecture(name="mha", vocab_size=4096, d_model=640, n_layers=4, n_heads=10, d_ff=1728)
    mqa = replace(mha, name="mqa", n_kv_heads=1)
    w = Workload(2, 512, 16, "fp32")

    def walk(a: Architecture, counting: Counting, phase: str = "decode") -> Op:
        ops = phase_ops(as_arch_like(a), w, phase, counting)
        return next((o for o in ops if o.name == "attention_walk"), Op("no walk", "walk", 0, 0, 0, 0))

    step = walk(mha, llama)
    contexts = decode_contexts(w)
    per_position = 2 * 10 * 9 * 64 * 2  # K and V, 10 query heads, 9 other heads' 128-byte F16 slices skipped
    assert step.op_class == "walk" and np.all(step.count == 4)
    assert np.allclose(np.squeeze(step.kv_bytes), w.batch * (contexts + 1) * per_position)
    assert np.squeeze(step.bytes) == pytest.approx(np.squeeze(step.kv_bytes))  # memory only
    assert not np.any(walk(mqa, llama).kv_bytes) and not np.any(walk(mha, llama, "prefill").kv_bytes)
    assert not np.any(walk(mha, backend_counting("ort", get_device("cpu"))).kv_bytes)
    gpu = backend_counting("llama.cpp", get_device("h100-sxm"))
    assert not gpu.strided_kv and not np.any(walk(mha, gpu).kv_bytes)
    ops = phase_ops(as_arch_like(mha), w, "decode", llama)
    assert np.allclose(working_set(ops), working_set([o for o in ops if o.op_class != "walk"]))
    plain = predict(mha, get_device("cpu"), w, counting=replace(llama, strided_kv=False))
    assert np.all(predict(mha, get_device("cpu"), w, counting=llama).tpot_s > plain.tpot_s)


def test_an_engines_own_kv_type_is_what_is_counted() -> None:
    """llama.cpp keeps F16 K/V under F32 weights: its cache is half what the fp32 workload alone would say."""
    a, w = presets()["tiny-gqa-4l"].arch, Workload(1, 512, 16, "fp32")
    cpu = get_device("cpu")
    own, nominal = predict(a, cpu, w, counting=Counting(kv_cache="fp16")), predict(a, cpu, w, counting=Counting())
    assert float(own.kv_cache_bytes[0]) == float(nominal.kv_cache_bytes[0]) / 2
    assert Counting.from_json({"kv_cache": "fp16"}).kv_cache == "fp16"
    with pytest.raises(InputError, match=r"counting\.kv_cache.*fp16"):
        Counting.from_json({"kv_cache": "f16"})


@pytest.mark.parametrize("name", ["tiny-gqa-4l", "tiny-moe-4l"])
def test_the_last_layer_after_its_attention_runs_on_the_kept_rows_only(name: str) -> None:
    """llama.cpp's prompt: every layer's attention over all P rows, the last layer's FFN over the one row whose
    logits it keeps (a 1-layer d = 768 model prefills 512 tokens in 48 ms, a 2-layer one in 172 ms)."""
    a = ArchBatch.of(
        [replace(presets()[name].arch, n_dense_layers=1) if name == "tiny-moe-4l" else presets()[name].arch]
    )
    rows, tail = 512, {o.name for o in ffn_ops(a, 1, 1, 1, 4, 4, False)}

    def ops(tokens: int, last: bool) -> list:
        return forward_ops(a, 1, tokens, 0 if tokens > 1 else rows, 4, 4, 2, Counting(last_layer_outputs=last))

    every, kept = ops(rows, False), ops(rows, True)

    def summed(found: list, names: tuple, attr: str) -> float:
        return float(sum(o.count * getattr(o, attr) for o in found if o.name in names)[0])

    layers = int(a.n_layers[0])
    moe = name == "tiny-moe-4l"  # its last layer is an MoE one (the dense one leads)
    up = "experts_up" if moe else "ffn_up"
    per_row = summed(every, (up,), "flops") / (rows * (layers - 1 if moe else layers))
    assert summed(kept, (up,), "flops") == pytest.approx(per_row * (rows * (layers - (2 if moe else 1)) + 1))
    mixer = tuple({o.name for o in every} - tail)
    assert summed(kept, mixer, "flops") == summed(every, mixer, "flops")  # attention and projections: all rows
    if moe:  # one row touches top_k experts, not all those P rows touch
        assert summed(kept, (up,), "weight_bytes") < summed(every, (up,), "weight_bytes")
    else:  # every weight is still read once
        assert float(total(kept, "weight_bytes")[0]) == float(total(every, "weight_bytes")[0])
    for attr in ("flops", "bytes"):  # a decode step is one row anyway: nothing changes
        assert float(total(ops(1, True), attr, OP_CLASSES)[0]) == pytest.approx(float(total(ops(1, False), attr)[0]))
    assert Counting.from_json({"last_layer_outputs": True}).last_layer_outputs


def test_concat_kv_update_copies_the_cache() -> None:
    a = presets()["tiny-gqa-4l"].arch
    append = _decode_op(a, "kv_write", past=100)
    ops = forward_ops(ArchBatch.of([a]), 1, 1, 100, 2, 2, 2, Counting(kv_update="concat"))
    concat = next(o for o in ops if o.name == "kv_write")
    per_position = 2 * a.n_kv_heads * a.head_dim * 2
    assert float(concat.kv_bytes[0]) - float(append.kv_bytes[0]) == 2 * 100 * per_position


@pytest.mark.parametrize("precision", ["fp32", "q4_k_m"])
def test_experts_run_row_by_row_compute_at_a_steps_rate_in_the_prompt(precision: str) -> None:
    """ggml's CPU mul_mat_id has no GEMM path: a prompt's experts are a vec_dot per routed row, so they compute at
    the rate a decode step's GEMV does (llama.cpp's MoE prompts came out 20-23 % fast priced as GEMMs); the dense
    FFN of the same prompt is a GEMM as before, and the intensity follows the bytes a GGUF type really stores."""
    from cobench.predict.roofline import phase_ops, time_ops

    a = ArchBatch.of([replace(presets()["tiny-moe-4l"].arch, n_dense_layers=1)])
    cpu = get_device("cpu")
    params = replace(RooflineParams(), intensity_half=dict.fromkeys(OP_CLASSES, 2.0))  # efficiency rises with I

    def rate(counting: Counting, phase: str, name: str) -> float:
        """Seconds of compute per FLOP of op `name`."""
        w = Workload(1, 512, 2, precision)
        timed = next(t for t in time_ops(phase_ops(a, w, phase, counting), cpu, w, params) if t.op.name == name)
        return float(np.mean(timed.compute_s / timed.op.flops))

    rows, grouped = Counting(expert_rows=True), Counting()
    assert rate(rows, "prefill", "experts_up") == pytest.approx(rate(rows, "decode", "experts_up"), rel=1e-3)
    assert rate(grouped, "prefill", "experts_up") < 0.8 * rate(rows, "prefill", "experts_up")  # a GEMM: faster
    assert rate(rows, "prefill", "ffn_up") == rate(grouped, "prefill", "ffn_up")  # the dense layer: a GEMM
    assert rate(rows, "decode", "experts_up") == pytest.approx(rate(grouped, "decode", "experts_up"), rel=1e-3)
    assert Counting.from_json({"expert_rows": True}).expert_rows


def test_one_row_matmuls_are_a_kernel_of_their_own_where_the_backend_runs_them_so() -> None:
    """llamafile's sgemm declines a single column: llama.cpp runs a step's matmuls, a prompt's LM head and the last
    layer's FFN on the kept row as ggml's vec_dot, and two or more rows (a batch's step, a prompt) in tinyBLAS, whose
    rate climbs from below vec_dot's (B = 2 took 2.5-3.1x B = 1). Those are class "gemv", priced apart."""
    from cobench.predict.roofline import phase_ops

    a = ArchBatch.of([presets()["tiny-gqa-4l"].arch])
    own = Counting(single_row_gemv=True, last_layer_outputs=True)

    def classes(batch: int, phase: str, counting: Counting) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for op in phase_ops(a, Workload(batch, 256, 2, "fp32"), phase, counting):
            found.setdefault(op.name, set()).add(op.op_class)
        return found

    step, batched, prompt = classes(1, "decode", own), classes(4, "decode", own), classes(1, "prefill", own)
    matmuls = ("qkv_proj", "o_proj", "ffn_up", "ffn_down", "lm_head")
    assert all(step[n] == {"gemv"} for n in matmuls)
    assert all(batched[n] == {"matmul"} for n in matmuls)
    assert prompt["lm_head"] == {"gemv"} and prompt["qkv_proj"] == {"matmul"}
    assert prompt["ffn_up"] == {"matmul", "gemv"}  # the last layer's FFN runs on the kept row
    assert "gemv" not in set().union(*classes(1, "decode", Counting()).values())
    cpu, w = get_device("cpu"), Workload(1, 256, 16, "fp32")
    slow = replace(RooflineParams(), compute_efficiency={**RooflineParams().compute_efficiency, "gemv": 0.01})
    fast, slowed = predict(a, cpu, w, RooflineParams(), own), predict(a, cpu, w, slow, own)
    assert float(slowed.tpot_s[0]) > 2 * float(fast.tpot_s[0])  # a step is its GEMVs
    assert float(slowed.ttft_s[0]) < 1.5 * float(fast.ttft_s[0])  # a prompt, its GEMMs (and one row's LM head)
    assert predict(a, cpu, w, slow, Counting()).tpot_s[0] == predict(a, cpu, w, RooflineParams(), Counting()).tpot_s[0]
    assert Counting.from_json({"single_row_gemv": True}).single_row_gemv
