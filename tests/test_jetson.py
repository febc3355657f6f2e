"""Jetson discovery against recorded trees and outputs of real boards (tests/fixtures/jetson)."""

from __future__ import annotations

import re

from conftest import FIXTURES

from cobench.hardware.doctor import jetson_checks
from cobench.hardware.jetson import discover, parse_l4t_release, parse_nvpmodel

JETSON = FIXTURES / "jetson"


def test_orin_nano_super_tree() -> None:
    info = discover(JETSON / "orin_nano_super")
    assert info.present and info.l4t == "R39.2.1"
    assert info.model == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert [r.label for r in info.rails] == [
        "VDD_IN",
        "VDD_CPU_GPU_CV",
        "VDD_SOC",
    ]  # not "sum of shunt voltages"
    assert info.total_rail == "VDD_IN"
    vdd_in = info.rails[0]
    assert int(vdd_in.voltage_path.read_text()) * int(vdd_in.current_path.read_text()) / 1000 == 7551.36  # mW
    assert info.gpu_devfreq is not None and info.gpu_devfreq.name == "17000000.gpu"


def test_agx_orin_tree_total_rail_and_nc_channels() -> None:
    info = discover(JETSON / "agx_orin")
    assert info.total_rail == "sum of rails"  # AGX Orin measures no input rail
    labels = [r.label for r in info.rails]
    assert "NC" not in labels and "VDDQ_VDD2_1V8AO" in labels and "VDD_IN" not in labels


def test_not_a_jetson(tmp_path) -> None:  # noqa: ANN001
    assert not discover(tmp_path).present
    assert jetson_checks(tmp_path)[0].status == "info"


def test_doctor_reports_rails_on_a_jetson_tree() -> None:
    checks = {c.name: c for c in jetson_checks(JETSON / "orin_nano_super")}
    assert checks["jetson"].status == "ok" and "R39.2.1" in checks["jetson"].detail
    assert "VDD_IN" in checks["power rails"].detail and "918000000" not in checks["gpu devfreq"].detail
    assert "306000000" in checks["gpu devfreq"].detail


def _blocks(name: str) -> list[str]:
    text = (JETSON / name).read_text()
    return [b for b in re.split(r"^# =+$", text, flags=re.M) if b.strip()]


def test_parse_every_recorded_nvpmodel_output() -> None:
    parsed = [parse_nvpmodel(b) for b in _blocks("nvpmodel_q.txt")]
    found = {name: mode for name, mode in parsed if name}
    assert found["40W"] == 4 and found["25W"] == 1 and found["MAXN_SUPER"] == 2
    assert found["MAXN"] == 0 and found["120W"] is None  # Thor's jtop rendering carries no bare id line


def test_parse_every_recorded_l4t_release() -> None:
    text = (JETSON / "nv_tegra_release.txt").read_text()
    releases = {parse_l4t_release(line) for line in text.splitlines() if "(release)" in line}
    assert {
        "R35.4.1",
        "R35.1.0",
        "R36.4.4",
        "R36.4.7",
        "R36.5.0",
        "R38.4.0",
        "R39.2.0",
        "R39.2.1",
    } <= releases
