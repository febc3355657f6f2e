"""ONNX Runtime GenAI as a backend, on the real engine: its builder's model of cobench's weights, its
generator's tokens against cobench's torch module, and a profile through it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import run

from cobench.arch.architecture import Architecture
from cobench.arch.model import build_model
from cobench.arch.spec import load_architecture
from cobench.errors import InputError, MissingDependency
from cobench.measure.hf_layout import hf_config, hf_type

og = pytest.importorskip("onnxruntime_genai")
from cobench.measure.runners import ort_genai  # noqa: E402
from cobench.measure.runners.ort_genai import OrtGenAIRunner, build  # noqa: E402

SMALL = Architecture(name="genai-small", vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                     max_seq_len=256)  # fmt: skip
QWEN = replace(SMALL, name="genai-qwen", qkv_bias=True, tie_embeddings=True)
QWEN3 = replace(SMALL, name="genai-qwen3", qk_norm="head", head_dim=32)  # heads × head_dim ≠ d_model, as Qwen3's


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("genai-cache")


def _greedy(a: Architecture, ids: np.ndarray, n: int) -> list[int]:
    """cobench's torch module, greedy: the tokens an engine running the same weights must pick."""
    model = build_model(a, 0)
    seq = torch.from_numpy(ids)
    out = []
    with torch.no_grad():
        for _ in range(n):
            token = int(model(seq)[0][0, -1].argmax())
            out.append(token)
            seq = torch.cat([seq, torch.tensor([[token]])], dim=1)
    return out


@pytest.mark.parametrize("arch", [SMALL, QWEN, QWEN3], ids=["llama", "qwen2", "qwen3-qk-norm"])
def test_the_engine_generates_what_the_torch_module_generates(arch: Architecture, cache: Path) -> None:
    built = build(arch, "fp32", "cpu", cache)
    assert built.meta["validation"]["last_logits"] < 1e-4 and built.meta["hf_type"] == hf_type(arch)
    assert build(arch, "fp32", "cpu", cache).meta["cache_hit"] is True
    runner = OrtGenAIRunner.open(arch, "fp32", "cpu", cache, {"capacity": 40})
    ids = np.random.default_rng(3).integers(0, arch.vocab_size, (1, 24))
    generator = runner.prefill(ids)
    for _ in range(7):
        generator = runner.decode(ids[:, -1:], generator)
    assert list(generator.get_sequence(0)[24:]) == _greedy(arch, ids, 8)


def test_a_batch_on_the_engine_is_its_sequences_each_generating_alone(cache: Path) -> None:
    """The accuracy study profiles held-out models at batch 4 on every backend: ORT GenAI's batched generator
    gives each of three prompts the greedy tokens cobench's torch module gives it alone."""
    runner = OrtGenAIRunner.open(SMALL, "fp32", "cpu", cache, {"capacity": 40})
    ids = np.random.default_rng(5).integers(0, SMALL.vocab_size, (3, 20))
    generator = runner.prefill(ids)
    for _ in range(5):
        generator = runner.decode(ids[:, -1:], generator)
    for i in range(3):
        assert list(generator.get_sequence(i)[20:]) == _greedy(SMALL, ids[i : i + 1], 6)


def test_int4_is_matmulnbits_within_its_tolerance_and_fixed_steps_keep_their_context(cache: Path) -> None:
    built = build(SMALL, "int4", "cpu", cache)
    assert 0 < built.meta["validation"]["last_logits"] <= ort_genai.TOLERANCE["int4"]
    import onnx

    graph = onnx.load(str(built.directory / "model" / "model.onnx"), load_external_data=False).graph
    assert {"MatMulNBits", "GroupQueryAttention"} <= {n.op_type for n in graph.node}
    runner = OrtGenAIRunner.open(SMALL, "int4", "cpu", cache, {"capacity": 64, "threads": 1})
    assert runner.info()["intra_op_threads"] == 1
    generator = runner.make_cache(1, 32)
    step = runner.fixed_decode(np.array([[5]]), generator)
    before = generator.token_count()
    for _ in range(3):
        step()
    assert generator.token_count() == before


def _busy_cpus(runner: OrtGenAIRunner, ids: np.ndarray) -> float:
    """Process CPU time over wall time across a few prefills: how many threads the engine kept busy."""
    runner.prefill(ids)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(20):
        runner.prefill(ids)
    return (time.process_time() - cpu) / (time.perf_counter() - wall)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to tell one thread from two")
def test_default_threads_are_every_cpu_and_the_engine_runs_them(cache: Path) -> None:
    """Bug: without `--threads`, ORT GenAI was left to its own default, one intra-op thread on this 2-core VM
    (its prefill ~2x slower than with two), while the record said two."""
    ids = np.random.default_rng(0).integers(0, SMALL.vocab_size, (1, 192))
    one = OrtGenAIRunner.open(SMALL, "fp32", "cpu", cache, {"capacity": 200, "threads": 1})
    assert one.info()["intra_op_threads"] == 1
    busy_one = _busy_cpus(one, ids)
    del one
    default = OrtGenAIRunner.open(SMALL, "fp32", "cpu", cache, {"capacity": 200})
    assert default.info()["intra_op_threads"] == len(os.sched_getaffinity(0))
    assert _busy_cpus(default, ids) > busy_one + 0.4


def test_profile_through_the_engine_adds_up_and_says_what_it_ran(tmp_path: Path, cache: Path) -> None:
    spec = tmp_path / "small.json"
    spec.write_text(json.dumps(SMALL.to_dict()))
    quick = ["--prompt", "32", "--generate", "6", "--rounds", "2", "--min-iters", "5", "--min-time-s", "0.05",
             "--warmup-s", "0.02", "--idle-s", "0", "--cooldown-s", "0", "--cache-dir", str(cache)]  # fmt: skip
    out = run("profile", "-a", str(spec), "--backend", "ort-genai", *quick, "--store", str(tmp_path / "p.db"), "--json")
    [r] = json.loads(out.stdout)
    assert r["status"] == "ok" and r["backend"] == "ort-genai"
    m, env = r["measured"], r["environment"]["runner"]
    assert env["backend"] == "ort-genai" and env["kv_capacity"] == 38 and env["search"] == "greedy"
    assert m["e2e_s"] == pytest.approx(m["ttft_s"] + 5 * m["tpot_s"], rel=0.05)
    assert abs(m["e2e_gap"]) < 0.03  # the tool's own check: e2e = TTFT + Σ steps


def test_what_the_engine_cannot_run_is_said_before_any_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(tmp_path / "p.db")
    err = run("profile", "-a", "tiny-moe-4l", "--backend", "ort-genai", "--store", store, code=2).stderr
    assert "tiny-moe-4l has routed experts: ort-genai gets the dense" in err and len(err.strip().splitlines()) == 1
    err = run("profile", "-a", "tiny-gelu-4l", "--backend", "ort-genai", "--store", store, code=2).stderr
    assert "tiny-gelu-4l has a GELU MLP and LayerNorm in sequence (StarCoder2's layout), which ORT GenAI" in err
    assert len(err.strip().splitlines()) == 1
    err = run("profile", "-a", "tiny-gqa-4l", "--backend", "ort-genai", "--precision", "fp16", "--store", store,
              code=2).stderr  # fmt: skip
    assert "ort-genai on cpu runs fp32, int4, not 'fp16'" in err
    with pytest.raises(InputError, match="routed experts"):
        hf_config(Architecture.from_dict(SMALL.to_dict() | {"n_experts": 4, "top_k": 1, "d_ff_expert": 32}))
    hf = Path(__file__).parent / "fixtures" / "hf"
    assert hf_type(load_architecture(str(hf / "qwen3-0.6b.json"))) == "qwen3"  # the shipped family loads
    with pytest.raises(InputError, match="olmo-2.* has a QK-norm over the whole projection"):
        hf_type(load_architecture(str(hf / "olmo-2-0425-1b.json")))
    with pytest.raises(InputError, match="a per-head QK-norm beside experts or biases"):
        hf_type(replace(QWEN3, qkv_bias=True))  # Qwen3's layout has no q/k/v-only biases
    with pytest.raises(InputError, match="ORT GenAI 0.18's builder cannot read under transformers 5"):
        hf_type(load_architecture(str(hf / "gemma-3-1b-it.json")))  # llama.cpp takes it (test_llama_cpp.py)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime_genai" else real(n, *a))
    with pytest.raises(MissingDependency, match=r"pip install 'cobench\[genai\]'"):
        ort_genai.check_available("cpu")
