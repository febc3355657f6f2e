"""Rows out of the store into files a user's own tools read."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from cobench.errors import InputError
from cobench.store.schema import CANDIDATE_COLUMNS


def export_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Write rows as CSV or JSON by the file's suffix, atomically (a crash never leaves half a file)."""
    if path.suffix not in (".csv", ".json"):
        raise InputError("out", f"{path} must end in .csv or .json")
    if not path.parent.exists():
        raise InputError("out", f"directory {path.parent} does not exist")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        if path.suffix == ".json":
            json.dump(rows, f, indent=1)
        else:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else list(CANDIDATE_COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
    tmp.replace(path)
