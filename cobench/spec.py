"""Resolve an architecture SPEC: a preset name, a cobench architecture file, or an HF config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cobench.architecture import Architecture
from cobench.catalogue import data_files
from cobench.errors import InputError
from cobench.hf_config import from_hf_config, is_hf_config


@dataclass(frozen=True)
class Preset:
    """A named published model with the parameter count its authors report, for checking ourselves."""

    arch: Architecture
    source: str
    published_total: int | None
    published_note: str


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


def presets() -> dict[str, Preset]:
    found: dict[str, Preset] = {}
    for path in data_files("presets"):
        data = read_mapping(path, "preset")
        arch = Architecture.from_dict(data.get("architecture", {}), where=f"{path.name}:architecture")
        published = data.get("published", {})
        found[arch.name] = Preset(arch, data.get("source", ""), published.get("total"), published.get("note", ""))
    return found


def load_architecture(spec: str) -> Architecture:
    """SPEC is a preset name or a path; files may be an HF config.json or a cobench architecture."""
    path = Path(spec)
    if path.suffix in (".json", ".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise InputError("arch", f"file {spec} does not exist")
        data = read_mapping(path, "arch")
        if is_hf_config(data):
            name = path.parent.name if path.name == "config.json" else path.stem
            return from_hf_config(data, name=name, where=path.name)
        body = data.get("architecture", data)
        return Architecture.from_dict({"name": path.stem, **body} if "name" not in body else body, where=path.name)
    known = presets()
    if spec not in known:
        raise InputError("arch", f"unknown preset {spec!r} and no such file (presets: {', '.join(sorted(known))})")
    return known[spec].arch


def read_queue(path: Path) -> list[tuple[Architecture, int | None]]:
    """A queue file: `jobs: [{arch: SPEC | architecture: {...}, tokens: N}, ...]` (what `select` writes)."""
    data = read_mapping(path, "queue")
    jobs = data.get("jobs")
    if not isinstance(jobs, list) or not jobs:
        raise InputError("queue.jobs", f"{path} needs a non-empty list `jobs`")
    found = []
    for i, job in enumerate(jobs):
        where = f"queue.jobs[{i}]"
        if not isinstance(job, dict) or ("arch" in job) == ("architecture" in job):
            raise InputError(where, "each job has exactly one of `arch: SPEC` or `architecture: {...}`")
        arch = load_architecture(job["arch"]) if "arch" in job else Architecture.from_dict(job["architecture"], where)
        tokens = job.get("tokens")
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
            raise InputError(f"{where}.tokens", f"a positive integer, got {tokens!r}")
        found.append((arch, tokens))
    return found
