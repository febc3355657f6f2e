"""Training runs as loss-law input: from the store's finished runs or from a CSV of the user's own, and
the fit of one or more laws to them (`cobench fit`)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench.errors import InputError
from cobench.fit.loss_law import ARCH_COLUMNS, LawFit, Runs, fit_law, law, split
from cobench.fit.training_run import TrainingRun
from cobench.store import Store
from cobench.validate import number

REQUIRED = ("n_params", "n_tokens", "loss")


MAX_RUNS = 100_000  # a loss law is fitted to tens or thousands of runs; more is a wrong file
MAX_CSV_BYTES = 64 << 20
LIMITS = {"n_params": 1e15, "n_tokens": 1e17, "loss": 100.0}  # loss in nats per token


def read_runs_csv(path: Path, progress: Callable[[int], None] | None = None) -> Runs:
    """Runs from a CSV: n_params (non-embedding), n_tokens, loss, and optional architecture columns.
    Streamed row by row (a file past MAX_RUNS is refused when its row MAX_RUNS + 1 is read, not after
    loading all of it); `progress(rows)` every 10,000 rows."""
    if not path.is_file():
        raise InputError("csv", f"file {path} does not exist")
    if path.stat().st_size > MAX_CSV_BYTES:
        raise InputError("csv", f"{path} is larger than {MAX_CSV_BYTES >> 20} MiB")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for column in REQUIRED:
                if column not in header:
                    raise InputError(f"csv.{column}", f"{path} has no column {column!r} (columns: {', '.join(header)})")
            rows = []
            for row in reader:
                rows.append(row)
                if len(rows) > MAX_RUNS:
                    raise InputError("csv", f"{path} has more than {MAX_RUNS:,} runs")
                if progress and len(rows) % 10_000 == 0:
                    progress(len(rows))
    except csv.Error as e:
        raise InputError("csv", f"{path} is not a valid CSV: {e}") from None
    except UnicodeDecodeError as e:
        raise InputError("csv", f"{path} is not UTF-8 text (byte {e.start}): a binary file?") from None
    if not rows:
        raise InputError("csv", f"{path} has no runs")
    values: dict[str, list[float]] = {c: [] for c in (*REQUIRED, *ARCH_COLUMNS) if c in header}
    for line, row in enumerate(rows, start=2):
        for column in values:
            cell = row.get(column)
            text = (cell if isinstance(cell, str) else "").strip()
            if not text and column not in REQUIRED:
                values[column].append(math.nan)
                continue
            where = f"csv line {line}.{column}"
            try:
                v = float(text)
            except ValueError:
                raise InputError(where, f"not a number: {text[:40]!r}") from None
            values[column].append(number(v, where, low=0, open_low=column in REQUIRED, high=LIMITS.get(column)))
    names = tuple(row.get("name") or f"run{i}" for i, row in enumerate(rows))
    arch = {c: np.asarray(values[c]) for c in ARCH_COLUMNS if c in values}
    return Runs(np.asarray(values["n_params"]), np.asarray(values["n_tokens"]), np.asarray(values["loss"]), arch, names)


def runs_of(records: list[TrainingRun]) -> Runs:
    """Finished training runs as loss-law input (N = active non-embedding parameters, D = tokens)."""
    if not records:
        raise InputError("runs", "no finished training runs in the store: run `cobench train` (or give --csv)")
    arch = {c: np.asarray([float(getattr(r.arch, c) or 0) for r in records]) for c in ARCH_COLUMNS}
    return Runs(
        np.asarray([r.n_params for r in records], dtype=float),
        np.asarray([r.tokens for r in records], dtype=float),
        np.asarray([r.final_loss for r in records], dtype=float),
        arch,
        tuple(f"{r.arch_name}@{r.tokens}" for r in records),
    )


@dataclass(frozen=True)
class LawFits:
    """What `cobench fit` made: each law's fit with its store id, the runs it saw, and the figure."""

    fits: list[LawFit]
    ids: list[int]
    source: str  # "store" or the CSV's path
    figures: list[Path]

    def to_json(self) -> Any:
        found = [f.to_json() | {"id": i, "source": self.source} for f, i in zip(self.fits, self.ids, strict=True)]
        return found if len(found) > 1 else found[0]


def fit_laws(
    store: Store,
    names: list[str],
    csv_path: Path | None = None,
    heldout: float = 0.25,
    bootstrap: int = 200,
    seed: int = 0,
    figure: Path | None = None,
    plot: Callable[[list[LawFit], Runs, Runs, Path], list[Path]] | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> LawFits:
    """Fit every law named to the store's finished runs (or the CSV's), holding out a share for scoring;
    each fit is stored with the data the report re-plots. `progress(stage, done, total)`: rows read, then
    each law's bootstrap resamples."""
    for name in names:
        law(name)
    if bootstrap < 0:
        raise InputError("bootstrap", f"must be >= 0, got {bootstrap}")
    read = (lambda rows: progress("csv rows read", rows, None)) if progress else None
    runs = read_runs_csv(csv_path, read) if csv_path else runs_of(store.runs.find())
    fit_runs, held = split(runs, heldout, seed)
    fits = [
        fit_law(
            n,
            fit_runs,
            held,
            bootstrap,
            seed,
            (lambda d, t, n=n: progress(f"{n} bootstrap", d, t)) if progress else None,
        )
        for n in names
    ]
    source = str(csv_path) if csv_path else "store"
    data = {"fitted": fit_runs.to_json(), "heldout": held.to_json()}
    ids = [store.fits.put(f.law, source, f.to_json() | {"runs": list(runs.names), "data": data}) for f in fits]
    figures = plot(fits, fit_runs, held, figure) if figure and plot else []
    return LawFits(fits, ids, source, figures)
