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
SwiGLU, GeGLU or GELU, RMSNorm or LayerNorm before, around or after each sub-layer, q/k/v/o/MLP biases,
tied or untied; MoE with top-k routing (router bias, leading dense layers), each expert run on the tokens
routed to it (as cobench's torch module loops over them) and shared experts. Attention variants go to
GroupQueryAttention's own attributes where it has them — sliding windows (`local_window_size`), soft-caps
(`softcap`), the score scale (`scale`), per-head sinks (`head_sink`), layers without RoPE (`do_rotary`),
partial RoPE (narrower cos/sin tables) — and around it where it has not (QK-norm before it, the output
gate after it). Short-convolution (LFM2) and gated delta-net (Qwen3-Next) layers are plain ops on a state input and
output per layer (`state_{kind}_{i}` → `state_{kind}_{i}_next`, shapes in `state_shapes`), which the
runner reads and writes in turn; the delta rule runs as a Scan over the new tokens (one step in decode).
MLA layers are refused (`unsupported`): GroupQueryAttention needs keys and values of one head size, an
absorbed MLA step attends with keys of kv_lora_rank + RoPE dims and values of kv_lora_rank, and a cache
written with plain ops (ScatterND) would copy the whole latent cache every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.arch.model import rotary_dim

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


def unsupported(a: Architecture) -> list[str]:
    """What of `a` the engine graph cannot express, one phrase each (empty: it builds)."""
    why = [f"{k} layers" for k in sorted({k for k in a.kinds if k not in ("full", "sliding", "conv", "linear")})]
    if ("conv" in a.kinds and a.conv_kernel < 2) or ("linear" in a.kinds and a.linear_conv_kernel < 2):
        why.append("a convolution of width 1 (no state to carry)")
    if (rotary_dim(a) // 2) % 8:  # GroupQueryAttention's rotary kernels work in blocks of 8
        why.append(f"RoPE over {rotary_dim(a)} dims of each head (GroupQueryAttention needs a multiple of 16)")
    return why


def _ffn(g: _Graph, x: str, ffn: Any, name: str) -> str:
    if ffn.gate_proj is not None:  # SwiGLU: silu(gate) * up; GeGLU: gelu_tanh(gate) * up
        gate = g.linear(x, ffn.gate_proj, f"{name}.gate")
        if ffn.geglu:
            act = g.node("Gelu", [gate], f"{name}.gelu", approximate="tanh")
        else:
            act = g.node("Mul", [gate, g.node("Sigmoid", [gate], f"{name}.sigmoid")], f"{name}.silu")
        hidden = g.node("Mul", [act, g.linear(x, ffn.up_proj, f"{name}.up")], f"{name}.act")
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


def _sublayer(g: _Graph, x: str, layer: Any, which: str, run: Any, n: str, layernorm: bool) -> str:
    """x + r · sub-layer, normed before it (pre), before and after it (sandwich) or after it (post)."""
    norm = getattr(layer, f"{which}_norm")
    if layer.layout == "post":
        y = g.norm(run(x), norm, f"{n}.{which}_norm", layernorm)
    else:
        y = run(g.norm(x, norm, f"{n}.{which}_norm", layernorm))
        if layer.layout == "sandwich":
            y = g.norm(y, getattr(layer, f"{which}_post_norm"), f"{n}.{which}_post_norm", layernorm)
    if layer.scale != 1.0:
        y = g.node("Mul", [y, g.weight(f"{n}.{which}_scale", np.array(layer.scale, g.dtype))], f"{n}.{which}_scaled")
    return g.node("Add", [x, y], f"{n}.{which}_residual")


def _heads_norm(g: _Graph, x: str, norm: Any, heads: int, hd: int, name: str) -> str:
    """RMSNorm over each head's dims: (B, S, heads · hd) → (B, S, heads, hd), normed, back."""
    i64 = np.int64
    split = g.node("Reshape", [x, g.weight(f"{name}.split", np.array([0, 0, heads, hd]), i64)], f"{name}.heads")
    normed = g.norm(split, norm, name, layernorm=False)
    return g.node("Reshape", [normed, g.weight(f"{name}.join", np.array([0, 0, heads * hd]), i64)], f"{name}.joined")


def _attention(g: _Graph, h: str, layer: Any, a: Architecture, i: int, n: str) -> str:
    """q/k/v, QK-norm, GroupQueryAttention on the layer's cache buffers, the output gate and o_proj."""
    from onnx import helper

    att = layer.attn
    q, k, v = (g.linear(h, p, f"{n}.{name}") for name, p in (("q", att.q_proj), ("k", att.k_proj), ("v", att.v_proj)))
    gate = None
    if att.gated:  # per head [query | gate]: split them
        i64, hd = np.int64, a.head_dim
        both = g.node("Reshape", [q, g.weight(f"{n}.qg_split", np.array([0, 0, a.n_heads, 2 * hd]), i64)], f"{n}.qg")
        sizes = g.weight(f"{n}.qg_sizes", np.array([hd, hd]), i64)
        g.node("Split", [both, sizes], f"{n}.qg_parts", outputs=2, axis=-1)
        flat = g.weight(f"{n}.q_flat", np.array([0, 0, a.n_heads * a.head_dim]), np.int64)
        q = g.node("Reshape", [f"{n}.qg_parts:0", flat], f"{n}.q_only")
        gate = g.node("Reshape", [f"{n}.qg_parts:1", flat], f"{n}.gate")
    if att.qk_norm == "head":
        q = _heads_norm(g, q, att.q_norm, a.n_heads, a.head_dim, f"{n}.q_norm")
        k = _heads_norm(g, k, att.k_norm, a.n_kv_heads, a.head_dim, f"{n}.k_norm")
    elif att.qk_norm == "proj":
        q, k = g.norm(q, att.q_norm, f"{n}.q_norm", False), g.norm(k, att.k_norm, f"{n}.k_norm", False)
    extra: dict[str, Any] = {"scale": float(att.scale)}
    if att.window is not None:  # keys with query − key < window, as the torch module's mask
        extra["local_window_size"] = int(att.window)
    if att.softcap:
        extra["softcap"] = float(att.softcap)
    gqa_inputs = [q, k, v, f"past_key_{i}", f"past_value_{i}", "seqlens_k", "total_sequence_length", "cos_cache",
                  "sin_cache"]  # fmt: skip
    if att.sinks is not None:
        gqa_inputs += ["", "", g.weight(f"{n}.sinks", att.sinks.detach().numpy())]
    g.nodes.append(
        helper.make_node(
            "GroupQueryAttention",
            gqa_inputs,
            [f"{n}.attn", f"present_key_{i}", f"present_value_{i}"],
            name=f"{n}.gqa",
            domain="com.microsoft",
            num_heads=a.n_heads,
            kv_num_heads=a.n_kv_heads,
            do_rotary=int(att.rope),
            rotary_interleaved=0,
            **extra,
        )
    )
    y = f"{n}.attn"
    if gate is not None:
        y = g.node("Mul", [y, g.node("Sigmoid", [gate], f"{n}.gate_sigmoid")], f"{n}.gated")
    return g.linear(y, att.o_proj, f"{n}.o")


def state_shapes(a: Architecture) -> dict[str, tuple[int, ...]]:
    """Each state input of the graph (its output adds `_next`) and its shape after the batch axis: a
    convolution layer's last kernel − 1 inputs, a delta-net layer's key × value state per value head and
    its convolution's last inputs."""
    key, value = a.linear_key_heads * a.linear_key_dim, a.linear_value_heads * a.linear_value_dim
    shapes: dict[str, tuple[int, ...]] = {}
    for i, kind in enumerate(a.kinds):
        if kind == "conv":
            shapes[f"state_conv_{i}"] = (a.d_model, a.conv_kernel - 1)
        elif kind == "linear":
            shapes[f"state_delta_{i}"] = (a.linear_value_heads, a.linear_key_dim, a.linear_value_dim)
            shapes[f"state_delta_conv_{i}"] = (2 * key + value, a.linear_conv_kernel - 1)
    return shapes


def _causal_conv(g: _Graph, x: str, conv: Any, state: str, n: str) -> str:
    """x (B, C, S) after the state's kept inputs through the depthwise Conv; the last kernel − 1 inputs
    out as `state`_next."""
    i64, kernel = np.int64, conv.kernel_size[0]
    full = g.node("Concat", [state, x], f"{n}.with_state", axis=2)  # (B, C, kernel − 1 + S)
    weights = [g.weight(f"{n}.w", conv.weight.detach().numpy())]
    if conv.bias is not None:
        weights.append(g.weight(f"{n}.b", conv.bias.detach().numpy()))
    starts, ends, axes = (g.weight(f"{n}.keep_{k}", np.array([v]), i64) for k, v in (("from", 1 - kernel),
                          ("to", 2**62), ("axis", 2)))  # fmt: skip
    g.node("Slice", [full, starts, ends, axes], f"{state}_next")
    return g.node("Conv", [full, *weights], n, group=conv.in_channels, kernel_shape=[kernel])


def _short_conv(g: _Graph, h: str, conv: Any, a: Architecture, i: int, n: str) -> str:
    """LFM2's gated short convolution: in_proj to (B, C, x), B·x through the causal conv, gated by C."""
    d = a.d_model
    bcx = g.node("Transpose", [g.linear(h, conv.in_proj, f"{n}.in_proj")], f"{n}.bcx", perm=[0, 2, 1])  # (B, 3d, S)
    g.node("Split", [bcx, g.weight(f"{n}.thirds", np.array([d, d, d]), np.int64)], f"{n}.parts", outputs=3, axis=1)
    bx = g.node("Mul", [f"{n}.parts:0", f"{n}.parts:2"], f"{n}.bx")
    mixed = _causal_conv(g, bx, conv.conv, f"state_conv_{i}", f"{n}.conv")
    y = g.node("Transpose", [g.node("Mul", [f"{n}.parts:1", mixed], f"{n}.gated")], f"{n}.y", perm=[0, 2, 1])
    return g.linear(y, conv.out_proj, f"{n}.out_proj")


def _delta_rule_body(elem: int, n: str) -> Any:
    """One token of the gated delta rule for a Scan: S ← exp(g)·S; S ← S + k ⊗ β(v − Sᵀk); o = Sᵀq."""
    from onnx import helper

    nodes = []

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=f"{n}.{name}", **attrs))
        return name

    axes = {k: helper.make_tensor(f"axes_{k}", 7, [len(v)], v) for k, v in (("23", [2, 3]), ("2", [2]), ("3", [3]))}
    consts = [helper.make_node("Constant", [], [f"axes_{k}"], value=t) for k, t in axes.items()]
    decayed = node("Mul", ["S", node("Unsqueeze", ["g", "axes_23"], "g4")], "decayed")
    k_row = node("Unsqueeze", ["k", "axes_2"], "k_row")  # (B, H, 1, dk)
    read = node("Squeeze", [node("MatMul", [k_row, decayed], "kS"), "axes_2"], "read")  # (B, H, dv)
    delta = node("Mul", [node("Sub", ["v", read], "error"), node("Unsqueeze", ["beta", "axes_2"], "beta3")], "delta")
    outer = node("MatMul", [node("Unsqueeze", ["k", "axes_3"], "k_col"), node("Unsqueeze", [delta, "axes_2"], "d_row")],
                 "outer")  # fmt: skip
    updated = node("Add", [decayed, outer], "S_next")
    out = node("Squeeze", [node("MatMul", [node("Unsqueeze", ["q", "axes_2"], "q_row"), updated], "qS"), "axes_2"], "o")
    inputs = [helper.make_tensor_value_info(name, elem, None) for name in ("S", "q", "k", "v", "beta", "g")]
    outputs = [helper.make_tensor_value_info(name, elem, None) for name in (updated, out)]
    return helper.make_graph(consts + nodes, f"{n}.body", inputs, outputs)


def _gated_delta_net(g: _Graph, h: str, net: Any, a: Architecture, i: int, n: str) -> str:
    """Qwen3-Next's gated delta-net on its two states: projections, the causal conv over q, k and v (SiLU),
    L2-normed q and k shared across the value heads of their group, β and the decay from their projections,
    the delta rule as a Scan over the new tokens, the z-gated RMSNorm and out_proj."""
    from onnx import helper

    i64 = np.int64
    hk, hv, dk, dv = net.hk, net.hv, net.dk, net.dv
    key, value = hk * dk, hv * dv
    qkvz = g.linear(h, net.in_proj_qkvz, f"{n}.qkvz")
    g.node("Split", [qkvz, g.weight(f"{n}.qkvz_sizes", np.array([key, key, value, value]), i64)], f"{n}.qkvz_parts",
           outputs=4, axis=-1)  # fmt: skip
    ba = g.linear(h, net.in_proj_ba, f"{n}.ba")
    g.node("Split", [ba, g.weight(f"{n}.ba_sizes", np.array([hv, hv]), i64)], f"{n}.ba_parts", outputs=2, axis=-1)
    mixed = g.node("Concat", [f"{n}.qkvz_parts:{j}" for j in range(3)], f"{n}.qkv", axis=-1)
    conv = _causal_conv(g, g.node("Transpose", [mixed], f"{n}.qkv_t", perm=[0, 2, 1]), net.conv1d,
                        f"state_delta_conv_{i}", f"{n}.conv")  # fmt: skip
    act = g.node("Transpose", [g.node("Mul", [conv, g.node("Sigmoid", [conv], f"{n}.conv_sig")], f"{n}.conv_silu")],
                 f"{n}.mixed", perm=[0, 2, 1])  # fmt: skip
    g.node("Split", [act, g.weight(f"{n}.qkv_sizes", np.array([key, key, value]), i64)], f"{n}.qkv_parts", outputs=3,
           axis=-1)  # fmt: skip

    def heads(x: str, count: int, dim: int, name: str, normed: bool) -> str:
        y = g.node("Reshape", [x, g.weight(f"{name}.shape", np.array([0, 0, count, dim]), i64)], f"{name}.heads")
        if normed:
            y = g.node("LpNormalization", [y], f"{name}.l2", axis=-1, p=2)
        if count < hv:  # each key head serves hv / hk value heads, in order
            y = g.node("Unsqueeze", [y, g.weight(f"{name}.ax3", np.array([3]), i64)], f"{name}.u")
            size = g.weight(f"{name}.gdim", np.array([hv // count, dim]), i64)
            shape = g.node("Concat", [g.node("Shape", [y], f"{name}.s", end=3), size], f"{name}.es", axis=0)
            flat = g.weight(f"{name}.hv", np.array([0, 0, hv, dim]), i64)
            y = g.node("Reshape", [g.node("Expand", [y, shape], f"{name}.e"), flat], f"{name}.grouped")
        return y

    scale = g.weight(f"{n}.q_scale", np.array(dk**-0.5, g.dtype))
    q = g.node("Mul", [heads(f"{n}.qkv_parts:0", hk, dk, f"{n}.q", True), scale], f"{n}.q_scaled")
    k = heads(f"{n}.qkv_parts:1", hk, dk, f"{n}.k", True)
    v = heads(f"{n}.qkv_parts:2", hv, dv, f"{n}.v", False)
    beta = g.node("Sigmoid", [f"{n}.ba_parts:0"], f"{n}.beta")
    dt = g.weight(f"{n}.dt_bias", net.dt_bias.detach().numpy())
    softplus = g.node("Softplus", [g.node("Add", [f"{n}.ba_parts:1", dt], f"{n}.alpha_dt")], f"{n}.softplus")
    rate = g.weight(f"{n}.neg_A", -np.exp(net.A_log.detach().numpy()))
    decay = g.node("Exp", [g.node("Mul", [softplus, rate], f"{n}.log_decay")], f"{n}.decay")
    g.nodes.append(
        helper.make_node(
            "Scan", [f"state_delta_{i}", q, k, v, beta, decay], [f"state_delta_{i}_next", f"{n}.o"], name=f"{n}.scan",
            body=_delta_rule_body(g.elem, f"{n}.step"), num_scan_inputs=5, scan_input_axes=[1] * 5,
            scan_output_axes=[1],
        )
    )  # fmt: skip
    normed = g.norm(f"{n}.o", net.norm, f"{n}.o_norm", layernorm=False)  # (B, S, hv, dv)
    z = g.node("Reshape", [f"{n}.qkvz_parts:3", g.weight(f"{n}.z_shape", np.array([0, 0, hv, dv]), i64)], f"{n}.z")
    gated = g.node(
        "Mul", [normed, g.node("Mul", [z, g.node("Sigmoid", [z], f"{n}.z_sig")], f"{n}.z_silu")], f"{n}.gated"
    )
    flat = g.node("Reshape", [gated, g.weight(f"{n}.flat", np.array([0, 0, value]), i64)], f"{n}.flat_out")
    return g.linear(flat, net.out_proj, f"{n}.out_proj")


def build(model: Any, a: Architecture, precision: str, data: Any = None, location: str = "") -> Any:
    """The engine graph of `model` (cobench's torch Transformer for `a`) at fp32, fp16 or int8 (W8A8
    matmuls, fp32 elsewhere and in the cache); with `data` (a binary file open for writing, named
    `location` beside the graph) the weights are stored there."""
    from onnx import TensorProto, helper

    dtype, elem = (np.float16, TensorProto.FLOAT16) if precision == "fp16" else (np.float32, TensorProto.FLOAT)
    g = _Graph(dtype, elem, precision == "int8", data, location)
    embed = g.weight("embed", model.embed.weight.detach().numpy())
    x = g.node("Gather", [embed, "input_ids"], "embedded")
    if a.embedding_multiplier != 1.0:
        x = g.node("Mul", [x, g.weight("embed_scale", np.array(a.embedding_multiplier, dtype))], "embedded_scaled")
    layernorm = a.norm == "layernorm"
    cache_shape = ["batch", a.n_kv_heads, "capacity", a.head_dim]
    rope_width = rotary_dim(a) // 2
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
        helper.make_tensor_value_info("cos_cache", elem, ["capacity", rope_width]),
        helper.make_tensor_value_info("sin_cache", elem, ["capacity", rope_width]),
    ]
    outputs = [helper.make_tensor_value_info("logits", elem, ["batch", 1, a.vocab_size])]
    for i, layer in enumerate(model.layers):
        n = f"l{i}"
        if layer.kind in ("conv", "linear"):
            mixer = _short_conv if layer.kind == "conv" else _gated_delta_net
            run_mixer = lambda h, n=n, i=i, layer=layer, mixer=mixer: mixer(g, h, layer.attn, a, i, n)  # noqa: E731
            x = _sublayer(g, x, layer, "attn", run_mixer, n, layernorm)
        else:
            past = [f"past_key_{i}", f"past_value_{i}"]
            run_attention = lambda h, n=n, i=i, layer=layer: _attention(g, h, layer, a, i, n)  # noqa: E731
            x = _sublayer(g, x, layer, "attn", run_attention, n, layernorm)
            inputs += [helper.make_tensor_value_info(p, elem, cache_shape) for p in past]
            outputs += [
                helper.make_tensor_value_info(f"present_{kind}_{i}", elem, cache_shape) for kind in ("key", "value")
            ]
        moe = not a.dense_layer(i)
        run_ffn = lambda h, n=n, layer=layer, moe=moe: (  # noqa: E731
            _moe(g, h, layer.ffn, a, f"{n}.moe") if moe else _ffn(g, h, layer.ffn, f"{n}.ffn")
        )
        x = _sublayer(g, x, layer, "ffn", run_ffn, n, layernorm)
    for name, shape in state_shapes(a).items():
        inputs.append(helper.make_tensor_value_info(name, elem, ["batch", *shape]))
        outputs.append(helper.make_tensor_value_info(f"{name}_next", elem, ["batch", *shape]))
    last = g.node(
        "Slice", [x, g.weight("minus_one", np.array([-1]), np.int64), g.weight("end", np.array([2**62]), np.int64),
                  g.weight("axis1", np.array([1]), np.int64)], "last_position",
    )  # fmt: skip
    h = g.norm(last, model.norm, "final_norm", layernorm)
    head = "logits" if a.logits_scaling == 1.0 and not a.final_softcap else "raw_logits"
    if a.tie_embeddings and not g.int8:  # one table in the file; ORT folds the transpose once at load
        g.node("MatMul", [h, g.node("Transpose", [embed], "embed_t", perm=[1, 0])], head)
    else:  # (int8: the head quantised, a copy of a tied table)
        g.matmul(h, model.lm_head.weight.detach().T.contiguous().numpy(), head)
    if head != "logits":
        scaled = g.node("Div", [head, g.weight("logits_scaling", np.array(a.logits_scaling, dtype))], "logits_scaled")
        if a.final_softcap:
            cap = g.weight("final_softcap", np.array(a.final_softcap, dtype))
            tanh = g.node("Tanh", [g.node("Div", [scaled, cap], "logits_over_cap")], "logits_tanh")
            g.node("Mul", [tanh, cap], "logits")
        else:
            g.node("Identity", [scaled], "logits")
    graph = helper.make_graph(g.nodes, f"cobench-engine-{a.name}", inputs, outputs, g.weights)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def rope_cache(a: Architecture, capacity: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin (capacity, rotated dims / 2) for rotate-half RoPE at the architecture's base (as arch/model.py
    rope_tables)."""
    dim = rotary_dim(a)
    inv = 1.0 / a.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.outer(np.arange(capacity, dtype=np.float64), inv)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)
