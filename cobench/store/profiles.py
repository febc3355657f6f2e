"""Profiles (`cobench profile`): one row per measured candidate, its raw samples and telemetry per phase."""

from __future__ import annotations

import json
import time
from typing import Any

from cobench.measure.result import ProfileResult
from cobench.store.catalog import Catalog
from cobench.store.connection import Connection, where

_SELECT = (
    "SELECT p.key, p.backend, p.precision, p.workload_json, p.status, p.reason, p.predicted_json, p.summary_json,"
    " p.environment_json, p.seconds, a.spec_json, d.name AS device, d.power_mode"
    " FROM profiles p JOIN architectures a ON a.id = p.arch_id JOIN devices d ON d.id = p.device_id"
)


def _result(r: dict[str, Any]) -> ProfileResult:
    load = lambda text: json.loads(text) if text else None  # noqa: E731
    return ProfileResult.from_json(
        {
            "key": r["key"],
            "architecture": load(r["spec_json"]),
            "device": r["device"],
            "power_mode": r["power_mode"],
            "backend": r["backend"],
            "precision": r["precision"],
            "workload": load(r["workload_json"]),
            "status": r["status"],
            "reason": r["reason"],
            "predicted": load(r["predicted_json"]),
            "measured": load(r["summary_json"]),
            "environment": load(r["environment_json"]),
            "seconds": r["seconds"],
        }
    )


class Profiles:
    def __init__(self, c: Connection, catalog: Catalog) -> None:
        self.c = c
        self.catalog = catalog

    def status(self, key: str) -> str | None:
        return self.c.scalar("SELECT status FROM profiles WHERE key = ?", (key,))

    def put(self, result: ProfileResult, device_id: str, phases: dict[str, Any] | None = None) -> None:
        """A profile with its raw samples and telemetry, in one transaction (replacing an earlier failure)."""
        arch_id = self.catalog.put_architecture(result.arch)
        m = result.measured
        body = result.to_json()
        with self.c.transaction() as db:
            for table in ("timing_samples", "telemetry"):
                db.execute(f"DELETE FROM {table} WHERE profile_key = ?", (result.key,))
            db.execute(
                "INSERT OR REPLACE INTO profiles (key, arch_id, arch_name, device_id, backend, precision,"
                " workload_json, status, reason, ttft_s, tpot_s, e2e_s, energy_per_token_j, predicted_json,"
                " summary_json, environment_json, created_at, seconds) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    result.key,
                    arch_id,
                    result.arch_name,
                    device_id,
                    result.backend,
                    result.precision,
                    json.dumps(body["workload"], sort_keys=True),
                    result.status,
                    result.reason,
                    m.ttft_s if m else None,
                    m.tpot_s if m else None,
                    m.e2e_s if m else None,
                    m.energy_per_token_j if m else None,
                    json.dumps(result.predicted),
                    json.dumps(body["measured"]),
                    json.dumps(result.environment),
                    time.time(),
                    result.seconds,
                ),
            )
            for phase, data in (phases or {}).items():
                stats = {k: v for k, v in data.items() if k not in ("samples_s", "telemetry")}
                db.execute(
                    "INSERT INTO timing_samples VALUES (?, ?, ?, ?)",
                    (result.key, phase, json.dumps(data["samples_s"]), json.dumps(stats)),
                )
                if data.get("telemetry"):
                    db.execute(
                        "INSERT INTO telemetry VALUES (?, ?, ?)", (result.key, phase, json.dumps(data["telemetry"]))
                    )

    def get(self, key: str) -> ProfileResult | None:
        found = self.c.rows(_SELECT + " WHERE p.key = ?", (key,))
        return _result(found[0]) if found else None

    def find(
        self,
        device: str | None = None,
        power_mode: str | None = None,
        backend: str | None = None,
        precision: str | None = None,
        status: str | None = None,
        any_mode: bool = True,
    ) -> list[ProfileResult]:
        """Profiles matching every condition given, oldest first; `any_mode=False` matches `power_mode`
        exactly (None: devices without power modes)."""
        sql, args = where({"d.name": device, "p.backend": backend, "p.precision": precision, "p.status": status})
        if not any_mode:
            sql += (" AND" if sql else " WHERE") + " COALESCE(d.power_mode, '') = ?"
            args.append(power_mode or "")
        return [_result(r) for r in self.c.rows(_SELECT + sql + " ORDER BY p.created_at", args)]

    def samples(self, key: str) -> dict[str, list[float]]:
        rows = self.c.db.execute("SELECT phase, samples_json FROM timing_samples WHERE profile_key = ?", (key,))
        return {phase: json.loads(s) for phase, s in rows}

    def telemetry(self, key: str) -> dict[str, dict[str, Any]]:
        """Phase → the telemetry series recorded while it was timed."""
        rows = self.c.db.execute("SELECT phase, series_json FROM telemetry WHERE profile_key = ?", (key,))
        return {phase: json.loads(s) for phase, s in rows}

    def put_round(self, key: str, round_: int, result: dict[str, Any]) -> None:
        """One finished round of a profile (the worker's whole result), before the profile is complete."""
        with self.c.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO profile_rounds VALUES (?, ?, ?, ?)",
                (key, round_, json.dumps(result), time.time()),
            )

    def rounds(self, key: str) -> dict[int, dict[str, Any]]:
        """Round number → the worker's result, for the rounds of this profile stored so far."""
        rows = self.c.db.execute("SELECT round, result_json FROM profile_rounds WHERE profile_key = ?", (key,))
        return {int(r): json.loads(text) for r, text in rows}
