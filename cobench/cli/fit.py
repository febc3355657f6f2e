"""`cobench fit`: fit loss laws to the stored training runs or to a CSV of the user's own runs."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from cobench.cli.common import JsonOpt, StoreOpt, app, handles_errors, open_store
from cobench.errors import InputError
from cobench.render import emit_json, err, out, table

REQUIRED = ("n_params", "n_tokens", "loss")


def read_runs_csv(path: Path) -> Any:
    """Runs from a CSV: n_params (non-embedding), n_tokens, loss, and optional architecture columns."""
    from cobench.loss_law import ARCH_COLUMNS, Runs

    if not path.is_file():
        raise InputError("csv", f"file {path} does not exist")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in REQUIRED:
            if column not in header:
                raise InputError(f"csv.{column}", f"{path} has no column {column!r} (columns: {', '.join(header)})")
        rows = list(reader)
    if not rows:
        raise InputError("csv", f"{path} has no runs")
    values: dict[str, list[float]] = {c: [] for c in (*REQUIRED, *ARCH_COLUMNS) if c in header}
    for line, row in enumerate(rows, start=2):
        for column in values:
            text = (row.get(column) or "").strip()
            if not text and column not in REQUIRED:
                values[column].append(math.nan)
                continue
            try:
                v = float(text)
            except ValueError:
                raise InputError(f"csv line {line}.{column}", f"not a number: {text!r}") from None
            if column in REQUIRED and not (v > 0 and math.isfinite(v)):
                raise InputError(f"csv line {line}.{column}", f"must be a positive number, got {text!r}")
            values[column].append(v)
    names = tuple(row.get("name") or f"run{i}" for i, row in enumerate(rows))
    arch = {c: np.asarray(values[c]) for c in ARCH_COLUMNS if c in values}
    return Runs(np.asarray(values["n_params"]), np.asarray(values["n_tokens"]), np.asarray(values["loss"]), arch, names)


def runs_from_store(rows: list[dict[str, Any]]) -> Any:
    from cobench.loss_law import ARCH_COLUMNS, Runs

    if not rows:
        raise InputError("runs", "no finished training runs in the store: run `cobench train` (or give --csv)")
    arch = {c: np.asarray([float(r["arch"][c] or 0) for r in rows]) for c in ARCH_COLUMNS}
    return Runs(
        np.asarray([r["n_params"] for r in rows], dtype=float),
        np.asarray([r["tokens"] for r in rows], dtype=float),
        np.asarray([r["final_loss"] for r in rows], dtype=float),
        arch,
        tuple(f"{r['arch_name']}@{r['tokens']}" for r in rows),
    )


@app.command("fit")
@handles_errors
def fit_cmd(
    law_names: Annotated[
        list[str] | None,
        typer.Option("--law", help="chinchilla, shape or codesign; repeatable to compare [default chinchilla]."),
    ] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Fit these runs instead of the store's.")] = None,
    heldout: Annotated[float, typer.Option("--heldout", help="Fraction of runs held out for validation.")] = 0.25,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples for the intervals.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Held-out split and bootstrap.")] = 0,
    figure: Annotated[
        Path | None, typer.Option("--plot", help="Observed vs predicted loss figure (path without suffix).")
    ] = Path("out/loss-law"),
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Fit loss laws (Huber on log loss, L-BFGS from a grid), bootstrap intervals, held-out R² and RMSE."""
    from cobench.loss_law import fit_law, law, split
    from cobench.loss_plot import plot

    names = law_names or ["chinchilla"]
    for name in names:
        law(name)
    if bootstrap < 0:
        raise InputError("bootstrap", f"must be >= 0, got {bootstrap}")
    with open_store(store) as db:
        runs = read_runs_csv(csv_path) if csv_path else runs_from_store(db.training_runs())
        fit_runs, held = split(runs, heldout, seed)
        fits = [fit_law(n, fit_runs, held, bootstrap, seed) for n in names]
        source = str(csv_path) if csv_path else "store"
        data = {"fitted": fit_runs.to_json(), "heldout": held.to_json()}  # what the report re-plots
        ids = [db.put_law_fit(f.law, source, f.to_json() | {"runs": list(runs.names), "data": data}) for f in fits]
    figures = [str(p) for p in plot(fits, fit_runs, held, figure)] if figure else []
    result = [f.to_json() | {"id": i, "source": source} for f, i in zip(fits, ids, strict=True)]
    if json_out:
        return emit_json(result if len(result) > 1 else result[0])
    for f, i in zip(fits, ids, strict=True):
        out.print(
            table(
                f"{f.law} law (fit #{i}; {f.n_fit} runs fitted, {f.n_heldout} held out)",
                ["parameter", "value", "95% bootstrap interval"],
                [
                    [p, f"{v:.4g}", f"{f.intervals[p][0]:.4g} … {f.intervals[p][1]:.4g}" if p in f.intervals else "—"]
                    for p, v in f.params.items()
                ],
                right={1, 2},
            )
        )
    out.print(
        table(
            "fit quality (loss in nats)",
            ["law", "R² fit", "RMSE fit", "R² held-out", "RMSE held-out", "max |err| held-out"],
            [
                [
                    f.law,
                    f"{f.fit_metrics['r2']:.3f}",
                    f"{f.fit_metrics['rmse']:.4f}",
                    f"{f.heldout_metrics['r2']:.3f}" if f.heldout_metrics else "—",
                    f"{f.heldout_metrics['rmse']:.4f}" if f.heldout_metrics else "—",
                    f"{f.heldout_metrics['max_abs']:.4f}" if f.heldout_metrics else "—",
                ]
                for f in fits
            ],
            right={1, 2, 3, 4, 5},
        )
    )
    if figures:
        err.print(f"wrote {', '.join(figures)}")
    return None
