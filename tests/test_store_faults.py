"""Store faults: a damaged or foreign file is refused before anything is written; read-only commands
work on a read-only store; a full disk or a read-only file ends in one line with nothing half-stored;
every table comes out in every format; `store check` finds what is wrong."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cobench.cli import app
from cobench.errors import InputError, StoreError
from cobench.store import SCHEMA_VERSION, Store
from cobench.store.connection import Connection
from cobench.store.export import FORMATS, TABLES

runner = CliRunner()
SPACE = {
    "name": "small",
    "fixed": {"vocab_size": 256},
    "grid": {"d_model": [64, 128], "n_layers": [1, 2], "n_heads": [2, 4]},
    "workload": {"batch": 1, "prompt": 64, "generate": 4, "precision": "fp32"},
}


def cli(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture
def swept(tmp_path: Path) -> Path:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    store = tmp_path / "s.db"
    assert cli("sweep", "--space", str(space), "-d", "cpu", "--store", str(store), "--json")[0] == 0
    assert cli("predict", "-a", "tiny-gqa-4l", "-d", "cpu", "--store", str(store), "--json")[0] == 0
    return store


def _damage(path: Path) -> None:
    """Overwrite a data page in the middle of the file (the header stays intact)."""
    with Store(path) as db:
        db.connection.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):
        data[offset + 100 : offset + 600] = os.urandom(500)
    path.write_bytes(bytes(data))


def test_a_damaged_store_is_refused_and_not_appended_to(swept: Path) -> None:
    _damage(swept)
    before = swept.read_bytes()
    with pytest.raises(StoreError, match="damaged"):
        Store(swept)
    code, _, stderr = cli("predict", "-a", "tiny-mqa-4l", "-d", "cpu", "--store", str(swept))
    assert code == 4 and "damaged" in stderr and len(stderr.strip().splitlines()) == 1
    assert swept.read_bytes() == before


def test_a_foreign_sqlite_file_is_never_migrated(tmp_path: Path) -> None:
    path = tmp_path / "theirs.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER, name TEXT)")
    before = path.read_bytes()
    code, _, stderr = cli("predict", "-a", "tiny-gqa-4l", "-d", "cpu", "--store", str(path))
    assert code == 4 and "not a cobench store" in stderr and "customers" in stderr
    assert path.read_bytes() == before
    with sqlite3.connect(path) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["customers"]


def test_two_processes_creating_one_store_at_once_both_open_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The other process migrates the new file between this one's read of the version and its lock (was:
    'table architectures already exists'; seen with two `profile` runs started together)."""
    path = tmp_path / "new.db"
    real = Connection.transaction
    raced: list[Store] = []

    @contextmanager
    def after_the_other(self: Connection) -> Iterator[sqlite3.Connection]:
        if not raced:
            monkeypatch.setattr(Connection, "transaction", real)  # the other process is not raced
            raced.append(Store(path))
            monkeypatch.setattr(Connection, "transaction", after_the_other)
        with real(self) as db:
            yield db

    monkeypatch.setattr(Connection, "transaction", after_the_other)
    mine = Store(path)
    assert mine.version == raced[0].version == SCHEMA_VERSION and mine.check()["ok"]


def test_a_store_opened_while_another_process_writes_the_new_file_waits_for_it(tmp_path: Path) -> None:
    """SQLite refuses the switch to WAL at once while another connection holds the write lock, without its busy
    handler (was: 'database is locked' after 0.4 ms, seen in CI with two `profile` runs sharing a new store)."""
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # the other process's write lock, as during its own first open
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    try:
        store = Store(path)
    finally:
        release.join()
        other.close()
    with store:
        assert store.version == SCHEMA_VERSION and store.check()["ok"]
        assert store.connection.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_read_only_store_reads_and_refuses_writes_in_one_line(swept: Path, tmp_path: Path) -> None:
    """A read-only file and folder (or, as root, whom permissions do not stop, a read-only filesystem)."""
    with Store(swept) as db:
        db.connection.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if os.geteuid() != 0:
        folder = swept.parent
        swept.chmod(0o444)
        folder.chmod(0o555)
        try:
            _reads_but_does_not_write(swept)
        finally:
            folder.chmod(0o755)
            swept.chmod(0o644)
        return
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("as root, a read-only filesystem needs a tmpfs mount, not permitted here")
    try:
        shutil.copy(swept, mnt / "s.db")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        _reads_but_does_not_write(mnt / "s.db")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _reads_but_does_not_write(store: Path) -> None:
    code, stdout, _ = cli("store", "info", "--store", str(store), "--json")
    assert code == 0 and json.loads(stdout)["rows"]["predictions"] >= 1
    assert cli("store", "check", "--store", str(store))[0] == 0
    assert cli("store", "export", "-t", "predictions", "-f", "jsonl", "--store", str(store))[0] == 0
    code, _, stderr = cli("predict", "-a", "tiny-mqa-4l", "-d", "cpu", "--store", str(store))
    assert code != 0 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr


def test_read_only_open_writes_nothing(swept: Path) -> None:
    before = swept.read_bytes()
    with Store(swept, read_only=True) as db:
        assert db.summary()["rows"]["predictions"] >= 1
        with pytest.raises(StoreError, match="read-only"), db.connection.transaction():
            pass
    assert swept.read_bytes() == before
    with pytest.raises(InputError, match="does not exist"):
        Store(swept.with_name("none.db"), read_only=True)


@pytest.mark.skipif(shutil.which("mount") is None or os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_a_full_disk_ends_in_one_line_and_keeps_what_was_stored(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], check=False).returncode:
        pytest.skip("tmpfs mount not permitted here")
    try:
        store = mnt / "s.db"
        assert cli("predict", "-a", "tiny-gqa-4l", "-d", "cpu", "--store", str(store))[0] == 0
        space = tmp_path / "big.yaml"
        grid = {"d_model": list(range(64, 2048, 16)), "n_layers": list(range(1, 33)), "n_heads": [2, 4]}
        big = SPACE | {"grid": grid}
        space.write_text(yaml.safe_dump(big))
        code, _, stderr = cli("sweep", "--space", str(space), "-d", "cpu", "--store", str(store))
        assert code == 4 and "full" in stderr and len(stderr.strip().splitlines()) == 1, stderr
        with Store(store, read_only=True) as db:
            assert db.check()["integrity"] == ["ok"]
            assert db.summary()["rows"]["predictions"] >= 1  # what was stored before is intact
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_table_exports_in_every_format(swept: Path, tmp_path: Path, fmt: str) -> None:
    for table in [*TABLES, "sweep"]:
        args = ["store", "export", "-t", table, "-f", fmt, "--store", str(swept)]
        args += ["--sweep", "small"] if table == "sweep" else []
        code, stdout, stderr = cli(*args)
        assert code == 0, stderr
        if table in ("predictions", "sweep"):
            assert stdout.strip(), table
            if fmt == "json":
                assert isinstance(json.loads(stdout), list) and json.loads(stdout)
            if fmt == "jsonl":
                assert all(json.loads(line) for line in stdout.splitlines())
            if fmt == "md":
                assert stdout.startswith("| ") and "|---|" in stdout
    out = tmp_path / f"p.{fmt}"
    assert cli("store", "export", "-t", "predictions", "-o", str(out), "--store", str(swept))[0] == 0
    assert out.read_text()


def test_store_check_reports_orphans_and_passes_a_sound_store(swept: Path) -> None:
    code, stdout, _ = cli("store", "check", "--store", str(swept), "--json")
    assert code == 0 and json.loads(stdout)["ok"]
    with sqlite3.connect(swept) as db:  # a prediction whose architecture is gone (foreign keys off)
        db.execute("PRAGMA foreign_keys=OFF")
        db.execute("DELETE FROM architectures")
    code, stdout, _ = cli("store", "check", "--store", str(swept), "--json")
    report = json.loads(stdout)
    assert code == 1 and report["orphans"] >= 1 and any("orphan" in p for p in report["problems"])


def test_a_grid_over_the_limit_is_refused_with_its_count(tmp_path: Path) -> None:
    space = tmp_path / "huge.yaml"
    huge = SPACE | {"grid": {a: {"range": [1, 10_000, 1]} for a in ("d_model", "n_layers", "n_heads", "d_ff")}}
    space.write_text(yaml.safe_dump(huge))
    store = tmp_path / "s.db"
    code, _, stderr = cli("sweep", "--space", str(space), "-d", "cpu", "--store", str(store))
    assert code == 2 and "10,000,000,000,000,000 candidates" in stderr and "--max-candidates" in stderr
    code, _, stderr = cli("sweep", "--space", str(space), "-d", "cpu", "--store", str(store), "--max-candidates", "0")
    assert code == 2


def test_a_sweep_whose_process_died_is_not_left_running(swept: Path) -> None:
    """kill -9 leaves no chance to write `interrupted`: the next open sees the owner's pid is gone."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sqlite3.connect(swept) as db:
        db.execute("UPDATE sweeps SET status = 'running', owner = ?", (f"{socket.gethostname()}:{dead.pid}",))
    with Store(swept) as db:
        assert {s["status"] for s in db.summary()["sweeps"]} == {"interrupted"}
        assert db.check()["running_sweeps"][0]["status"] == "interrupted"
    space = swept.parent / "space.yaml"
    code, stdout, _ = cli("sweep", "--space", str(space), "-d", "cpu", "--store", str(swept), "--json")
    assert code == 0 and json.loads(stdout)["chunks_run"] == 0  # resumed: nothing redone
    with Store(swept, read_only=True) as db:
        assert {s["status"] for s in db.summary()["sweeps"]} == {"done"}


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "0"])
def test_a_meaningless_budget_is_refused_in_one_line(tmp_path: Path, value: str) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    args = ["pareto", "--space", str(space), "-d", "cpu", "--max-latency", value, "--store", str(tmp_path / "s.db")]
    code, _, stderr = cli(*args)
    assert code == 2 and "max_latency_ms" in stderr and len(stderr.strip().splitlines()) == 1, stderr
