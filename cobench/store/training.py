"""Training runs (`cobench train`) and loss-law fits (`cobench fit`)."""

from __future__ import annotations

import json
import time
from typing import Any

from cobench.fit.training_run import TrainingRun
from cobench.store.catalog import Catalog
from cobench.store.connection import Connection, where

_SELECT = (
    "SELECT t.key, t.corpus, t.config_json, t.status, t.steps, t.tokens, t.final_loss, t.final_bpb, t.n_params,"
    " t.n_params_total, t.tokens_per_s, t.curve_json, t.environment_json, a.spec_json"
    " FROM training_runs t JOIN architectures a ON a.id = t.arch_id"
)


def _run(r: dict[str, Any]) -> TrainingRun:
    decoded = {k.removesuffix("_json"): json.loads(v) if k.endswith("_json") and v else v for k, v in r.items()}
    decoded["arch"] = decoded.pop("spec")
    return TrainingRun.from_json(decoded)


class TrainingRuns:
    def __init__(self, c: Connection, catalog: Catalog) -> None:
        self.c = c
        self.catalog = catalog

    def status(self, key: str) -> str | None:
        return self.c.scalar("SELECT status FROM training_runs WHERE key = ?", (key,))

    def put(self, run: TrainingRun) -> None:
        arch_id = self.catalog.put_architecture(run.arch)
        with self.c.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO training_runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.key,
                    arch_id,
                    run.arch_name,
                    run.corpus,
                    json.dumps(run.config, sort_keys=True),
                    run.status,
                    run.steps,
                    run.tokens,
                    run.final_loss,
                    run.final_bpb,
                    run.n_params,
                    run.n_params_total,
                    run.tokens_per_s,
                    json.dumps(run.curve),
                    json.dumps(run.environment),
                    time.time(),
                ),
            )

    def get(self, key: str) -> TrainingRun | None:
        found = self.c.rows(_SELECT + " WHERE t.key = ?", (key,))
        return _run(found[0]) if found else None

    def find(self, status: str | None = "done") -> list[TrainingRun]:
        """Runs of this status (None: all), oldest first."""
        sql, args = where({"t.status": status})
        return [_run(r) for r in self.c.rows(_SELECT + sql + " ORDER BY t.created_at", args)]


class LawFits:
    """Each fit's body is LawFit.to_json() plus `runs` (names) and `data` (what the report re-plots)."""

    def __init__(self, c: Connection) -> None:
        self.c = c

    def put(self, law: str, source: str, body: dict[str, Any]) -> int:
        with self.c.transaction() as db:
            cursor = db.execute(
                "INSERT INTO law_fits (law, source, body_json, created_at) VALUES (?, ?, ?, ?)",
                (law, source, json.dumps(body, sort_keys=True), time.time()),
            )
        return int(cursor.lastrowid or 0)

    def get(self, which: str | None = None) -> dict[str, Any] | None:
        """A fit by id, or the newest of a law (by name), or the newest of any law."""
        sql, args = "SELECT id, body_json FROM law_fits", ()
        if which and which.isdigit():
            sql, args = sql + " WHERE id = ?", (int(which),)
        elif which:
            sql, args = sql + " WHERE law = ?", (which,)
        row = self.c.db.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
        return json.loads(row[1]) | {"id": row[0]} if row else None

    def newest_each(self) -> list[dict[str, Any]]:
        """The newest fit of every law."""
        rows = self.c.db.execute(
            "SELECT body_json FROM law_fits WHERE id IN (SELECT MAX(id) FROM law_fits GROUP BY law)"
        )
        return [json.loads(r[0]) for r in rows]
