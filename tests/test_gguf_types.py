"""GGUF's type mixes, counted: llama.cpp's layer rule, the fallbacks, and the roofline reading what the file holds.

(That the counts equal the bytes of files llama.cpp itself quantised is in tests/test_llama_cpp.py.)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import architectures
from hypothesis import given
from hypothesis import strategies as st

from cobench.arch.architecture import Architecture, as_arch_like
from cobench.arch.gguf_types import FILE_TYPES, more_bits_share, op_weight_bytes, op_weights, type_bytes, weight_bytes
from cobench.arch.spec import presets
from cobench.arch.workload import Workload
from cobench.hardware.devices import get_device
from cobench.predict.operators import Counting
from cobench.predict.roofline import phase_ops, predict


def _use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits, as written there (integer division)."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def test_layer_share_is_llama_cpps_rule_for_every_depth() -> None:
    depths = np.arange(1, 201)
    expected = [sum(_use_more_bits(i, n) for i in range(n)) / n for n in depths]
    assert more_bits_share(depths) == pytest.approx(expected)
    assert more_bits_share(np.array([[32]]))[0, 0] == 16 / 32  # Llama-2-7B's Q4_K_M: 16 of 32 layers' attn_v in Q6_K


def test_rows_that_do_not_split_into_blocks_fall_back() -> None:
    rows = np.array([256, 576, 704, 48])
    assert type_bytes("Q4_K", rows).tolist() == [144 / 256, 22 / 32, 22 / 32, 2]
    assert type_bytes("Q6_K", rows).tolist() == [210 / 256, 34 / 32, 34 / 32, 2]
    assert type_bytes("Q8_0", rows).tolist() == [34 / 32, 34 / 32, 34 / 32, 2]


def test_mobilellm_at_q4_k_m_is_what_its_file_holds_not_the_nominal_bits() -> None:
    a = as_arch_like(presets()["mobilellm-125m"].arch)
    real, nominal = float(weight_bytes(a, "q4_k_m")[0]), float(weight_bytes(a, "fp32")[0]) / 4 * 4.85 / 8
    assert real > 1.2 * nominal  # d_model 576 rows: Q5_0 and Q8_0, not Q4_K


@given(architectures(max_layers=20, moe=False), st.sampled_from(sorted(FILE_TYPES)))
def test_the_roofline_reads_the_bytes_the_footprint_holds(arch: Architecture, name: str) -> None:
    """A decode step reads every matrix once: the ops' weights must be the footprint's matrices, type for type."""
    a = replace(arch, qkv_bias=False, o_bias=False, mlp_bias=False, ffn="swiglu", norm="rmsnorm")
    x = as_arch_like(a)
    w = Workload(batch=1, prompt=8, generate=4, precision=name)
    real, counted = op_weight_bytes(x, name), op_weights(x)
    ops = {op.name: op for op in phase_ops(x, w, "decode", Counting())}
    if a.tie_embeddings:  # the LM head reads the embedding matrix, in the output's type
        assert real["embed"] == real["lm_head"]
        counted["lm_head"] = counted["embed"]
    for k in set(real) - {"embed"}:  # (a step gathers one embedding row)
        read = float(np.asarray(ops[k].count * ops[k].weight_bytes).flat[0]) if k in ops else 0.0
        assert read == pytest.approx(float(np.asarray(counted[k] * real[k]).flat[0]), rel=1e-9), k
    p = predict(a, get_device("cpu"), w)
    assert p.weight_bytes[0] == pytest.approx(float(weight_bytes(x, name)[0]))
