"""`cobench report`: the whole page, section by section, from the store."""

from __future__ import annotations

import time
from pathlib import Path

from cobench import __version__
from cobench.errors import InputError
from cobench.files import write_atomic
from cobench.report import sections
from cobench.report.page import Page, escape
from cobench.store import Store


def build(store: Store, out: Path, telemetry_runs: int = 2) -> tuple[Path, list[Path]]:
    """Write out/report.html and out/figures/*; return the page and the figure files."""
    if telemetry_runs < 0:
        raise InputError("telemetry_runs", f"must be >= 0, got {telemetry_runs}")
    if out.exists() and not out.is_dir():
        raise InputError("out", f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    page = Page(out)
    summary = store.summary()
    rows = summary["rows"]
    page.parts.append(
        f'<p class="note">cobench {__version__}; store {escape(store.path)} (schema v{summary["schema_version"]}); '
        f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}. Counts: "
        + ", ".join(f"{escape(k)} {v:,}" for k, v in rows.items() if v)
        + "</p>"
    )
    profiles = [p for p in store.profiles.find() if p.status in ("ok", "failed", "refused")]
    # the answer first (the frontier and the pick at the budgets), then how sure (calibration error and
    # intervals, the profiles' repeatability), then the evidence; the environment last, folded
    sections.pareto(page, store)
    sections.calibrations(page, store)
    sections.profiled(page, profiles)
    sections.laws(page, store)
    sections.roofline(page, store)
    sections.telemetry(page, store, profiles, telemetry_runs)
    sections.environment(page, profiles)
    return write_atomic(out / "report.html", page.html("cobench report")), page.figures
