"""`cobench report`: one self-contained HTML page (figures inlined as SVG, no network) plus the PNG/SVG
files, built from the store: device and environment, the empirical roofline, profiled candidates
(predicted vs measured), calibrations, telemetry, loss-law fits and the Pareto frontier.

Every section is drawn from what the store holds and says what to run when it holds nothing. A small
script at the end of the page checks that every figure rendered, and records the result on <body> —
which is what the browser test reads.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from cobench import __version__
from cobench.figures import pyplot, save
from cobench.profile import error_pct
from cobench.store import Store

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;font-size:.82rem;margin:.6rem 0}td,th{border:1px solid #ddd;padding:.2rem .45rem}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}.note{color:#666;font-size:.85rem}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#555}
.bad{color:#b00}
"""
CHECK = """
<script>
window.addEventListener('load', () => {
  const figs = [...document.querySelectorAll('figure.fig')];
  const ok = figs.filter(f => { const s = f.querySelector('svg'); if (!s) return false;
    const b = s.getBoundingClientRect(); return b.width > 50 && b.height > 50; });
  document.body.dataset.figures = String(figs.length);
  document.body.dataset.rendered = String(ok.length);
  document.body.dataset.check = (figs.length > 0 && ok.length === figs.length) ? 'ok' : 'missing';
});
</script>
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _table(columns: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_e(v)}</td>' if numeric and i in numeric else f"<td>{_e(v)}</td>" for i, v in enumerate(r)
        )
        + "</tr>"  # fmt: skip
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _ms(s: float | None) -> str:
    return "—" if s is None else f"{s * 1e3:.3g} ms"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:+.1f} %"


class Page:
    """Collects sections and figures; each figure is written as PNG + SVG and the SVG inlined."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.parts: list[str] = []
        self.figures: list[Path] = []

    def section(self, title: str, body: str) -> None:
        self.parts.append(f"<h2>{_e(title)}</h2>{body}")

    def figure(self, name: str, caption: str, draw: Callable[[Path], list[Path]]) -> str:
        paths = draw(self.out / "figures" / name)
        self.figures += paths
        svg = next(p for p in paths if p.suffix == ".svg").read_text()
        svg = svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG takes the element only
        return f'<figure class="fig" id="fig-{_e(name)}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'

    def html(self, title: str) -> str:
        body = "".join(self.parts)
        return (
            f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{_e(title)}</h1>{body}{CHECK}</body></html>"
        )


def build(store: Store, out: Path, telemetry_runs: int = 2) -> tuple[Path, list[Path]]:
    """Write out/report.html and out/figures/*; return the page and the figure files."""
    out.mkdir(parents=True, exist_ok=True)
    page = Page(out)
    summary = store.summary()
    rows = summary["rows"]
    page.parts.append(
        f'<p class="note">cobench {__version__}; store {_e(store.path)} (schema v{summary["schema_version"]}); '
        f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}. Counts: "
        + ", ".join(f"{_e(k)} {v:,}" for k, v in rows.items() if v)
        + "</p>"
    )
    profiles = [p for p in store.profiles() if p["status"] in ("ok", "failed", "refused")]
    _environment(page, profiles)
    _roofline(page, store)
    _profiles(page, profiles)
    _calibrations(page, store)
    _telemetry(page, store, profiles, telemetry_runs)
    _laws(page, store)
    _pareto(page, store)
    target = out / "report.html"
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(page.html("cobench report"))
    tmp.replace(target)
    return target, page.figures


def _environment(page: Page, profiles: list[dict[str, Any]]) -> None:
    ok = [p for p in profiles if p.get("environment")]
    if not ok:
        page.section("Device and environment", '<p class="note">No profiles yet: run `cobench profile`.</p>')
        return
    env = ok[-1]["environment"]
    flat = []
    for key, value in env.items():
        if isinstance(value, dict):
            flat += [[f"{key}.{k}", json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in value.items()]
        else:
            flat.append([key, value])
    devices = sorted({f"{p['device']}" + (f"@{p['power_mode']}" if p["power_mode"] else "") for p in profiles})
    page.section(
        "Device and environment",
        f"<p>Devices profiled: {_e(', '.join(devices))}. Environment of the latest profile:</p>"
        + _table(["item", "value"], flat[:60]),
    )


def _roofline(page: Page, store: Store) -> None:
    from cobench.devices import get_device
    from cobench.errors import CobenchError
    from cobench.kernels import ceilings, from_row
    from cobench.roofline_plot import plot

    names = [
        r[0]
        for r in store.db.execute("SELECT DISTINCT d.name FROM kernel_results k JOIN devices d ON d.id = k.device_id")
    ]
    if not names:
        page.section("Empirical roofline", '<p class="note">No kernel results: run `cobench kernels run`.</p>')
        return
    body = ""
    for name in names:
        try:
            device = get_device(name)
        except CobenchError:
            continue
        results = [from_row(r) for r in store.kernels(name)]
        c = ceilings(results)
        body += page.figure(
            f"roofline-{name}",
            f"{name}: {len(results)} kernels; measured ceilings "
            + ", ".join(f"{p} {v / 1e9:.3g} GFLOP/s" for p, v in c.flops_per_s.items())
            + (f", {c.bytes_per_s / 1e9:.3g} GB/s" if c.bytes_per_s else ""),
            lambda target, device=device, results=results, c=c: plot(device, results, c, target),
        )
    page.section("Empirical roofline", body)


def _profiles(page: Page, profiles: list[dict[str, Any]]) -> None:
    if not profiles:
        page.section("Profiled candidates", '<p class="note">No profiles: run `cobench profile`.</p>')
        return
    rows = []
    for p in profiles:
        m, pred = p.get("summary") or {}, p["predicted"] or {}
        flags = ([f"noisy: {', '.join(m['noisy'])}"] if m.get("noisy") else []) + (
            ["THROTTLED"] if m.get("throttled") else []
        )
        err = {k: error_pct(pred.get(f"{k}_s"), m.get(f"{k}_s")) for k in ("ttft", "tpot")}
        ci = m.get("ttft_ci_s")
        rows.append([
            p["arch_name"], p["device"], p["backend"], p["precision"], p["workload"]["prompt"], p["status"],
            _ms(pred.get("ttft_s")), _ms(m.get("ttft_s")) + (f" ({ci[0] * 1e3:.3g}–{ci[1] * 1e3:.3g})" if ci else ""),
            _pct(err["ttft"]), _ms(pred.get("tpot_s")), _ms(m.get("tpot_s")), _pct(err["tpot"]),
            f"{m['energy_per_token_j']:.3g} J" if m.get("energy_per_token_j") else "—",
            pred.get("calibration") or "uncalibrated", "; ".join(flags) or (p["reason"] or "")[:80],
        ])  # fmt: skip
    page.section(
        "Profiled candidates: predicted vs measured",
        '<p class="note">Measured = median (95 % CI of the median for TTFT); error = predicted / measured − 1; '
        "the prediction is the model stored with the profile (calibrated or not).</p>"
        + _table(
            [
                "arch",
                "device",
                "backend",
                "prec",
                "P",
                "status",
                "TTFT pred",
                "TTFT meas",
                "err",
                "TPOT pred",
                "TPOT meas",
                "err",
                "energy/token",
                "predicted by",
                "flags",
            ],
            rows,
            {4, 6, 7, 8, 9, 10, 11, 12},
        ),  # fmt: skip
    )


def _calibrations(page: Page, store: Store) -> None:
    from cobench.calibration import Calibration, error_rows
    from cobench.calibration_plot import plot

    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    for body in store.calibrations():
        latest[(body["device"], body["power_mode"] or "", body["backend"], body["precision"])] = body
    if not latest:
        page.section("Calibration", '<p class="note">No calibration: run `cobench calibrate`.</p>')
        return
    parts = ""
    for body in latest.values():
        c = Calibration.from_json(body)
        rows = error_rows(c.report)
        intervals = "; ".join(
            f"{m.upper()} ×{iv['low']:.3g}–{iv['high']:.3g} ({iv['level']:.0%})" for m, iv in c.intervals.items() if iv
        )
        parts += f"<h3>{_e(c.label)}</h3><p>Prediction intervals: {_e(intervals or '—')}.</p>"
        parts += _table(["", "model", "MAPE", "median |err|", "max |err|", "±5 %", "±10 %"], rows, {2, 3, 4, 5, 6})
        name = f"calibration-{c.device}-{c.backend}-{c.precision}"
        parts += page.figure(
            name, f"{c.label}: parity (raw and cross-validated) and learning curve", lambda t, c=c: plot(c, t)
        )
        parts += page.figure(
            f"{name}-errors", f"{c.label}: cross-validated errors", lambda t, c=c: _error_histogram(c, t)
        )
    page.section("Calibration", parts)


def _error_histogram(c: Any, out: Path) -> list[Path]:
    fig, ax = pyplot().subplots(figsize=(6, 3.4), dpi=110)
    rows = c.report["per_model"]
    for metric, colour in (("ttft", "tab:blue"), ("tpot", "tab:orange")):
        values = [r[f"cv_{metric}_error"] * 100 for r in rows]
        ax.hist(values, bins=12, alpha=0.6, color=colour, label=f"{metric.upper()} (n={len(values)})")
    ax.axvspan(-5, 5, color="tab:green", alpha=0.1, label="±5 %")
    ax.set_xlabel("cross-validated error (%)")
    ax.set_ylabel("models")
    ax.legend(fontsize=7)
    return save(fig, out)


def _telemetry(page: Page, store: Store, profiles: list[dict[str, Any]], limit: int) -> None:
    keys = [p["key"] for p in profiles if p["status"] == "ok"][-limit:]
    series = []
    for key in keys:
        for phase, text in store.db.execute("SELECT phase, series_json FROM telemetry WHERE profile_key = ?", (key,)):
            series.append((next(p["arch_name"] for p in profiles if p["key"] == key), phase, json.loads(text)))
    if not series:
        page.section("Telemetry", '<p class="note">No telemetry stored: profile with `--telemetry auto`.</p>')
        return

    def draw(target: Path) -> list[Path]:
        keys_ = sorted({k for _, _, s in series for k in s["values"] if k not in ("energy_mj", "throttle_mask")})[:4]
        fig, axes = pyplot().subplots(
            len(keys_), 1, figsize=(9, 1.9 * len(keys_) + 0.6), dpi=110, sharex=True, squeeze=False
        )
        for ax, key in zip(axes[:, 0], keys_, strict=True):
            for arch, phase, s in series:
                if key in s["values"] and s["t_s"]:
                    t = np.asarray(s["t_s"]) - s["t_s"][0]
                    ax.plot(t, np.asarray(s["values"][key], dtype=float), lw=1, label=f"{arch} {phase}")
            ax.set_ylabel(key, fontsize=8)
            ax.grid(True, alpha=0.25)
        axes[0, 0].legend(fontsize=6, ncol=2)
        axes[-1, 0].set_xlabel("time in phase (s)")
        return save(fig, target)

    caption = f"telemetry of the last {len(keys)} profiled candidates ({series[0][2]['source']} source), per phase"
    page.section("Telemetry", page.figure("telemetry", caption, draw))


def _laws(page: Page, store: Store) -> None:
    from cobench.loss_law import LawFit, Runs
    from cobench.loss_plot import plot

    fits = []
    for row in store.db.execute(
        "SELECT body_json FROM law_fits WHERE id IN (SELECT MAX(id) FROM law_fits GROUP BY law)"
    ):
        body = json.loads(row[0])
        if "data" in body:
            fits.append((LawFit.from_json(body), body))
    if not fits:
        page.section("Loss law", '<p class="note">No loss-law fit: run `cobench train` and `cobench fit`.</p>')
        return
    rows = [[f.law, f"{f.fit_metrics['r2']:.3f}", f"{f.fit_metrics['rmse']:.4f}",
             f"{f.heldout_metrics['r2']:.3f}" if f.heldout_metrics else "—",
             f"{f.heldout_metrics['rmse']:.4f}" if f.heldout_metrics else "—",
             ", ".join(f"{k}={v:.4g}" for k, v in f.params.items())] for f, _ in fits]  # fmt: skip
    data = fits[-1][1]["data"]
    fitted, held = Runs.from_json(data["fitted"]), Runs.from_json(data["heldout"])
    body = _table(["law", "R² fit", "RMSE fit", "R² held-out", "RMSE held-out", "parameters"], rows, {1, 2, 3, 4})
    body += page.figure("loss-law", "observed vs predicted final loss; held-out runs in red",
                        lambda t: plot([f for f, _ in fits], fitted, held, t))  # fmt: skip
    page.section("Loss law", body)


def _pareto(page: Page, store: Store) -> None:
    from cobench.pareto_plot import plot

    analyses = store.analyses("pareto")
    if not analyses:
        page.section("Pareto frontier", '<p class="note">No Pareto analysis: run `cobench pareto`.</p>')
        return
    body = ""
    for a in analyses:
        pts = a["points"]
        budgets = {k: v for k, v in a["budgets"].items() if v is not None}
        ref = a.get("reference")
        body += (
            f"<p>{_e(a['device'])}: {a['candidates']:,} candidates of {_e(a['space'])}, {a['feasible']:,} feasible "
            f"(budgets: {_e(budgets or 'none')}); frontier of {len(a['frontier'])}; "
            f"latency: {_e(a['latency_model'])}.</p>"
        )
        if ref and ref.get("best"):
            body += (
                f"<p>Reference {_e(ref['arch'])}: {_ms(ref['latency_s'])}, loss {ref['loss']:.4f}; "
                f"best candidate no slower: {_ms(ref['best']['latency_s'])}, loss {ref['best']['loss']:.4f} "
                f"({ref['loss_change']:+.4f} nats).</p>"
            )
        latency, loss = np.asarray(pts["latency_s"]), np.asarray(pts["loss"])
        feasible = np.asarray(pts["feasible"], dtype=bool)
        body += page.figure(
            f"pareto-{a['device']}",
            a["title"],
            lambda t, a=a, x=latency, y=loss, f=feasible: plot(
                x, y, f, a["front"], a["budgets"], a.get("reference"), a["metric"], a["title"], t
            ),
        )
    page.section("Pareto frontier", body)
