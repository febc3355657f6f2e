"""Queue files: the candidates `select` picked, which `train --queue` and `profile --queue` read.

Layout: `source: <the command that wrote it>` and `jobs: [{arch: SPEC | architecture: {...}, tokens: N,
precision: P, prompt: N, batch: N}, ...]`. `prompt` and `batch` are the job's own workload for `profile`
(the command's otherwise), so that one run interleaves the rounds of a study's every workload.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import yaml

from cobench.arch.architecture import Architecture
from cobench.arch.spec import load_architecture
from cobench.errors import InputError
from cobench.files import read_mapping, write_atomic
from cobench.validate import number

MAX_TOKENS = 10**13  # training tokens of one job: past any run this tool queues (a CPU does ~10⁴/s)
MAX_SHAPE = 10**7  # a job's prompt tokens or sequences: past any context or batch a model here takes


class Job(NamedTuple):
    """One queued candidate: its architecture, and what the job itself sets (None: the command's)."""

    arch: Architecture
    tokens: int | None = None  # training tokens (`train`)
    prompt: int | None = None  # prompt tokens (`profile`)
    batch: int | None = None  # sequences (`profile`)


def read_queue(path: Path) -> list[Job]:
    """A queue file: `jobs: [{arch: SPEC | architecture: {...}, tokens: N, prompt: N, batch: N}, ...]` (what
    `select` writes, or a study's own list)."""
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
        limits = {"tokens": MAX_TOKENS, "prompt": MAX_SHAPE, "batch": MAX_SHAPE}
        own = {
            k: number(job[k], f"{where}.{k}", integer=True, low=1, high=high) for k, high in limits.items() if k in job
        }
        found.append(Job(arch, **own))
    return found


def write_queue(path: Path, jobs: list[dict[str, Any]], source: str) -> Path:
    """Write jobs (`architecture`, `tokens`, `precision` each) as a queue file, atomically."""
    return write_atomic(path, yaml.safe_dump({"source": source, "jobs": jobs}, sort_keys=False))
