"""Kernels as ONNX graphs, run by ONNX Runtime or TensorRT: each kernel is a one-operator (for RMSNorm,
SiLU·mul and attention a few-operator) graph built the way the exported models express it. ORT runs it
with IO binding into preallocated outputs, so neither output allocation nor a host copy is timed; its
attention kernel is the engine graph's own GroupQueryAttention on a cache written in place (on a CPU that
op costs ~2 ns per score and query head whatever the head size: measured, docs/calibration.md), TensorRT's
the SDPA decomposition, which it fuses. TensorRT builds a static-shape engine and runs it on device-resident
torch tensors (CUDA events).

Shapes and FLOP/byte conventions are those of `cobench.measure.kernels.suites`; only the backend differs, so a
calibration of a backend learns from kernels that backend itself ran.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cobench.errors import InputError, MissingDependency
from cobench.measure.kernels.suites import KernelSpec

OPSET = 17
NUMPY = {"fp32": np.float32, "fp16": np.float16}
ONNX_KINDS = ("gemm", "attention", "rmsnorm", "softmax", "silu_mul", "add", "gather", "copy")


Inputs = dict[str, tuple[tuple[int, ...], Any]]  # name → (shape, numpy dtype)


def _graph(spec: KernelSpec, engine: bool = False) -> tuple[Any, Inputs, dict[str, tuple[int, ...]]]:
    """(ModelProto, inputs, outputs name → shape). `engine`: attention as ORT's engine graph runs it (one
    GroupQueryAttention node on a shared past/present cache); otherwise the SDPA decomposition, which
    TensorRT fuses."""
    from onnx import TensorProto, helper

    elem = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}[spec.precision]
    dt = NUMPY[spec.precision]
    s, kind = spec.shape, spec.kind
    nodes: list[Any] = []
    consts: list[Any] = []

    def const(name: str, value: float) -> str:
        consts.append(helper.make_tensor(name, elem, [], [value]))
        return name

    if kind == "gemm":
        ins = {"a": ((s["m"], s["k"]), dt), "b": ((s["k"], s["n"]), dt)}
        outs = {"y": (s["m"], s["n"])}
        nodes.append(helper.make_node("MatMul", ["a", "b"], ["y"]))
    elif kind == "attention" and engine:
        return _gqa_graph(spec, elem, dt)
    elif kind == "attention":  # the exported SDPA's decomposition
        b, h, q, kv, d = s["batch"], s["heads"], s["q"], s["kv"], s["head_dim"]
        ins = {"q": ((b, h, q, d), dt), "kt": ((b, h, d, kv), dt), "v": ((b, h, kv, d), dt)}
        outs = {"y": (b, h, q, d)}
        nodes += [
            helper.make_node("MatMul", ["q", "kt"], ["scores"]),
            helper.make_node("Mul", ["scores", const("scale", 1 / np.sqrt(d))], ["scaled"]),
            helper.make_node("Softmax", ["scaled"], ["p"], axis=-1),
            helper.make_node("MatMul", ["p", "v"], ["y"]),
        ]
    elif kind == "gather":
        ins = {"table": ((s["vocab"], s["dim"]), dt), "idx": ((s["rows"],), np.int64)}
        outs = {"y": (s["rows"], s["dim"])}
        nodes.append(helper.make_node("Gather", ["table", "idx"], ["y"]))
    elif kind == "copy":
        ins, outs = {"x": ((s["elements"],), dt)}, {"y": (s["elements"],)}
        nodes.append(helper.make_node("Identity", ["x"], ["y"]))
    elif kind in ("rmsnorm", "softmax", "silu_mul", "add"):
        shape = (s["rows"], s["cols"])
        outs = {"y": shape}
        if kind == "rmsnorm":  # the exported decomposition: x · 1/sqrt(mean(x²) + ε) · w
            ins = {"x": (shape, dt), "w": ((s["cols"],), dt)}
            nodes += [
                helper.make_node("Mul", ["x", "x"], ["sq"]),
                helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[-1], keepdims=1),
                helper.make_node("Add", ["ms", const("eps", 1e-6)], ["mse"]),
                helper.make_node("Sqrt", ["mse"], ["rms"]),
                helper.make_node("Reciprocal", ["rms"], ["inv"]),
                helper.make_node("Mul", ["x", "inv"], ["xn"]),
                helper.make_node("Mul", ["xn", "w"], ["y"]),
            ]
        elif kind == "softmax":
            ins = {"x": (shape, dt)}
            nodes.append(helper.make_node("Softmax", ["x"], ["y"], axis=-1))
        elif kind == "silu_mul":
            ins = {"a": (shape, dt), "b": (shape, dt)}
            nodes += [
                helper.make_node("Sigmoid", ["a"], ["sig"]),
                helper.make_node("Mul", ["a", "sig"], ["silu"]),
                helper.make_node("Mul", ["silu", "b"], ["y"]),
            ]
        else:
            ins = {"a": (shape, dt), "b": (shape, dt)}
            nodes.append(helper.make_node("Add", ["a", "b"], ["y"]))
    else:
        raise InputError("kind", f"{kind} kernels do not run on ort (ONNX kernels are {', '.join(ONNX_KINDS)})")
    graph = helper.make_graph(
        nodes,
        f"cobench-{kind}",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64 if t is np.int64 else elem, list(shape))
            for n, (shape, t) in ins.items()
        ],
        [helper.make_tensor_value_info(n, elem, list(shape)) for n, shape in outs.items()],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model, ins, outs


def _gqa_graph(spec: KernelSpec, elem: int, dt: Any) -> tuple[Any, Inputs, dict[str, tuple[int, ...]]]:
    """Attention as the engine graph runs it (measure/engine_graph.py): one GroupQueryAttention, its cache of
    `kv` positions shared by past and present (ort_calls binds present_* to past_*); q new tokens after kv − q
    cached ones (a prompt when q = kv, a decode step when q = 1). No rotary embedding: the operator model counts
    RoPE as an element-wise op of its own."""
    from onnx import TensorProto, helper

    s = spec.shape
    b, h, q, kv, d = s["batch"], s["heads"], s["q"], s["kv"], s["head_dim"]
    ins: Inputs = {
        "query": ((b, q, h * d), dt),
        "key": ((b, q, h * d), dt),
        "value": ((b, q, h * d), dt),
        "past_key": ((b, h, kv, d), dt),
        "past_value": ((b, h, kv, d), dt),
        "seqlens_k": ((b,), np.int32),
        "total_sequence_length": ((), np.int32),
    }
    outs = {"y": (b, q, h * d), "present_key": (b, h, kv, d), "present_value": (b, h, kv, d)}
    node = helper.make_node(
        "GroupQueryAttention",
        list(ins),
        list(outs),
        domain="com.microsoft",
        num_heads=h,
        kv_num_heads=h,
    )
    types = {np.int32: TensorProto.INT32}
    graph = helper.make_graph(
        [node],
        "cobench-attention",
        [helper.make_tensor_value_info(n, types.get(t, elem), list(shape)) for n, (shape, t) in ins.items()],
        [helper.make_tensor_value_info(n, elem, list(shape)) for n, shape in outs.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    return model, ins, outs


def _feeds(spec: KernelSpec, ins: Inputs, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random operands; the gather's indices index its table; GroupQueryAttention's lengths say that its cache
    of `kv` positions is full after this call."""
    lengths = {"seqlens_k": spec.shape.get("kv", 1) - 1, "total_sequence_length": spec.shape.get("kv", 1)}
    return {
        n: np.full(shape, lengths[n], dtype=np.int32)
        if t is np.int32
        else rng.integers(0, spec.shape["vocab"], size=shape)
        if t is np.int64
        else rng.standard_normal(shape, dtype=np.float32).astype(t)
        for n, (shape, t) in ins.items()
    }


def ort_calls(spec: KernelSpec, threads: int | None = None) -> tuple[int, Callable[[int], Callable[[], Any]]]:
    """Operand bytes, and a factory of independent calls (each with its own inputs and bound output); `threads`:
    ORT's intra-op threads (None: its default, one per physical core)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency("ort kernels need onnxruntime: make install") from None
    if spec.precision not in NUMPY:
        raise InputError("precision", f"ort kernels run in {', '.join(NUMPY)}, not {spec.precision}")
    model, ins, outs = _graph(spec, engine=True)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def call(i: int) -> Callable[[], Any]:
        feeds = _feeds(spec, ins, np.random.default_rng(i))
        results = {  # a present cache is its past: written in place, as the engine graph binds it
            n: feeds[n.replace("present_", "past_")]
            if n.startswith("present_")
            else np.empty(shape, NUMPY[spec.precision])
            for n, shape in outs.items()
        }
        binding = session.io_binding()
        for n, value in feeds.items():
            binding.bind_cpu_input(n, value)
        for n, value in results.items():
            binding.bind_output(n, "cpu", 0, value.dtype, value.shape, value.ctypes.data)
        keep = (feeds, results)  # the bound buffers must outlive the binding

        def run() -> Any:
            session.run_with_iobinding(binding)
            return keep

        return run

    operand_bytes = sum(int(np.prod(shape)) * np.dtype(t).itemsize for shape, t in ins.values())
    return operand_bytes, call


def trt_calls(spec: KernelSpec) -> tuple[int, Callable[[int], Callable[[], Any]]]:
    """Operand bytes, and a factory of independent calls on one engine (each with its own CUDA tensors)."""
    import importlib.util

    from cobench.measure.runners.tensorrt import INSTALL

    if importlib.util.find_spec("tensorrt") is None:
        raise MissingDependency(INSTALL)
    import tensorrt as trt
    import torch

    if spec.precision not in NUMPY:
        raise InputError("precision", f"trt kernels run in {', '.join(NUMPY)}, not {spec.precision}")
    model, ins, outs = _graph(spec)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = int(trt.__version__.split(".")[0]) >= 11  # TensorRT 11: precision from the graph
    network = builder.create_network(
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    )
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.SerializeToString()):
        raise InputError("trt", f"TensorRT cannot parse the {spec.kind} kernel: {parser.get_error(0)}")
    config = builder.create_builder_config()
    if spec.precision == "fp16" and not strongly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise InputError("trt", f"TensorRT could not build the {spec.kind} kernel")
    engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
    context = engine.create_execution_context()
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[spec.precision]

    def call(i: int) -> Callable[[], Any]:
        gen = torch.Generator(device="cuda").manual_seed(i)
        tensors = {
            n: torch.randint(0, spec.shape.get("vocab", 1), shape, device="cuda", generator=gen)
            if t is np.int64
            else torch.randn(shape, device="cuda", generator=gen).to(dtype)
            for n, (shape, t) in ins.items()
        }
        tensors |= {n: torch.empty(shape, dtype=dtype, device="cuda") for n, shape in outs.items()}

        def run() -> Any:
            for n, t in tensors.items():
                context.set_tensor_address(n, t.data_ptr())
            context.execute_async_v3(torch.cuda.current_stream().cuda_stream)
            return tensors

        return run

    operand_bytes = sum(int(np.prod(shape)) * np.dtype(t).itemsize for shape, t in ins.values())
    return operand_bytes, call
