"""llama.cpp as a backend, on the real engine: GGUF of cobench's weights, llama.cpp's own quantisation, its
greedy tokens against cobench's torch module, and a profile through it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_ort_genai import QWEN, QWEN3, SMALL, _greedy

from cobench.arch.architecture import Architecture
from cobench.arch.spec import load_architecture, presets
from cobench.errors import InputError, MissingDependency

pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")
from test_cli import run  # noqa: E402

from cobench.arch.architecture import as_arch_like  # noqa: E402
from cobench.arch.gguf_types import weight_bytes  # noqa: E402
from cobench.measure.gguf_layout import gguf_architecture, interleave_rope, write_gguf  # noqa: E402
from cobench.measure.runners import llama_cpp as runner_module  # noqa: E402
from cobench.measure.runners.llama_cpp import LlamaCppRunner, build  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llama-cache")


def test_rope_rows_go_from_halves_to_pairs() -> None:
    w = np.arange(8.0).reshape(8, 1)  # one head of 8 rows: halves (0 1 2 3 | 4 5 6 7)
    assert interleave_rope(w, 1).ravel().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


MIXTRAL = replace(SMALL, name="gguf-moe", n_experts=4, top_k=2, d_ff_expert=96)
GEMMA3 = replace(  # sliding every other layer, a window shorter than the prompt, one RoPE base: none of them
    # llama.cpp's defaults for gemma3 (every sixth layer global, base 10,000 for the sliding ones)
    SMALL,
    name="gguf-gemma3",
    n_layers=4,
    head_dim=32,
    ffn="geglu",
    norm_layout="sandwich",
    qk_norm="head",
    embedding_multiplier=8.0,
    layer_types=("sliding", "full") * 2,
    sliding_window=8,
    tie_embeddings=True,
    rope_theta=1e6,
)


STARCODER2 = replace(SMALL, name="gguf-starcoder2", ffn="gelu", norm="layernorm", o_bias=True, mlp_bias=True)
LLAMA_BIASES = replace(SMALL, name="gguf-llama-biases", qkv_bias=True, o_bias=True, mlp_bias=True)  # once a KeyError


@pytest.mark.parametrize(
    "arch",
    [SMALL, QWEN, QWEN3, MIXTRAL, GEMMA3, STARCODER2, LLAMA_BIASES],
    ids=["llama", "qwen2-biases", "qwen3-qk-norm", "mixtral-experts", "gemma3-sliding", "starcoder2-gelu-layernorm",
         "llama-every-bias"],
)  # fmt: skip
def test_llama_cpp_generates_what_the_torch_module_generates(arch: Architecture, cache: Path) -> None:
    built = build(arch, "fp32", cache)
    assert built.meta["validation"]["last_logits"] < runner_module.TOLERANCE["fp32"]
    assert built.meta["tensor_bytes"]["by_type"] == {"F32": built.meta["tensor_bytes"]["total"]}
    runner = LlamaCppRunner.open(arch, "fp32", "cpu", cache, {"capacity": 40, "threads": 1})
    ids = np.random.default_rng(3).integers(0, arch.vocab_size, (1, 24))
    assert _generated(runner, ids, 8) == [_greedy(arch, ids, 8)]


def _generated(runner: LlamaCppRunner, ids: np.ndarray, n: int) -> list[list[int]]:
    """Each sequence's n greedy tokens, generated as cobench times them."""
    steps = [runner.prefill(ids)]
    for _ in range(n - 1):
        steps.append(runner.decode(ids[:, -1:], steps[-1]))
    assert [s.length for s in steps] == list(range(ids.shape[1], ids.shape[1] + n))
    return np.hstack([s.tokens for s in steps]).tolist()


@pytest.mark.parametrize("arch", [SMALL, MIXTRAL], ids=["llama", "mixtral-experts"])
def test_a_batch_is_its_sequences_each_generating_alone(arch: Architecture, cache: Path) -> None:
    """Batch 3: three prompts of their own, each in its own KV stream, through one llama_decode per step: every
    sequence picks the tokens cobench's torch module picks for it alone, and its first logits are the ones a
    one-sequence context computes for that prompt. Fixed steps at batch 3 keep every sequence's context."""
    import llama_cpp

    ids = np.random.default_rng(5).integers(0, arch.vocab_size, (3, 20))
    runner = LlamaCppRunner.open(arch, "fp32", "cpu", cache, {"capacity": 32, "threads": 1, "batch": 3})
    alone = LlamaCppRunner.open(arch, "fp32", "cpu", cache, {"capacity": 32, "threads": 1})
    try:
        assert runner.info()["sequences"] == 3 and runner.info()["kv_unified"] is False
        assert _generated(runner, ids, 6) == [_greedy(arch, ids[i : i + 1], 6)[0:6] for i in range(3)]
        runner.prefill(ids)
        together = runner.engine.logits(3).copy()
        for i in range(3):
            alone.prefill(ids[i : i + 1])
            assert np.abs(together[i] - alone.engine.logits(1)[0]).max() < runner_module.TOLERANCE["fp32"]
        step = runner.fixed_decode(ids[:, -1:], runner.make_cache(3, 12))
        memory = llama_cpp.llama_get_memory(runner.engine.ctx)
        for _ in range(2):
            step()
            assert [llama_cpp.llama_memory_seq_pos_max(memory, s) for s in range(3)] == [12] * 3
        with pytest.raises(InputError, match="this context holds 3 sequences, not 1"):
            runner.prefill(ids[:1])
    finally:
        runner.engine.close()
        alone.engine.close()


def test_a_batch_writes_each_token_at_its_sequences_position() -> None:
    """A prompt's tokens go in through numpy views, a step's through ctypes (numpy's calls just before a
    llama_decode slowed the step, benchmarks/llama_truth.py): both write every sequence's tokens at its positions."""
    import llama_cpp

    from cobench.measure.runners.llama_cpp import Batch

    prompt, step = Batch.laid_out(2, 3), Batch.laid_out(2, 1)
    try:
        prompt.write(np.array([[1, 2, 3], [4, 5, 6]]), 0)
        step.write(np.array([[7], [8]]), 3)
        assert [prompt.raw.token[k] for k in range(6)] == [1, 2, 3, 4, 5, 6]
        assert [prompt.raw.pos[k] for k in range(6)] == [0, 1, 2, 0, 1, 2]
        written = [(step.raw.token[k], step.raw.pos[k], step.raw.seq_id[k][0]) for k in range(2)]
        assert written == [(7, 3, 0), (8, 3, 1)]
    finally:
        llama_cpp.llama_batch_free(prompt.raw)
        llama_cpp.llama_batch_free(step.raw)


GGUF_SHAPES = {  # depths that pick different layers for Q6_K; rows of 256, 320, 576 and 704 values; tied or not;
    # routed experts
    "8l-ffn704": {"n_layers": 8},
    "12l-d320-mqa": {"n_layers": 12, "d_model": 320, "n_heads": 5, "n_kv_heads": 1, "d_ff": 640},
    "3l-tied": {"n_layers": 3, "tie_embeddings": True, "d_ff": 768},
    "16l-d576-tied": {
        "n_layers": 16,
        "d_model": 576,
        "n_heads": 9,
        "n_kv_heads": 3,
        "d_ff": 1536,
        "tie_embeddings": True,
    },  # fmt: skip
    "5l-mha-bias": {"n_layers": 5, "d_model": 512, "n_heads": 8, "n_kv_heads": 8, "d_ff": 1024, "qkv_bias": True},
    "4l-8-experts": {"n_experts": 8, "top_k": 2, "d_ff_expert": 352},  # Mixtral's count: attention kept finer
    "8l-4-experts": {"n_layers": 8, "n_experts": 4, "top_k": 2, "d_ff_expert": 512},
    "6l-qwen3": {"n_layers": 6, "qk_norm": "head", "head_dim": 128},  # llama.cpp's qwen3: q/k norms kept F32
    "6l-gemma3": {
        "n_layers": 6,
        "ffn": "geglu",
        "norm_layout": "sandwich",
        "qk_norm": "head",
        "tie_embeddings": True,
        "embedding_multiplier": 16.0,
        "layer_types": ("sliding",) * 5 + ("full",),
        "sliding_window": 64,
    },
    "4l-starcoder2": {"ffn": "gelu", "norm": "layernorm", "o_bias": True, "mlp_bias": True, "qkv_bias": True},
}


@pytest.mark.parametrize("shape", GGUF_SHAPES)
def test_the_bytes_counted_for_each_gguf_mix_are_the_bytes_llama_cpp_writes(shape: str, tmp_path: Path) -> None:
    import gguf
    import llama_cpp

    arch = replace(presets()["tiny-gqa-4l"].arch, vocab_size=1024, **GGUF_SHAPES[shape])
    write_gguf(arch, tmp_path / "f32.gguf")
    for precision, ftype in runner_module.QUANTISED.items():
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        out = tmp_path / f"{precision}.gguf"
        assert llama_cpp.llama_model_quantize(str(tmp_path / "f32.gguf").encode(), str(out).encode(), params) == 0
        written = sum(int(t.n_bytes) for t in gguf.GGUFReader(str(out)).tensors)
        assert weight_bytes(as_arch_like(arch), precision)[0] == pytest.approx(written, rel=1e-12), precision


@pytest.mark.parametrize("precision", ["fp16", "q8_0", "q4_0", "q4_k_m"])
def test_quantised_models_are_llama_cpps_own_and_their_bytes_are_counted(precision: str, cache: Path) -> None:
    built = build(SMALL, precision, cache)
    error, found = built.meta["validation"]["last_logits"], built.meta["tensor_bytes"]
    assert 0 < error <= runner_module.TOLERANCE[precision]
    f32 = build(SMALL, "fp32", cache).meta["tensor_bytes"]["total"]
    assert found["total"] < f32 * (0.55 if precision != "q4_k_m" else 0.6)
    # the record holds what the roofline counts beside the file's bytes (F16 keeps vectors in F32)
    assert found["total"] == pytest.approx(found["counted"], rel=0 if precision in runner_module.QUANTISED else 5e-3)
    if precision != "q4_k_m":
        assert {"fp16": "F16", "q8_0": "Q8_0", "q4_0": "Q4_0"}[precision] in found["by_type"]
        return
    # 64-wide rows do not split into 256-value super-blocks: llama.cpp falls back, and the bytes say so
    assert len(set(found["by_type"]) - {"F32"}) >= 2 and "Q4_K" not in found["by_type"]
    wide = build(presets()["tiny-gqa-4l"].arch, "q4_k_m", cache).meta["tensor_bytes"]["by_type"]
    assert {"Q4_K", "Q6_K"} <= set(wide)  # 256-wide: Q4_K, with Q6_K for the half it keeps finer


def test_profile_through_llama_cpp_adds_up_and_fixed_steps_keep_their_context(tmp_path: Path, cache: Path) -> None:
    spec = tmp_path / "small.json"
    spec.write_text(json.dumps(SMALL.to_dict()))
    quick = ["--prompt", "32", "--generate", "6", "--rounds", "2", "--min-iters", "5", "--min-time-s", "0.05",
             "--warmup-s", "0.02", "--idle-s", "0", "--cooldown-s", "0", "--cache-dir", str(cache)]  # fmt: skip
    quick += ["--context", "20"]
    out = run("profile", "-a", str(spec), "--backend", "llama.cpp", "--precision", "q8_0", *quick, "--store",
              str(tmp_path / "p.db"), "--json")  # fmt: skip
    [r] = json.loads(out.stdout)
    assert r["status"] == "ok" and r["backend"] == "llama.cpp"
    m, env = r["measured"], r["environment"]["runner"]
    assert env["quantisation"] == "q8_0" and env["threads"] >= 1 and "AVX" in env["system_info"]
    assert env["kv_cache"] == r["workload"]["kv_precision"] == "fp16"
    assert abs(m["e2e_gap"]) < 0.03 and m["fixed_decode_s"]["20"] > 0
    runner = LlamaCppRunner.open(SMALL, "q8_0", "cpu", cache, {"capacity": 64})
    import llama_cpp

    assert runner.engine.params.type_k == runner.engine.params.type_v == llama_cpp.GGML_TYPE_F16
    step = runner.fixed_decode(np.array([[7]]), runner.make_cache(1, 20))
    memory = llama_cpp.llama_get_memory(runner.engine.ctx)
    for _ in range(3):
        step()
        assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == 20  # positions 0..19, and the step's at 20
    out = run("profile", "-a", str(spec), "--backend", "llama.cpp", "--precision", "q8_0", "--batch", "2", *quick,
              "--store", str(tmp_path / "p.db"), "--json")  # fmt: skip
    [r] = json.loads(out.stdout)  # two sequences through each llama_decode: still adds up, and says so
    assert r["status"] == "ok" and r["environment"]["runner"]["sequences"] == 2 and r["workload"]["batch"] == 2
    assert abs(r["measured"]["e2e_gap"]) < 0.03 and r["measured"]["fixed_decode_s"]["20"] > 0


def test_what_llama_cpp_cannot_run_is_said_before_any_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(tmp_path / "p.db")
    err = run("profile", "-a", "qwen1.5-moe-a2.7b", "--backend", "llama.cpp", "--store", store, code=2).stderr
    assert "has shared experts" in err and len(err.strip().splitlines()) == 1  # Mixtral's routed ones only
    err = run("profile", "-a", "tiny-gqa-4l", "--backend", "llama.cpp", "--precision", "int8", "--store", store,
              code=2).stderr  # fmt: skip
    assert "llama.cpp runs fp32, fp16, q8_0, q4_0, q4_k_m, not 'int8'" in err
    hf = Path(__file__).parent / "fixtures" / "hf"
    err = run("profile", "-a", str(hf / "gemma-2-2b.json"), "--backend", "llama.cpp", "--store", store,
              code=2).stderr  # fmt: skip
    assert "gemma-2-2b has some of Gemma 3's parts but not all" in err and len(err.strip().splitlines()) == 1
    assert gguf_architecture(load_architecture(str(hf / "gemma-3-1b-it.json"))) == "gemma3"
    with pytest.raises(InputError, match="an attention scale other than 1/√head_dim"):
        gguf_architecture(replace(GEMMA3, attention_multiplier=0.5))  # llama.cpp's gemma3 takes 1/√head_dim
    assert gguf_architecture(presets()["tiny-gelu-4l"].arch) == "starcoder2"  # q/k/v biases are optional there
    with pytest.raises(InputError, match="without output and MLP biases, which llama.cpp's starcoder2 requires"):
        gguf_architecture(replace(STARCODER2, mlp_bias=False))
    with pytest.raises(InputError, match="a swiglu MLP with layernorm"):
        gguf_architecture(replace(STARCODER2, ffn="swiglu"))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llama_cpp" else real(n, *a))
    with pytest.raises(MissingDependency, match=r"pip install 'cobench\[llamacpp\]'"):
        runner_module.check_available("cpu")
