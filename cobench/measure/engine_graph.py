"""The engine graph: ONNX built directly from the Architecture, the way a deployment engine runs it.

One graph serves prefill (S = prompt) and decode (S = 1). Attention is ONNX Runtime's fused
GroupQueryAttention (RoPE inside, GQA/MQA without expanding K/V) on a KV cache preallocated for the
whole generation: past and present are one buffer per layer (bound to the same memory by the runner),
so a step reads the cache once and writes one position — no O(context) copy, as in ONNX Runtime GenAI,
TensorRT-LLM, llama.cpp and vLLM. Weights come from cobench's torch module (same seed), so numerics and
parameter counts are the ones cobench checks; building takes seconds where torch.export takes minutes.

Inputs: input_ids (B, S) int64; seqlens_k (B,) int32 = total length − 1; total_sequence_length () int32;
cos_cache / sin_cache (capacity, head_dim / 2); past_key_i / past_value_i (B, kv_heads, capacity,
head_dim). Outputs: logits (B, 1, vocab) of the last position; present_key_i / present_value_i.
SwiGLU or GELU, RMSNorm or LayerNorm, q/k/v/o/MLP biases, tied or untied; MoE with top-k routing, each
expert run on the tokens routed to it (as cobench's torch module loops over them) and shared experts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture

OPSET = 23  # RMSNormalization is in the standard domain from opset 23
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
RMS_EPS, LAYERNORM_EPS = 1e-6, 1e-5  # as cobench/arch/model.py's modules


@dataclass
class _Graph:
    """Nodes and initializers as they are added; names are unique by construction. With `data` open,
    weights go straight to that external-data file (no protobuf copy of gigabytes of weights)."""

    dtype: Any  # numpy dtype of activations (and of weights unless quantised)
    elem: int  # the matching TensorProto element type
    int8: bool = False  # matmul weights int8 per output channel, activations quantised at run time
    data: Any = None  # binary file for external data, or None to keep weights inside the graph
    location: str = ""
    nodes: list[Any] = field(default_factory=list)
    weights: list[Any] = field(default_factory=list)

    def node(self, op: str, inputs: list[str], name: str, domain: str = "", outputs: int = 1, **attrs: Any) -> str:
        from onnx import helper

        outs = [name] if outputs == 1 else [f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain, **attrs))
        return name

    def weight(self, name: str, value: np.ndarray, dtype: Any = None) -> str:
        from onnx import TensorProto, helper, numpy_helper

        array = np.ascontiguousarray(value, dtype=dtype or self.dtype)
        if self.data is None or array.nbytes < 1024:
            self.weights.append(numpy_helper.from_array(array, name))
            return name
        offset = self.data.tell()
        self.data.write(array.data)
        t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(offset)), ("length", str(array.nbytes))):
            t.external_data.add(key=k, value=v)
        self.weights.append(t)
        return name

    def linear(self, x: str, module: Any, name: str, quantise: bool = True) -> str:
        """x @ Wᵀ (+ b): torch's (out, in) weight stored transposed (torch's parallel transpose)."""
        return self.matmul(x, module.weight.detach().T.contiguous().numpy(), name, module.bias, quantise)

    def matmul(self, x: str, w: np.ndarray, name: str, bias: Any = None, quantise: bool = True) -> str:
        """x @ w (in, out); at int8 ORT's DynamicQuantizeMatMul (W8A8, what quantize_dynamic fuses to)."""
        if self.int8 and quantise:
            scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0  # symmetric, per output channel
            q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
            inputs = [x, self.weight(f"{name}.q", q, np.int8), self.weight(f"{name}.scale", scale, np.float32)]
            if bias is not None:
                inputs += ["", self.weight(f"{name}.b", bias.detach().numpy())]
            return self.node("DynamicQuantizeMatMul", inputs, name, domain="com.microsoft")
        y = self.node("MatMul", [x, self.weight(f"{name}.w", w)], name if bias is None else f"{name}.mm")
        if bias is None:
            return y
        return self.node("Add", [y, self.weight(f"{name}.b", bias.detach().numpy())], name)

    def norm(self, x: str, module: Any, name: str, layernorm: bool) -> str:
        scale = self.weight(f"{name}.scale", module.weight.detach().numpy())
        if layernorm:
            bias = self.weight(f"{name}.bias", module.bias.detach().numpy())
            return self.node("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=LAYERNORM_EPS)
        return self.node("RMSNormalization", [x, scale], name, axis=-1, epsilon=RMS_EPS)


def _ffn(g: _Graph, x: str, ffn: Any, name: str) -> str:
    if ffn.gate_proj is not None:  # SwiGLU: silu(gate) * up
        gate = g.linear(x, ffn.gate_proj, f"{name}.gate")
        silu = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{name}.sigmoid")], f"{name}.silu")
        hidden = g.node("Mul", [silu, g.linear(x, ffn.up_proj, f"{name}.up")], f"{name}.act")
    else:
        hidden = g.node("Gelu", [g.linear(x, ffn.up_proj, f"{name}.up")], f"{name}.act", approximate="tanh")
    return g.linear(hidden, ffn.down_proj, f"{name}.down")


def _moe(g: _Graph, x: str, moe: Any, a: Architecture, name: str) -> str:
    """Top-k routing with softmax over the chosen logits, then each expert on the tokens routed to it
    (gathered, run, weighted, scatter-added back), as cobench's torch module loops over them; plus the
    shared experts (sigmoid-gated when the architecture has the gate)."""
    i64 = np.int64
    flat = g.node("Reshape", [x, g.weight(f"{name}.flat", np.array([-1, a.d_model]), i64)], f"{name}.tokens")
    router = g.linear(flat, moe.router, f"{name}.router", quantise=False)  # routing decided at full precision
    g.node("TopK", [router, g.weight(f"{name}.k", np.array([a.top_k]), i64)], f"{name}.topk", outputs=2, axis=-1)
    weights = g.node("Softmax", [f"{name}.topk:0"], f"{name}.weights", axis=-1)
    out = g.node("Mul", [flat, g.weight(f"{name}.zero", np.zeros((), g.dtype))], f"{name}.zeros")
    last = g.weight(f"{name}.last", np.array([-1]), i64)
    for e, expert in enumerate(moe.experts):
        n = f"{name}.e{e}"
        eq = g.node("Equal", [f"{name}.topk:1", g.weight(f"{n}.id", np.array(e), i64)], f"{n}.eq")
        chosen = g.node("Cast", [eq], f"{n}.chosen", to=g.elem)  # (N, k): 1 where this expert was picked
        w = g.node("ReduceSum", [g.node("Mul", [chosen, weights], f"{n}.w_slots"), last], f"{n}.w", keepdims=0)
        routed = g.node("ReduceMax", [chosen, last], f"{n}.routed", keepdims=0)
        rows = g.node("Transpose", [g.node("NonZero", [routed], f"{n}.nz")], f"{n}.rows", perm=[1, 0])  # (M, 1)
        ye = _ffn(g, g.node("GatherND", [flat, rows], f"{n}.x"), expert, n)
        scale = g.node("Unsqueeze", [g.node("GatherND", [w, rows], f"{n}.w_rows"), last], f"{n}.scale")
        out = g.node("ScatterND", [out, rows, g.node("Mul", [ye, scale], f"{n}.y")], f"{n}.out", reduction="add")
    if len(moe.shared):
        shared = _ffn(g, flat, moe.shared[0], f"{name}.s0")
        for j, extra in enumerate(moe.shared[1:], 1):
            shared = g.node("Add", [shared, _ffn(g, flat, extra, f"{name}.s{j}")], f"{name}.shared{j}")
        if moe.shared_gate is not None:
            gate = g.node(
                "Sigmoid", [g.linear(flat, moe.shared_gate, f"{name}.shared_gate", quantise=False)], f"{name}.gate"
            )
            shared = g.node("Mul", [gate, shared], f"{name}.gated")
        out = g.node("Add", [out, shared], f"{name}.with_shared")
    return g.node("Reshape", [out, g.node("Shape", [x], f"{name}.shape")], f"{name}.moe")


def build(model: Any, a: Architecture, precision: str, data: Any = None, location: str = "") -> Any:
    """The engine graph of `model` (cobench's torch Transformer for `a`) at fp32, fp16 or int8 (W8A8
    matmuls, fp32 elsewhere and in the cache); with `data` (a binary file open for writing, named
    `location` beside the graph) the weights are stored there."""
    from onnx import TensorProto, helper

    dtype, elem = (np.float16, TensorProto.FLOAT16) if precision == "fp16" else (np.float32, TensorProto.FLOAT)
    g = _Graph(dtype, elem, precision == "int8", data, location)
    embed = g.weight("embed", model.embed.weight.detach().numpy())
    x = g.node("Gather", [embed, "input_ids"], "embedded")
    layernorm = a.norm == "layernorm"
    cache_shape = ["batch", a.n_kv_heads, "capacity", a.head_dim]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("cos_cache", elem, ["capacity", a.head_dim // 2]),
        helper.make_tensor_value_info("sin_cache", elem, ["capacity", a.head_dim // 2]),
    ]
    outputs = [helper.make_tensor_value_info("logits", elem, ["batch", 1, a.vocab_size])]
    for i, layer in enumerate(model.layers):
        n = f"l{i}"
        h = g.norm(x, layer.attn_norm, f"{n}.attn_norm", layernorm)
        att = layer.attn
        q, k, v = (
            g.linear(h, p, f"{n}.{p_name}") for p_name, p in (("q", att.q_proj), ("k", att.k_proj), ("v", att.v_proj))
        )
        past = [f"past_key_{i}", f"past_value_{i}"]
        g.nodes.append(
            helper.make_node(
                "GroupQueryAttention",
                [q, k, v, *past, "seqlens_k", "total_sequence_length", "cos_cache", "sin_cache"],
                [f"{n}.attn", f"present_key_{i}", f"present_value_{i}"],
                name=f"{n}.gqa",
                domain="com.microsoft",
                num_heads=a.n_heads,
                kv_num_heads=a.n_kv_heads,
                do_rotary=1,
                rotary_interleaved=0,
            )
        )
        inputs += [helper.make_tensor_value_info(p, elem, cache_shape) for p in past]
        outputs += [
            helper.make_tensor_value_info(f"present_{kind}_{i}", elem, cache_shape) for kind in ("key", "value")
        ]
        x = g.node("Add", [x, g.linear(f"{n}.attn", att.o_proj, f"{n}.o")], f"{n}.residual1")
        h = g.norm(x, layer.ffn_norm, f"{n}.ffn_norm", layernorm)
        ffn = _moe(g, h, layer.ffn, a, f"{n}.moe") if a.is_moe else _ffn(g, h, layer.ffn, f"{n}.ffn")
        x = g.node("Add", [x, ffn], f"{n}.residual2")
    last = g.node(
        "Slice", [x, g.weight("minus_one", np.array([-1]), np.int64), g.weight("end", np.array([2**62]), np.int64),
                  g.weight("axis1", np.array([1]), np.int64)], "last_position",
    )  # fmt: skip
    h = g.norm(last, model.norm, "final_norm", layernorm)
    if a.tie_embeddings and not g.int8:  # one table in the file; ORT folds the transpose once at load
        g.node("MatMul", [h, g.node("Transpose", [embed], "embed_t", perm=[1, 0])], "logits")
    else:  # (int8: the head quantised, a copy of a tied table)
        g.matmul(h, model.lm_head.weight.detach().T.contiguous().numpy(), "logits")
    graph = helper.make_graph(g.nodes, f"cobench-engine-{a.name}", inputs, outputs, g.weights)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def rope_cache(a: Architecture, capacity: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin (capacity, head_dim / 2) for rotate-half RoPE, θ = 10000 (as arch/model.py rope_tables)."""
    inv = 1.0 / 10000.0 ** (np.arange(0, a.head_dim, 2, dtype=np.float64) / a.head_dim)
    angles = np.outer(np.arange(capacity, dtype=np.float64), inv)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)
