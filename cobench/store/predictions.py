"""Single predictions (`cobench predict`), one row per architecture, device, workload and parameters."""

from __future__ import annotations

import json
import time
from typing import Any

from cobench.store.connection import Connection


class Predictions:
    def __init__(self, c: Connection) -> None:
        self.c = c

    def put(
        self, arch_id: str, device_id: str, workload: dict[str, Any], params: dict[str, Any], result: dict[str, Any]
    ) -> None:
        with self.c.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO predictions (arch_id, device_id, workload_json, params_json, ttft_s, tpot_s,"
                " e2e_s, peak_memory_bytes, fits, result_json, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    arch_id,
                    device_id,
                    json.dumps(workload, sort_keys=True),
                    json.dumps(params, sort_keys=True),
                    result["ttft_s"],
                    result["tpot_s"],
                    result["e2e_s"],
                    result["peak_memory_bytes"],
                    int(result["fits"]),
                    json.dumps(result, sort_keys=True),
                    time.time(),
                ),
            )
