"""Kernel microbenchmarks: suite parsing, FLOP/byte accounting, a real timed run, ceilings and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cobench.cli import app
from cobench.errors import InputError
from cobench.measure.kernels.results import ceilings
from cobench.measure.kernels.run import run_kernel
from cobench.measure.kernels.suites import KernelSpec, cost, load_suites
from cobench.measure.runners.ort_session import ORT_DEFAULT_THREADS
from cobench.measure.timing import HarnessConfig
from cobench.store import Store

QUICK = HarnessConfig(warmup_s=0.02, min_iters=3, min_time_s=0.05, max_time_s=0.3, target_rel_ci=0.05)


def test_shipped_suites_parse_and_cover_every_class() -> None:
    specs = load_suites()
    assert {s.suite for s in specs} >= {"gemm", "gemv", "attention", "elementwise", "memory"}
    assert {s.kind for s in specs} >= {
        "gemm",
        "attention",
        "rmsnorm",
        "softmax",
        "silu_mul",
        "add",
        "gather",
        "copy",
        "triad",
    }


def test_costs_follow_the_operator_conventions() -> None:
    assert cost("gemm", {"m": 2, "n": 3, "k": 4}, 4) == (2 * 2 * 3 * 4, (8 + 12 + 6) * 4)
    flops, nbytes = cost("attention", {"batch": 1, "heads": 2, "q": 1, "kv": 10, "head_dim": 8}, 2)
    assert flops == 4 * 2 * 10 * 8 and nbytes == (2 * 2 * 8 + 2 * 2 * 10 * 8) * 2
    assert cost("copy", {"elements": 100}, 4) == (0.0, 800)
    assert cost("triad", {"elements": 100}, 4) == (200, 1200)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"kernels": [{"kind": "fft", "shapes": [{"n": 1}]}]}, "bad.yaml.kernels[0].kind"),
        ({"kernels": [{"kind": "gemm", "shapes": [{"m": 1, "n": 2}]}]}, "bad.yaml.kernels[0].shapes[0]"),
        ({"kernels": [{"kind": "gemm", "shapes": [{"m": 0, "n": 2, "k": 2}]}]}, "bad.yaml.kernels[0].shapes[0].m"),
        ({"precisions": ["fp64"], "kernels": [{"kind": "copy", "shapes": [{"elements": 8}]}]}, "bad.yaml.precisions"),
        ({"warm": "yes", "kernels": [{"kind": "copy", "shapes": [{"elements": 8}]}]}, "bad.yaml.warm"),
    ],
)
def test_bad_suites_name_the_field(tmp_path: Path, doc: dict, field: str) -> None:
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(InputError) as e:
        load_suites(["bad"], [tmp_path / "bad.yaml"])
    assert e.value.field == field
    with pytest.raises(InputError, match="unknown suite"):
        load_suites(["nope"])


def test_a_real_gemm_and_copy_and_their_ceilings() -> None:
    gemm = run_kernel(KernelSpec("t", "gemm", {"m": 128, "n": 128, "k": 128}, "fp32"), cfg=QUICK, cache_bytes=1 << 20)
    copy = run_kernel(KernelSpec("t", "copy", {"elements": 1 << 20}, "fp32"), cfg=QUICK, cache_bytes=1 << 20)
    assert gemm.flops_per_s > 1e8 and gemm.intensity == pytest.approx(2 * 128**3 / (3 * 128 * 128 * 4))
    assert copy.bytes_per_s > 1e8 and copy.flops == 0
    c = ceilings([gemm, copy])
    assert c.flops_per_s == {"fp32": gemm.flops_per_s} and c.bytes_per_s == copy.bytes_per_s


def test_cli_kernels_run_and_roofline(tmp_path: Path) -> None:
    suite = tmp_path / "mini.yaml"
    suite.write_text(
        yaml.safe_dump(
            {
                "name": "mini",
                "precisions": ["fp32"],
                "kernels": [
                    {"kind": "gemm", "shapes": [{"m": 64, "n": 64, "k": 64}]},
                    {"kind": "copy", "shapes": [{"elements": 1 << 18}]},
                    {"kind": "rmsnorm", "shapes": [{"rows": 64, "cols": 64}]},
                ],
            }
        )
    )
    runner = CliRunner()
    store = str(tmp_path / "k.db")
    result = runner.invoke(app, ["kernels", "run", "mini", "--kernels-path", str(suite), "--store", store, "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["kind"] for r in rows} == {"gemm", "copy", "rmsnorm"} and all(r["median_s"] > 0 for r in rows)
    again = runner.invoke(app, ["kernels", "run", "mini", "--kernels-path", str(suite), "--store", store, "--json"])
    assert len(json.loads(again.stdout)) == 3  # stored results reused, not duplicated
    plot = runner.invoke(app, ["kernels", "roofline", "--store", store, "--out", str(tmp_path / "fig"), "--json"])
    assert plot.exit_code == 0, plot.stderr
    summary = json.loads(plot.stdout)
    assert summary["measured_flops_per_s"]["fp32"] > 0 and summary["measured_bytes_per_s"] > 0
    for figure in summary["figures"]:
        assert Path(figure).stat().st_size > 1000
    empty = runner.invoke(app, ["kernels", "roofline", "-d", "h100-sxm", "--store", store])
    assert empty.exit_code == 2 and "no kernel results for h100-sxm" in empty.stderr


def test_a_warm_suite_is_timed_warm_in_a_cold_run_and_stored_as_a_warm_run_would(tmp_path: Path) -> None:
    """The cache suite reads its operands again and again (no rotation), whatever the run's cache state; its
    results say so, stay out of the bandwidth ceiling, and a `--warm` run finds them already stored."""
    suite = tmp_path / "hot.yaml"
    gemv = {"kind": "gemm", "shapes": [{"m": 1, "n": 256, "k": 256}]}
    suite.write_text(yaml.safe_dump({"name": "hot", "warm": True, "kernels": [gemv]}))
    (spec,) = load_suites(["hot"], [suite])
    assert spec.warm and spec.key_fields() == {"suite": "hot", "kind": "gemm", "shape": gemv["shapes"][0]} | {
        "precision": "fp32"
    }
    r = run_kernel(spec, cfg=QUICK, cache_bytes=1 << 24)
    assert not r.cold and r.summary["copies"] == 1
    cold_copy = run_kernel(KernelSpec("t", "copy", {"elements": 1 << 16}, "fp32"), cfg=QUICK, cache_bytes=1 << 20)
    warm_copy = run_kernel(KernelSpec("t", "copy", {"elements": 1 << 16}, "fp32", warm=True), cfg=QUICK)
    assert cold_copy.cold and cold_copy.summary["copies"] > 1
    assert ceilings([cold_copy, warm_copy]).bytes_per_s == cold_copy.bytes_per_s  # a cache's speed is no ceiling
    runner, store = CliRunner(), str(tmp_path / "k.db")
    flags = ["kernels", "run", "hot", "--kernels-path", str(suite), "--store", store, "--json", "--max-time-s", "0.2"]
    first = runner.invoke(app, flags)
    assert first.exit_code == 0, first.stderr
    assert [row["cold"] for row in json.loads(first.stdout)] == [False]
    again = runner.invoke(app, [*flags, "--warm"])
    assert json.loads(again.stdout)[0]["key"] == json.loads(first.stdout)[0]["key"]  # reused, not re-measured
    with Store(tmp_path / "k.db") as db:
        assert len(db.kernels.find("cpu")) == 1


ORT_SHAPES = {
    "gemm": {"m": 8, "n": 16, "k": 32},
    "attention": {"batch": 1, "heads": 2, "q": 4, "kv": 6, "head_dim": 8},  # a step of 4 tokens after 2 cached
    "rmsnorm": {"rows": 3, "cols": 16},
    "softmax": {"rows": 3, "cols": 16},
    "silu_mul": {"rows": 3, "cols": 16},
    "add": {"rows": 3, "cols": 16},
    "gather": {"vocab": 50, "dim": 8, "rows": 5},
    "copy": {"elements": 64},
}


@pytest.mark.parametrize("kind", sorted(ORT_SHAPES))
def test_ort_kernels_compute_what_they_claim(kind: str) -> None:
    """Each one-operator ONNX graph computes its operation (checked against numpy on its bound buffers); ORT's
    attention is the engine graph's GroupQueryAttention, writing its cache in place."""
    import numpy as np

    from cobench.measure.kernels.backend_onnx import ort_calls

    _, make = ort_calls(KernelSpec("t", kind, ORT_SHAPES[kind], "fp32"))
    feeds, results = make(0)()
    y = results["y"]
    f = {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in (feeds | results).items()}
    if kind == "gemm":
        want = f["a"] @ f["b"]
    elif kind == "attention":  # GroupQueryAttention: q new tokens written over the last q of a kv-position cache
        b, h, q, kv, d = (ORT_SHAPES[kind][k] for k in ("batch", "heads", "q", "kv", "head_dim"))
        heads = lambda x: x.reshape(b, q, h, d).transpose(0, 2, 1, 3)  # noqa: E731
        keys, values = f["present_key"], f["present_value"]  # the past buffers, written in place
        np.testing.assert_allclose(keys[:, :, kv - q :], heads(f["key"]), rtol=1e-6)
        s = heads(f["query"]) @ keys.transpose(0, 1, 3, 2) / np.sqrt(d)
        s = np.where(np.arange(kv)[None, :] <= np.arange(kv - q, kv)[:, None], s, -np.inf)  # causal
        p = np.exp(s - s.max(-1, keepdims=True))
        want = ((p / p.sum(-1, keepdims=True)) @ values).transpose(0, 2, 1, 3).reshape(b, q, h * d)
    elif kind == "rmsnorm":
        want = f["x"] / np.sqrt((f["x"] ** 2).mean(-1, keepdims=True) + 1e-6) * f["w"]
    elif kind == "softmax":
        e = np.exp(f["x"] - f["x"].max(-1, keepdims=True))
        want = e / e.sum(-1, keepdims=True)
    elif kind == "silu_mul":
        want = f["a"] / (1 + np.exp(-f["a"])) * f["b"]
    elif kind == "add":
        want = f["a"] + f["b"]
    elif kind == "gather":
        want = f["table"][f["idx"]]
    else:
        want = f["x"]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_ort_backend_rejects_what_it_cannot_run() -> None:
    from cobench.measure.kernels.backend_onnx import ort_calls

    with pytest.raises(InputError, match="kind"):
        ort_calls(KernelSpec("t", "triad", {"elements": 8}, "fp32"))
    with pytest.raises(InputError, match="precision"):
        ort_calls(KernelSpec("t", "gemm", {"m": 2, "n": 2, "k": 2}, "bf16"))


def test_ort_kernels_run_on_the_threads_asked_and_are_kept_apart_from_ort_defaults(tmp_path: Path) -> None:
    """An engine that runs ORT's attention inside it (ORT GenAI) is calibrated on that kernel at its own thread
    count: a run with --threads is its own kernel, recorded with the threads and the onnxruntime it loaded."""
    import onnxruntime

    suite = tmp_path / "gqa.yaml"
    shape = {"batch": 1, "heads": 4, "q": 16, "kv": 16, "head_dim": 32}
    suite.write_text(yaml.safe_dump({"name": "gqa", "precisions": ["fp32"], "kernels": [
        {"kind": "attention", "shapes": [shape]}]}))  # fmt: skip
    store = str(tmp_path / "k.db")
    flags = ["kernels", "run", "gqa", "--backend", "ort", "--kernels-path", str(suite), "--store", store, "--json"]
    flags += ["--max-time-s", "0.1"]
    for threads in ([], ["--threads", "1"], ["--threads", "1"]):
        result = CliRunner().invoke(app, flags + threads)
        assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert sorted(str(r["environment"]["intra_op_threads"]) for r in found) == ["1", ORT_DEFAULT_THREADS]
    assert {r["environment"]["onnxruntime"] for r in found} == {onnxruntime.__version__}
    for bad, backend in (("0", "ort"), ("2", "torch")):
        refused = CliRunner().invoke(app, [*flags[:4], backend, *flags[5:], "--threads", bad])
        assert refused.exit_code == 2 and "threads" in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_from_space_derives_the_shapes_candidates_use(tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "name": "one",
                "fixed": {"vocab_size": 1000, "n_kv_heads": 2, "d_ff": 192},
                "grid": {"d_model": [64, 128], "n_layers": [2], "n_heads": [4]},
                "workload": {"prompt": 32, "generate": 4, "precision": "fp32"},
            }
        )
    )
    from cobench.arch.space import load_space
    from cobench.measure.kernels.suites import space_kernels

    specs = space_kernels(load_space(space), per_kind=100)
    got = {(s.kind, tuple(sorted(s.shape.items()))) for s in specs if s.suite == "space:one"}
    assert ("gemm", (("k", 64), ("m", 32), ("n", 128))) in got  # qkv of d=64: (4 + 2·2)·16 = 128 outputs
    assert ("gemm", (("k", 128), ("m", 1), ("n", 1000))) in got  # the LM head of a decode step
    assert ("attention", (("batch", 1), ("head_dim", 32), ("heads", 4), ("kv", 36), ("q", 1))) in got
    assert all(s.precision == "fp32" for s in specs)
    chosen = load_suites(["memory"], None, space)  # eight per kind, spread over their size
    assert max(sum(s.kind == k for s in chosen if s.suite == "space:one") for k in ORT_SHAPES) <= 8


def test_trt_kernels_without_tensorrt_say_what_to_install(tmp_path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    store = str(tmp_path / "k.db")
    result = CliRunner().invoke(app, ["kernels", "run", "gemm", "--backend", "trt", "-d", "h100-sxm", "--store", store])
    assert result.exit_code == 3 and "TensorRT" in result.stderr
    on_cpu = CliRunner().invoke(app, ["kernels", "run", "gemm", "--backend", "trt", "-d", "cpu", "--store", store])
    assert on_cpu.exit_code == 2 and "device: trt kernels run on the cuda, but cpu is a cpu" in on_cpu.stderr
    bad = CliRunner().invoke(app, ["kernels", "run", "--backend", "ort", "--runner-device", "cuda"])
    assert bad.exit_code == 2 and "runner_device:" in bad.stderr


def test_the_same_device_file_in_another_checkout_is_the_same_device(tmp_path: Path) -> None:
    """Bug: a device's id hashed the path its file was read from, so a clone of the project re-measured every
    kernel and then calibrated on both copies."""
    from dataclasses import replace

    from cobench.hardware.devices import get_device
    from cobench.measure.kernels.results import KernelResult

    cpu = get_device("cpu")
    elsewhere = replace(cpu, path="/another/checkout/devices/cpu.yaml")
    spec = KernelSpec("t", "copy", {"elements": 64}, "fp32")
    with Store(tmp_path / "k.db") as db:
        assert db.catalog.put_device(cpu) == db.catalog.put_device(elsewhere)
        older = KernelResult(spec, 0.0, 512.0, 2e-6, {}, True, "ort", "cpu", key="older")
        db.kernels.put(older, db.catalog.put_device(cpu))
        db.kernels.put(replace(older, key="newer", median_s=1e-6), db.catalog.put_device(replace(cpu, memory_gb=1.0)))
        found = db.kernels.find("cpu")  # one kernel measured under two identities of the device: the newest
        assert [k.key for k in found] == ["newer"]
