"""The latency model a prediction uses: roofline parameters and counting conventions, and the
calibration they came from — and the rule that picks it (--raw > a calibration file > the store's newest
calibration for this device, mode, precision and backend > the device file's defaults)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cobench.errors import InputError
from cobench.files import read_mapping
from cobench.fit.calibration.record import Calibration
from cobench.hardware.devices import DeviceSpec
from cobench.predict.operators import Counting
from cobench.predict.roofline import RooflineParams

if TYPE_CHECKING:
    from cobench.store import Store


# How each backend computes a forward pass, as cobench runs it on a CPU. ORT runs the engine graph (fp32/fp16):
# GroupQueryAttention on a preallocated cache written in place, K/V shared across a group. Its CPU kernel
# (contrib_ops/cpu/bert/gqa_attention_base.h) is one op but not a fused kernel: per query head it GEMMs the
# whole S × T score matrix into an fp32 buffer (no causal skipping), softmaxes it in place and GEMMs it with V,
# so the scores are memory traffic; and it reads its group's K/V again for every query head. torch's eager
# module and TensorRT's engines run the exported graphs, which return past ++ new (the KV cache copied every
# step). ORT GenAI's builder graph runs the same GQA kernel on one shared buffer and computes every prompt
# position's logits, into a buffer it allocates for each prompt. llama.cpp keeps its cache in F16 (its default
# type_k/type_v, whatever the weights) and its CPU attention (ggml's flash_attn_ext) also walks the cache once
# per query head, one head's slice of rows that hold every KV head (a strided walk); its one-row matmuls are
# vec_dot, not the tinyBLAS GEMM of two rows or more, and so are its experts (ggml's CPU mul_mat_id has no GEMM
# path).
BACKEND_COUNTING = {
    "ort": Counting(causal=False, fused_attention=False, moe_loop=True, window_skip=False, kv_per_query_head=True),
    "torch": Counting(moe_loop=True, window_skip=False),
    "trt": Counting(causal=False, kv_update="concat", kv_expand=True, moe_loop=True, window_skip=False),
    "ort-genai": Counting(
        causal=False, fused_attention=False, logits="all", window_skip=False, fresh_logits=True, kv_per_query_head=True
    ),
    "llama.cpp": Counting(  # its own kernels, causal, the last logits, the last layer's FFN on the last row only,
        # one-row matmuls (a step's, a prompt's LM head) and the experts as vec_dot rows
        kv_per_query_head=True,
        strided_kv=True,
        kv_cache="fp16",
        last_layer_outputs=True,
        single_row_gemv=True,
        expert_rows=True,
    ),
}
# On a GPU, ORT's GroupQueryAttention runs flash / memory-efficient attention kernels: no score matrix in memory.
GPU_FUSED = ("ort", "ort-genai")


def backend_counting(backend: str | None, device: DeviceSpec) -> Counting:
    """The counting conventions of `backend` on the processor that runs `device`'s profiles."""
    counting = BACKEND_COUNTING.get(backend or "", Counting())
    if device.runner != "cuda":
        return counting
    # a GPU's kernels re-read a group's K/V from its L2, many times faster than memory: the compact cache counts;
    # a strided walk's cost was measured on a CPU only, so it is not priced on a GPU until a GPU profile shows one
    fused = counting.fused_attention or backend in GPU_FUSED
    return replace(counting, fused_attention=fused, kv_per_query_head=False, strided_kv=False)


@dataclass(frozen=True)
class LatencyModel:
    """What a prediction uses: parameters and counting conventions, and the calibration they came from."""

    params: RooflineParams
    counting: Counting
    calibration: Calibration | None = None

    @classmethod
    def of(cls, calibration: Calibration) -> LatencyModel:
        return cls(calibration.params, calibration.counting, calibration)

    def bounds(self, metric: str, predicted_s: Any) -> tuple[Any, Any] | None:
        return self.calibration.bounds(metric, predicted_s) if self.calibration else None

    def interval_fields(self, ttft_s: float, tpot_s: float) -> dict[str, list[float] | None]:
        """`ttft_interval_s` and `tpot_interval_s` of one prediction, as a record stores them (None: unknown)."""
        found = {m: self.bounds(m, v) for m, v in (("ttft", ttft_s), ("tpot", tpot_s))}
        return {f"{m}_interval_s": [float(x) for x in b] if b else None for m, b in found.items()}

    @property
    def describe(self) -> str:
        if not self.calibration:
            return f"uncalibrated roofline ({self.params.source}): error unknown until calibrated on this device"
        c = self.calibration
        iv = [f"{m.upper()} ×{v['low']:.3g}–{v['high']:.3g}" for m, v in c.intervals.items() if v]
        level = next((f"{v['level']:.0%}" for v in c.intervals.values() if v), "")
        return f"calibration {c.label}" + (f"; {level} prediction interval {', '.join(iv)}" if iv else "")


def resolve_model(
    store: Store | None,
    device: DeviceSpec,
    precision: str,
    backend: str | None = None,
    calibration_file: Path | None = None,
    raw: bool = False,
    uncalibrated: bool = False,
) -> LatencyModel:
    """The parameters a prediction uses: --raw > --calibration FILE > the store's newest calibration for this
    device, power mode, precision (and backend) > the device file's defaults."""
    counting = backend_counting(backend, device)
    if raw:
        return LatencyModel(RooflineParams.ideal(), counting)
    if calibration_file is not None:
        c = Calibration.from_json(read_mapping(calibration_file, "calibration"), where=str(calibration_file))
        if c.device != device.name or c.precision != precision:
            raise InputError(
                "calibration", f"{calibration_file} is for {c.device} {c.precision}, not {device.name} {precision}"
            )
        return LatencyModel.of(c)
    found = (
        None
        if uncalibrated or store is None
        else store.calibrations.newest(device.name, device.mode, precision, backend)
    )
    if found:
        return LatencyModel.of(found)
    return LatencyModel(RooflineParams.for_device(device), counting)
