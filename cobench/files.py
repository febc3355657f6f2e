"""Reading the user's files and writing ours: one place for both, so every loader names the file in its
error and no writer ever leaves half a file behind (a crash leaves the old file or the new one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cobench.errors import InputError


def read_mapping(path: Path, field: str) -> dict[str, Any]:
    """Parse a YAML or JSON file into a mapping, naming the file in any error."""
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(field, f"cannot read {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise InputError(field, f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise InputError(field, f"{path} must hold a mapping, got {type(data).__name__}")
    return data


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file and a rename; the parent folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
