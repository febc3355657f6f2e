"""Device catalogue: required entries, every number cited, schema errors, user files, power modes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cobench.errors import InputError
from cobench.hardware.devices import catalogue, get_device, parse_device

REQUIRED = [
    "jetson-agx-orin-64gb",
    "jetson-orin-nx-16gb",
    "jetson-orin-nano-8gb",
    "jetson-thor",
    "h100-sxm",
    "h200",
    "a100-80gb",
    "l4",
    "rtx-4090",
    "cpu",
]


def test_catalogue_has_required_devices_with_sources() -> None:
    devices = catalogue()
    assert set(REQUIRED) <= set(devices)
    for d in devices.values():
        quantities = [d.memory_gb, d.memory_bandwidth_gbps, d.reserved_memory_gb, *d.peak_tflops.values()]
        assert all(q.source.strip() for q in quantities), d.name
        assert "fp32" in d.peak_tflops


def test_dense_peaks_are_half_the_sparse_headlines() -> None:
    h100 = get_device("h100-sxm")
    assert h100.peak_tflops["fp16_tensor"].value == pytest.approx(1979 / 2, rel=1e-3)
    assert "sparse / 2" in h100.peak_tflops["fp16_tensor"].derived
    orin = get_device("jetson-agx-orin-64gb")
    assert orin.peak_tflops["int8_tensor"].value == 85.0  # 170 sparse / 2, not the 275 module headline


def test_jetson_power_modes() -> None:
    nx = get_device("jetson-orin-nx-16gb")
    assert nx.mode == "MAXN_SUPER"
    assert {"MAXN_SUPER", "MAXN", "40W", "25W", "15W", "10W"} <= {m.name for m in nx.power_modes}
    old = get_device("jetson-orin-nx-16gb@MAXN")
    assert old.peak_tflops["fp16_tensor"].value == pytest.approx(19.2 * 918 / 1173)
    assert "scaled to MAXN" in old.peak_tflops["fp16_tensor"].derived
    nano15 = get_device("jetson-orin-nano-8gb", "15W")
    assert nano15.memory_bandwidth_gbps.value == 68.3
    with pytest.raises(InputError, match="no power mode 'TURBO'"):
        get_device("jetson-orin-nano-8gb", "TURBO")
    with pytest.raises(InputError, match="unknown device"):
        get_device("tpu-v9")


GOOD = {
    "name": "my-board",
    "kind": "gpu",
    "memory_gb": {"value": 8, "source": "datasheet"},
    "memory_bandwidth_gbps": {"value": 100, "source": "datasheet"},
    "peak_tflops": {
        "fp32": {"value": 5, "source": "datasheet"},
        "fp16_tensor": {"value": 40, "source": "80 sparse", "derived": "/2"},
    },
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "fpga"}, "x.yaml.kind"),
        ({"memory_gb": {"value": -1, "source": "s"}}, "x.yaml.memory_gb.value"),
        ({"memory_gb": {"value": 8}}, "x.yaml.memory_gb.source"),
        ({"memory_gb": 8}, "x.yaml.memory_gb"),
        ({"peak_tflops": {"fp64": {"value": 1, "source": "s"}}}, "x.yaml.peak_tflops.fp64"),
        ({"peak_tflops": {"fp16_tensor": {"value": 1, "source": "s"}}}, "x.yaml.peak_tflops.fp32"),
        ({"bandwidth": 3}, "x.yaml.bandwidth"),
        ({"roofline": {"memory_efficiency": 1.5}}, "x.yaml.roofline.memory_efficiency"),
        ({"power_modes": {"default": "MAX", "modes": [{"name": "LOW"}]}}, "x.yaml.power_modes.default"),
    ],
)
def test_schema_errors_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(InputError) as e:
        parse_device(GOOD | change, "devices/x.yaml")
    assert e.value.field == field


def test_user_devices_from_env_and_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(GOOD))
    monkeypatch.setenv("COBENCH_DEVICES_PATH", str(tmp_path))
    assert get_device("my-board").peak_flops(("fp16_tensor",)) == 40e12
    monkeypatch.delenv("COBENCH_DEVICES_PATH")
    assert "my-board" in catalogue([tmp_path / "mine.yaml"])
    with pytest.raises(InputError, match="does not exist"):
        catalogue([tmp_path / "missing"])


def test_cpu_memory_is_read_from_this_machine() -> None:
    assert get_device("cpu").memory_gb.value > 0.5
