"""Issue 13: the GPU and Jetson paths, checked without a GPU. One test (or a few) per row of the issue's
table, each failing before its fix: the real packages where they install here (nvidia-ml-py, onnxruntime,
onnxruntime-gpu in its own environment), recorded API facts where they do not (TensorRT)."""

from __future__ import annotations

import re
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
