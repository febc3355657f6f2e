"""CLI through typer's runner: JSON on stdout only, one-line errors, exit codes, store left intact."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import yaml
from conftest import HF
from test_space_sweep import SMALL
from typer.testing import CliRunner

from cobench.cli import app
from cobench.store import SCHEMA_VERSION

runner = CliRunner()


def run(*args: str, code: int = 0):  # noqa: ANN202
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
    return result


def run_json(*args: str):  # noqa: ANN202
    return json.loads(run(*args, "--json").stdout)


def test_arch_show_preset_and_hf_config() -> None:
    s = run_json("arch", "show", "llama-3.2-1b")
    assert s["params"]["total"] == 1_235_814_400 and s["matches_published"] is True
    assert s["kv_cache_bytes_per_token"]["fp16"] == 2 * 16 * 8 * 64 * 2
    assert {o["name"] for o in s["operators"]} >= {"qkv_proj", "attention", "ffn_up", "lm_head", "embed"}
    hf = run_json("arch", "show", str(HF / "mixtral-8x7b.json"))
    assert hf["params"]["active"] < hf["params"]["total"] == 46_702_792_704
    human = run("arch", "show", "smollm2-135m").stdout
    assert "134,515,008" in human and "matches" in human


def test_arch_list_all_presets_match() -> None:
    rows = [r for r in run_json("arch", "list") if r["published_total"]]
    assert len(rows) >= 6 and all(r["matches_published"] for r in rows)


def test_devices_list_and_show() -> None:
    rows = run_json("devices", "list")
    assert {"jetson-orin-nx-16gb", "h100-sxm", "cpu"} <= {r["name"] for r in rows}
    nano = run_json("devices", "show", "jetson-orin-nano-8gb", "--power-mode", "25W")
    assert nano["mode"] == "25W" and nano["peak_tflops"]["fp16_tensor"]["value"] == pytest.approx(16.7 * 918 / 1020)
    assert "source" in run("devices", "show", "h100-sxm").stdout


def test_predict_json_and_store(tmp_path: Path) -> None:
    store = tmp_path / "p.db"
    p = run_json("predict", "-a", "qwen2.5-0.5b", "-d", "jetson-orin-nx-16gb", "--store", str(store))
    assert p["ttft_s"] > 0 and p["tpot_s"] > 0 and p["e2e_s"] == pytest.approx(p["ttft_s"] + 15 * p["tpot_s"])
    assert p["decode_bound"] == "memory" and p["fits"] is True and p["calibration"] is None
    assert p["model"].startswith("uncalibrated") and p["ttft_interval_s"] is None
    assert {o["phase"] for o in p["operators"]} == {"prefill", "decode"}
    many = run_json(
        "predict",
        "-a",
        "smollm2-135m",
        "-a",
        "llama-3.2-1b",
        "-d",
        "h100-sxm",
        "-d",
        "cpu",
        "--precision",
        "int8",
        "--store",
        str(store),
    )
    assert len(many) == 4 and all(r["workload"]["precision"] == "int8" for r in many)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 5


def test_predict_raw_is_faster_than_default() -> None:
    raw = run_json("predict", "-a", "tinyllama-1.1b", "-d", "l4", "--raw", "--no-store")
    default = run_json("predict", "-a", "tinyllama-1.1b", "-d", "l4", "--no-store")
    assert raw["ttft_s"] < default["ttft_s"] and raw["params_source"].startswith("ideal")


def test_predict_for_llama_cpp_counts_and_shows_its_f16_cache() -> None:
    """Bug: llama.cpp's F16 cache was predicted and shown as fp32 beside fp32 weights (twice its bytes)."""
    flags = ["-a", "tiny-gqa-4l", "-d", "cpu", "--precision", "fp32", "--uncalibrated", "--no-store", "--no-ops"]
    llama, ort = (run_json("predict", *flags, "--backend", b)[0] for b in ("llama.cpp", "ort"))  # --no-ops: a list
    assert (llama["workload"]["kv_precision"], ort["workload"]["kv_precision"]) == ("fp16", "fp32")
    assert llama["kv_cache_bytes"] == ort["kv_cache_bytes"] / 2
    assert "fp32 weights, fp16 KV" in run("predict", *flags, "--backend", "llama.cpp").stdout


def test_sweep_json_resume_and_export(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SMALL))
    store, csv = str(tmp_path / "s.db"), tmp_path / "all.csv"
    first = run_json("sweep", "--space", str(space), "-d", "cpu", "--store", store, "--out", str(csv), "-k", "3")
    assert first["chunks_run"] >= 1 and len(first["top"]) == 3 and first["kept"] > 0
    assert csv.read_text().count("\n") == first["kept"] + 1
    second = run_json("sweep", "--space", str(space), "-d", "cpu", "--store", store)
    assert second["chunks_run"] == 0 and second["sweep_id"] == first["sweep_id"]
    other = run_json("sweep", "--space", str(space), "-d", "cpu", "--store", store, "--precision", "int4")
    assert other["sweep_id"] != first["sweep_id"]
    out = tmp_path / "x.json"
    exported = run_json("store", "export", "--sweep", first["sweep_id"], "--out", str(out), "--store", store)
    assert exported["rows"] == first["kept"] == len(json.loads(out.read_text()))
    latest = run_json("store", "export", "--sweep", "small", "--out", str(out), "--store", store)
    assert latest["sweep_id"] == other["sweep_id"]  # a name picks the latest sweep of that name
    info = run_json("store", "info", "--store", store)
    assert info["schema_version"] == SCHEMA_VERSION and len(info["sweeps"]) == 2
    best = run_json("sweep", "--space", str(space), "-d", "cpu", "--store", store, "--keep", "best", "-k", "3",
                    "--max-candidates", "10")  # fmt: skip
    assert best["sweep_id"] != first["sweep_id"] and best["top"] == first["top"] and best["stored"] < best["kept"]
    assert "max-candidates" in run("sweep", "--space", str(space), "-d", "cpu", "--store", store,
                                   "--max-candidates", "10", code=2).stderr  # fmt: skip
    assert "keep: must be all or best" in run("sweep", "--space", str(space), "-d", "cpu", "--keep", "some",
                                              "--store", store, code=2).stderr  # fmt: skip
    assert "sort: unknown column 'speed'" in run("sweep", "--space", str(space), "-d", "cpu", "--keep", "best",
                                                 "--sort", "speed", "--store", store, code=2).stderr  # fmt: skip


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["arch", "show", "gpt-17"], "arch: unknown preset"),
        (["predict", "-a", "qwen2.5-0.5b", "-d", "tpu"], "device: unknown device"),
        (
            ["predict", "-a", "qwen2.5-0.5b", "-d", "cpu", "--precision", "fp6"],
            "workload.precision: unknown precision",
        ),
        (
            ["predict", "-a", "qwen2.5-0.5b", "-d", "cpu", "--prompt", "0"],
            "workload.prompt: must be an integer from 1 to",
        ),
        (["predict", "-a", "qwen2.5-0.5b", "-d", "jetson-thor", "--power-mode", "5W"], "power_mode:"),
        (
            ["sweep", "--space", "/nonexistent.yaml", "-d", "cpu"],
            "space: file /nonexistent.yaml does not exist",
        ),
        (["store", "export", "--sweep", "nope", "--out", "x.csv"], "does not exist (nothing stored yet)"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], words: str) -> None:
    result = run(*args, code=2)
    assert result.stdout == ""
    assert words in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_bad_input_leaves_the_store_intact(tmp_path: Path) -> None:
    store = str(tmp_path / "s.db")
    run_json("predict", "-a", "qwen2.5-0.5b", "-d", "cpu", "--store", store)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(SMALL | {"grid": {"d_model": [64]}}))
    run("sweep", "--space", str(bad), "-d", "cpu", "--store", store, code=2)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 1
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_newer_store_is_refused_with_exit_4(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA user_version = 99")
    result = run("store", "info", "--store", str(store), code=4)
    assert "newer than this cobench" in result.stderr


def test_debug_shows_the_traceback() -> None:
    result = runner.invoke(app, ["--debug", "arch", "show", "gpt-17"])
    assert result.exit_code != 0 and result.exception is not None


def test_doctor_json() -> None:
    checks = {c["name"]: c for c in run_json("doctor")}
    assert checks["python"]["status"] == "ok" and checks["torch"]["status"] == "ok"
    assert "CPUExecutionProvider" in checks["onnxruntime"]["detail"]
    assert checks["jetson"]["status"] == "info"
