"""Sweeps: a search space predicted chunk by chunk; a chunk's candidates and its completion marker commit
together, so an interrupted sweep resumes after the chunks it finished."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Sequence
from typing import Any

from cobench.arch.architecture import VARIANT_COLUMNS
from cobench.errors import InputError
from cobench.store.connection import Connection
from cobench.store.schema import CANDIDATE_COLUMNS, STORED_COLUMNS

OWNER = f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Sweeps:
    def __init__(self, c: Connection) -> None:
        self.c = c

    def begin(
        self,
        sweep_id: str,
        name: str,
        space: dict[str, Any],
        device_id: str,
        workload: dict[str, Any],
        params: dict[str, Any],
        grid_size: int,
        n_chunks: int,
    ) -> None:
        with self.c.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO sweeps (id, name, space_json, device_id, workload_json, params_json, "
                "grid_size, n_chunks, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)",
                (
                    sweep_id,
                    name,
                    json.dumps(space, sort_keys=True, default=str),
                    device_id,
                    json.dumps(workload, sort_keys=True),
                    json.dumps(params, sort_keys=True),
                    grid_size,
                    n_chunks,
                    time.time(),
                ),
            )
            db.execute(  # resumed: running again, by this process
                "UPDATE sweeps SET owner = ?, status = CASE status WHEN 'done' THEN 'done' ELSE 'running' END "
                "WHERE id = ?",
                (OWNER, sweep_id),
            )

    def recover(self) -> list[str]:
        """Sweeps marked running by a process of this host that no longer exists: marked interrupted
        (rerunning `cobench sweep` resumes them). Another host's are left alone: its process is unknown."""
        lost = []
        for sweep_id, owner in self.c.db.execute("SELECT id, owner FROM sweeps WHERE status = 'running'").fetchall():
            host, _, pid = (owner or "").rpartition(":")
            if owner is None or (host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))):
                lost.append(sweep_id)
        if lost:
            with self.c.transaction() as db:
                db.executemany("UPDATE sweeps SET status = 'interrupted' WHERE id = ? AND status = 'running'",
                               [(s,) for s in lost])  # fmt: skip
        return lost

    def done_chunks(self, sweep_id: str) -> set[int]:
        rows = self.c.db.execute("SELECT chunk FROM sweep_chunks WHERE sweep_id = ?", (sweep_id,))
        return {r[0] for r in rows}

    def put_chunk(
        self,
        sweep_id: str,
        chunk: int,
        n_valid: int,
        seconds: float,
        rows: Sequence[Sequence[Any]],
        n_kept: int | None = None,
    ) -> None:
        """Candidates and the chunk's completion marker commit together, or not at all. `n_kept`: how many
        met the constraints, when only some of them are stored."""
        placeholders = ",".join("?" * (len(STORED_COLUMNS) + 1))
        columns = ", ".join(STORED_COLUMNS)
        with self.c.transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO sweep_candidates (sweep_id, {columns}) VALUES ({placeholders})",
                ((sweep_id, *row) for row in rows),
            )
            db.execute(
                "INSERT OR REPLACE INTO sweep_chunks VALUES (?, ?, ?, ?, ?)",
                (sweep_id, chunk, n_valid, len(rows) if n_kept is None else n_kept, seconds),
            )

    def finish(self, sweep_id: str) -> None:
        with self.c.transaction() as db:
            db.execute(
                "UPDATE sweeps SET status = 'done', finished_at = ? WHERE id = ? AND status != 'done'",
                (time.time(), sweep_id),
            )

    def get(self, sweep_id: str) -> dict[str, Any]:
        row = self.c.db.execute(
            "SELECT * FROM sweeps WHERE id = ? OR name = ? ORDER BY created_at DESC LIMIT 1",
            (sweep_id, sweep_id),
        ).fetchone()
        if row is None:
            raise InputError("sweep", f"no sweep {sweep_id!r} in {self.c.path} (see `cobench store info`)")
        cols = [c[0] for c in self.c.db.execute("SELECT * FROM sweeps LIMIT 0").description]
        return dict(zip(cols, row, strict=True))

    def stats(self, sweep_id: str) -> dict[str, int]:
        n_valid, n_kept, n_done = self.c.db.execute(
            "SELECT COALESCE(SUM(n_valid), 0), COALESCE(SUM(n_kept), 0), COUNT(*) FROM sweep_chunks WHERE sweep_id = ?",
            (sweep_id,),
        ).fetchone()
        (stored,) = self.c.db.execute(
            "SELECT COUNT(*) FROM sweep_candidates WHERE sweep_id = ?", (sweep_id,)
        ).fetchone()
        return {"valid": int(n_valid), "kept": int(n_kept), "stored": int(stored), "chunks_done": int(n_done)}

    def candidates(self, sweep_id: str, order_by: str = "e2e_s", limit: int | None = None) -> list[dict[str, Any]]:
        column = order_by.lstrip("-")
        if column not in CANDIDATE_COLUMNS:
            raise InputError("sort", f"unknown column {column!r} (one of {', '.join(CANDIDATE_COLUMNS)})")
        direction = "DESC" if order_by.startswith("-") else "ASC"
        sql = (
            f"SELECT {', '.join(STORED_COLUMNS)} FROM sweep_candidates WHERE sweep_id = ? "
            f"ORDER BY {column} {direction}, grid_index"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_candidate(r) for r in self.c.db.execute(sql, (sweep_id,))]


def _candidate(row: Sequence[Any]) -> dict[str, Any]:
    """A stored row with its variant columns spread out (their defaults where the row has none)."""
    *numbers, variants = row
    return dict(zip(CANDIDATE_COLUMNS, numbers, strict=True)) | VARIANT_COLUMNS | json.loads(variants or "{}")
