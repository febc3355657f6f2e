"""The report page: sections and figures, each figure written as PNG + SVG and the SVG inlined.

`cobench report`: one self-contained HTML page (figures inlined as SVG, no network) plus the PNG/SVG
files, built from the store: device and environment, the empirical roofline, profiled candidates
(predicted vs measured), calibrations, telemetry, loss-law fits and the Pareto frontier.

Every section is drawn from what the store holds and says what to run when it holds nothing. A small
script at the end of the page checks that every figure rendered, and records the result on <body> —
which is what the browser test reads.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def escape(x: Any) -> str:
    return html.escape(str(x))


def table(columns: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{escape(v)}</td>' if numeric and i in numeric else f"<td>{escape(v)}</td>"
            for i, v in enumerate(r)
        )
        + "</tr>"  # fmt: skip
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class Page:
    """Collects sections and figures; each figure is written as PNG + SVG and the SVG inlined."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.parts: list[str] = []
        self.figures: list[Path] = []

    def section(self, title: str, body: str) -> None:
        self.parts.append(f"<h2>{escape(title)}</h2>{body}")

    def figure(self, name: str, caption: str, draw: Callable[[Path], list[Path]]) -> str:
        paths = draw(self.out / "figures" / name)
        self.figures += paths
        svg = next(p for p in paths if p.suffix == ".svg").read_text()
        svg = svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG takes the element only
        return f'<figure class="fig" id="fig-{escape(name)}">{svg}<figcaption>{escape(caption)}</figcaption></figure>'

    def html(self, title: str) -> str:
        body = "".join(self.parts)
        return (
            f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}{CHECK}</body></html>"
        )
