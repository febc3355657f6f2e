"""Analyses over a search space (`cobench pareto`), kept so that the report can redraw them."""

from __future__ import annotations

import json
import time
from typing import Any

from cobench.store.connection import Connection


class Analyses:
    def __init__(self, c: Connection) -> None:
        self.c = c

    def put(self, kind: str, device: str, body: dict[str, Any]) -> int:
        with self.c.transaction() as db:
            cursor = db.execute(
                "INSERT INTO analyses (kind, device, body_json, created_at) VALUES (?, ?, ?, ?)",
                (kind, device, json.dumps(body, default=float), time.time()),
            )
        return int(cursor.lastrowid or 0)

    def newest(self, kind: str) -> list[dict[str, Any]]:
        """The newest analysis of this kind per device."""
        rows = self.c.db.execute(
            "SELECT body_json FROM analyses WHERE id IN (SELECT MAX(id) FROM analyses WHERE kind = ? GROUP BY device)"
            " ORDER BY device",
            (kind,),
        )
        return [json.loads(r[0]) for r in rows]
