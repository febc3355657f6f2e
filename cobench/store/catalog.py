"""Architectures and devices: each stored once, by a content id of what it is (not what it is called)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict

from cobench.arch.architecture import Architecture, param_counts
from cobench.hardware.devices import DeviceSpec
from cobench.records import content_id
from cobench.store.connection import Connection


class Catalog:
    def __init__(self, c: Connection) -> None:
        self.c = c

    def put_architecture(self, a: Architecture) -> str:
        spec = a.to_dict()
        arch_id = content_id({k: v for k, v in spec.items() if k != "name"})
        counts = param_counts(a)
        with self.c.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO architectures VALUES (?, ?, ?, ?, ?, ?)",
                (arch_id, a.name, json.dumps(spec, sort_keys=True), counts.total, counts.active, time.time()),
            )
        return arch_id

    def put_device(self, d: DeviceSpec) -> str:
        """The device's id is what it is, not where its file was read from: the same device file in another
        checkout is the same device (its kernels are not measured again)."""
        spec = asdict(d)
        device_id = content_id({k: v for k, v in spec.items() if k != "path"})
        with self.c.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO devices VALUES (?, ?, ?, ?, ?)",
                (device_id, d.name, d.mode, json.dumps(spec, sort_keys=True, default=str), time.time()),
            )
        return device_id
