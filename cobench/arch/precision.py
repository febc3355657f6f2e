"""Numeric precisions: storage bytes per element and which device peak a matmul in them runs at.

Conventions (stated once, used by operators, roofline and memory footprint alike):
- fp32/fp16/bf16: weights, activations and compute in that type.
- fp8/int8: W8A8 — weights and activations 1 byte, matmuls on the 8-bit tensor-core peak.
- int4: W4A16 weight-only — weights 0.5 byte, activations fp16, matmuls on the fp16 peak.
- q8_0, q4_0, q4_k_m: llama.cpp's GGUF block types (32 weights + an fp16 scale: 34 and 18 bytes; Q4_K_M
  mixes Q4_K super-blocks, 144 bytes per 256, with Q6_K, 210 per 256, for half of the V and down
  projections: ~4.85 bits a weight), activations fp32 on a CPU (quantised to 8 bits inside each matmul).
  These are nominal: what each tensor of a file really takes (llama.cpp's mix and fallbacks) is counted by
  arch/gguf_types.py, and the roofline and the memory footprint use that.
Attention and element-wise ops always run in the activation type.
"""

from __future__ import annotations

from dataclasses import dataclass

from cobench.errors import InputError


@dataclass(frozen=True)
class Precision:
    name: str
    weight_bytes: float
    act_bytes: float
    matmul_peaks: tuple[str, ...]  # device peak keys, most specific first
    vector_peaks: tuple[str, ...]  # non-tensor peaks for attention softmax / element-wise work


_FP16_MM = ("fp16_tensor", "fp16", "fp32")
PRECISIONS: dict[str, Precision] = {
    "fp32": Precision("fp32", 4, 4, ("fp32",), ("fp32",)),
    "fp16": Precision("fp16", 2, 2, _FP16_MM, ("fp16", "fp32")),
    "bf16": Precision("bf16", 2, 2, ("bf16_tensor", "fp16_tensor", "bf16", "fp16", "fp32"), ("fp16", "fp32")),
    "fp8": Precision("fp8", 1, 1, ("fp8_tensor", "int8_tensor", *_FP16_MM), ("fp16", "fp32")),
    "int8": Precision("int8", 1, 1, ("int8_tensor", "int8", *_FP16_MM), ("fp16", "fp32")),
    "int4": Precision("int4", 0.5, 2, _FP16_MM, ("fp16", "fp32")),
    "q8_0": Precision("q8_0", 34 / 32, 4, ("int8", "fp32"), ("fp32",)),
    "q4_0": Precision("q4_0", 18 / 32, 4, ("int8", "fp32"), ("fp32",)),
    "q4_k_m": Precision("q4_k_m", 4.85 / 8, 4, ("int8", "fp32"), ("fp32",)),
}
KV_PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8", "int4")


def precision(name: str, field: str = "precision") -> Precision:
    """Look up a precision by name, with an error that lists the valid ones."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise InputError(field, f"unknown precision {name!r} (one of {', '.join(PRECISIONS)})") from None


def kv_bytes(name: str, field: str = "kv_precision") -> float:
    """Bytes per KV-cache element: the KV cache may be stored narrower than the activations."""
    if name not in KV_PRECISIONS:
        raise InputError(field, f"unknown KV precision {name!r} (one of {', '.join(KV_PRECISIONS)})")
    return PRECISIONS[name].weight_bytes
