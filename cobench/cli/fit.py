"""`cobench fit`: fit loss laws to the stored training runs or to a CSV of the user's own runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cobench.cli.app import app, handles_errors
from cobench.cli.options import STORE_DEFAULT, JsonOpt, StoreOpt
from cobench.cli.render import Ticker, emit_json, err, out, table
from cobench.store import Store


@app.command("fit")
@handles_errors
def fit_cmd(
    law_names: Annotated[
        list[str] | None,
        typer.Option(
            "--law",
            metavar="LAW",
            help="chinchilla, shape, codesign, paper or paper-transfer (the co-design paper's law, from its "
            "published coefficients); repeatable to compare [default: chinchilla].",
        ),
    ] = None,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", metavar="FILE", help="Fit these runs instead of the store's.")
    ] = None,
    heldout: Annotated[
        float, typer.Option("--heldout", metavar="FRACTION", help="Share of runs held out for validation.")
    ] = 0.25,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", metavar="N", help="Bootstrap resamples for the intervals.")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Held-out split and bootstrap.")] = 0,
    figure: Annotated[
        Path | None,
        typer.Option("--plot", metavar="PATH", help="Observed vs predicted loss figure (path without suffix)."),
    ] = Path("out/loss-law"),
    store: StoreOpt = STORE_DEFAULT,
    json_out: JsonOpt = False,
) -> None:
    """Fit loss laws (Huber on log loss, L-BFGS from a grid), bootstrap intervals, held-out R² and RMSE."""
    from cobench.fit.runs import fit_laws
    from cobench.report.figures.loss_law import plot

    tickers: dict[str, Ticker] = {}  # a fit of many runs takes minutes: say so on stderr, also under --json

    def progress(stage: str, done: int, total: int | None) -> None:
        tickers.setdefault(stage, Ticker(f"fit: {stage}", "", every_s=5.0))(done, total)

    with Store(store) as db:
        result = fit_laws(db, law_names or ["chinchilla"], csv_path, heldout, bootstrap, seed, figure, plot, progress)
    if json_out:
        return emit_json(result)
    for f, i in zip(result.fits, result.ids, strict=True):
        rows = [
            [p, f"{v:.4g}", f"{f.intervals[p][0]:.4g} … {f.intervals[p][1]:.4g}" if p in f.intervals else "—"]
            for p, v in f.params.items()
        ]
        title = f"{f.law} law (fit #{i}; {f.n_fit} runs fitted, {f.n_heldout} held out)"
        out.print(table(title, ["parameter", "value", "95% bootstrap interval"], rows, right={1, 2}))
    held = lambda f, k, spec: format(f.heldout_metrics[k], spec) if f.heldout_metrics else "—"  # noqa: E731
    rows = [
        [f.law, f"{f.fit_metrics['r2']:.3f}", f"{f.fit_metrics['rmse']:.4f}", held(f, "r2", ".3f"),
         held(f, "rmse", ".4f"), held(f, "max_abs", ".4f")]
        for f in result.fits
    ]  # fmt: skip
    columns = ["law", "R² fit", "RMSE fit", "R² held-out", "RMSE held-out", "max |err| held-out"]
    out.print(table("fit quality (loss in nats)", columns, rows, right={1, 2, 3, 4, 5}))
    if result.figures:
        err.print(f"wrote {', '.join(str(f) for f in result.figures)}")
    return None
