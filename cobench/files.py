"""Reading the user's files and writing ours: one place for both, so every loader names the file in its
error and no writer ever leaves half a file behind (a crash leaves the old file or the new one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cobench.errors import InputError

MAX_BYTES = 8 << 20  # no cobench input is anywhere near this; a bigger file is a mistake, not a config
MAX_DEPTH = 32  # nesting levels; the deepest cobench file (a space) has five


class _Loader(yaml.SafeLoader):
    """Safe YAML without aliases (an alias bomb expands a small file into gigabytes) and with bounded
    nesting (PyYAML composes recursively)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError(f"YAML aliases (*name) are not accepted, {self.peek_event().start_mark}")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def read_text(path: Path, field: str, max_bytes: int = MAX_BYTES) -> str:
    """A user's text file: readable, at most `max_bytes`, not binary, UTF-8 — or one line saying which."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(
                field, f"{path} is {size / 2**20:.1f} MiB; cobench reads files up to {max_bytes >> 20} MiB"
            )
        raw = path.read_bytes()
    except OSError as e:
        raise InputError(field, f"cannot read {path}: {e.strerror}") from None
    if b"\x00" in raw:
        raise InputError(field, f"{path} is a binary file, not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(field, f"{path} is not UTF-8 text (byte {e.start})") from None


def _check_tree(node: Any, where: str, depth: int = 0) -> None:
    """Keys are strings and nesting is bounded, whatever the format (JSON too)."""
    if depth > MAX_DEPTH:
        raise InputError(where, f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise InputError(f"{where}.{key}", f"keys must be strings, got {type(key).__name__}")
            _check_tree(value, f"{where}.{key}", depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_tree(value, f"{where}[{i}]", depth + 1)


def read_mapping(path: Path, field: str) -> dict[str, Any]:
    """Parse a YAML or JSON file into a mapping, naming the file in any error."""
    text = read_text(path, field)
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.load(text, Loader=_Loader)  # noqa: S506 (safe + no aliases)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise InputError(field, f"{path} is not valid {kind}: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise InputError(field, f"{path} is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(data, dict):
        raise InputError(field, f"{path} must hold a mapping, got {type(data).__name__}")
    _check_tree(data, field)
    return data


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename; the parent folder is created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        tmp.write_text(data)
    tmp.replace(path)
    return path
