"""Queue files: the candidates `select` picked, which `train --queue` and `profile --queue` read.

Layout: `source: <the command that wrote it>` and `jobs: [{arch: SPEC | architecture: {...}, tokens: N,
precision: P}, ...]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cobench.arch.architecture import Architecture
from cobench.arch.spec import load_architecture
from cobench.errors import InputError
from cobench.files import read_mapping, write_atomic
from cobench.validate import number

MAX_TOKENS = 10**13  # training tokens of one job: past any run this tool queues (a CPU does ~10⁴/s)


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
        if tokens is not None:
            tokens = number(tokens, f"{where}.tokens", integer=True, low=1, high=MAX_TOKENS)
        found.append((arch, tokens))
    return found


def write_queue(path: Path, jobs: list[dict[str, Any]], source: str) -> Path:
    """Write jobs (`architecture`, `tokens`, `precision` each) as a queue file, atomically."""
    return write_atomic(path, yaml.safe_dump({"source": source, "jobs": jobs}, sort_keys=False))
