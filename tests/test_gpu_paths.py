"""Issue 13: the GPU and Jetson paths, checked without a GPU. One test (or a few) per row of the issue's
table, each failing before its fix: the real packages where they install here (nvidia-ml-py, onnxruntime,
onnxruntime-gpu in its own environment), recorded API facts where they do not (TensorRT)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import cobench.measure.telemetry.nvml as nvml_module
from cobench.measure import telemetry
from cobench.measure.telemetry.cpu import CpuSource
from cobench.measure.telemetry.nvml import NvmlSource, visible_device

# --- telemetry "auto": NVML only for GPU runs ---------------------------------------------------------------


def test_auto_telemetry_of_a_cpu_run_is_the_cpu_even_where_a_gpu_is_visible(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    gpu = SimpleNamespace(name="nvml")
    monkeypatch.setattr(NvmlSource, "open", classmethod(lambda cls, cuda_device=0: gpu))
    assert isinstance(telemetry.select_source("auto", "cpu", root=tmp_path), CpuSource)
    assert telemetry.select_source("auto", "cuda", root=tmp_path) is gpu
    assert telemetry.select_source("auto", "tensorrt", root=tmp_path) is gpu
    assert telemetry.select_source("nvml", "cpu", root=tmp_path) is gpu  # asked for by name: given


# --- NVML device: the CUDA device, by UUID ------------------------------------------------------------------


class FakeNvml:
    """Records which lookup cobench made (the calls exist in nvidia-ml-py: see the test below)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:  # noqa: N802
        self.calls.append(("index", index))
        return f"handle-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:  # noqa: N802
        self.calls.append(("uuid", uuid))
        return f"handle-{uuid}"


@pytest.mark.parametrize(
    ("visible", "device", "expected"),
    [
        (None, 1, ("index", "1")),
        ("", 0, ("index", "0")),
        ("2,3", 0, ("index", "2")),
        ("3, 1", 1, ("index", "1")),
        ("GPU-8f2a1c9e-aaaa-bbbb-cccc-0123456789ab,0", 0, ("uuid", "GPU-8f2a1c9e-aaaa-bbbb-cccc-0123456789ab")),
        ("MIG-5c9a0000-1111-2222-3333-444455556666", 0, ("uuid", "MIG-5c9a0000-1111-2222-3333-444455556666")),
    ],
)
def test_cuda_visible_devices_maps_a_cuda_index_to_the_nvml_device(visible, device, expected) -> None:  # noqa: ANN001
    assert visible_device(visible, device) == expected


def test_cuda_visible_devices_stops_at_the_first_invalid_entry() -> None:
    with pytest.raises(IndexError):
        visible_device("1,foo,2", 1)  # CUDA sees only device 1


def test_nvml_handle_is_the_cuda_device_not_nvml_index_0() -> None:
    """Bug: NVML index 0 was read whatever GPU CUDA ran on (CUDA_VISIBLE_DEVICES=2 → a different GPU)."""
    nvml = FakeNvml()
    source = NvmlSource.for_cuda_device(nvml, 0, None, visible="2")
    assert nvml.calls == [("index", 2)] and source.handle == "handle-2"
    nvml = FakeNvml()
    source = NvmlSource.for_cuda_device(nvml, 0, "GPU-1234", visible="2")  # the UUID from CUDA wins
    assert nvml.calls == [("uuid", "GPU-1234")]


def test_every_nvml_name_cobench_uses_exists_in_nvidia_ml_py() -> None:
    pynvml = pytest.importorskip("pynvml")  # installed with the dev extra: a real package, not a mock
    source = Path(nvml_module.__file__).read_text()
    names = set(re.findall(r"\b(nvml[A-Z]\w+|NVML_[A-Z_]+|NVMLError)\b", source))
    assert len(names) > 15
    fields = {name for name, _ in pynvml.c_nvmlFieldValue_t._fields_}
    assert {"nvmlReturn", "value"} <= fields  # what _instant_power_mw reads of a field value
    missing = sorted(n for n in names - fields if not hasattr(pynvml, n))
    assert not missing, missing


# --- ORT: listed is not loadable; partial fallback; int8; TF32; TensorRT EP options ------------------------

ORT_GPU_PYTHON = os.environ.get("COBENCH_ORT_GPU_PYTHON")


@pytest.mark.skipif(not ORT_GPU_PYTHON, reason="make test provides onnxruntime-gpu in its own environment")
def test_onnxruntime_gpu_without_cuda_is_refused_before_any_worker(tmp_path) -> None:  # noqa: ANN001
    """Bug: with onnxruntime-gpu on a machine whose CUDA libraries are missing, get_available_providers() lists
    CUDA; the candidate was exported, stored as failed with a traceback fragment, and the command exited 0."""
    probe = subprocess.run(
        [ORT_GPU_PYTHON, "-c", "import onnxruntime as o; print(o.get_device(), *o.get_available_providers())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "CUDAExecutionProvider" in probe.stdout  # the real onnxruntime-gpu package, listing CUDA
    store, cache = tmp_path / "s.db", tmp_path / "cache"
    args = ["profile", "-a", "tiny-gqa-4l", "--backend", "ort", "--device", "h100-sxm", "--runner-device", "cuda"]
    proc = subprocess.run(
        [ORT_GPU_PYTHON, "-m", "cobench", *args, "--store", str(store), "--cache-dir", str(cache), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and proc.stdout == ""  # nothing on stdout, not even preload_dlls' chatter
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "CUDAExecutionProvider" in last and "cannot load" in last
    assert not cache.exists()  # refused before any export
    if store.exists():
        with sqlite3.connect(store) as db:
            assert db.execute("SELECT count(*) FROM profiles").fetchone()[0] == 0  # no candidate stored as failed


def _profile_events(tmp_path: Path) -> list[dict[str, Any]]:
    """ORT's own profile of one real run of the engine graph (CPU here: the format is the same on a GPU)."""
    import numpy as np
    import onnxruntime as ort

    from cobench.arch.spec import load_architecture
    from cobench.measure.export import export_engine
    from cobench.measure.runners.ort_session import session_options

    arch = load_architecture("tiny-gqa-4l")
    exported = export_engine(arch, "fp32", tmp_path / "cache")
    session = ort.InferenceSession(str(exported.graph("model")), session_options({}, tmp_path))
    from cobench.measure.engine_graph import rope_cache

    cos, sin = rope_cache(arch, 8, np.float32)
    feeds = {"input_ids": np.zeros((1, 2), np.int64), "seqlens_k": np.array([1], np.int32)}
    feeds |= {"total_sequence_length": np.array(2, np.int32), "cos_cache": cos, "sin_cache": sin}
    for i in range(arch.n_layers):
        for kind in ("key", "value"):
            feeds[f"past_{kind}_{i}"] = np.zeros((1, arch.n_kv_heads, 8, arch.head_dim), np.float32)
    session.run(None, feeds)
    return json.loads(Path(session.end_profiling()).read_text())


def test_node_placement_is_read_from_orts_profile_and_cpu_compute_refused(tmp_path) -> None:  # noqa: ANN001
    """Bug: only get_providers()[0] was checked, so nodes falling back to the CPU in a CUDA session went unseen."""
    from cobench.measure.runners.ort_session import BackendMismatch, check_placement, placement

    events = _profile_events(tmp_path)
    counts = placement(events)
    assert set(counts) == {"CPUExecutionProvider"} and counts["CPUExecutionProvider"] >= 20
    check_placement(events, "CPUExecutionProvider")  # a CPU session on the CPU: fine
    with pytest.raises(BackendMismatch, match=r"GroupQueryAttention ×4.*MatMul"):
        check_placement(events, "CUDAExecutionProvider")  # the same placement under a CUDA session: refused
    on_gpu = [
        e | {"args": e["args"] | {"provider": "CUDAExecutionProvider"}}
        if e.get("cat") == "Node" and e["args"].get("op_name") != "Shape"
        else e
        for e in events
    ]
    check_placement(on_gpu, "CUDAExecutionProvider")  # only shape arithmetic on the host: accepted


def test_int8_on_a_gpu_provider_is_refused_before_export() -> None:
    """Bug: int8 graphs use uint8 MatMulInteger / DynamicQuantizeMatMul, which have no CUDA kernels."""
    from cobench.errors import InputError
    from cobench.measure.profile import check_precision

    check_precision("ort", "int8", "cpu")
    for device in ("cuda", "tensorrt"):
        with pytest.raises(InputError, match="no CUDA kernels"):
            check_precision("ort", "int8", device)


def test_gpu_provider_options_fp32_means_fp32_and_tensorrt_caches_its_engines(tmp_path) -> None:  # noqa: ANN001
    """Bugs: TF32 on by default in ORT CUDA (the roofline uses the FP32 peak); the TensorRT EP had no engine
    cache, no fp16 and no profile, so every session rebuilt its engines for shapes it guessed."""
    from cobench.measure.runners.ort_session import provider_options

    assert provider_options("cpu", "fp32", tmp_path) == [("CPUExecutionProvider", {})]
    ((name, cuda),) = provider_options("cuda", "fp32", tmp_path)
    assert name == "CUDAExecutionProvider" and cuda["use_tf32"] == "0"
    shapes = {"input_ids": ((1, 1), (1, 256), (1, 272))}
    (trt_name, trt), (fallback, _) = provider_options("tensorrt", "fp16", tmp_path, shapes)
    assert (trt_name, fallback) == ("TensorrtExecutionProvider", "CUDAExecutionProvider")  # not the CPU
    assert trt["trt_fp16_enable"] == "True" and trt["trt_engine_cache_enable"] == "True"
    assert Path(trt["trt_engine_cache_path"]).is_dir() and trt["trt_timing_cache_enable"] == "True"
    assert trt["trt_profile_opt_shapes"] == "input_ids:1x256" and trt["trt_profile_max_shapes"] == "input_ids:1x272"
    assert provider_options("tensorrt", "fp32", tmp_path)[0][1]["trt_fp16_enable"] == "False"


def test_ort_preloads_cuda_libraries_before_a_gpu_session(monkeypatch) -> None:  # noqa: ANN001
    """Bug: with the export cached nothing had loaded torch or called preload_dlls(), so the CUDA provider
    could not find the pip wheels' CUDA/cuDNN and fell back, depending on the cache's state."""
    import onnxruntime as ort

    from cobench.measure.runners import ort_session

    calls: list[str] = []
    monkeypatch.setattr(ort, "preload_dlls", lambda: calls.append("preload") or print("noise"), raising=False)
    ort_session.preload("cpu")
    assert calls == []
    ort_session.preload("cuda")
    assert calls == ["preload"]


# --- TensorRT: recorded API facts of 10.x and 11.x ----------------------------------------------------------


_EXPORTS = Path(tempfile.mkdtemp(prefix="cobench-trt-exports-"))


def _open_trt(monkeypatch, version: str, precision: str, cache: Path, **options: Any) -> Any:  # noqa: ANN001
    import sys

    from fake_tensorrt import FakeTensorRT

    from cobench.arch.spec import load_architecture
    from cobench.measure.runners import tensorrt as runner

    trt = sys.modules.get("tensorrt")
    if not isinstance(trt, FakeTensorRT) or trt.__version__ != version:
        trt = FakeTensorRT(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
    import torch

    from cobench.measure.export import export

    arch = load_architecture("tiny-gqa-4l")
    # the real export, on the CPU, before torch.cuda is faked below; made once per precision and copied into
    # each test's cache (an export takes seconds, the engines the test builds stay its own)
    source = export(arch, precision, _EXPORTS).directory
    if not (cache / source.name).exists():
        shutil.copytree(source, cache / source.name, ignore=shutil.ignore_patterns("*.engine", "timing.*"))
    export(arch, precision, cache)
    opts = {"capacity": 272, "batch": 1, "prompt": 256} | options
    with monkeypatch.context() as m:  # torch.cuda as far as the TensorRT runner asks it
        m.setattr(torch.cuda, "is_available", lambda: True)
        m.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(name="NVIDIA H200", major=9, minor=0))
        m.setattr(torch.cuda, "Stream", lambda: None)
        return trt, runner.TensorRTRunner.open(arch, precision, cache, opts), arch


@pytest.mark.parametrize("version", ["10.3.0", "10.16.0", "11.4.0"])
def test_trt_builds_strongly_typed_from_the_precisions_graph_on_every_version(monkeypatch, tmp_path, version) -> None:  # noqa: ANN001, E501
    """Bugs: TensorRT 10 fp16 took the FP16 flag on an fp32 graph (fp32 inputs, outputs and KV cache; the flag
    is gone in 11); TF32 stayed on for fp32; the profile's max was (8, max_seq_len); engines were keyed
    without the GPU or the profile."""
    trt, runner, arch = _open_trt(monkeypatch, version, "fp16", tmp_path)
    assert runner.exported.precision == "fp16"  # the fp16 graph, on 10.x too
    flags = [c for c in trt.calls if c[0] == "network"]
    assert flags == [("network", 1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)] * 2
    assert not [c for c in trt.calls if c[0] == "set_flag"]  # no weak-typing precision flags
    profiles = [c[1] for c in trt.calls if c[0] == "profile"]
    assert profiles[0]["input_ids"] == ((1, 1), (1, 256), (1, 272))  # the workload, not 8 × max_seq_len
    assert profiles[1]["past_k"][2] == (arch.n_layers, 1, arch.n_kv_heads, 271, arch.head_dim)
    names = sorted(p.name for p in runner.exported.directory.glob("*.engine"))
    assert len(names) == 2 and all(n.startswith(("prefill.", "decode.")) for n in names)
    info = runner.info()
    assert info["gpu"] == "NVIDIA H200 sm_90" and set(info["engine_sha256"]) == {"prefill", "decode"}
    trt.calls.clear()
    _, again, _ = _open_trt(monkeypatch, version, "fp16", tmp_path)
    assert again.engine_cache_hit and not [c for c in trt.calls if c[0] == "network"]  # cached: no rebuild
    _, other, _ = _open_trt(monkeypatch, version, "fp16", tmp_path, prompt=128)
    assert not other.engine_cache_hit  # another profile is another engine
    trt.calls.clear()
    _open_trt(monkeypatch, version, "fp32", tmp_path)
    assert ("clear_flag", trt.BuilderFlag.TF32) in trt.calls  # fp32 means fp32


def test_trt_a_failed_build_keeps_the_engines_already_built(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    """Bug: the timing cache was written only at the end and nothing was cached after a failure or a kill."""
    import sys

    from fake_tensorrt import FakeTensorRT

    trt = FakeTensorRT("10.16.0")
    trt.fail_builds = {2}  # the decode engine
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    from cobench.measure.runners.tensorrt import TensorRTError

    with pytest.raises(TensorRTError, match="failed to build decode"):
        _open_trt(monkeypatch, "10.16.0", "fp32", tmp_path)
    exported = next(tmp_path.glob("*/"))
    assert [p.name.split(".")[0] for p in exported.glob("*.engine")] == ["prefill"]
    assert list(exported.glob("timing.*.cache")) and not list(exported.glob("*.tmp"))


def test_trt_calls_that_report_failure_raise(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    """Bug: set_input_shape / execute_async_v3 return False on failure, and a None engine crashed later."""
    import numpy as np

    from cobench.measure.runners.tensorrt import TensorRTError

    trt, runner, _ = _open_trt(monkeypatch, "11.4.0", "fp32", tmp_path)
    runner.device = "cpu"  # the fake engine runs nothing: torch tensors on the CPU stand in for device memory
    ids = np.zeros((1, 4), np.int64)
    runner.prefill(ids)
    runner.contexts["prefill"]._answers["set_input_shape"] = False  # e.g. a prompt beyond the profile
    with pytest.raises(TensorRTError, match=r"set_input_shape\(input_ids, \(1, 4\)\)"):
        runner.prefill(ids)
    runner.contexts["prefill"]._answers |= {"set_input_shape": True, "execute_async_v3": False}
    with pytest.raises(TensorRTError, match="execute_async_v3"):
        runner.prefill(ids)
    trt.null_engine = True
    for engine in runner.exported.directory.glob("*.engine"):
        engine.unlink()
    with pytest.raises(TensorRTError, match="deserialising"):
        _open_trt(monkeypatch, "11.4.0", "fp32", tmp_path)


def test_trt_timed_step_neither_copies_ids_nor_allocates_outputs(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    """Bug: the host→device copy of the token and TensorRT's output allocation sat inside the timed step."""
    import numpy as np
    import torch

    _, runner, _ = _open_trt(monkeypatch, "10.16.0", "fp32", tmp_path)
    runner.device = "cpu"
    step = runner.fixed_decode(np.zeros((1, 1), np.int64), runner.make_cache(1, 32))
    step()  # the first call allocates this shape's outputs
    counted = {"as_tensor": 0, "empty": 0}

    def counting(name: str) -> Any:
        real = getattr(torch, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            counted[name] += 1
            return real(*args, **kwargs)

        return call

    for name in counted:
        monkeypatch.setattr(torch, name, counting(name))
    for _ in range(3):
        step()
    assert counted == {"as_tensor": 0, "empty": 0}


# --- torch: CUDA graphs of MoE, the timed step ---------------------------------------------------------------

# aten ops whose output size depends on data (or that read a value to the host): a sync under capture.
# where.default is the one-argument torch.where (a nonzero); the three-argument where.self is fine.
SYNCING = {"nonzero.default", "where.default", "_local_scalar_dense.default", "item.default", "masked_select.default"}


def _ops_of_step(a: Any, visible_none: bool) -> tuple[set[str], Any, Any]:
    import numpy as np
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from cobench.arch.model import StaticCache, build_model

    model = build_model(a)
    ops: set[str] = set()

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            ops.add(f"{func.overloadpacket.__name__}.{func._overloadname}")
            return func(*args, **(kwargs or {}))

    ids = torch.from_numpy(np.random.default_rng(3).integers(0, a.vocab_size, (2, 5)))
    outs = []
    for capturable in (False, True):
        cache = StaticCache.allocate(a, 2, 12, torch.float32, "cpu")
        with torch.inference_mode():
            model.step(ids, cache, torch.arange(5), 5)
            token = ids[:, -1:]
            if capturable:
                with Record():
                    outs.append(model.step(token, cache, torch.tensor([5]), None))
            else:
                outs.append(model.step(token, cache, torch.tensor([5]), 6))
    return ops, outs[0], outs[1]


def test_the_capturable_moe_step_never_syncs_with_the_host() -> None:
    """Bug: the MoE path's torch.where(chosen == e) is a nonzero (a device→host sync), illegal under CUDA
    graph capture: --cuda-graphs crashed on every MoE candidate. The capturable step gathers each token's
    experts by index instead; the same logits come out."""
    import numpy as np

    from cobench.arch.architecture import Architecture

    for ffn, bias in (("swiglu", False), ("gelu", True)):
        a = Architecture(
            name="moe", vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, ffn=ffn,
            mlp_bias=bias, n_experts=4, top_k=2, d_ff_expert=48, n_shared_experts=1, d_ff_shared=32,
            shared_expert_gate=True, max_seq_len=64,
        )  # fmt: skip
        ops, eager, captured = _ops_of_step(a, True)
        assert not ops & SYNCING, ops & SYNCING
        np.testing.assert_allclose(captured.numpy(), eager.numpy(), rtol=1e-4, atol=1e-5)


def test_the_torch_timed_step_copies_no_token_to_the_device(monkeypatch) -> None:  # noqa: ANN001
    """Bug: each timed fixed-cache step converted the numpy token to a device tensor (a host→device copy)."""
    import numpy as np
    import torch

    from cobench.arch.spec import load_architecture
    from cobench.measure.runners.pytorch import TorchRunner

    runner = TorchRunner.open(load_architecture("tiny-gqa-4l"), "fp32", "cpu", {"capacity": 40})
    step = runner.fixed_decode(np.zeros((1, 1), np.int64), runner.make_cache(1, 32))
    calls = []
    real = torch.as_tensor
    monkeypatch.setattr(torch, "as_tensor", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(3):
        step()
    assert calls == []


# --- kernels: GPU timing, a CPU's kernels under a GPU's name -------------------------------------------------


def test_gpu_kernel_rotation_is_sized_by_the_l2_not_capped_at_256() -> None:
    """Bug: 256 rotating copies of a 4 KB kernel are 1 MB: warm in an H200's 60 MB L2."""
    from cobench.measure.kernels.run import rotation

    l2 = 60 << 20
    assert rotation(4096, l2, "cuda") * 4096 > 2 * l2  # cold on the GPU
    assert rotation(4096, 32 << 20, "host") == 256  # a CPU keeps the cap (building 16 k ORT calls costs minutes)
    assert rotation(1 << 30, l2, "cuda") == 2  # a big operand: itself and one more


def test_gpu_kernel_samples_span_many_calls_per_event_pair() -> None:
    """Bug: one launch per CUDA-event pair counted Python's launch overhead against small kernels."""
    from cobench.measure.kernels.run import sweep

    seen: list[int] = []
    calls = [lambda i=i: seen.append(i) for i in range(5)]
    timed: list[int] = []

    def timer(fn: Any) -> float:  # stands in for time_cuda: one event pair around fn
        before = len(seen)
        fn()
        timed.append(len(seen) - before)
        return 1.0

    step = sweep(calls, 4, timer)
    assert step() == 0.25 and step() == 0.25  # per call
    assert timed == [4, 4] and seen == [0, 1, 2, 3, 4, 0, 1, 2]  # the rotation continues across samples


def test_ort_kernels_are_not_stored_as_a_gpus_ceilings(tmp_path) -> None:  # noqa: ANN001
    """Bug: `kernels --backend ort -d h100-sxm` timed ORT's CPU kernels and stored them under the H100."""
    from cobench.errors import InputError
    from cobench.hardware.devices import get_device
    from cobench.measure.kernels.run import run_kernels
    from cobench.store import Store

    with Store(tmp_path / "s.db") as store:
        with pytest.raises(InputError, match=r"device: ort kernels run on the cpu, but h100-sxm is a gpu"):
            run_kernels(get_device("h100-sxm"), "ort", store, ["gemm"])
        assert store.kernels.find("h100-sxm") == []


def test_calibration_leaves_out_kernels_of_another_processor(tmp_path) -> None:  # noqa: ANN001
    """Bug: calibration mixed kernels of any runner device with the device's profiles."""
    from dataclasses import replace

    from cobench.hardware.devices import get_device
    from cobench.measure.kernels.results import KernelResult
    from cobench.measure.kernels.suites import load_suites
    from cobench.store import Store

    spec = next(s for s in load_suites(["gemm"]) if s.precision == "fp32")
    h100 = get_device("h100-sxm")
    base = KernelResult(spec, 1e9, 1e6, 1e-3, {"cv": 0.01}, True, "torch", "cuda")
    with Store(tmp_path / "s.db") as store:
        device_id = store.catalog.put_device(h100)
        store.kernels.put(replace(base, key="gpu"), device_id)
        store.kernels.put(replace(base, key="cpu", runner_device="cpu"), device_id)
        found = store.kernels.find("h100-sxm", "fp32")
    assert {k.runner_device for k in found} == {"cuda", "cpu"}
    assert [k.key for k in found if k.runner_device == h100.runner] == ["gpu"]  # what calibrate keeps


# --- the environment record, doctor, exit codes --------------------------------------------------------------


def test_environment_records_the_gpu_its_capability_tf32_and_driver(monkeypatch) -> None:  # noqa: ANN001
    """Bug: GPU name, compute capability, TF32 state and driver were not recorded: a number could not be audited."""
    import torch

    from cobench.measure.environment import environment

    props = SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=143e9, multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    record = environment({"backend": "torch"}, {"source": "nvml"}, {}, "cuda")
    gpu = record["gpu"]
    assert gpu["name"] == "NVIDIA H200" and gpu["compute_capability"] == "9.0" and gpu["sm_count"] == 132
    assert gpu["tf32_matmul"] is False and "driver" in gpu and "cuda_runtime" in gpu
    assert environment({}, {}, {}, "cpu")["gpu"] == {}  # a CPU run records no GPU


def test_doctor_says_which_gpu_path_works_here_and_why_not() -> None:
    from cobench.hardware.doctor import gpu_path_checks

    checks = {c.name: c for c in gpu_path_checks()}
    assert set(checks) == {f"gpu path: {b} on {d}" for b, d in (("ort", "cuda"), ("ort", "tensorrt"),
                                                                 ("torch", "cuda"), ("trt", "cuda"))}  # fmt: skip
    # this CPU machine: none works, each says why (a GPU machine would show "ok")
    assert all(c.status == "info" and c.detail for c in checks.values())
    assert "CUDAExecutionProvider" in checks["gpu path: ort on cuda"].detail
    assert "TensorRT" in checks["gpu path: trt on cuda"].detail


def test_profile_with_a_failed_candidate_exits_non_zero_after_storing_the_rest(tmp_path) -> None:  # noqa: ANN001
    """Bug: a profile whose candidates failed exited 0, so a lab pipeline went on to fit on what was missing."""
    from typer.testing import CliRunner

    from cobench.cli import app
    from cobench.store import Store

    store = str(tmp_path / "s.db")
    flags = ["--prompt", "16", "--generate", "2", "--cache-dir", str(tmp_path / "c"), "--store", store,
             "--idle-s", "0", "--cooldown-s", "0", "--rounds", "1", "--timeout-s", "0.2", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, ["profile", "-a", "tiny-gqa-4l", *flags])
    assert result.exit_code == 5, result.output
    assert "1 of 1 candidates failed" in result.stderr and "--retry-failed" in result.stderr
    assert json.loads(result.stdout)[0]["status"] == "failed"  # the JSON still comes out, complete
    with Store(tmp_path / "s.db") as db:
        assert [r.status for r in db.profiles.find()] == ["failed"]


# --- set-up on a GPU box and on a Jetson ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _install_plan(tmp_path: Path, **variables: str) -> str:
    venv = tmp_path / "v"
    args = [f"{k}={v}" for k, v in variables.items()]
    done = subprocess.run(["make", "-n", "-B", f"{venv}/.installed", f"VENV={venv}", *args], cwd=ROOT,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout


def test_install_on_a_jetson_keeps_jetpacks_torch_and_gets_onnxruntime(tmp_path) -> None:  # noqa: ANN001
    """Bugs: the jetson extra was empty (no onnxruntime: every export validation failed) and pip could replace
    JetPack's torch and numpy with PyPI's."""
    plan = _install_plan(tmp_path, IS_JETSON="1", HAS_NVIDIA="")
    assert "--system-site-packages" in plan
    assert "jetpack-constraints.txt" in plan and "torch|numpy" in plan  # pinned to what JetPack has
    assert "onnxruntime-gpu" in plan and "jetson-ai-lab" in plan  # NVIDIA's Jetson wheel when missing
    install = next(line for line in plan.splitlines() if '-e ".[jetson,dev]"' in line)
    assert "-c " in install  # the package itself installs under the constraints


def test_install_on_a_gpu_box_with_an_older_driver_stays_on_cuda_12(tmp_path) -> None:  # noqa: ANN001
    """Bug: PyPI's torch >= 2.11 and onnxruntime-gpu >= 1.28 are CUDA 13 (driver >= 580), and TORCH_INDEX was
    ignored on a GPU box."""
    old = _install_plan(tmp_path, IS_JETSON="", HAS_NVIDIA="1", GPU_DRIVER_MAJOR="550")
    assert "download.pytorch.org/whl/cu128" in old and '"onnxruntime-gpu<1.28"' in old
    mine = _install_plan(tmp_path, IS_JETSON="", HAS_NVIDIA="1", GPU_DRIVER_MAJOR="550", TORCH_INDEX="https://x/cu126")
    assert "--index-url https://x/cu126" in mine
    new = _install_plan(tmp_path, IS_JETSON="", HAS_NVIDIA="1", GPU_DRIVER_MAJOR="580")
    assert "onnxruntime-gpu<1.28" not in new and '-e ".[gpu,dev]"' in new
    assert '"torch==2.13.0"' in _install_plan(tmp_path, IS_JETSON="", HAS_NVIDIA="")  # no GPU: the CPU wheel


def test_tensorrt_extra_is_pinned_to_10_for_orts_provider() -> None:
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["tensorrt"] == ["tensorrt-cu12>=10,<11"]
    assert extras["jetson"] and all("torch" not in d for d in extras["jetson"])


def test_device_check_without_a_gpu_stops_at_once_with_one_line() -> None:
    done = subprocess.run(["make", "-s", "device-check", f"DEVICE_PY={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if not line.startswith("make")]
    assert len(lines) == 1 and lines[0].startswith("error: device-check needs an NVIDIA GPU")
