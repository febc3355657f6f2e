"""How numbers read, for the terminal and the HTML report alike: one formatter per kind of quantity."""

from __future__ import annotations

import math

SI = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def si(value: float | None, unit: str = "", digits: int = 3) -> str:
    """1.23e9 → '1.23 G<unit>' — keeps tables readable across 12 orders of magnitude."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value == 0:
        return f"0 {unit}".strip()
    if math.isinf(value):
        return "∞"
    for scale, prefix in SI:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}".strip()
    return f"{value:.{digits}g} {unit}".strip()


def ms(seconds: float | None) -> str:
    """Seconds as '12.3 ms' below one second, else '1.23 s'; None as '—'."""
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def pct(x: float | None, signed: bool = True) -> str:
    """A percentage: signed for errors (+3.1%), unsigned for magnitudes (3.1%); None as '—'."""
    if x is None:
        return "—"
    return f"{x:+.1f}%" if signed else f"{x:.1f}%"


def mixers(n_layers: int, counts: dict[str, int], window: int | None, rank: int | None) -> str:
    """A layer pattern in a table cell: "full", "MLA r256", "22 w512 + 4 full" (sliding and global layers),
    "36 lin + 12 full", "10 conv + 6 full"."""
    n = {k: int(counts.get(k) or 0) for k in ("sliding", "linear", "conv")}
    global_ = n_layers - sum(n.values())
    kind = f"MLA r{rank}" if counts.get("mla") else "full"
    if not any(n.values()):
        return kind
    labels = {"sliding": f"w{window}", "linear": "lin", "conv": "conv"}
    return " + ".join([f"{v} {labels[k]}" for k, v in n.items() if v] + [f"{global_} {kind}"])
