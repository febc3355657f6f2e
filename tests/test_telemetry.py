"""Telemetry sources: Jetson sysfs and tegrastats against recorded real output, CPU, NVML where present."""

from __future__ import annotations

import re
import time

import pytest
from conftest import FIXTURES

from cobench.measure.telemetry import Sampler, Series, select_source
from cobench.measure.telemetry.cpu import CpuSource
from cobench.measure.telemetry.jetson import JetsonSource, parse_tegrastats
from cobench.measure.telemetry.nvml import NvmlSource, throttle_names

JETSON = FIXTURES / "jetson"


def test_jetson_sysfs_source_on_an_orin_nano_super_tree() -> None:
    source = JetsonSource.open(JETSON / "orin_nano_super")
    assert source is not None
    sample = source.read()
    assert sample["rail_VDD_IN_mw"] == pytest.approx(4968 * 1520 / 1000)
    assert sample["power_mw"] == sample["rail_VDD_IN_mw"]  # VDD_IN is the module input: the total
    assert sample["gpu_freq_mhz"] == 306
    facts = source.describe()
    assert facts["l4t"] == "R39.2.1" and facts["total_rail"] == "VDD_IN"
    assert any("not pinned" in w for w in facts["warnings"])  # 306-918 MHz: jetson_clocks not run


def test_agx_orin_total_is_the_sum_of_rails() -> None:
    source = JetsonSource.open(JETSON / "agx_orin")
    assert source is not None and source.describe()["total_rail"] == "sum of rails"


def test_explicit_jetson_source_on_a_non_jetson_says_so(tmp_path) -> None:  # noqa: ANN001
    from cobench.errors import MissingDependency

    with pytest.raises(MissingDependency, match="no Jetson sysfs"):
        select_source("jetson", root=tmp_path)


def _lines(name: str) -> list[str]:
    text = (JETSON / "tegrastats" / name).read_text()
    return [line for line in text.splitlines() if re.match(r"^\d\d-\d\d-\d{4} ", line) or line.startswith("RAM ")]


@pytest.mark.parametrize(
    "name", ["tegrastats_orin_agx.txt", "tegrastats_orin_nano.txt", "tegrastats_orin_nx.txt", "tegrastats_thor.txt"]
)
def test_every_recorded_tegrastats_line_parses(name: str) -> None:
    lines = _lines(name)
    assert lines
    for line in lines:
        s = parse_tegrastats(line)
        assert s["ram_total_mb"] > 0 and "power_mw" in s, line
        assert all(v > -200 for k, v in s.items() if k.startswith("temp_")), line
        assert not any(k == "rail_NC_mw" for k in s)


def test_tegrastats_values_of_known_lines() -> None:
    agx = next(line for line in _lines("tegrastats_orin_agx.txt") if "39%@[305,0]" in line)
    s = parse_tegrastats(agx)
    assert s["gpu_load_pct"] == 39 and s["gpu_freq_mhz"] == 305
    assert s["power_mw"] == 2798 + 799 + 3315  # AGX: sum of rails
    nano = next(line for line in _lines("tegrastats_orin_nano.txt") if "VDD_IN 12479mW" in line)
    n = parse_tegrastats(nano)
    assert n["power_mw"] == 12479 and n["gpu_load_pct"] == 63 and n["temp_gpu_c"] == 53.343


def test_series_energy_from_power_and_from_a_counter() -> None:
    s = Series("test")
    for t in range(11):
        s.add(t * 0.1, {"power_mw": 2000.0})
    assert s.energy_j() == pytest.approx(2.0)  # 2 W for 1 s
    c = Series("test")
    for t in range(5):
        c.add(t * 0.5, {"energy_mj": 1000.0 + 300 * t, "power_mw": 1.0})
    assert c.energy_j() == pytest.approx(1.2)  # the counter wins over integrated power


def test_cpu_source_and_sampler_rate() -> None:
    source = select_source("cpu")
    assert isinstance(source, CpuSource)
    with Sampler(source, rate_hz=50) as sampler:
        time.sleep(0.3)
    n = len(sampler.series.t_s)
    assert 8 <= n <= 20
    assert sampler.series.mean("rss_mb") > 10


def test_throttle_reason_names() -> None:
    assert throttle_names(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]


def test_nvml_source_against_the_real_library_where_a_gpu_exists() -> None:
    source = NvmlSource.open(0)
    if source is None:
        pytest.skip("no NVML-visible GPU on this machine (CI has none; run on a GPU box)")
    first = source.read()
    time.sleep(1.2)
    second = source.read()
    assert second["energy_mj"] >= first["energy_mj"] and second["power_mw"] > 0
    assert source.describe()["driver"]


def test_thor_input_power_comes_from_the_ina238_in_microwatts() -> None:
    """Bug (issue 13): Thor's module input is an INA238 (`power1_input`, µW), not an INA3221 channel; the total
    was the sum of the module rails, and every I²C hwmon device (here a tmp451 sensor) was taken as a rail."""
    source = JetsonSource.open(JETSON / "thor")
    assert source is not None
    sample = source.read()
    assert sample["rail_VIN_mw"] == pytest.approx(40_024.8)  # 40,024,800 µW
    assert sample["power_mw"] == sample["rail_VIN_mw"]  # the input rail is the total, not the sum
    assert sample["rail_VDD_GPU_mw"] == pytest.approx(12040 * 640 / 1000)
    assert "rail_board_mw" not in sample  # the temperature sensor's in1_label is not a rail
    assert "gpu_load_pct" not in sample and sample["gpu_freq_mhz"] == 1575  # gpu-gpc-0 has no load file
    facts = source.describe()
    assert facts["total_rail"] == "VIN" and facts["rails"][0] == "VIN" and "NVML" in facts["gpu_load"]
