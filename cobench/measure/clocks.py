"""How one call is timed: the host clock (after the call has waited for its results) or CUDA events
on the current stream. Runners and kernels share these, so both read time the same way."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def time_host(fn: Callable[[], Any]) -> float:
    """Seconds by the host clock; for backends whose calls return only when their results are ready."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_cuda(fn: Callable[[], Any]) -> float:
    """Seconds of fn's work on the current CUDA stream, between two CUDA events (then synchronised)."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3
