"""Checks for the values in users' files: each failure is one line naming the field and the problem.

Numbers must be numbers (not strings, lists or booleans), finite, within the range that is physically
meaningful for the field; computing with anything else gives negative latencies, NULL rows or numpy
overflows far from the file that caused them.
"""

from __future__ import annotations

import math
from typing import Any

from cobench.errors import InputError


def show(value: Any) -> str:
    """A value as the error quotes it: repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def number(
    value: Any, field: str, *, integer: bool = False, low: float | None = None, high: float | None = None,
    open_low: bool = False,
) -> Any:  # fmt: skip
    """`value` as an int or float within [low, high] (low excluded with open_low), or an InputError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(field, f"expected {'an integer' if integer else 'a number'}, got {show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(field, f"must be finite, got {value}")
    if integer:
        if value != int(value):
            raise InputError(field, f"expected an integer, got {show(value)}")
        value = int(value)
    if low is not None and (value < low or (open_low and value == low)):
        raise InputError(field, f"must be {'>' if open_low else '≥'} {low:g}, got {show(value)}")
    if high is not None and value > high:
        raise InputError(field, f"must be ≤ {high:g}, got {show(value)}")
    return value


def mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(field, f"expected a mapping, got {show(value)}")
    return value


def sequence(value: Any, field: str, max_len: int = 100_000) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(field, f"expected a list, got {show(value)}")
    if len(value) > max_len:
        raise InputError(field, f"at most {max_len:,} entries, got {len(value):,}")
    return value


def text(value: Any, field: str, max_len: int = 200) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(field, f"expected a non-empty string, got {show(value)}")
    if len(value) > max_len:
        raise InputError(field, f"at most {max_len} characters, got {len(value)}")
    return value
