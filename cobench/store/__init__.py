"""The SQLite store: one file (WAL) for everything measured, predicted or fitted.

One connection (connection.py, migrated on open by schema.py) shared by one repository per table
family: `catalog` (architectures, devices), `predictions`, `sweeps`, `profiles`, `kernels`,
`calibrations`, `runs` (training), `fits` (loss laws), `analyses` (Pareto). Repositories take and
return typed records (ProfileResult, KernelResult, Calibration, TrainingRun) and filter in SQL. Each
write is one transaction: an interrupted job keeps what it finished and resumes after it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cobench.errors import InputError
from cobench.store.analyses import Analyses
from cobench.store.calibrations import Calibrations
from cobench.store.catalog import Catalog
from cobench.store.connection import Connection
from cobench.store.export import check, table_rows
from cobench.store.kernels import Kernels
from cobench.store.predictions import Predictions
from cobench.store.profiles import Profiles
from cobench.store.schema import SCHEMA_VERSION
from cobench.store.sweeps import Sweeps
from cobench.store.training import LawFits, TrainingRuns

DEFAULT_PATH = "cobench.db"
STORE_ENV = "COBENCH_STORE"

__all__ = ["SCHEMA_VERSION", "Store", "default_path"]


def default_path() -> Path:
    """--store flag > COBENCH_STORE > ./cobench.db."""
    return Path(os.environ.get(STORE_ENV, DEFAULT_PATH))


class Store:
    def __init__(self, path: Path | str, read_only: bool = False) -> None:
        self.path = Path(path)
        self.connection = Connection(self.path, read_only)
        self.catalog = Catalog(self.connection)
        self.predictions = Predictions(self.connection)
        self.sweeps = Sweeps(self.connection)
        self.profiles = Profiles(self.connection, self.catalog)
        self.kernels = Kernels(self.connection)
        self.calibrations = Calibrations(self.connection)
        self.runs = TrainingRuns(self.connection, self.catalog)
        self.fits = LawFits(self.connection)
        self.analyses = Analyses(self.connection)
        if not read_only:
            self.sweeps.recover()  # a sweep whose process died is never left `running`

    @property
    def version(self) -> int:
        return self.connection.version

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self, table: str, sweep: str | None = None, sort: str = "e2e_s", limit: int | None = None) -> Any:
        """What `store export` writes: one table's rows, or a sweep's candidates (by id or name)."""
        if table == "sweep" or sweep is not None:
            if sweep is None:
                raise InputError("sweep", "--table sweep needs --sweep ID")
            return self.sweeps.candidates(self.sweeps.get(sweep)["id"], sort, limit)
        rows = table_rows(self.connection, table)
        return rows[:limit] if limit is not None else rows

    def check(self) -> dict[str, Any]:
        return check(self.connection)

    def summary(self) -> dict[str, Any]:
        """Schema version, row count per table, and the sweeps."""
        db = self.connection.db
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        counts = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
        sweeps = self.connection.rows("SELECT id, name, status, grid_size, created_at FROM sweeps ORDER BY created_at")
        return {"path": str(self.path), "schema_version": self.version, "rows": counts, "sweeps": sweeps}
