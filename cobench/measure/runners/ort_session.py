"""ONNX Runtime sessions that run where they were asked to, or say why not.

ONNX Runtime degrades quietly in three ways, each of which turns a GPU number into a CPU one: the CUDA
provider cannot find CUDA/cuDNN (nothing preloaded the pip wheels' libraries) and the Python binding falls
back to the CPU with a message on stderr; `get_available_providers()` lists CUDA and TensorRT whenever the
package was built with them, loadable or not; and single nodes the GPU provider has no kernel for run on
the CPU with no error at all. So every GPU session here is created after `preload_dlls()`, checked for its
active provider, and has its node placement read from ORT's own profile of one run; `probe` does the first
two on a one-node graph before any candidate is exported. Provider options make fp32 mean fp32 (TF32 off,
as in torch and in the roofline's FP32 peak) and give TensorRT an engine cache, fp16 and the real shapes.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cobench.errors import CobenchError, InputError, MissingDependency

ORT_DEFAULT_THREADS = "onnxruntime's default: one per physical core"  # the record of a session left to choose

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# Nodes that may run on the host in a GPU session: ORT's CUDA provider places shape arithmetic there on
# purpose. Anything else on the CPU EP is real work done on the wrong device.
HOST_OPS = frozenset(
    {
        "Shape",
        "Size",
        "Gather",
        "Unsqueeze",
        "Squeeze",
        "Concat",
        "Reshape",
        "Cast",
        "Slice",
        "Range",
        "ConstantOfShape",
    }
)
# int8 graphs use ORT's CPU-only quantised kernels (DynamicQuantizeMatMul, uint8 MatMulInteger).
GPU_PRECISIONS = ("fp32", "fp16")


class BackendMismatch(CobenchError):
    """The backend runs somewhere other than requested (e.g. ORT fell back to CPU)."""


def check_precision(device: str, precision: str) -> None:
    """int8 on a GPU provider would time CPU matmuls under a GPU's name: refused before anything runs."""
    if device != "cpu" and precision not in GPU_PRECISIONS:
        raise InputError(
            "precision",
            f"ort on {device} runs {', '.join(GPU_PRECISIONS)}, not {precision}: ORT's int8 graphs"
            " (DynamicQuantizeMatMul, uint8 MatMulInteger) have no CUDA kernels and would run on the CPU",
        )


def provider_options(
    device: str, precision: str, cache_dir: Path, shapes: dict[str, tuple[tuple[int, ...], ...]] | None = None
) -> list[tuple[str, dict[str, str]]]:
    """The provider chain with its options. `shapes`: input name → (min, opt, max) for TensorRT's profile."""
    cuda = ("CUDAExecutionProvider", {"device_id": "0", "use_tf32": "0"})
    if device == "cpu":
        return [("CPUExecutionProvider", {})]
    if device == "cuda":
        return [cuda]
    if device != "tensorrt":
        raise InputError("runner_device", f"ort runs on {', '.join(PROVIDERS)}, not {device!r}")
    cache = cache_dir / "trt-ep"
    cache.mkdir(parents=True, exist_ok=True)
    trt = {
        "device_id": "0",
        "trt_fp16_enable": "True" if precision == "fp16" else "False",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
    }
    if shapes:
        for i, key in enumerate(("trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes")):
            trt[key] = ",".join(f"{name}:{'x'.join(map(str, dims[i]))}" for name, dims in shapes.items())
    return [("TensorrtExecutionProvider", trt), cuda]  # nodes TensorRT cannot take go to CUDA, not the CPU


def preload(device: str) -> None:
    """Load CUDA/cuDNN (from torch or the nvidia-* wheels) before a GPU session, as ORT ≥ 1.21 asks."""
    import onnxruntime as ort

    if device != "cpu" and hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(sys.stderr):  # it prints what it could not load: not on our stdout
            ort.preload_dlls()


def intra_op_threads(session: Any) -> int | str:
    """A session's threads for the environment record: the number set, or ORT's own rule when none was (0:
    one thread per physical core, pinned — not os.cpu_count(), which counts SMT siblings too)."""
    return session.get_session_options().intra_op_num_threads or ORT_DEFAULT_THREADS


def session_options(options: dict[str, Any], profile_dir: Path | None = None) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3  # placement is checked below rather than read from ORT's warnings
    if options.get("threads"):
        so.intra_op_num_threads = int(options["threads"])
    if options.get("prepack") is False:  # loads in ~1 s instead of ~6 s for 2 GB of weights; runs slower
        so.add_session_config_entry("session.disable_prepacking", "1")
    if profile_dir is not None:
        so.enable_profiling = True
        so.profile_file_prefix = str(profile_dir / "placement")
    return so


def open_session(
    model: Path | bytes,
    device: str,
    precision: str,
    cache_dir: Path,
    options: dict[str, Any],
    shapes: dict[str, tuple[tuple[int, ...], ...]] | None = None,
) -> Any:
    """A session whose active provider is the requested one (else BackendMismatch). On a GPU it is opened
    with profiling on: `check_placement_after` reads the placement off its first run, then turns it off."""
    import onnxruntime as ort

    check_precision(device, precision)
    preload(device)
    profile_dir = Path(tempfile.mkdtemp(prefix="placement-", dir=cache_dir)) if device != "cpu" else None
    providers = provider_options(device, precision, cache_dir, shapes)
    session = ort.InferenceSession(
        model if isinstance(model, bytes) else str(model),
        session_options(options, profile_dir),
        providers=[name for name, _ in providers],
        provider_options=[opts for _, opts in providers],
    )
    check_active(session.get_providers(), PROVIDERS[device])
    return session


def check_active(active: list[str], wanted: str) -> None:
    if not active or active[0] != wanted:
        raise BackendMismatch(
            f"the ORT session runs on {active[0] if active else 'nothing'}, not {wanted}: the provider's"
            " libraries (CUDA, cuDNN, TensorRT) or a GPU are missing here (ORT's own message is above)"
        )


def check_placement_after(session: Any, device: str, run: Callable[[], Any]) -> dict[str, int]:
    """Run once, read which provider ran each node from ORT's profile, refuse real work on the CPU EP.
    Returns node counts per provider (for the environment record); on the CPU there is nothing to check."""
    if device == "cpu":
        return {}
    run()
    path = Path(session.end_profiling())
    events = json.loads(path.read_text())
    path.unlink(missing_ok=True)  # read once: a profile per session would pile up in the cache
    counts = placement(events)
    check_placement(events, PROVIDERS[device])
    return counts


def _nodes(events: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """node name → (op type, provider) from ORT's profiling events (one per kernel run)."""
    nodes = {}
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and "provider" in args and "op_name" in args:
            nodes[e["name"].removesuffix("_kernel_time")] = (args["op_name"], args["provider"])
    return nodes


def placement(events: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(provider for _, provider in _nodes(events).values()))


def check_placement(events: list[dict[str, Any]], wanted: str) -> None:
    """A compute node on the CPU EP of a GPU session is a silent partial fallback: an error naming them."""
    on_cpu = Counter(
        op for op, provider in _nodes(events).values() if provider == "CPUExecutionProvider" and op not in HOST_OPS
    )
    if wanted != "CPUExecutionProvider" and on_cpu:
        ops = ", ".join(f"{op} ×{n}" for op, n in sorted(on_cpu.items()))
        raise BackendMismatch(f"nodes of this {wanted} session run on the CPU: {ops} (no GPU kernel for them)")


def probe(device: str) -> None:
    """Before any candidate: can ORT really run a node on `device`? A one-node session, checked like a real one."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    wanted = PROVIDERS[device]
    if wanted not in ort.get_available_providers():
        raise MissingDependency(
            f"{wanted} is not in this onnxruntime build (it has {', '.join(ort.get_available_providers())}):"
            " install onnxruntime-gpu (on a Jetson, NVIDIA's Jetson wheel)"
        )
    if device == "cpu":
        return
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:
        try:
            open_session(model.SerializeToString(), device, "fp32", Path(tmp), {})
        except BackendMismatch:
            raise MissingDependency(
                f"onnxruntime {ort.__version__} lists {wanted} but cannot load it here: its CUDA/cuDNN/TensorRT"
                " libraries or a GPU are missing (ORT's message above names the library)"
            ) from None
