"""Resolve an architecture SPEC: a preset name, a cobench architecture file, or an HF config.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cobench.arch.architecture import Architecture
from cobench.arch.hf_config import from_hf_config, is_hf_config
from cobench.catalogue import data_files
from cobench.errors import InputError
from cobench.files import read_mapping
from cobench.validate import mapping


@dataclass(frozen=True)
class Preset:
    """A named published model with the parameter count its authors report, for checking ourselves."""

    arch: Architecture
    source: str
    published_total: int | None
    published_note: str


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
        body = mapping(data.get("architecture", data), f"{path.name}.architecture")
        return Architecture.from_dict({"name": path.stem, **body} if "name" not in body else body, where=path.name)
    known = presets()
    if spec not in known:
        raise InputError("arch", f"unknown preset {spec!r} and no such file (presets: {', '.join(sorted(known))})")
    return known[spec].arch
