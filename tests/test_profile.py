"""Export numerics, runners and `profile`: real exports, real ORT and torch runs, subprocess isolation."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from typer.testing import CliRunner

from cobench.arch.architecture import Architecture
from cobench.arch.model import build_model
from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.cli import app
from cobench.errors import MissingDependency
from cobench.hardware.devices import DeviceSpec, get_device
from cobench.measure.export import export
from cobench.measure.profile import MEASUREMENT, Candidate, ProfileSettings, profile, task_for, task_key
from cobench.measure.runners import open_runner
from cobench.measure.timing import HarnessConfig
from cobench.predict.latency_model import BACKEND_COUNTING, LatencyModel
from cobench.predict.roofline import RooflineParams
from cobench.store import Store

TINY = Architecture(
    name="tiny", vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq_len=256
)
FAST = HarnessConfig(warmup_s=0.05, min_iters=5, min_time_s=0.1, max_time_s=0.5, target_rel_ci=0.05)


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-cache")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_export_matches_torch_and_is_cached(cache: Path, precision: str) -> None:
    first = export(TINY, precision, cache)
    assert not first.meta["cache_hit"]
    tolerance = {"fp32": 1e-4, "fp16": 2e-2, "int8": 0.3}[precision]
    assert first.meta["validation"]["prefill"] <= tolerance and first.meta["validation"]["decode"] <= tolerance
    again = export(replace(TINY, name="renamed"), precision, cache)  # the name is not part of the key
    assert again.meta["cache_hit"] and again.key == first.key and again.meta["sha256"] == first.meta["sha256"]


def test_moe_export_matches_torch(cache: Path) -> None:
    """Top-k routing (data-dependent gathers) survives torch.export and runs in ORT with the same numbers."""
    moe = replace(
        TINY,
        name="tiny-moe",
        n_experts=4,
        top_k=2,
        d_ff_expert=48,
        n_shared_experts=1,
        d_ff_shared=32,
        shared_expert_gate=True,
    )
    exported = export(moe, "fp32", cache)
    assert exported.meta["validation"]["prefill"] <= 1e-4 and exported.meta["validation"]["decode"] <= 1e-4


def test_ort_runner_decodes_like_torch(cache: Path) -> None:
    """Greedy generation through the ORT runner's torch.export graphs (past ++ new) equals the torch module's."""
    runner = open_runner("ort", TINY, "fp32", "cpu", cache, {"graph": "export"})
    assert runner.info()["providers"][0] == "CPUExecutionProvider"
    # ORT picks one thread per physical core when none is set: the record says so rather than os.cpu_count()
    assert runner.info()["intra_op_threads"] == "onnxruntime's default: one per physical core"
    assert (
        open_runner("ort", TINY, "fp32", "cpu", cache, {"graph": "export", "threads": 1}).info()["intra_op_threads"]
        == 1
    )
    model = build_model(TINY)
    ids = np.random.default_rng(0).integers(0, TINY.vocab_size, (1, 12))
    cache_ort = runner.prefill(ids)
    for step in range(3):
        token = np.array([[step + 1]])
        cache_ort = runner.decode(token, cache_ort)
    with torch.no_grad():
        _, k, v = model(torch.from_numpy(ids))
        for step in range(3):
            _, k, v = model(torch.tensor([[step + 1]]), k, v)
    np.testing.assert_allclose(cache_ort[0], k.numpy(), atol=1e-4)
    assert cache_ort[0].shape[3] == 15


def test_unavailable_provider_fails_loudly(cache: Path) -> None:
    from cobench.measure.runners.ort_session import BackendMismatch

    with pytest.raises(BackendMismatch, match="CUDAExecutionProvider"):
        open_runner("ort", TINY, "fp32", "cuda", cache, {})


def test_trt_without_tensorrt_says_what_to_install(cache: Path) -> None:
    with pytest.raises(MissingDependency, match="JetPack"):
        open_runner("trt", TINY, "fp16", "cuda", cache, {})


def quick_profile_flags(cache: Path, store: str) -> list[str]:
    """`cobench profile` flags for a fast, short-harness run of tiny candidates (JSON out)."""
    return [
        "--prompt", "32", "--generate", "4", "--cache-dir", str(cache), "--store", store, "--warmup-s", "0.05",
        "--min-time-s", "0.1", "--max-time-s", "0.5", "--min-iters", "5", "--target-ci", "5", "--idle-s", "0",
        "--cooldown-s", "0", "--rounds", "1", "--json",
    ]  # fmt: skip


def _defaults(device: DeviceSpec) -> Callable[[str], LatencyModel]:
    """The uncalibrated model for every precision (what `profile` uses before a calibration exists)."""
    return lambda _precision: LatencyModel(RooflineParams.for_device(device), BACKEND_COUNTING["ort"])


def _settings(cache: Path, backend: str = "ort", **kw) -> ProfileSettings:  # noqa: ANN003
    return ProfileSettings(
        backend=backend,
        workload=Workload(prompt=32, generate=4),
        harness=FAST,
        telemetry="cpu",
        idle_s=0.1,
        cooldown_s=0,
        timeout_s=120,
        cache_dir=cache,
        **({"rounds": 1} | kw),
    )


def test_profile_ort_and_torch_store_and_resume(cache: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    params = _defaults(device)
    candidates = [(TINY, "fp32"), (replace(TINY, name="tiny-mqa", n_kv_heads=1), "int8")]
    rows = profile(candidates, device, _settings(cache), store, params)
    assert [r.status for r in rows] == ["ok", "ok"]
    m = rows[0].measured
    assert m.ttft_s > 0 and m.tpot_s > 0 and m.e2e_s > m.ttft_s
    assert set(m.decode_s) == {32, 33, 34}  # every step of the generated range, inside generation
    assert m.tpot_s == pytest.approx(np.mean(list(m.decode_s.values())))
    assert abs(m.e2e_gap) < 0.03 and m.e2e_parts_s > m.ttft_s  # e2e = TTFT + Σ steps of the same generations
    stored = store.profiles.find()
    assert {r.status for r in stored} == {"ok"}
    env = stored[0].environment
    assert env["runner"]["providers"] == ["CPUExecutionProvider"] and env["libraries"]["onnxruntime"]
    assert env["harness"]["min_iters"] == FAST.min_iters
    samples = store.profiles.samples(rows[0].key)
    assert {"prefill", "e2e"} == set(samples) and len(samples["prefill"]) >= 5  # no fixed-cache step unless asked
    again = profile(candidates, device, _settings(cache), store, params)
    assert [r.status for r in again] == ["skipped", "skipped"]
    torch_rows = profile([(TINY, "fp32"), (TINY, "bf16")], device, _settings(cache, "torch"), store, params)
    assert [r.status for r in torch_rows] == ["ok", "ok"]
    assert store.profiles.get(torch_rows[1].key).environment["runner"]["dtype"] == "torch.bfloat16"


def test_one_run_interleaves_the_rounds_of_candidates_at_workloads_of_their_own(cache: Path, tmp_path: Path) -> None:
    """A study's workloads in one run (queue jobs with their own prompt): every candidate's round r, whatever
    its workload, before any round r + 1, so a slow minute cannot take every round of the few at one prompt;
    each result is measured and keyed at its own workload."""
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    longer = Workload(prompt=48, generate=4)
    candidates = [Candidate(TINY, "fp32"), Candidate(TINY, "fp32", longer), Candidate(TINY, "int8", longer)]
    heard: list[tuple[int, int]] = []
    rows = profile(candidates, device, _settings(cache, rounds=2), store, _defaults(device),
                   on_round=lambda r, round_, n, why: heard.append((r.workload.prompt, round_)))  # fmt: skip
    assert [(r.status, r.workload.prompt) for r in rows] == [("ok", 32), ("ok", 48), ("ok", 48)]
    assert set(rows[0].measured.decode_s) == {32, 33, 34} and set(rows[1].measured.decode_s) == {48, 49, 50}
    assert rows[1].predicted["ttft_s"] > rows[0].predicted["ttft_s"] and len({r.key for r in rows}) == 3
    first = [round_ for _, round_ in heard[:3]]
    assert first == [0, 0, 0] and sorted(p for p, round_ in heard if round_ == 0) == [32, 48, 48]
    again = profile(candidates, device, _settings(cache, rounds=2), store, _defaults(device))
    assert [r.status for r in again] == ["skipped"] * 3


def test_crashing_and_hanging_candidates_are_recorded_and_the_rest_finish(cache: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    worker = [sys.executable, str(FIXTURES / "faulty_worker.py")]
    candidates = [
        (replace(TINY, name="will-crash", d_ff=96), "fp32"),
        (replace(TINY, name="will-hang", d_ff=112), "fp32"),
        (TINY, "fp32"),
    ]
    settings = replace(_settings(cache), timeout_s=20)
    rows = profile(candidates, device, settings, store, _defaults(device), worker=worker)
    status = {r.arch_name: (r.status, r.reason) for r in rows}
    assert status["will-crash"][0] == "failed" and "SIGABRT" in status["will-crash"][1]
    assert "simulated native crash" in status["will-crash"][1]
    assert status["will-hang"][0] == "failed" and status["will-hang"][1].startswith("timeout")
    assert status["tiny"][0] in ("ok", "skipped")
    assert {r.status for r in store.profiles.find()} == {"failed", "ok"}


def test_interrupt_keeps_finished_candidates(cache: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    params = _defaults(device)
    candidates = [(TINY, "fp32"), (replace(TINY, name="tiny-mqa", n_kv_heads=1), "fp32")]

    def stop_after_first(outcome, done: int, total: int) -> None:  # noqa: ANN001
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile(candidates, device, _settings(cache), store, params, stop_after_first)
    assert len(store.profiles.find()) == 1
    rows = profile(candidates, device, _settings(cache), store, params)
    assert sorted(r.status for r in rows) == ["ok", "skipped"]


def test_too_large_model_is_refused_before_it_is_built(cache: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    rows = profile([(presets()["mixtral-8x7b"].arch, "fp32")], device, _settings(cache), store, _defaults(device))
    assert rows[0].status == "refused" and "predicted footprint" in rows[0].reason and "GB" in rows[0].reason
    assert store.profiles.find() == []


def test_context_beyond_max_seq_len_is_refused_before_it_is_built(cache: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    short = replace(TINY, name="short", max_seq_len=32)  # prompt 32 + 4 generated does not fit its RoPE table
    worker = [sys.executable, "-c", "raise SystemExit('the worker must not run')"]
    rows = profile([(short, "fp32")], device, _settings(cache), store, _defaults(device), worker=worker)
    assert rows[0].status == "refused" and "max_seq_len 32" in rows[0].reason
    assert store.profiles.find() == []


def test_task_key_ignores_name_and_cache_location(cache: Path) -> None:
    device = get_device("cpu")
    a = task_key(task_for(TINY, "fp32", device, _settings(cache)))
    b = task_key(task_for(replace(TINY, name="x"), "fp32", device, _settings(Path("/elsewhere"))))
    c = task_key(task_for(TINY, "int8", device, _settings(cache)))
    assert a == b != c


def test_a_task_records_the_kv_type_the_engine_keeps(cache: Path) -> None:
    """Bug: llama.cpp's F16 cache was recorded (and predicted) as fp32 beside F32 weights."""
    cpu = get_device("cpu")
    assert task_for(TINY, "fp32", cpu, _settings(cache, "llama.cpp"))["workload"]["kv_precision"] == "fp16"
    assert task_for(TINY, "fp32", cpu, _settings(cache))["workload"]["kv_precision"] == "fp32"


def test_cli_profile_takes_each_queue_jobs_own_prompt_and_batch(cache: Path, tmp_path: Path) -> None:
    """`profile --queue`: a job's `prompt`/`batch` replace the command's for that job; the others run at the
    command's; the table says each row's workload; a bad job field is one line naming it, nothing stored."""
    queue, store = tmp_path / "q.yaml", str(tmp_path / "c.db")
    jobs = [{"architecture": TINY.to_dict()}, {"architecture": TINY.to_dict(), "prompt": 48, "batch": 2}]
    queue.write_text(json.dumps({"source": "test", "jobs": jobs}))
    runner = CliRunner()
    flags = quick_profile_flags(cache, store)
    result = runner.invoke(app, ["profile", "--queue", str(queue), *flags])
    assert result.exit_code == 0, result.stderr
    shapes = [(r["workload"]["batch"], r["workload"]["prompt"], r["status"]) for r in json.loads(result.stdout)]
    assert shapes == [(1, 32, "ok"), (2, 48, "ok")]
    table = runner.invoke(app, ["profile", "--queue", str(queue), *flags[:-1]])  # the table, both rows reused
    assert table.exit_code == 0 and "B/P/G" in table.stdout and "2/48/4" in table.stdout
    assert "B=2 P=48: skipped" in table.stderr
    queue.write_text(json.dumps({"source": "test", "jobs": [jobs[0] | {"prompt": 0}]}))
    bad = runner.invoke(app, ["profile", "--queue", str(queue), *flags])
    assert bad.exit_code == 2 and "queue.jobs[0].prompt" in bad.stderr and len(Store(Path(store)).profiles.find()) == 2


def test_cli_profile_and_export(cache: Path, tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(json.dumps({"architecture": TINY.to_dict()}))
    runner = CliRunner()
    args = ["profile", "-a", str(spec), *quick_profile_flags(cache, str(tmp_path / "c.db"))]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["status"] == "ok" and row["ttft_error_pct"] is not None and row["measured"]["tpot_s"] > 0
    # the harness options reach the worker by name (bug: given positionally, the CI target became max_iters =
    # 0.01, and every phase of every round stopped after one sample)
    with Store(tmp_path / "c.db") as db:
        (stored,) = db.profiles.find()
        rounds = list(db.profiles.rounds(stored.key).values())  # one, or more where interference was seen
    limits = {k: v for k, v in stored.environment["harness"].items() if k != "confidence"}
    assert limits == {"warmup_s": 0.05, "min_iters": 5, "min_time_s": 0.1, "max_time_s": 0.5, "max_iters": 100_000,
                      "target_rel_ci": 0.05}  # fmt: skip
    for phases in (r["phases"] for r in rounds):
        assert phases["prefill"]["summary"]["n"] >= 5 and phases["e2e"]["summary"]["n"] >= 3  # min_iters, e2e's own
        assert len(phases["e2e"]["steps_s"]) == phases["e2e"]["summary"]["n"]  # a TPOT over every generation timed
    again = json.loads(runner.invoke(app, args).stdout)
    assert again[0]["status"] == "skipped"
    for option, value, field in (("--min-iters", "0", "min_iters"), ("--max-time-s", "0.01", "max_time_s")):
        refused = runner.invoke(app, [*args, option, value])
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1 and field in refused.stderr, refused.stderr
    with Store(tmp_path / "c.db") as db:
        assert [p.status for p in db.profiles.find()] == ["ok"]  # the refused runs left the stored profile alone
    bad = runner.invoke(
        app,
        ["profile", "-a", str(spec), "--backend", "torch", "--precision", "int8", "--store", str(tmp_path / "c.db")],
    )
    assert bad.exit_code == 2 and "precision: backend torch runs" in bad.stderr
    exported = runner.invoke(
        app, ["export", "-a", str(spec), "--out", str(tmp_path / "onnx"), "--cache-dir", str(cache), "--json"]
    )
    assert exported.exit_code == 0, exported.stderr
    assert (tmp_path / "onnx" / "tiny-fp32" / "decode.onnx").exists()


def test_profile_from_sweep_takes_the_top_candidates(cache: Path, tmp_path: Path) -> None:
    import yaml

    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump(
            {
                "name": "micro",
                "fixed": {"vocab_size": 512, "tie_embeddings": True},
                "grid": {"d_model": [64], "n_layers": [1, 2], "n_heads": [4], "n_kv_heads": [2, 4], "ffn_ratio": [2.0]},
                "constraints": {"head_dim_multiple": 8},
                "workload": {"prompt": 32, "generate": 4},
            }
        )
    )
    runner = CliRunner()
    store = str(tmp_path / "s.db")
    sweep = runner.invoke(app, ["sweep", "--space", str(space), "-d", "cpu", "--store", store, "--json"])
    assert sweep.exit_code == 0, sweep.stderr
    args = ["profile", "--from-sweep", "micro", "--top", "2", *quick_profile_flags(cache, store), "--telemetry", "off"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and all(r["status"] == "ok" and r["arch"].startswith("micro#") for r in rows)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--backend", "trt", "--precision", "fp16"], "JetPack"),
        (["--runner-device", "cuda"], "CUDAExecutionProvider is not in this onnxruntime build"),
        (["--backend", "torch", "--runner-device", "cuda"], "needs a CUDA GPU"),
    ],
)
def test_unavailable_backend_is_refused_before_any_work(tmp_path: Path, args: list[str], words: str) -> None:
    result = CliRunner().invoke(app, ["profile", "-a", "tiny-gqa-4l", "--store", str(tmp_path / "s.db"), *args])
    assert result.exit_code == 3 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_sigterm_takes_the_running_worker_down(cache: Path, tmp_path: Path) -> None:
    """`timeout make demo` sends SIGTERM: the worker (in its own session) must not be left running."""
    import os
    import signal
    import subprocess
    import time

    pidfile = tmp_path / "worker.pid"
    script = tmp_path / "run.py"
    script.write_text(
        "import sys\n"
        "from dataclasses import replace\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_profile import TINY, _defaults, _settings\n"
        "from cobench.hardware.devices import get_device\n"
        "from cobench.measure.profile import profile\n"
        "from cobench.store import Store\n"
        "d = get_device('cpu')\n"
        f"worker = [sys.executable, {str(FIXTURES / 'faulty_worker.py')!r}]\n"
        f"profile([(replace(TINY, name='will-hang'), 'fp32')], d, _settings(Path({str(cache)!r})), "
        f"Store({str(tmp_path / 'p.db')!r}), _defaults(d), worker=worker)\n"
    )
    env = dict(os.environ, COBENCH_TEST_PIDFILE=str(pidfile))
    parent = subprocess.Popen([sys.executable, str(script)], env=env, stderr=subprocess.PIPE)
    for _ in range(600):
        if pidfile.exists() and pidfile.read_text():
            break
        time.sleep(0.1)
    worker_pid = int(pidfile.read_text())
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)


def test_export_race_lost_to_another_writer_uses_theirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export whose final rename finds the entry already written (e.g. by an orphaned worker) reuses it."""
    import shutil

    import cobench.measure.export as ex

    real = ex._export_into

    def racing(work: Path, arch: Architecture, precision: str, seed: int, opset: int) -> dict:
        meta = real(work, arch, precision, seed, opset)
        other = work.parent / ex.export_key(arch, precision, opset)  # another writer finishes first
        shutil.copytree(work, other)
        (other / "meta.json").write_text(json.dumps(meta | {"writer": "other"}))
        return meta

    monkeypatch.setattr(ex, "_export_into", racing)
    got = ex.export(TINY, "fp32", tmp_path)
    assert got.meta["writer"] == "other" and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_extra_context_is_a_fixed_cache_step_kept_apart_from_tpot(cache: Path, tmp_path: Path) -> None:
    """--context C times a decode step on a fixed cache of C positions; it is reported as such and never
    enters TPOT or the per-context steps calibration fits."""
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    settings = _settings(cache, extra_contexts=(100,))
    (row,) = profile([(TINY, "fp32")], device, settings, store, _defaults(device))
    m = row.measured
    assert set(m.fixed_decode_s) == {100} and set(m.decode_s) == {32, 33, 34}
    assert 100 in row.predicted["decode_s"] and set(store.profiles.samples(row.key)) == {"prefill", "decode@100", "e2e"}


def test_a_generation_of_one_token_falls_back_to_a_fixed_cache_step(cache: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    settings = replace(_settings(cache), workload=Workload(prompt=32, generate=1))
    (row,) = profile([(TINY, "fp32")], device, settings, store, _defaults(device))
    m = row.measured
    assert row.status == "ok" and set(m.decode_s) == {32} and m.e2e_gap is None and m.tpot_s > 0


def test_the_measurement_method_is_part_of_the_key(cache: Path) -> None:
    """A profile measured the old way (TPOT from a fixed cache) is never reused as one measured in generation."""
    task = task_for(TINY, "fp32", get_device("cpu"), _settings(cache))
    assert task["measurement"] == MEASUREMENT >= 3
    assert task_key(task) != task_key({k: v for k, v in task.items() if k != "measurement"})


def test_a_cpu_hog_during_one_round_is_detected_and_that_round_measured_again(cache: Path, tmp_path: Path) -> None:
    """Rounds interleave; the OS shows other processes busy during round 1; it is re-measured and the result
    combines three rounds without it, with the between-round repeatability beside it. (On a noisy machine
    other rounds may disagree and be re-measured too.)"""
    store = Store(tmp_path / "p.db")
    device = get_device("cpu")
    worker = [sys.executable, str(FIXTURES / "hog_worker.py")]
    settings = _settings(cache, rounds=3)
    (row,) = profile([(TINY, "fp32")], device, settings, store, _defaults(device), worker=worker)
    stored = store.profiles.rounds(row.key)
    assert set(stored) >= {0, 1, 2, 3}
    # the hog ran in round 1 only (a VM's hypervisor may steal time from any round: that is flagged as well, by
    # its own reason, and on 2026-12-06 failed this test when it asked every other round for no reason at all)
    hogged = [r for r in stored if any(x.startswith("other processes") for x in stored[r]["interference"]["reasons"])]
    assert stored[1]["interference"]["other_cores"] > 0.25 and hogged == [1]
    m = row.measured
    used = row.environment["rounds_used"]
    assert m.rounds == 3 and len(used) == 3 and 1 not in used and m.remeasured >= 1
    assert not any("other processes" in reason for reason in m.interference)
    assert set(m.repeatability) == {"ttft", "tpot", "e2e"} and all(v >= 0 for v in m.repeatability.values())
    again = profile([(TINY, "fp32")], device, settings, store, _defaults(device), worker=worker)
    assert again[0].status == "skipped"  # resumed from the store, no round run twice
