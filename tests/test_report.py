"""The HTML report: built from a real store holding every kind of result, self-contained, and rendered in
headless Chromium with every figure present (skipped only where no Chromium is installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_calibration import _archs, _store_profiles
from test_cli import run_json
from test_loss_law import synthetic
from test_space_sweep import SMALL

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    store = str(tmp / "r.db")
    _store_profiles(Path(store), _archs(5, seed=21), seed=21)
    run_json("kernels", "run", "gemm", "memory", "--store", store, "--max-time-s", "0.3")
    run_json("calibrate", "--store", store, "-o", str(tmp / "cal"), "--folds", "3")
    runs = synthetic("chinchilla", 24, 0.003, 5)
    csv = tmp / "runs.csv"
    rows = zip(runs.n_params, runs.n_tokens, runs.loss, strict=True)
    csv.write_text("n_params,n_tokens,loss\n" + "".join(f"{n},{d},{y}\n" for n, d, y in rows))
    run_json("fit", "--csv", str(csv), "--bootstrap", "0", "--store", store, "--plot", str(tmp / "law"))
    space = tmp / "space.yaml"
    space.write_text(yaml.safe_dump(SMALL))
    run_json("pareto", "--space", str(space), "-d", "cpu", "--store", store, "--out", str(tmp / "pareto"))
    result = run_json("report", "--store", store, "--out", str(tmp / "out"))
    return Path(result["report"])


def test_report_is_self_contained_with_every_section(report: Path) -> None:
    text = report.read_text()
    for section in ("Empirical roofline", "Profiled candidates", "Calibration", "Loss law", "Pareto frontier"):
        assert f"<h2>{section}" in text
    assert text.count('<figure class="fig"') >= 5
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing fetched from a network
    assert (report.parent / "figures" / "pareto-cpu.png").exists()


def test_report_opens_with_the_answer_and_folds_the_environment(report: Path) -> None:
    """The frontier and the pick first, then how sure (calibration), then the evidence; environment last."""
    text = report.read_text()
    order = [text.index(f"<h2>{s}") for s in ("Pareto frontier", "Calibration", "Profiled candidates", "Device and")]
    assert order == sorted(order)
    assert "Recommended within the budgets" in text[order[0] : order[1]]
    environment = text[order[-1] :]
    assert "<details><summary>Environment" in environment or "No profiles yet" in environment


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian package `chromium`)")
def test_report_renders_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None
    figures = int(re.search(r'data-figures="(\d+)"', body.group(0)).group(1))  # type: ignore[union-attr]
    rendered = int(re.search(r'data-rendered="(\d+)"', body.group(0)).group(1))  # type: ignore[union-attr]
    assert figures >= 5 and rendered == figures and 'data-check="ok"' in body.group(0)
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, "--window-size=1200,2400", f"--screenshot={shot}", report.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    assert shot.stat().st_size > 10_000 and np.frombuffer(shot.read_bytes()[:8], np.uint8)[1] == ord("P")
