"""Roofline latency predictor, vectorised over candidates: TTFT, TPOT, end-to-end, memory, fit.

Per operator: time = max(FLOPs / (η_c[class] · peak), bytes / (η_m[class] · bandwidth · g(W))) + overhead[class];
per forward pass a step overhead of its phase is added (engine launch, host sync, sampling). The η and
overheads are the parameters that calibration fits (`cobench.fit.calibration.design`); `RooflineParams.ideal()` is
the raw roofline (η = 1, no overhead).

g(W) is the cache tier: a forward pass streams its working set W (every weight it reads and the cache it
attends over) once per step, so when W fits the last cache level that a calibration found (C bytes, S×
faster than memory), step after step reads it from there. A CPU shows it plainly: 2 vCPUs of a Xeon read
45 GB/s up to ~96 MiB and 21 GB/s past 192 MiB, so a model calibrated on small models predicted ones past
the cache ~40 % too fast per token (docs/calibration.md). An operator's activations were written just before
it runs, so they are found by their own size, whatever W is: a 125 M-parameter model's norms and residuals run
from the cache while its weights stream from memory (priced by W, llama.cpp's prompt of MobileLLM-125M came
out +28 % slow).

The prompt's own traffic pushes that working set out of the cache, so the first decode steps after it read
what they would find cached from memory again (the refill): on llama.cpp and ORT GenAI on the Xeon VM, the first
three steps after a 512-token prompt took 5–22 % of a 16-token generation's decode time beyond the steady step
(docs/calibration.md). The refill is priced as `refill_reads` reads at memory speed of the cached part of what
one step reads (W's share that g(W) saves on), scaled by the share of the cache the prompt's activations evicted,
and spread over the steps by REFILL_DECAY. A step reads all of W but for a MoE, whose steps each read the experts
their tokens chose: llama.cpp's first steps after the prompt paid 0.25–0.4 of W's read for a MoE and ~1 for a
dense model, so pricing W overpredicted ho-moe-8x1's step by 16–29 % and tiny-moe-4l's by 12 %.

Phases: TTFT is the prefill of the prompt (which yields the first token). TPOT is the mean decode step
over the G − 1 further tokens, whose cached context grows from P to P + G − 2, plus the refill over those
steps and the first step's release of the prompt's freshly mapped logits (operators.release_ops); more than
`MAX_DECODE_SAMPLES` steps are sampled evenly (step time is piecewise linear in the context, so the mean of even
samples is exact up to rounding). End-to-end = TTFT + (G − 1) · TPOT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cobench.arch.architecture import (
    ArchBatch,
    Architecture,
    as_arch_like,
    cache_bytes,
    dense_ffn_width,
    linear_widths,
    qkv_width,
)
from cobench.arch.gguf_types import op_weight_bytes, weight_bytes
from cobench.arch.precision import PRECISIONS
from cobench.arch.workload import Workload
from cobench.hardware.devices import DeviceSpec
from cobench.predict.operators import LOGITS_BYTES, OP_CLASSES, Counting, Op, forward_ops, release_ops, stored_as

MAX_DECODE_SAMPLES = 64
PHASES = ("prefill", "decode")
DEFAULT_COMPUTE_EFFICIENCY = {
    "matmul": 0.7,
    "attention": 0.5,
    "elementwise": 0.5,
    "gather": 1.0,
    "kv": 1.0,
    "scores": 0.1,  # a softmax's exponentials are not the one FLOP each that the count gives them
    "fresh": 1.0,
    "release": 1.0,
    "walk": 1.0,
}
PRICED_AS = {"gemv": "matmul"}  # a class priced as another where nothing fitted it apart: a one-row matmul is a
# matmul until a backend that runs it with a kernel of its own (llama.cpp) is calibrated
DEFAULT_COMPUTE_EFFICIENCY |= {c: DEFAULT_COMPUTE_EFFICIENCY[of] for c, of in PRICED_AS.items()}
DEFAULT_MEMORY_EFFICIENCY = 0.8
DEFAULT_OP_OVERHEAD_US = 4.0
OWN_BUFFERS = ("fresh", "release")  # classes whose bytes are pages mapped afresh or given back: where the pass's
# working set sits does not speed them
REREADS = ("walk",)  # classes whose KV bytes re-read the cache the pass attends over: priced at its tier, not more
# of it
PASS_BUFFERS = ("scores",)  # activations found where the pass's working set is, not by their own size: ORT's CPU
# attention's score matrices, as large as the cache at long prompts (with them always outside the tier, the fit
# priced ORT's cold GQA kernels 40 % fast; by their own size, ORT GenAI's 2,048-token MQA prompt came out +31 %)
CACHE_SHARPNESS = 4.0  # k of the hit fraction 1 / (1 + (W/C)^k): fits a warm read sweep on a Xeon VM
REFILL_DECAY = 0.4  # share of the refill left after each decode step: llama.cpp's first steps after a 512-token
# prompt on the Xeon VM took 47–75 %, 20–37 % and 3–11 % of it


def priced_as(defaults: dict[str, float], given: Mapping[str, float]) -> dict[str, float]:
    """A per-class table: `given`, a class it lacks taking its PRICED_AS class's given value, else `defaults`."""
    return defaults | {c: given[of] for c, of in PRICED_AS.items() if of in given} | dict(given)


@dataclass(frozen=True)
class RooflineParams:
    """The latency model's free parameters, per operator class. Calibration replaces the defaults.

    Defaults: η_c matmul 0.7, attention 0.5, element-wise 0.5, gather, KV copies, scores and fresh memory 1; η_m 0.8;
    4 µs per operator launch; no step overhead — overridden by a device file's `roofline:` section (cited there).
    """

    compute_efficiency: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_COMPUTE_EFFICIENCY))
    memory_efficiency: Mapping[str, float] = field(
        default_factory=lambda: dict.fromkeys(OP_CLASSES, DEFAULT_MEMORY_EFFICIENCY)
    )
    op_overhead_s: Mapping[str, float] = field(
        default_factory=lambda: dict.fromkeys(OP_CLASSES, DEFAULT_OP_OVERHEAD_US * 1e-6)
    )
    step_overhead_s: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    source: str = "cobench defaults"
    # arithmetic intensity (FLOP/B) at which a class reaches half its compute efficiency: small,
    # low-intensity GEMMs run below the large ones' η (0: no such dependence)
    intensity_half: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(OP_CLASSES, 0.0))
    # the cache tier (see the module's docstring): a working set up to about cache_bytes is read
    # cache_speedup× faster than the bandwidth the efficiencies are relative to (0, 1: no tier)
    cache_bytes: float = 0.0
    cache_speedup: float = 1.0
    # the refill (see the module's docstring): how many reads at memory speed of what a decode step finds cached
    # the steps after a prefill take in all to find it cached again (0: none)
    refill_reads: float = 0.0

    def bandwidth_factor(self, working_set: Any) -> Any:
        """g(W): how much faster than memory a pass with this working set (bytes) reads, between 1 (far
        past the cache) and cache_speedup (well inside it), the hit fraction falling smoothly around C."""
        if self.cache_bytes <= 0 or self.cache_speedup == 1.0:
            return np.ones_like(np.asarray(working_set, dtype=np.float64))
        w = np.asarray(working_set, dtype=np.float64)
        hit = 1.0 / (1.0 + (w / self.cache_bytes) ** CACHE_SHARPNESS)
        return 1.0 / (hit / self.cache_speedup + 1.0 - hit)

    def op_bandwidth_factor(self, nbytes: Any, near: Any, far: Any) -> Any:
        """An operator's g: the weights and KV cache it reads sit where the pass's working set lets them (`far`,
        g of that working set, computed once per pass), but its activations (`near` of its bytes) where their own
        size does — a layer's activations were written just before, so a big model's weights streaming past do
        not push them out of the cache."""
        nbytes, near = np.asarray(nbytes, dtype=np.float64), np.asarray(near, dtype=np.float64)
        seconds = near / self.bandwidth_factor(near) + (nbytes - near) / far
        factor = np.broadcast_to(far, np.broadcast(nbytes, far).shape).copy()
        return np.divide(nbytes, seconds, out=factor, where=seconds > 0)

    def refill_s(self, working_set: Any, step_reads: Any, evicting: Any, bandwidth: float) -> Any:
        """The decode steps' extra time, all together, after a prefill whose activations streamed `evicting` bytes
        through the cache: the share of the cache they evicted (1 − e^(−A/C)) of the cached part (what g(W) saves)
        of the `step_reads` bytes of W a step reads, read again `refill_reads` times at memory speed."""
        w = np.asarray(working_set, dtype=np.float64)
        if self.refill_reads <= 0 or self.cache_bytes <= 0:
            return np.zeros_like(w)
        cached = np.asarray(step_reads, dtype=np.float64) * (1.0 - 1.0 / self.bandwidth_factor(w))
        evicted = -np.expm1(-np.asarray(evicting, dtype=np.float64) / self.cache_bytes)
        return self.refill_reads * evicted * cached / bandwidth

    @classmethod
    def ideal(cls) -> RooflineParams:
        """The raw roofline: datasheet ceilings, no overheads."""
        ones = dict.fromkeys(OP_CLASSES, 1.0)
        return cls(
            ones,
            dict(ones),
            dict.fromkeys(OP_CLASSES, 0.0),
            dict.fromkeys(PHASES, 0.0),
            "ideal roofline (datasheet peaks)",
        )

    @classmethod
    def for_device(cls, device: DeviceSpec) -> RooflineParams:
        """Defaults refined by the device file's cited measured fractions."""
        r = device.roofline
        if not r:
            return cls()
        compute = priced_as(DEFAULT_COMPUTE_EFFICIENCY, r.get("compute_efficiency") or {})
        memory = dict.fromkeys(OP_CLASSES, float(r.get("memory_efficiency", DEFAULT_MEMORY_EFFICIENCY)))
        overhead = dict.fromkeys(OP_CLASSES, float(r.get("op_overhead_us", DEFAULT_OP_OVERHEAD_US)) * 1e-6)
        step = dict.fromkeys(PHASES, float(r.get("step_overhead_us", 0.0)) * 1e-6)
        return cls(compute, memory, overhead, step, f"device defaults ({device.name}): {r.get('source', '')}")


@dataclass(frozen=True)
class OpTime:
    """An operator's roofline terms per occurrence (arrays broadcast like the op's sizes)."""

    op: Op
    compute_s: Any
    memory_s: Any
    time_s: Any  # max of the two plus overhead, per occurrence

    @property
    def total_s(self) -> Any:
        return self.op.count * self.time_s


def peak_flops(op_class: str, device: DeviceSpec, w: Workload) -> float:
    """The FLOP/s ceiling an operator of this class runs against at the workload's precision."""
    types = w.types
    if op_class in ("matmul", "gemv"):
        return device.peak_flops(types.matmul_peaks)
    if op_class == "attention":  # runs in the activation type, whatever the weights are
        return device.peak_flops(PRECISIONS["fp32" if types.act_bytes == 4 else "fp16"].matmul_peaks)
    return device.peak_flops(types.vector_peaks)


def op_seconds(
    flops: Any,
    nbytes: Any,
    peak: Any,
    bandwidth: Any,
    eta_compute: Any,
    eta_memory: Any,
    overhead_s: Any,
    intensity_half: Any = 0.0,
    launches: Any = 1,
    row_intensity: Any = np.inf,
) -> tuple[Any, Any, Any]:
    """(compute term, memory term, time) of one occurrence: the slower term plus the launch overheads of
    an operator that does anything. The compute efficiency saturates with arithmetic intensity I:
    η·I/(I + I½), I capped at `row_intensity` (Op.row_intensity). The one pricing formula: prediction and
    calibration both call it."""
    flops, nbytes = np.asarray(flops, dtype=np.float64), np.asarray(nbytes, dtype=np.float64)
    intensity = np.divide(flops, nbytes, out=np.full(np.broadcast(flops, nbytes).shape, np.inf), where=nbytes > 0)
    intensity = np.minimum(intensity, row_intensity)
    saturation = np.divide(
        intensity,
        intensity + intensity_half,
        out=np.ones_like(intensity),
        where=np.isfinite(intensity) & (intensity > 0),
    )
    compute = np.divide(flops, eta_compute * peak * saturation, out=np.zeros_like(intensity), where=flops > 0)
    memory = nbytes / (eta_memory * bandwidth)
    present = (flops > 0) | (nbytes > 0)
    return compute, memory, np.maximum(compute, memory) + overhead_s * launches * present


def near_bytes(op: Op) -> Any:
    """The bytes of `op` found where their own size lets them sit: its activations, but for the classes in
    PASS_BUFFERS."""
    return 0.0 if op.op_class in PASS_BUFFERS else op.act_bytes


def refill_share(step: Any) -> Any:
    """The share of the refill that decode step `step` (0: the first after the prompt) pays."""
    return (1.0 - REFILL_DECAY) * REFILL_DECAY ** np.asarray(step, dtype=np.float64)


def prompt_traffic(ops: Sequence[Op]) -> Any:
    """The activation bytes a prefill streams through the cache (what evicts the decode's working set)."""
    return sum(op.count * op.act_bytes for op in ops)


def prompt_refill_s(
    ops: Mapping[str, list[Op]], device: DeviceSpec, params: RooflineParams, found_again: Any = None
) -> np.ndarray:
    """The refill the decode steps after this prompt pay, all together (N,): `RooflineParams.refill_s` of the
    steps' working set (`found_again`, if the caller has it), what of it a step reads (both the mean over the
    contexts sampled) and the prompt's activation traffic."""
    found = working_set(ops["decode"]) if found_again is None else found_again
    reread, step = (np.mean(np.atleast_2d(x), axis=-1) for x in (found, working_set(ops["decode"], cycled=False)))
    return params.refill_s(reread, step, prompt_traffic(ops["prefill"]), device.bandwidth_bytes_s)


def working_set(ops: Sequence[Op], cycled: bool = True) -> Any:
    """The bytes a forward pass must find again on later steps: every weight it reads (a MoE's steps: every
    expert, which they cycle through; `cycled=False`: the experts one step reads) and the cache it attends over
    (per candidate, and per sampled context in decode)."""
    return sum(
        op.count * (op.weight_bytes * (op.resident if cycled else 1) + op.kv_bytes * (op.op_class not in REREADS))
        for op in ops
    )


def time_ops(
    ops: list[Op], device: DeviceSpec, w: Workload, params: RooflineParams, found_again: Any = None
) -> list[OpTime]:
    """Each operator's roofline terms; `found_again` is the pass's working set, if the caller has it."""
    timed = []
    far = params.bandwidth_factor(working_set(ops) if found_again is None else found_again)
    for op in ops:
        c = op.op_class
        tiered = device.bandwidth_bytes_s * params.op_bandwidth_factor(op.bytes, near_bytes(op), far)
        terms = op_seconds(
            op.flops,
            op.bytes,
            peak_flops(c, device, w),
            device.bandwidth_bytes_s if c in OWN_BUFFERS else tiered,
            params.compute_efficiency[c],
            params.memory_efficiency[c],
            params.op_overhead_s[c],
            params.intensity_half[c],
            op.launches,
            op.row_intensity,
        )
        timed.append(OpTime(op, *terms))
    return timed


def decode_contexts(w: Workload) -> np.ndarray:
    """Cached context of each decode step after the prompt (sampled when there are many)."""
    steps = max(w.generate - 1, 1)
    if steps <= MAX_DECODE_SAMPLES:
        return w.prompt + np.arange(steps, dtype=np.float64)
    return np.linspace(w.prompt, w.prompt + steps - 1, MAX_DECODE_SAMPLES)


def phase_ops(a: ArchBatch, w: Workload, phase: str, counting: Counting) -> list[Op]:
    """Prefill: (N,) arrays. Decode: (N, S) arrays over the sampled decode contexts."""
    t, kvb = w.types, counting.kv_element_bytes(w.kv_bytes)
    if phase == "prefill":
        ops = forward_ops(a, w.batch, w.prompt, 0, t.weight_bytes, t.act_bytes, kvb, counting)
        return stored_as(ops, t.weight_bytes, op_weight_bytes(a, w.precision))
    column = ArchBatch(**{k: v[:, None] for k, v in a.__dict__.items()})
    past = decode_contexts(w)[None, :]
    ops = forward_ops(column, w.batch, 1, past, t.weight_bytes, t.act_bytes, kvb, counting)
    return stored_as(ops, t.weight_bytes, op_weight_bytes(column, w.precision))


@dataclass(frozen=True)
class PhaseTotals:
    time_s: np.ndarray
    compute_s: np.ndarray  # Σ count · compute term: > memory_s means the phase is compute-bound
    memory_s: np.ndarray
    flops: np.ndarray
    bytes: np.ndarray
    compute_bound_s: np.ndarray  # time spent in operators whose compute term dominates
    step_overhead_s: float

    @property
    def compute_bound(self) -> np.ndarray:
        """Compute-bound when most of the operator time is in compute-bound operators.

        (Not Σ compute vs Σ memory: one large memory-bound op, e.g. the LM head, must not hide that the
        layers' GEMMs dominate.)
        """
        return self.compute_bound_s > 0.5 * (self.time_s - self.step_overhead_s)


def _totals(timed: list[OpTime], params: RooflineParams, phase: str) -> PhaseTotals:
    def phase_sum(values: list[Any]) -> np.ndarray:
        s = np.asarray(sum(values), dtype=np.float64)
        return s.mean(axis=-1) if phase == "decode" else s

    step = params.step_overhead_s[phase]
    return PhaseTotals(
        time_s=phase_sum([t.total_s for t in timed]) + step,
        compute_bound_s=phase_sum([t.total_s * (t.compute_s > t.memory_s) for t in timed]),
        step_overhead_s=step,
        compute_s=phase_sum([t.op.count * t.compute_s for t in timed]),
        memory_s=phase_sum([t.op.count * t.memory_s for t in timed]),
        flops=phase_sum([t.op.count * t.op.flops for t in timed]),
        bytes=phase_sum([t.op.count * t.op.bytes for t in timed]),
    )


@dataclass(frozen=True)
class Prediction:
    """Predicted latencies (seconds) and memory (bytes) for N candidates at one workload."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray  # the decode phase's mean step plus tpot_refill_s and tpot_release_s
    tpot_refill_s: np.ndarray  # the refill after the prompt, per generated token
    tpot_release_s: np.ndarray  # the first step's release of the prompt's fresh logits, per generated token
    e2e_s: np.ndarray
    prefill: PhaseTotals
    decode: PhaseTotals
    weight_bytes: np.ndarray
    kv_cache_bytes: np.ndarray
    activation_bytes: np.ndarray
    peak_memory_bytes: np.ndarray
    fits: np.ndarray
    params_source: str


def memory_footprint(a: ArchBatch, w: Workload, counting: Counting) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resident weights (all experts), the cache and recurrent state at full context (by layer kind: a
    window caps what a sliding layer keeps, MLA keeps the latent, linear and convolution layers a fixed
    state), and the largest prefill transient."""
    t = w.types
    weights = weight_bytes(a, w.precision)
    kv = w.batch * cache_bytes(a, w.context, counting.kv_element_bytes(w.kv_bytes))
    gated = np.where(a.gated, 2, 1)
    key, value = linear_widths(a)
    widest = np.maximum.reduce(
        [
            qkv_width(a),
            gated * a.d_ff * ((a.n_experts == 0) | (a.n_dense_layers > 0)),  # where a layer has the dense FFN
            gated * dense_ffn_width(a),
            a.top_k * gated * a.d_ff_expert,
            a.n_heads * (a.qk_nope_head_dim + a.v_head_dim) * (a.n_mla > 0),
            (2 * key + 2 * value) * (a.n_linear > 0),
            3 * a.d_model * (a.n_conv > 0),
        ]
    )
    rows = w.batch * w.prompt
    scores = 0 if counting.fused_attention else w.batch * a.n_heads * w.prompt**2 * t.act_bytes
    logits = counting.logit_rows(w.batch, w.prompt) * a.vocab_size * LOGITS_BYTES
    activations = rows * (2 * a.d_model + widest) * t.act_bytes + scores + logits
    return weights, kv, activations


def predict(
    arch: Architecture | ArchBatch,
    device: DeviceSpec,
    workload: Workload,
    params: RooflineParams | None = None,
    counting: Counting | None = None,
) -> Prediction:
    """Predict every candidate at once; pass an ArchBatch for sweeps (no Python loop over candidates)."""
    a = as_arch_like(arch)
    assert isinstance(a, ArchBatch)
    params = params or RooflineParams.for_device(device)
    counting = counting or Counting()
    ops = {phase: phase_ops(a, workload, phase, counting) for phase in PHASES}
    found = {p: working_set(ops[p]) for p in PHASES}  # once per phase: the tier and the refill both need it
    prefill, decode = (_totals(time_ops(ops[p], device, workload, params, found[p]), params, p) for p in PHASES)
    steps = max(workload.generate - 1, 1)
    refill = (
        prompt_refill_s(ops, device, params, found["decode"]) * float(np.sum(refill_share(np.arange(steps)))) / steps
    )
    released = time_ops(release_ops(a, workload, counting), device, workload, params)
    release = np.asarray(sum(t.total_s for t in released), dtype=np.float64) / steps
    tpot = decode.time_s + refill + release
    weights, kv, acts = memory_footprint(a, workload, counting)
    peak = weights + kv + acts
    return Prediction(
        ttft_s=prefill.time_s,
        tpot_s=tpot,
        tpot_refill_s=refill,
        tpot_release_s=release,
        e2e_s=prefill.time_s + (workload.generate - 1) * tpot,
        prefill=prefill,
        decode=decode,
        weight_bytes=np.asarray(weights, dtype=np.float64),
        kv_cache_bytes=np.asarray(kv, dtype=np.float64),
        activation_bytes=np.asarray(acts, dtype=np.float64),
        peak_memory_bytes=np.asarray(peak, dtype=np.float64),
        fits=peak <= device.usable_memory_bytes,
        params_source=params.source,
    )


def scalar(x: Any) -> float:
    """One candidate's op quantity as a float: decode arrays hold one value per sampled context (mean)."""
    return float(np.mean(x))


@dataclass(frozen=True)
class OpRow:
    """One line of the per-operator breakdown of a single candidate (decode: mean over the steps)."""

    phase: str
    name: str
    op_class: str
    count: int
    flops: float
    bytes: float
    weight_bytes: float
    kv_bytes: float
    intensity: float  # FLOPs per byte
    bound: str
    time_s: float  # all occurrences
    share: float  # of the phase time


def breakdown(
    arch: Architecture,
    device: DeviceSpec,
    workload: Workload,
    params: RooflineParams | None = None,
    counting: Counting | None = None,
) -> list[OpRow]:
    """Per-operator table for one architecture, both phases, totals over layers."""
    a = as_arch_like(arch)
    assert isinstance(a, ArchBatch)
    params = params or RooflineParams.for_device(device)
    counting = counting or Counting()
    rows: list[OpRow] = []
    for phase in PHASES:
        timed = time_ops(phase_ops(a, workload, phase, counting), device, workload, params)

        phase_time = sum(scalar(t.total_s) for t in timed)
        for t in timed:
            count = int(scalar(t.op.count))
            flops, nbytes = scalar(t.op.flops) * count, scalar(t.op.bytes) * count
            if flops == 0 and nbytes == 0:
                continue
            rows.append(
                OpRow(
                    phase,
                    t.op.name,
                    t.op.op_class,
                    count,
                    flops,
                    nbytes,
                    scalar(t.op.weight_bytes) * count,
                    scalar(t.op.kv_bytes) * count,
                    flops / nbytes if nbytes else float("inf"),
                    "compute" if scalar(t.compute_s) > scalar(t.memory_s) else "memory",
                    scalar(t.total_s),
                    scalar(t.total_s) / phase_time if phase_time else 0.0,
                )
            )
    return rows
