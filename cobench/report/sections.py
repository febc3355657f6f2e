"""The report's sections, each drawn from what the store holds; each says what to run when it holds nothing."""

from __future__ import annotations

import json

import numpy as np

from cobench.measure.result import ProfileResult
from cobench.report.format import ms, pct
from cobench.report.page import Page, escape, table
from cobench.store import Store


def environment(page: Page, profiles: list[ProfileResult]) -> None:
    ok = [p for p in profiles if p.environment]
    if not ok:
        page.section("Device and environment", '<p class="note">No profiles yet: run `cobench profile`.</p>')
        return
    env = ok[-1].environment or {}
    flat = []
    for key, value in env.items():
        if isinstance(value, dict):
            flat += [[f"{key}.{k}", json.dumps(v) if isinstance(v, (dict, list)) else v] for k, v in value.items()]
        else:
            flat.append([key, value])
    devices = sorted({p.device + (f"@{p.power_mode}" if p.power_mode else "") for p in profiles})
    page.section(
        "Device and environment",
        f"<p>Devices profiled: {escape(', '.join(devices))}.</p><details><summary>Environment of the latest "
        f"profile ({len(flat[:60])} items)</summary>" + table(["item", "value"], flat[:60]) + "</details>",
    )


def roofline(page: Page, store: Store) -> None:
    from cobench.errors import CobenchError
    from cobench.hardware.devices import get_device
    from cobench.measure.kernels.results import ceilings
    from cobench.report.figures.roofline import plot

    names = store.kernels.device_names()
    if not names:
        page.section("Empirical roofline", '<p class="note">No kernel results: run `cobench kernels run`.</p>')
        return
    body = ""
    for name in names:
        try:
            device = get_device(name)
        except CobenchError:
            continue
        results = store.kernels.find(name)
        c = ceilings(results)
        body += page.figure(
            f"roofline-{name}",
            f"{name}: {len(results)} kernels; measured ceilings "
            + ", ".join(f"{p} {v / 1e9:.3g} GFLOP/s" for p, v in c.flops_per_s.items())
            + (f", {c.bytes_per_s / 1e9:.3g} GB/s" if c.bytes_per_s else ""),
            lambda target, device=device, results=results, c=c: plot(device, results, c, target),
        )
    page.section("Empirical roofline", body)


def profiled(page: Page, profiles: list[ProfileResult]) -> None:
    if not profiles:
        page.section("Profiled candidates", '<p class="note">No profiles: run `cobench profile`.</p>')
        return
    rows = []
    for p in profiles:
        m, pred = p.measured, p.predicted
        ci = m.ttft_ci_s if m else None
        ci_text = f" ({ci[0] * 1e3:.3g}–{ci[1] * 1e3:.3g})" if ci else ""
        rows.append([
            p.arch_name, p.device, p.backend, p.precision, p.workload.prompt, p.status,
            ms(pred.get("ttft_s")), ms(m.ttft_s if m else None) + ci_text,
            pct(p.error_pct("ttft")), ms(pred.get("tpot_s")), ms(m.tpot_s if m else None), pct(p.error_pct("tpot")),
            f"{m.energy_per_token_j:.3g} J" if m and m.energy_per_token_j else "—",
            pred.get("calibration") or "uncalibrated", m.flags if m else (p.reason or "")[:80],
        ])  # fmt: skip
    page.section(
        "Profiled candidates: predicted vs measured",
        '<p class="note">Measured = median (95 % CI of the median for TTFT); error = predicted / measured − 1; '
        "the prediction is the model stored with the profile (calibrated or not).</p>"
        + table(
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


def calibrations(page: Page, store: Store) -> None:
    from cobench.fit.calibration.validation import error_rows
    from cobench.report.figures import errors
    from cobench.report.figures.calibration import plot

    latest = store.calibrations.latest_each()
    if not latest:
        page.section("Calibration", '<p class="note">No calibration: run `cobench calibrate`.</p>')
        return
    parts = ""
    for c in latest:
        rows = error_rows(c.report)
        intervals = "; ".join(
            f"{m.upper()} ×{iv['low']:.3g}–{iv['high']:.3g} ({iv['level']:.0%})" for m, iv in c.intervals.items() if iv
        )
        parts += f"<h3>{escape(c.label)}</h3><p>Prediction intervals: {escape(intervals or '—')}.</p>"
        parts += table(["", "model", "MAPE", "median |err|", "max |err|", "±5 %", "±10 %"], rows, {2, 3, 4, 5, 6})
        name = f"calibration-{c.device}-{c.backend}-{c.precision}"
        parts += page.figure(
            name, f"{c.label}: parity (raw and cross-validated) and learning curve", lambda t, c=c: plot(c, t)
        )
        parts += page.figure(f"{name}-errors", f"{c.label}: cross-validated errors", lambda t, c=c: errors.plot(c, t))
    page.section("Calibration", parts)


def telemetry(page: Page, store: Store, profiles: list[ProfileResult], limit: int) -> None:
    from cobench.report.figures import telemetry as figure

    chosen = [p for p in profiles if p.status == "ok"][-limit:] if limit else []
    series = [(p.arch_name, phase, s) for p in chosen for phase, s in store.profiles.telemetry(p.key).items()]
    if not series:
        page.section("Telemetry", '<p class="note">No telemetry stored: profile with `--telemetry auto`.</p>')
        return
    caption = f"telemetry of the last {len(chosen)} profiled candidates ({series[0][2]['source']} source), per phase"
    page.section("Telemetry", page.figure("telemetry", caption, lambda target: figure.plot(series, target)))


def laws(page: Page, store: Store) -> None:
    from cobench.fit.loss_law import LawFit, Runs
    from cobench.report.figures.loss_law import plot

    fits = [(LawFit.from_json(body), body) for body in store.fits.newest_each() if "data" in body]
    if not fits:
        page.section("Loss law", '<p class="note">No loss-law fit: run `cobench train` and `cobench fit`.</p>')
        return
    rows = [[f.law, f"{f.fit_metrics['r2']:.3f}", f"{f.fit_metrics['rmse']:.4f}",
             f"{f.heldout_metrics['r2']:.3f}" if f.heldout_metrics else "—",
             f"{f.heldout_metrics['rmse']:.4f}" if f.heldout_metrics else "—",
             ", ".join(f"{k}={v:.4g}" for k, v in f.params.items())] for f, _ in fits]  # fmt: skip
    data = fits[-1][1]["data"]
    fitted, held = Runs.from_json(data["fitted"]), Runs.from_json(data["heldout"])
    body = table(["law", "R² fit", "RMSE fit", "R² held-out", "RMSE held-out", "parameters"], rows, {1, 2, 3, 4})
    body += page.figure("loss-law", "observed vs predicted final loss; held-out runs in red",
                        lambda t: plot([f for f, _ in fits], fitted, held, t))  # fmt: skip
    page.section("Loss law", body)


def pareto(page: Page, store: Store) -> None:
    from cobench.report.figures.pareto import plot

    analyses = store.analyses.newest("pareto")
    if not analyses:
        page.section("Pareto frontier", '<p class="note">No Pareto analysis: run `cobench pareto`.</p>')
        return
    body = ""
    for a in analyses:
        pts = a["points"]
        budgets = {k: v for k, v in a["budgets"].items() if v is not None}
        ref = a.get("reference")
        body += (
            f"<p>{escape(a['device'])}: {a['candidates']:,} candidates of {escape(a['space'])}, "
            f"{a['feasible']:,} feasible "
            f"(budgets: {escape(budgets or 'none')}); frontier of {len(a['frontier'])}; "
            f"latency: {escape(a['latency_model'])}.</p>"
        )
        front = a["frontier"]  # fastest first; the last is the lowest loss within the budgets
        if front:
            pick = front[-1]
            name = pick.get("name") or pick.get("arch") or f"candidate {pick.get('grid_index', '')}"
            body += (
                f"<p><b>Recommended within the budgets: {escape(name)}</b> (lowest predicted loss on the "
                f"feasible frontier); the frontier, fastest first:</p>"
            )
            columns = list(front[0])[:12]
            cells = [[f"{r.get(c):.4g}" if isinstance(r.get(c), float) else r.get(c) for c in columns] for r in front]
            body += table(columns, cells[:12] + (cells[-1:] if len(cells) > 12 else []))
        if ref and ref.get("best"):
            body += (
                f"<p>Reference {escape(ref['arch'])}: {ms(ref['latency_s'])}, loss {ref['loss']:.4f}; "
                f"best candidate no slower: {ms(ref['best']['latency_s'])}, loss {ref['best']['loss']:.4f} "
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
