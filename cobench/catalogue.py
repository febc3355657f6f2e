"""Where the shipped data lives: devices/, kernels/, presets/ and spaces/.

In a source checkout they are the folders at the repository root; in an installed wheel they are
package data under `cobench._catalogue`. Users add their own with `COBENCH_<KIND>_PATH` (an
os.pathsep-separated list of files or folders) or the matching CLI flag; theirs win on name clashes.
"""

from __future__ import annotations

import os
from pathlib import Path

from cobench.errors import InputError

KINDS = ("devices", "kernels", "presets", "spaces")


def builtin_dir(kind: str) -> Path:
    """The wheel's package data if installed, else the checkout's folder (editable installs too)."""
    package = Path(__file__).resolve().parent
    installed = package / "_catalogue" / kind
    return installed if installed.is_dir() else package.parent / kind


def search_paths(kind: str, extra: list[Path] | None = None) -> list[Path]:
    """Built-in folder first, then the environment variable, then flags: later entries override."""
    env = os.environ.get(f"COBENCH_{kind.upper()}_PATH", "")
    user = [Path(p) for p in env.split(os.pathsep) if p]
    return [builtin_dir(kind), *user, *(extra or [])]


def data_files(kind: str, extra: list[Path] | None = None, suffixes: tuple[str, ...] = (".yaml", ".yml")) -> list[Path]:
    """Every data file of a kind, in override order; a missing user path is an error, not silence."""
    files: list[Path] = []
    for path in search_paths(kind, extra):
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix in suffixes))
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{kind} path", f"{path} does not exist")
    return files
