"""Timing one kernel on a backend, cold by default: rotate through copies of the operands totalling more
than twice the last-level cache, so no call finds its operands cached.

On a GPU one event pair spans a sweep of many rotated calls (and for torch the sweep is replayed as a CUDA
graph), so the per-call time is the kernel's, not Python's launch overhead; on an H200's 50+ MB L2 a small
kernel needs thousands of copies to be cold, so the GPU's rotation is sized by the L2, not capped at the
256 copies that suffice for a CPU's caches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.precision import PRECISIONS
from cobench.errors import InputError
from cobench.hardware.devices import DeviceSpec
from cobench.measure.clocks import time_cuda, time_host
from cobench.measure.kernels.backend_torch import last_level_cache_bytes, native_precisions, torch_calls
from cobench.measure.kernels.results import KernelResult
from cobench.measure.kernels.suites import ELEMENT_BYTES, KernelSpec, cost, load_suites
from cobench.measure.runners.ort_session import ORT_DEFAULT_THREADS
from cobench.measure.stats import summarize
from cobench.measure.timing import HarnessConfig, run
from cobench.records import content_id
from cobench.store import Store

KERNEL_BACKENDS = ("torch", "ort", "trt")
KERNEL_HARNESS = HarnessConfig(warmup_s=0.2, min_iters=10, min_time_s=0.3, max_time_s=2.0, target_rel_ci=0.01)
MAX_COPIES = {"host": 256, "cuda": 1 << 16}  # the rotation's length (cold: > 2x the last-level cache)
CALLS_PER_EVENT = 256  # GPU: rotated calls between one pair of CUDA events


def rotation(operand_bytes: int, cache_bytes: int, clock: str) -> int:
    """Copies of the operands whose total exceeds twice the cache (one more for the one in flight)."""
    copies = int(np.ceil(2 * cache_bytes / max(operand_bytes, 1))) + 1
    return max(1, min(copies, MAX_COPIES[clock]))


def sweep(
    calls: list[Callable[[], Any]], per_sample: int, timer: Callable[[Callable[[], Any]], float]
) -> Callable[[], float]:
    """A sample: the next `per_sample` calls of the rotation under one timer call, per call."""
    state = {"i": 0}

    def step() -> float:
        start = state["i"]
        state["i"] += per_sample
        chunk = [calls[j % len(calls)] for j in range(start, start + per_sample)]
        return timer(lambda: [fn() for fn in chunk]) / per_sample

    return step


def graphed(calls: list[Callable[[], Any]], per_sample: int) -> list[Callable[[], Any]] | None:
    """The rotation as CUDA graphs of `per_sample` calls each (one replay per sample): no Python between
    kernels. None when the calls cannot be captured (then they are launched eagerly)."""
    import torch

    try:
        graphs = []
        for start in range(0, len(calls), per_sample):
            chunk = calls[start : start + per_sample]
            for fn in chunk:  # warm up outside capture (workspaces, autotuning)
                fn()
            torch.cuda.synchronize()
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                for fn in chunk:
                    fn()
            graphs.append(g.replay)
        return graphs
    except RuntimeError:
        return None


ORT_ATTENTION = "GroupQueryAttention"  # ORT's attention kernel: the engine graph's op (was MatMul-Softmax-MatMul)


def run_kernel(
    spec: KernelSpec,
    device: str = "cpu",
    cold: bool = True,
    cfg: HarnessConfig = KERNEL_HARNESS,
    cache_bytes: int | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> KernelResult:
    """Time one kernel on torch, ORT (CPU, on `threads` intra-op threads if given) or TensorRT; cold (unless the
    kernel's suite is warm): rotate through copies of the operands totalling > 2x the last-level cache, so no
    call finds its operands cached."""
    cold = spec.timed_cold(cold)
    if backend in ("ort", "trt"):
        from cobench.measure.kernels.backend_onnx import ort_calls, trt_calls

        operand_bytes, make_call = ort_calls(spec, threads) if backend == "ort" else trt_calls(spec)
    else:
        operand_bytes, make_call = torch_calls(spec, device)
    flops, nbytes = cost(spec.kind, spec.shape, ELEMENT_BYTES[spec.precision])
    clock = "cuda" if backend == "trt" or (device == "cuda" and backend == "torch") else "host"
    copies = rotation(operand_bytes, cache_bytes or last_level_cache_bytes(device), clock) if cold else 1
    calls = [make_call(i) for i in range(copies)]
    how: dict[str, Any] = {"copies": copies, "calls_per_sample": 1, "cuda_graph": False}
    if clock == "host":
        step = sweep(calls, 1, time_host)
    else:
        per_sample = min(CALLS_PER_EVENT, max(copies, 16))
        chunks = -(-copies // per_sample)
        sequence = [calls[j % copies] for j in range(chunks * per_sample)]  # whole chunks of the rotation
        replays = graphed(sequence, per_sample) if backend == "torch" else None
        how |= {"calls_per_sample": per_sample, "cuda_graph": replays is not None}
        if replays is None:
            step = sweep(sequence, per_sample, time_cuda)
        else:
            replay = sweep(replays, 1, time_cuda)
            step = lambda: replay() / per_sample  # noqa: E731  (each graph holds per_sample calls)
    samples = run(step, cfg)
    summary = summarize(samples.samples_s)
    return KernelResult(spec, flops, nbytes, summary.median_s, asdict(summary) | how, cold, backend, device)


@dataclass(frozen=True)
class KernelRun:
    """What `cobench kernels run` did: the device's stored results of the suites and backend asked for
    (measured now or reused), and the precisions skipped as emulated on this runner device."""

    device: DeviceSpec
    runner_device: str
    cold: bool
    llc_bytes: int
    results: list[KernelResult]
    skipped_precisions: list[str]

    def fraction_of_spec(self, r: KernelResult) -> float:
        """Attained FLOP/s or bytes/s over the device file's peak, whichever is the larger share."""
        peak = self.device.peak_flops(PRECISIONS[r.spec.precision].matmul_peaks)
        return max(r.flops_per_s / peak, r.bytes_per_s / self.device.bandwidth_bytes_s)

    def to_json(self) -> list[dict[str, Any]]:
        return [
            r.to_json()
            | {"flops_per_s": r.flops_per_s, "bytes_per_s": r.bytes_per_s, "fraction_of_spec": self.fraction_of_spec(r)}
            for r in self.results
        ]


def runner_device_of(backend: str, runner_device: str | None, device: DeviceSpec) -> str:
    """Where a backend's kernels run: ORT kernels on its CPU provider, TensorRT on CUDA, torch where asked."""
    where = {"ort": "cpu", "trt": "cuda"}.get(backend) or runner_device or device.runner
    if runner_device and runner_device != where:
        raise InputError("runner_device", f"{backend} kernels run on {where} (other GPUs/CPUs: --backend torch)")
    if where != device.runner:  # e.g. ORT's CPU kernels stored as an H100's ceilings
        raise InputError(
            "device",
            f"{backend} kernels run on the {where}, but {device.name} is a {device.kind}: its ceilings would be"
            f" the {where}'s (use --backend torch or trt for a GPU, or -d cpu)",
        )
    return where


def ort_runtime(threads: int | None) -> dict[str, Any]:
    """What an ORT kernel ran on, for its record: the onnxruntime it loaded and its intra-op threads, which an
    engine's profiles are matched against before its calibration takes the kernel (fit/calibration)."""
    import importlib.metadata as md

    return {"onnxruntime": md.version("onnxruntime"), "intra_op_threads": threads or ORT_DEFAULT_THREADS}


def run_kernels(
    device: DeviceSpec,
    backend: str,
    store: Store,
    suites: list[str] | None = None,
    runner_device: str | None = None,
    cold: bool = True,
    precisions: list[str] | None = None,
    force: bool = False,
    space: Path | None = None,
    max_time_s: float = KERNEL_HARNESS.max_time_s,
    kernels_path: list[Path] | None = None,
    progress: Callable[[int, int, KernelResult], None] | None = None,
    threads: int | None = None,
) -> KernelRun:
    """Time every kernel of the suites (and a space's shapes) not stored yet for this device, backend,
    runner device, cache state and thread count; only the precisions this runner device runs natively unless
    asked. `threads` (ORT only): its intra-op threads, as an engine that runs ORT's kernels inside it sets them."""
    from cobench.measure.kernels.backend_onnx import ONNX_KINDS
    from cobench.measure.runners import check_available

    if backend not in KERNEL_BACKENDS:
        raise InputError("backend", f"kernel suites run on {', '.join(KERNEL_BACKENDS)}, not {backend!r}")
    if threads is not None and (backend != "ort" or isinstance(threads, bool) or threads < 1):
        raise InputError("threads", f"a positive thread count for ort kernels, got {threads!r} for {backend}")
    where = runner_device_of(backend, runner_device, device)
    check_available(backend, where)
    wanted = precisions or sorted(native_precisions(where))
    every = load_suites(suites, kernels_path, space)
    if backend != "torch":
        every = [s for s in every if s.kind in ONNX_KINDS and s.precision != "bf16"]
    specs = [s for s in every if s.precision in wanted]
    if not specs:
        raise InputError("precision", f"no kernel of the chosen suites runs in {', '.join(wanted)}")
    if not max_time_s > 0:
        raise InputError("max_time_s", f"must be positive, got {max_time_s}")
    cfg = replace(KERNEL_HARNESS, max_time_s=max_time_s, min_time_s=min(KERNEL_HARNESS.min_time_s, max_time_s))
    llc = last_level_cache_bytes(where)
    runtime = ort_runtime(threads) if backend == "ort" else {}
    device_id = store.catalog.put_device(device)
    for i, spec in enumerate(specs, 1):
        method = [ORT_ATTENTION] if backend == "ort" and spec.kind == "attention" else []  # older graph: not reused
        method += [f"threads={threads}"] if threads else []  # ORT's default keeps the keys it always had
        key = content_id([device_id, backend, where, spec.key_fields(), spec.timed_cold(cold), *method])
        if store.kernels.has(key) and not force:
            continue
        r = run_kernel(spec, where, cold=cold, cfg=cfg, cache_bytes=llc, backend=backend, threads=threads)
        r = replace(r, key=key, environment={"llc_bytes": llc} | runtime)
        store.kernels.put(r, device_id)
        if progress:
            progress(i, len(specs), r)
    names = {s.suite for s in specs}
    stored = [r for r in store.kernels.find(device.name, backend=backend) if r.spec.suite in names]
    skipped = sorted({s.precision for s in every} - set(wanted))
    return KernelRun(device, where, cold, llc, stored, skipped)
