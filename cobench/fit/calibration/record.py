"""The calibration record: a fitted latency model with its evidence, as stored and as written to JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cobench.errors import InputError
from cobench.predict.operators import OP_CLASSES, Counting
from cobench.predict.roofline import PHASES, RooflineParams, priced_as
from cobench.validate import mapping, number, text

SCHEMA = 1
ADDED_CLASSES = ("scores", "fresh", "gemv", "release", "walk")  # operator classes newer than schema 1: absent from
# older calibrations


@dataclass(frozen=True)
class Calibration:
    """A fitted latency model for one device (and power mode), backend and precision, with its evidence."""

    device: str
    power_mode: str | None
    backend: str
    precision: str
    params: RooflineParams
    counting: Counting
    intervals: dict[str, dict[str, float] | None]  # "ttft" / "tpot" → {level, low, high, n}
    report: dict[str, Any] = field(default_factory=dict)
    version: int | None = None

    @property
    def label(self) -> str:
        mode = f"@{self.power_mode}" if self.power_mode else ""
        v = f" v{self.version}" if self.version else ""
        return f"{self.device}{mode} {self.backend} {self.precision}{v}"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "device": self.device,
            "power_mode": self.power_mode,
            "backend": self.backend,
            "precision": self.precision,
            "version": self.version,
            "params": asdict(self.params),
            "counting": asdict(self.counting),
            "intervals": self.intervals,
            "report": self.report,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "calibration") -> Calibration:
        """A stored or user-given calibration, every number checked: a fitted model with a negative overhead
        or a NaN efficiency would predict nonsense without a word."""
        if data.get("schema") != SCHEMA:
            raise InputError(f"{where}.schema", f"expected calibration schema {SCHEMA}, got {data.get('schema')!r}")
        missing = [k for k in ("device", "backend", "precision", "params", "counting", "intervals") if k not in data]
        if missing:
            raise InputError(f"{where}.{missing[0]}", "required field is missing (not a cobench calibration?)")
        p = mapping(data["params"], f"{where}.params")
        at = f"{where}.params"
        half = p.get("intensity_half") or dict.fromkeys(OP_CLASSES, 0.0)  # absent before v0.4
        d = RooflineParams()  # what a class added since a calibration was fitted takes (its counting has none)

        def classes(name: str, bounds: tuple[float, float], table: Any = None) -> dict[str, float]:
            given = p.get(name) if table is None else table
            if isinstance(given, dict):  # an added class fitted then as part of another takes that one's value
                given = priced_as({c: getattr(d, name)[c] for c in ADDED_CLASSES}, given)
            return _table(given, f"{at}.{name}", OP_CLASSES, bounds)

        params = RooflineParams(
            classes("compute_efficiency", EFFICIENCY),
            classes("memory_efficiency", EFFICIENCY),
            classes("op_overhead_s", (0.0, 1.0)),
            _table(p.get("step_overhead_s"), f"{at}.step_overhead_s", PHASES, (0.0, 10.0)),
            text(p.get("source"), f"{at}.source", 1000),
            classes("intensity_half", (0.0, 1e9), half),
            # the cache tier is absent in older calibrations
            float(number(p.get("cache_bytes", 0.0), f"{at}.cache_bytes", low=0, high=1e13)),
            float(number(p.get("cache_speedup", 1.0), f"{at}.cache_speedup", low=1, high=1e3)),
            float(number(p.get("refill_reads", 0.0), f"{at}.refill_reads", low=0, high=1e3)),  # absent in older ones
        )
        intervals = mapping(data["intervals"], f"{where}.intervals")
        for metric, iv in intervals.items():
            if iv is not None:
                iv = mapping(iv, f"{where}.intervals.{metric}")
                low = number(iv.get("low"), f"{where}.intervals.{metric}.low", low=0, open_low=True, high=1e6)
                number(iv.get("high"), f"{where}.intervals.{metric}.high", low=low, high=1e6)
        version = data.get("version")
        return cls(
            text(data["device"], f"{where}.device"),
            None if data.get("power_mode") is None else text(data["power_mode"], f"{where}.power_mode"),
            text(data["backend"], f"{where}.backend"),
            text(data["precision"], f"{where}.precision"),
            params,
            Counting.from_json(data["counting"], f"{where}.counting"),
            intervals,
            mapping(data.get("report") or {}, f"{where}.report"),
            None if version is None else number(version, f"{where}.version", integer=True, low=1),
        )

    def bounds(self, metric: str, predicted_s: Any) -> tuple[Any, Any] | None:
        """The prediction interval around a predicted TTFT ("ttft") or TPOT ("tpot"), or None if unknown."""
        iv = self.intervals.get(metric)
        if not iv:
            return None
        return np.asarray(predicted_s) * iv["low"], np.asarray(predicted_s) * iv["high"]


EFFICIENCY = (0.0, 1e3)  # fitted fractions of the device file's peaks (a placeholder peak can be exceeded)


def _table(data: Any, where: str, keys: tuple[str, ...], bounds: tuple[float, float]) -> dict[str, float]:
    """One number per key (op class or phase), each finite within bounds; efficiencies above zero."""
    table = mapping(data, where)
    missing = [k for k in keys if k not in table]
    if missing:
        raise InputError(f"{where}.{missing[0]}", "required field is missing")
    positive = bounds is EFFICIENCY
    return {k: float(number(table[k], f"{where}.{k}", low=bounds[0], open_low=positive, high=bounds[1])) for k in keys}
