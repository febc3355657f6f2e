"""What crosses a stage boundary: JSON-able records and their stable ids.

Every record (a profile result, kernel result, calibration, training run, loss-law fit) is a frozen
dataclass with `to_json()` / `from_json()`; worker, store, CLI and report all pass the same object.
docs/schema.md documents the JSON layout they write.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

import numpy as np


def content_id(obj: Any) -> str:
    """Stable id of a JSON-able object: the same architecture or device always maps to one row."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def to_jsonable(obj: Any) -> Any:
    """Records (via their to_json), dataclasses, numpy scalars/arrays → plain JSON types; non-finite → None."""
    if hasattr(obj, "to_json") and not isinstance(obj, type):
        return to_jsonable(obj.to_json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
