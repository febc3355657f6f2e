"""Calibration, step 1 — the design matrix: every operator of every observation, for fitting the latency
model to what one device, backend and precision really measure.

Data: profiled models (their TTFT, and one decode step at each measured context) and kernel
microbenchmarks (each one operator of known class, FLOPs and bytes). Model: the roofline of
`cobench.predict.roofline` itself, so a calibration is nothing but a `RooflineParams` — per operator class a
compute and a memory efficiency and a per-operator overhead, and a step overhead per phase. The
efficiencies act through the roofline's max(), so a GEMM is priced by its bytes when skinny (decode) and
by its FLOPs when large (prefill); the per-operator overhead is the half-saturation of a size-dependent
efficiency (FLOPs/(η·peak) + o = FLOPs/(η_eff(F)·peak) with η_eff = η·F/(F + o·η·peak)), which is how
small operators stay latency-bound. Standalone kernels pay one call overhead of their own, fitted as a
nuisance parameter that a model's step does not inherit. Each observation has a working set (a pass's
weights and cache; a warm kernel's operands; a cold kernel none in cache), through which the cache tier
prices its memory terms: cold kernels pin the memory bandwidth, warm ones of growing footprint where the
cache ends and how much faster it is. A decode step pays its share of the refill after the prompt (by its place in
the generation, `roofline.refill_share`), which is how the fit finds `refill_reads`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture, as_arch_like
from cobench.arch.workload import Workload
from cobench.errors import InputError
from cobench.hardware.devices import DeviceSpec
from cobench.measure.kernels.results import KernelResult
from cobench.measure.kernels.suites import ELEMENT_BYTES
from cobench.measure.result import ProfileResult
from cobench.predict.latency_model import backend_counting
from cobench.predict.operators import OP_CLASSES, Counting, Op, attention_ops, release_ops
from cobench.predict.roofline import (
    OWN_BUFFERS,
    PHASES,
    RooflineParams,
    near_bytes,
    op_seconds,
    peak_flops,
    phase_ops,
    prompt_traffic,
    refill_share,
    working_set,
)

KERNEL_CLASS = {"gemm": "matmul", "attention": "attention", "gather": "gather"}  # the rest: element-wise
KERNEL_SHARE = 0.5  # all kernels together weigh half as much as all profiles
MODEL_SCALE = 0.05  # log-error scale of the model itself (≈ 5 %), against which repeatability is weighed
STEPS = (*PHASES, "kernel")  # index of the step/call overhead an observation pays


@dataclass(frozen=True)
class Profiled:
    """One profiled model, as calibration needs it: what ran, at which workload, and its medians."""

    arch: Architecture
    workload: Workload
    ttft_s: float
    tpot_s: float
    decode_s: dict[int, float]  # median of one decode step at each measured context
    key: str = ""
    repeatability: dict[str, float] = field(default_factory=dict)  # "ttft"/"tpot" → CV of its round medians

    def weight(self, metric: str) -> float:
        """How much this model's phase counts: inverse variance in log units, the fit's own scale against the
        measurement's repeatability, so a phase that moved 10 % between rounds counts a fifth of a steady one."""
        rep = self.repeatability.get(metric, 0.0)
        return MODEL_SCALE**2 / (MODEL_SCALE**2 + rep**2)

    @classmethod
    def of(cls, r: ProfileResult) -> Profiled:
        """A stored profile (status ok) as calibration data."""
        if r.measured is None:
            raise InputError("profiles", f"profile {r.key} ({r.arch_name}) has no measurement")
        m = r.measured
        return cls(r.arch, r.workload, m.ttft_s, m.tpot_s, dict(m.decode_s), r.key, dict(m.repeatability))


@dataclass(frozen=True)
class DesignMatrix:
    """Every operator of every observation, flattened, so one numpy pass prices them all."""

    obs: np.ndarray  # (M,) observation of each operator row
    op_class: np.ndarray  # (M,) index into OP_CLASSES
    weight: np.ndarray  # (M,) occurrences per call
    flops: np.ndarray  # (M,) per occurrence
    bytes: np.ndarray
    near_bytes: np.ndarray  # (M,) those found where their own size lets them sit (RooflineParams.op_bandwidth_factor;
    # none in a cold kernel)
    peak: np.ndarray  # (M,) FLOP/s ceiling of the row's class and precision
    launches: np.ndarray  # (M,) kernel launches per occurrence
    row_intensity: np.ndarray  # (M,) Op.row_intensity
    step: np.ndarray  # (N,) index into STEPS
    measured_s: np.ndarray  # (N,)
    fit_weight: np.ndarray  # (N,) weight of the observation's log residual
    working_set: np.ndarray  # (N,) bytes the observation finds again call after call (inf: cold)
    step_reads: np.ndarray  # (N,) the bytes of its working set the observation itself reads (a MoE: its experts)
    bandwidth: float
    own_buffer: np.ndarray  # (M,) rows of an OWN_BUFFERS class: the cache tier does not speed them
    evicting: np.ndarray  # (N,) a decode step's prompt's activation traffic (roofline.prompt_traffic)
    refill_share: np.ndarray  # (N,) the share of the refill a decode step pays (0: a prefill or a kernel)

    def classes_present(self) -> tuple[str, ...]:
        """The operator classes some observation runs (an op that does anything): those the data can fit; the
        others' parameters stay at the prior's centre."""
        working = (self.weight > 0) & ((self.flops > 0) | (self.bytes > 0))
        return tuple(OP_CLASSES[i] for i in np.unique(self.op_class[working]))

    def predict(self, params: RooflineParams, kernel_call_s: float) -> np.ndarray:
        eta_c = np.array([params.compute_efficiency[c] for c in OP_CLASSES])[self.op_class]
        eta_m = np.array([params.memory_efficiency[c] for c in OP_CLASSES])[self.op_class]
        over = np.array([params.op_overhead_s[c] for c in OP_CLASSES])[self.op_class]
        half = np.array([params.intensity_half[c] for c in OP_CLASSES])[self.op_class]
        tiered = params.op_bandwidth_factor(
            self.bytes, self.near_bytes, params.bandwidth_factor(self.working_set)[self.obs]
        )
        bandwidth = self.bandwidth * np.where(self.own_buffer, 1.0, tiered)
        _, _, t = op_seconds(
            self.flops, self.bytes, self.peak, bandwidth, eta_c, eta_m, over, half, self.launches, self.row_intensity
        )
        steps = np.array([params.step_overhead_s["prefill"], params.step_overhead_s["decode"], kernel_call_s])
        refill = np.zeros(len(self.step))
        after = self.refill_share > 0
        refill[after] = self.refill_share[after] * params.refill_s(
            self.working_set[after], self.step_reads[after], self.evicting[after], self.bandwidth
        )
        return np.bincount(self.obs, self.weight * t, minlength=len(self.step)) + steps[self.step] + refill


def _rows(ops: Sequence[Any], device: DeviceSpec, w: Workload) -> tuple[list[np.ndarray], ...]:
    """Flatten one call's operators; decode ops over S sampled contexts are averaged (weight count/S)."""
    cls, weight, flops, nbytes, near, peak, launches, rows = [], [], [], [], [], [], [], []
    for op in ops:
        shape = np.broadcast(op.count, op.flops, op.bytes, op.launches).shape
        n = int(np.prod(shape)) if shape else 1
        cls.append(np.full(n, OP_CLASSES.index(op.op_class)))
        weight.append(np.broadcast_to(op.count, shape).ravel() / n)
        flops.append(np.broadcast_to(op.flops, shape).ravel().astype(float))
        nbytes.append(np.broadcast_to(op.bytes, shape).ravel().astype(float))
        near.append(np.broadcast_to(near_bytes(op), shape).ravel().astype(float))
        peak.append(np.full(n, peak_flops(op.op_class, device, w)))
        launches.append(np.broadcast_to(op.launches, shape).ravel().astype(float))
        rows.append(np.broadcast_to(op.row_intensity, shape).ravel().astype(float))
    return cls, weight, flops, nbytes, near, peak, launches, rows


def kernel_ops(k: KernelResult, device: DeviceSpec) -> list[Op]:
    """A kernel as the operators that price it. An attention kernel is the operator model's attention as the
    backend ran it, by that backend's own counting: ORT's is its CPU GroupQueryAttention, which writes the scores
    to memory; torch's SDPA and TensorRT's fused attention keep them in the kernel."""
    if k.spec.kind != "attention":  # the buffer it sweeps is its working set (weights' place: not by its size)
        return [Op(k.spec.label, KERNEL_CLASS.get(k.spec.kind, "elementwise"), 1, k.flops, k.bytes, 0)]
    s, elem = k.spec.shape, ELEMENT_BYTES[k.spec.precision]
    b, h, q, kv, d = s["batch"], s["heads"], s["q"], s["kv"], s["head_dim"]
    counting = backend_counting(k.backend, device)
    return attention_ops(k.spec.label, 1, d, b * h * q * kv, 2 * b * h * q * d * elem, 2 * b * h * kv * d * elem,
                         elem, counting)  # fmt: skip


def build_design(
    profiled: Sequence[Profiled], kernels: Sequence[KernelResult], device: DeviceSpec, counting: Counting
) -> DesignMatrix:
    """Observations: each model's prefill and each measured decode step, then each kernel."""
    columns: list[list[np.ndarray]] = [[] for _ in range(9)]  # obs, class, weight, flops, bytes, near, peak,
    # launches, row intensity
    step, measured, group_weight, found_again, reads, evicting, refill_shares = [], [], [], [], [], [], []

    def add(
        ops: Sequence[Any],
        w: Workload,
        which: str,
        seconds: float,
        fit_weight: float,
        reused: float | None = None,
        refill: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        parts = _rows(ops, device, w)
        for column, cycled in ((found_again, True), (reads, False)):  # a kernel's buffer: both `reused`
            column.append(float(np.mean(working_set(ops, cycled))) if reused is None else reused)
        evicting.append(refill[0])
        refill_shares.append(refill[1])
        columns[0].append(np.full(sum(len(c) for c in parts[0]), len(step)))
        for column, part in zip(columns[1:], parts, strict=True):
            column.extend(part)
        step.append(STEPS.index(which))
        measured.append(seconds)
        group_weight.append(fit_weight)

    for p in profiled:
        batch = as_arch_like(p.arch)
        prefill = Workload(p.workload.batch, p.workload.prompt, 1, p.workload.precision, p.workload.kv_precision)
        prompt = phase_ops(batch, prefill, "prefill", counting)
        add(prompt, prefill, "prefill", p.ttft_s, p.weight("ttft"))
        traffic = float(np.sum(prompt_traffic(prompt)))
        released = release_ops(batch, p.workload, counting)  # paid by the first step after the prompt only
        for context, seconds in p.decode_s.items():
            w = replace(prefill, prompt=int(context))
            after = (traffic, float(refill_share(int(context) - p.workload.prompt)))
            first = released if int(context) == p.workload.prompt else []
            add(phase_ops(batch, w, "decode", counting) + first, w, "decode", seconds,
                p.weight("tpot") / len(p.decode_s), refill=after)  # fmt: skip
    profile_weight = float(sum(group_weight))  # kernels together weigh KERNEL_SHARE of this
    for k in kernels:
        w = Workload(precision=k.spec.precision)
        share = KERNEL_SHARE * (profile_weight or 2.0) / len(kernels)  # 2: kernels alone
        add(kernel_ops(k, device), w, "kernel", k.median_s, share, np.inf if k.cold else k.bytes)
    if not step:
        raise InputError("calibrate", "nothing to fit: no profiled models and no kernel results")
    cat = [np.concatenate(c) if c else np.zeros(0) for c in columns]
    return DesignMatrix(
        obs=cat[0].astype(np.int64),
        op_class=cat[1].astype(np.int64),
        weight=cat[2],
        flops=cat[3],
        bytes=cat[4],
        near_bytes=np.where(np.isinf(found_again)[cat[0].astype(np.int64)], 0.0, cat[5]),  # cold: all from memory
        peak=cat[6],
        launches=cat[7],
        row_intensity=cat[8],
        step=np.array(step),
        measured_s=np.array(measured),
        fit_weight=np.array(group_weight),
        working_set=np.array(found_again),
        step_reads=np.array(reads),
        bandwidth=device.bandwidth_bytes_s,
        own_buffer=np.isin(cat[1], [OP_CLASSES.index(c) for c in OWN_BUFFERS]),
        evicting=np.array(evicting),
        refill_share=np.array(refill_shares),
    )
