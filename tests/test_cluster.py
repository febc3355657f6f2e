"""Work across machines on a real Ray cluster on loopback: a head and a second node, each carrying the device
as a resource (as a Jetson does that joins with `ray start --resources`)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FIXTURES
from test_profile import TINY, _defaults, _settings
from test_train import TEXT
from test_train import TINY as TRAIN_TINY
from typer.testing import CliRunner

from cobench.cli import app
from cobench.cluster import connect
from cobench.errors import MissingDependency
from cobench.hardware.devices import get_device
from cobench.measure.profile import profile
from cobench.search.pareto import frontier
from cobench.store import Store

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray's one-machine mode: every address is 127.0.0.1
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

BOARD = "cpu"  # the catalogue device the test boards are
LOOPBACK = {"include_dashboard": False}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    runlog = tmp_path_factory.mktemp("runs") / "runs.log"
    os.environ["COBENCH_TEST_RUNLOG"] = str(runlog)  # the nodes' workers inherit it
    c = Cluster(initialize_head=True, head_node_args=LOOPBACK | {"num_cpus": 2, "resources": {BOARD: 1}})
    c.add_node(**LOOPBACK, num_cpus=1, resources={BOARD: 1})
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()
    del os.environ["COBENCH_TEST_RUNLOG"]


def _runs() -> list[str]:
    path = Path(os.environ["COBENCH_TEST_RUNLOG"])
    return path.read_text().split() if path.exists() else []


CANDIDATES = [(replace(TINY, name=f"board-{i}", d_ff=96 + 16 * i), "fp32") for i in range(4)]
WORKER = [sys.executable, str(FIXTURES / "faulty_worker.py")]


def test_profile_spreads_over_the_boards_and_stores_every_result_once(cluster: Cluster, tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    device = get_device(BOARD)
    rows = profile(CANDIDATES, device, _settings(Path(tmp_path / "cache"), rounds=2), store, _defaults(device),
                   worker=WORKER, cluster=connect(cluster.address))  # fmt: skip
    assert [r.status for r in rows] == ["ok"] * 4
    stored = store.profiles.find()
    assert sorted(r.arch_name for r in stored) == sorted(a.name for a, _ in CANDIDATES)  # each once
    nodes = {rd["node"]["node_id"] for r in stored for rd in r.environment["rounds"]}
    assert len(nodes) == 2  # both boards measured
    assert all(rd["node"]["ip"] == "127.0.0.1" for r in stored for rd in r.environment["rounds"])
    again = profile(CANDIDATES, device, _settings(Path(tmp_path / "cache"), rounds=2), store, _defaults(device),
                    worker=WORKER, cluster=connect(cluster.address))  # fmt: skip
    assert [r.status for r in again] == ["skipped"] * 4  # resume works as without a cluster


def test_a_board_lost_mid_run_reruns_only_its_candidate(cluster: Cluster, tmp_path: Path) -> None:
    """Two 'boards' on one 2-core machine disturb each other, so rounds get re-measured too: count runs per
    (candidate, round)."""
    doomed = cluster.add_node(**LOOPBACK, num_cpus=1, resources={BOARD: 1})
    cluster.wait_for_nodes()
    store = Store(tmp_path / "p.db")
    device = get_device(BOARD)
    candidates = [(replace(a, name=f"lost-{i}"), p) for i, (a, p) in enumerate(CANDIDATES)]
    before = len(_runs())
    finished_before_kill: list[str] = []

    def kill_once(r, round_: int, rounds: int, failure: str | None) -> None:  # noqa: ANN001
        if not finished_before_kill:
            finished_before_kill.append(f"{r.arch_name}#{round_}")
            cluster.remove_node(doomed)  # a board unplugged while it measures a candidate

    rows = profile(candidates, device, _settings(Path(tmp_path / "cache")), store, _defaults(device),
                   worker=WORKER, on_round=kill_once, cluster=connect(cluster.address))  # fmt: skip
    assert [r.status for r in rows] == ["ok"] * 4
    assert sorted(r.arch_name for r in store.profiles.find()) == sorted(a.name for a, _ in candidates)
    runs = _runs()[before:]
    twice = [run for run in set(runs) if runs.count(run) > 1]
    assert len(twice) <= 1 and not set(twice) & set(finished_before_kill)  # only the lost board's round ran again
    assert all(runs.count(run) <= 2 for run in runs)


def test_cli_profile_with_ray_and_its_errors(cluster: Cluster, tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "p.db")
    quick = ["--min-iters", "3", "--min-time-s", "0.05", "--warmup-s", "0.02", "--idle-s", "0", "--cooldown-s", "0"]
    base = ["profile", "-a", "tiny-gqa-4l", "--prompt", "16", "--generate", "2", "--rounds", "1", *quick, "--store"]
    base.append(store)
    r = runner.invoke(app, [*base, "--ray", cluster.address, "--json"])
    assert r.exit_code == 0, r.output
    assert '"status": "ok"' in r.stdout
    env = Store(store, read_only=True).profiles.find()[0].environment
    assert env["node"]["ip"] == "127.0.0.1"
    r = runner.invoke(app, [*base, "-d", "jetson-orin-nx-16gb", "--runner-device", "cpu", "--ray", cluster.address])
    assert r.exit_code == 6 and "carries the resource 'jetson-orin-nx-16gb'" in r.stderr
    assert "ray start --address=HEAD --resources=" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    t0 = time.perf_counter()
    r = runner.invoke(app, [*base, "--ray", dead])
    assert r.exit_code == 6 and f"no Ray cluster answers at {dead}" in r.stderr
    assert time.perf_counter() - t0 < 30  # not Ray's minutes of retrying
    r = runner.invoke(app, [*base, "--ray", "not-an-address"])
    assert r.exit_code == 6 and "is not HOST:PORT" in r.stderr


def test_train_queue_as_two_process_ddp_groups_gives_the_one_process_curves(cluster: Cluster, tmp_path: Path) -> None:
    """Two runs (dense, and MoE with experts a step may not route to), each as a 2-worker Ray Train group on
    gloo, against the same queue trained here in one process."""
    data = tmp_path / "text.txt"
    data.write_text(TEXT)
    moe = replace(TRAIN_TINY, name="tiny-moe", n_experts=4, top_k=1, d_ff_expert=32)
    queue = tmp_path / "queue.yaml"
    queue.write_text(yaml.safe_dump({"jobs": [{"architecture": a.to_dict(), "tokens": 6 * 4 * 32}
                                              for a in (TRAIN_TINY, moe)]}))  # fmt: skip
    flags = ["train", "--queue", str(queue), "--data", str(data), "--seq-len", "32", "--batch", "4", "--eval-every",
             "2", "--json"]  # fmt: skip
    runner = CliRunner()
    here = runner.invoke(app, [*flags, "--store", str(tmp_path / "here.db"), "--checkpoint-dir", str(tmp_path / "a")])
    there = runner.invoke(app, [*flags, "--store", str(tmp_path / "there.db"), "--checkpoint-dir",
                                str(tmp_path / "b"), "--ray", cluster.address, "--gpus-per-run", "2"])  # fmt: skip
    assert here.exit_code == 0 and there.exit_code == 0, there.output
    for a, b in zip(json.loads(here.stdout), json.loads(there.stdout), strict=True):
        assert a["arch_name"] == b["arch_name"] and b["environment"]["world"] == 2
        assert b["environment"]["node"]["ip"] == "127.0.0.1" and b["environment"]["mfu"] > 0
        assert b["environment"]["peak_uncertain"] is True  # the generic CPU's peak is a placeholder
        assert [c["step"] for c in a["curve"]] == [c["step"] for c in b["curve"]] == [2, 4, 6]
        for x, y in zip(a["curve"], b["curve"], strict=True):
            assert y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-4)
            assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-4)
    assert (tmp_path / "b" / json.loads(there.stdout)[0]["key"] / "checkpoint.pt").exists()
    r = runner.invoke(app, [*flags, "--store", str(tmp_path / "x.db"), "--gpus-per-run", "2"])
    assert r.exit_code == 6 and "give --ray ADDRESS" in r.stderr
    r = runner.invoke(app, [*flags, "--store", str(tmp_path / "x.db"), "--gpus-per-run", "3", "--ray", cluster.address])
    assert r.exit_code == 2 and "gpus-per-run: 3 processes per run must split the batch of 4" in r.stderr


def _frontier(rows: list[dict]) -> set[int]:
    lat = np.array([r["e2e_s"] for r in rows])
    size = np.array([r["params_total"] for r in rows], dtype=float)
    return {rows[i]["grid_index"] for i in np.flatnonzero(frontier(lat, -size))}


def test_sweep_on_the_cluster_gives_the_same_frontier_and_top_k(cluster: Cluster, tmp_path: Path) -> None:
    """12 chunks of a 777,600-point grid over the cluster's CPUs; only the chunks' best come back."""
    runner = CliRunner()
    space = str(Path(__file__).parents[1] / "benchmarks" / "space_100k.yaml")
    base = ["sweep", "--space", space, "-d", "jetson-orin-nx-16gb", "--uncalibrated", "--top", "7", "--json"]
    here = runner.invoke(app, [*base, "--store", str(tmp_path / "here.db")])
    there = runner.invoke(app, [*base, "--store", str(tmp_path / "there.db"), "--ray", cluster.address])
    assert here.exit_code == 0 and there.exit_code == 0, there.output
    a, b = json.loads(here.stdout), json.loads(there.stdout)
    assert a["top"] == b["top"] and (a["valid"], a["kept"]) == (b["valid"], b["kept"])
    assert b["stored"] < a["stored"] == a["kept"]  # only the best came back
    every = Store(tmp_path / "here.db", read_only=True).sweeps.candidates(a["sweep_id"])
    best = Store(tmp_path / "there.db", read_only=True).sweeps.candidates(b["sweep_id"])
    assert _frontier(every) == _frontier(best) and len(_frontier(every)) > 5


def test_without_ray_installed_the_flag_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependency, match=r"pip install 'cobench\[cluster\]'"):
        connect("127.0.0.1:6379")
    assert connect(None).address is None  # no --ray: this machine, Ray never imported
