"""Every command that writes the store, against the store's faults: a read-only store and a full disk end
in one line with a non-zero exit and the store as it was; kill -9 of `calibrate` and `profile` loses
nothing finished and the rerun redoes nothing finished; two `profile` runs share one store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_calibration import _archs, _store_profiles
from test_cli import run
from test_space_sweep import SMALL
from typer.testing import CliRunner

from cobench.cli import app
from cobench.store import Store

TEXT = "the quick brown fox jumps over the lazy dog. " * 400
ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--prompt", "16", "--generate", "3", "--warmup-s", "0.02", "--min-time-s", "0.05", "--max-time-s", "0.2",
         "--min-iters", "3", "--target-ci", "10", "--idle-s", "0", "--cooldown-s", "0", "--rounds", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files every writing command reads, and a store holding what each of them needs."""
    d = tmp_path_factory.mktemp("faults")
    (d / "space.yaml").write_text(yaml.safe_dump(SMALL))
    (d / "text.txt").write_text(TEXT)
    lines = ["n_params,n_tokens,loss"] + [f"{n},{20 * n},{2 + 400 / n**0.3 + 300 / (20 * n) ** 0.3:.4f}"
                                          for n in (1e5, 3e5, 1e6, 3e6, 1e7, 3e7, 1e8, 3e8)]  # fmt: skip
    (d / "runs.csv").write_text("\n".join(lines) + "\n")
    suite = {
        "name": "mini",
        "precisions": ["fp32"],
        "kernels": [{"kind": "gemm", "shapes": [{"m": 32, "n": 32, "k": 32}]}],
    }
    (d / "mini.yaml").write_text(yaml.safe_dump(suite))
    tiny = {"name": "t", "vocab_size": 256, "d_model": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "d_ff": 64,
            "max_seq_len": 64}  # fmt: skip
    (d / "tiny.yaml").write_text(yaml.safe_dump({"architecture": tiny}))
    store = d / "s.db"
    _store_profiles(store, _archs(4, seed=3), seed=3)
    run("sweep", "--space", str(d / "space.yaml"), "-d", "cpu", "--store", str(store), "--json")
    mini = ["--kernels-path", str(d / "mini.yaml"), "--max-time-s", "0.1", "--store", str(store), "--json"]
    run("kernels", "run", "mini", *mini)
    run(
        "fit",
        "--csv",
        str(d / "runs.csv"),
        "--bootstrap",
        "5",
        "--plot",
        str(d / "ll"),
        "--store",
        str(store),
        "--json",
    )
    with Store(store) as db:
        db.connection.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"dir": d, "store": store, "cache": d / "cache"}


def writing_commands(f: dict[str, Path], store: Path) -> dict[str, list[str]]:
    d, s = f["dir"], ["--store", str(store)]
    return {
        "predict": ["predict", "-a", "tiny-mqa-4l", "-d", "cpu", *s],
        "sweep": [
            "sweep",
            "--space",
            str(d / "space.yaml"),
            "-d",
            "cpu",
            "--prompt",
            "96",
            "--top",
            "1",
            *s,
        ],  # a new sweep
        "calibrate": ["calibrate", "--no-curve", "-o", str(d / "cal"), *s],
        "fit": ["fit", "--csv", str(d / "runs.csv"), "--bootstrap", "3", "--plot", str(d / "ll2"), *s],
        "kernels": [
            "kernels",
            "run",
            "mini",
            "--force",
            "--kernels-path",
            str(d / "mini.yaml"),
            "--max-time-s",
            "0.1",
            *s,
        ],
        "train": [
            "train",
            "-a",
            str(d / "tiny.yaml"),
            "--tokens",
            "256",
            "--data",
            str(d / "text.txt"),
            "--seq-len",
            "16",
            "--batch",
            "4",
            "--checkpoint-dir",
            str(d / "ck"),
            *s,
        ],  # fmt: skip
        "pareto": ["pareto", "--space", str(d / "space.yaml"), "-d", "cpu", "--out", str(d / "pareto"), *s],
        "profile": ["profile", "-a", "tiny-gqa-4l", *QUICK, "--cache-dir", str(f["cache"]), *s],
    }


def _cobench(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cobench", *args], capture_output=True, text=True, timeout=timeout)


def _in_process(args: list[str]) -> subprocess.CompletedProcess[str]:
    """The command through typer's runner (no interpreter start per command), shaped like a subprocess's."""
    r = CliRunner().invoke(app, args)
    return subprocess.CompletedProcess(args, r.exit_code, r.stdout, r.stderr)


def _rows(store: Path) -> dict[str, int]:
    with Store(store, read_only=True) as db:
        assert db.check()["integrity"] == ["ok"]
        return db.summary()["rows"]


def _one_line_failure(done: subprocess.CompletedProcess[str], name: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode not in (0, None), f"{name} exited 0 on a faulty store"
    assert lines and lines[-1].startswith("error:") and "Traceback" not in done.stderr, f"{name}: {done.stderr}"
    return lines[-1]


@pytest.mark.skipif(shutil.which("mount") is None or os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_every_writing_command_on_a_read_only_store_is_one_line_and_changes_nothing(inputs, tmp_path) -> None:  # noqa: ANN001
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("tmpfs mount not permitted here")
    try:
        shutil.copy(inputs["store"], mnt / "s.db")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        before, data = _rows(mnt / "s.db"), (mnt / "s.db").read_bytes()
        for name, args in writing_commands(inputs, mnt / "s.db").items():
            last = _one_line_failure(_in_process(args), name)
            assert "read-only" in last or "readonly" in last, f"{name}: {last}"
        d, s = inputs["dir"], ["--store", str(mnt / "s.db")]
        for reader in (  # and the commands that only read work on it
            ["select", "--space", str(d / "space.yaml"), "-d", "cpu", "-k", "2", "--out", str(d / "q.yaml"), *s],
            ["report", "--out", str(d / "report"), *s],
            ["kernels", "roofline", "--out", str(d / "roofline"), *s],
        ):
            done = _in_process(reader)
            assert done.returncode == 0, (reader[0], done.stderr[-300:])
        assert _rows(mnt / "s.db") == before and (mnt / "s.db").read_bytes() == data
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.skipif(shutil.which("mount") is None or os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_every_writing_command_on_a_full_disk_is_one_line_and_keeps_the_store(inputs, tmp_path) -> None:  # noqa: ANN001
    mnt = tmp_path / "full"
    mnt.mkdir()
    size = inputs["store"].stat().st_size + (4 << 20)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("tmpfs mount not permitted here")
    try:
        store = mnt / "s.db"
        shutil.copy(inputs["store"], store)
        _rows(store)  # opened once: WAL and shm exist before the disk fills
        with (mnt / "filler").open("wb") as f:  # take every free byte
            try:
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            except OSError:
                pass
        before = _rows(store)
        for name, args in writing_commands(inputs, store).items():
            last = _one_line_failure(_in_process(args), name)
            assert "full" in last or "space" in last, f"{name}: {last}"
        (mnt / "filler").unlink()
        assert _rows(store) == before  # nothing half-written, nothing lost
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _kill_when(proc: subprocess.Popen[str], ready: callable, timeout: float = 120) -> None:  # type: ignore[valid-type]
    t0 = time.monotonic()
    while not ready():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() - t0 < timeout, "never got there"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _count(store: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


def test_kill_9_of_profile_keeps_finished_rounds_and_the_rerun_redoes_none(inputs, tmp_path) -> None:  # noqa: ANN001
    """Rounds are interleaved across candidates and stored as each finishes: kill -9 after the first ones,
    and the rerun keeps every stored round as it was (same row, same time) and measures only the rest."""
    store = tmp_path / "p.db"
    args = ["profile", "-a", "tiny-gqa-4l", "-a", "tiny-mqa-4l", "-a", "tiny-wide-2l", *QUICK, "--rounds", "2",
            "--cache-dir", str(inputs["cache"]), "--store", str(store), "--seed", "1"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "cobench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    _kill_when(proc, lambda: _count(store, "SELECT count(*) FROM profile_rounds") >= 2)
    with sqlite3.connect(store) as db:
        before = set(db.execute("SELECT profile_key, round, created_at FROM profile_rounds"))
        finished = db.execute("SELECT count(*) FROM profiles WHERE status = 'ok'").fetchone()[0]
    assert before and finished < 3  # killed mid-run
    again = _cobench([*args, "--json"])
    assert again.returncode == 0, again.stderr
    assert [r["status"] for r in json.loads(again.stdout)].count("failed") == 0
    with sqlite3.connect(store) as db:
        after = set(db.execute("SELECT profile_key, round, created_at FROM profile_rounds"))
    assert before <= after  # nothing finished was measured again
    assert _count(store, "SELECT count(*) FROM profiles WHERE status = 'ok'") == 3
    assert _rows(store)["profiles"] == 3


def test_kill_9_of_calibrate_stores_nothing_half_and_the_rerun_is_version_1(inputs, tmp_path) -> None:  # noqa: ANN001
    store = tmp_path / "c.db"
    _store_profiles(store, _archs(6, seed=5), seed=5)
    args = ["calibrate", "-o", str(tmp_path / "cal"), "--store", str(store)]  # with the learning curve: seconds
    proc = subprocess.Popen([sys.executable, "-m", "cobench", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    time.sleep(2.5)  # imports done, fitting under way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _count(store, "SELECT count(*) FROM calibrations") in (0, 1)  # one transaction: all or nothing
    with Store(store, read_only=True) as db:
        assert db.check()["integrity"] == ["ok"]
    done = _cobench([*args, "--no-curve", "--json"])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["version"] == _count(store, "SELECT count(*) FROM calibrations")


def test_two_profile_runs_share_one_store(inputs, tmp_path) -> None:  # noqa: ANN001
    store = tmp_path / "two.db"
    base = [*QUICK, "--cache-dir", str(inputs["cache"]), "--store", str(store), "--json"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cobench", "profile", "-a", a, "-a", "tiny-mha-4l", *base],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for a in ("tiny-gqa-4l", "tiny-mqa-4l")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    with Store(store, read_only=True) as db:
        rows = db.profiles.find()
        assert db.check()["integrity"] == ["ok"]
    names = sorted(r.arch_name for r in rows)
    # each architecture stored once; the one both asked for is measured by one and reused or measured by the other
    assert names == ["tiny-gqa-4l", "tiny-mha-4l", "tiny-mqa-4l"], names
