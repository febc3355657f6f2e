"""Fitted latency models (`cobench calibrate`), numbered per device, power mode, backend and precision."""

from __future__ import annotations

import json
import time
from dataclasses import replace

from cobench.fit.calibration.record import Calibration
from cobench.store.connection import Connection


class Calibrations:
    def __init__(self, c: Connection) -> None:
        self.c = c

    def put(self, calibration: Calibration) -> Calibration:
        """Store as the next version for its device, mode, backend and precision; return it with that version."""
        key = (calibration.device, calibration.power_mode or "", calibration.backend, calibration.precision)
        with self.c.transaction() as db:
            (latest,) = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM calibrations WHERE device = ? AND power_mode = ?"
                " AND backend = ? AND precision = ?",
                key,
            ).fetchone()
            versioned = replace(calibration, version=int(latest) + 1)
            db.execute(
                "INSERT INTO calibrations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*key, versioned.version, json.dumps(versioned.to_json(), sort_keys=True), time.time()),
            )
        return versioned

    def newest(
        self, device: str, power_mode: str | None, precision: str, backend: str | None = None
    ) -> Calibration | None:
        """The newest calibration for this device/mode/precision (of `backend`, or of any backend)."""
        sql = "SELECT body_json FROM calibrations WHERE device = ? AND power_mode = ? AND precision = ?"
        args: list[str] = [device, power_mode or "", precision]
        if backend:
            sql += " AND backend = ?"
            args.append(backend)
        body = self.c.scalar(sql + " ORDER BY created_at DESC, version DESC LIMIT 1", args)
        return Calibration.from_json(json.loads(body)) if body else None

    def latest_each(self) -> list[Calibration]:
        """The newest version of every (device, mode, backend, precision)."""
        rows = self.c.db.execute(
            "SELECT body_json FROM calibrations c WHERE version = (SELECT MAX(version) FROM calibrations x"
            " WHERE x.device = c.device AND x.power_mode = c.power_mode AND x.backend = c.backend"
            " AND x.precision = c.precision) ORDER BY device, backend, precision"
        )
        return [Calibration.from_json(json.loads(r[0])) for r in rows]

    def all(self) -> list[Calibration]:
        rows = self.c.db.execute("SELECT body_json FROM calibrations ORDER BY device, backend, precision, version")
        return [Calibration.from_json(json.loads(r[0])) for r in rows]
