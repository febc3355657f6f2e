"""Kernel microbenchmark results (`cobench kernels run`), per device."""

from __future__ import annotations

import json
import time
from typing import Any

from cobench.measure.kernels.results import KernelResult
from cobench.store.connection import Connection, where

KERNEL_IDENTITY = ("backend", "runner_device", "suite", "kind", "shape_json", "precision", "cold")


class Kernels:
    def __init__(self, c: Connection) -> None:
        self.c = c

    def has(self, key: str) -> bool:
        return self.c.scalar("SELECT 1 FROM kernel_results WHERE key = ?", (key,)) is not None

    def put(self, r: KernelResult, device_id: str) -> None:
        with self.c.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO kernel_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r.key,
                    device_id,
                    r.backend,
                    r.runner_device,
                    r.spec.suite,
                    r.spec.kind,
                    json.dumps(r.spec.shape, sort_keys=True),
                    r.spec.precision,
                    int(r.cold),
                    r.flops,
                    r.bytes,
                    r.median_s,
                    json.dumps(r.summary),
                    json.dumps(r.environment),
                    time.time(),
                ),
            )

    def find(self, device: str, precision: str | None = None, backend: str | None = None) -> list[KernelResult]:
        """A device's kernel results (of one precision / backend if given), by suite, kind and age: the newest
        of each kernel (backend, runner device, shape, precision, cache state, threads) where a store holds it twice
        (measured under an earlier identity of the device)."""
        sql, args = where({"d.name": device, "k.precision": precision, "k.backend": backend})
        rows = self.c.rows(
            "SELECT k.key, k.backend, k.runner_device, k.suite, k.kind, k.shape_json, k.precision, k.cold, k.flops,"
            " k.bytes, k.median_s, k.summary_json, k.environment_json FROM kernel_results k"
            " JOIN devices d ON d.id = k.device_id" + sql + " ORDER BY k.suite, k.kind, k.created_at",
            args,
        )
        # rows come oldest first; ORT kernels run on a set thread count are other kernels than ORT's default's
        newest = {(*(r[k] for k in KERNEL_IDENTITY), _threads(r["environment_json"])): r for r in rows}
        return [KernelResult.from_json(_decoded(r)) for r in newest.values()]

    def device_names(self) -> list[str]:
        """Devices with at least one kernel result."""
        rows = self.c.db.execute(
            "SELECT DISTINCT d.name FROM kernel_results k JOIN devices d ON d.id = k.device_id ORDER BY d.name"
        )
        return [r[0] for r in rows]


def _threads(environment_json: str) -> Any:
    return json.loads(environment_json).get("intra_op_threads")


def _decoded(r: dict[str, Any]) -> dict[str, Any]:
    return r | {
        "shape": json.loads(r.pop("shape_json")),
        "summary": json.loads(r.pop("summary_json")),
        "environment": json.loads(r.pop("environment_json")),
    }
