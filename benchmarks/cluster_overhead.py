"""Cluster overhead: what `--ray` adds per profiled candidate and per training run, on a one-machine Ray
cluster (this machine's CPUs; the board resource `cpu` on it), each against the same work run here in the
same process.

1. Scheduling: a no-op item through the cluster's map (the path a profile round takes), cold then warm.
2. Profile: 4 tiny candidates, 1 round each, exports cached, here vs `--ray`; wall time per candidate.
3. Training: one tiny run here, as a one-process Ray task, and as a 2-process Ray Train (gloo) group; wall
   time minus the run's own training-step time.
Informational (docs/cluster.md quotes it): no target, exit 0 unless something fails.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from cobench.arch.architecture import Architecture
from cobench.cli import app
from cobench.cluster import connect
from cobench.cluster.ray_cluster import RayCluster
from cobench.fit.corpus import load_corpus
from cobench.fit.train import TrainConfig, train

BOARD = {"cpu": 1}
ARCH = Architecture(name="overhead", vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                    max_seq_len=128)  # fmt: skip
CFG = TrainConfig(tokens=20 * 8 * 64, seq_len=64, batch=8, eval_every=10, ckpt_every=10)
PROFILE = ["profile", "-a", "tiny-gqa-4l", "-a", "tiny-mqa-4l", "-a", "tiny-wide-2l", "-a", "tiny-mha-4l", "--prompt",
           "64", "--generate", "4", "--rounds", "1", "--min-time-s", "0.2", "--max-time-s", "0.5", "--warmup-s", "0.1",
           "--idle-s", "0", "--cooldown-s", "0", "--json"]  # fmt: skip


def _noop() -> None:
    return None


def scheduling(cluster: RayCluster) -> None:
    t0 = time.perf_counter()
    list(cluster.map_unordered(_noop, [()], BOARD))
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(30):
        t0 = time.perf_counter()
        list(cluster.map_unordered(_noop, [()], BOARD))
        warm.append(time.perf_counter() - t0)
    print(f"no-op item needing the board: cold {cold * 1e3:.0f} ms, warm median {statistics.median(warm) * 1e3:.1f} ms "
          f"(min {min(warm) * 1e3:.1f}, max {max(warm) * 1e3:.1f}) over {len(warm)}")  # fmt: skip


def profiling(tmp: Path) -> bool:
    runner = CliRunner()
    cache = ["--cache-dir", str(tmp / "cache")]
    warm = runner.invoke(app, [*PROFILE, *cache, "--store", str(tmp / "warm.db")])  # exports into the cache
    walls = {}
    for name, extra in (("here", []), ("ray", ["--ray", "local"]), ("ray again", ["--ray", "local"])):
        t0 = time.perf_counter()
        r = runner.invoke(app, [*PROFILE, *cache, "--store", str(tmp / f"{name}.db"), *extra])
        walls[name] = time.perf_counter() - t0
        if r.exit_code or warm.exit_code:
            print(f"profile {name} failed: {r.output[-500:]}")
            return False
    per = {k: v / 4 for k, v in walls.items()}
    print(f"profile of 4 candidates x 1 round: here {per['here']:.2f} s/candidate; --ray {per['ray']:.2f} s/candidate "
          f"(+{(per['ray'] - per['here']) * 1e3:.0f} ms), again {per['ray again']:.2f} s/candidate "
          f"(+{(per['ray again'] - per['here']) * 1e3:.0f} ms)")  # fmt: skip
    return True


def training(cluster: RayCluster, tmp: Path) -> None:
    corpus = load_corpus(budget=200_000)
    t0 = time.perf_counter()
    r = train(ARCH, corpus, CFG, tmp / "here" / "ckpt.pt")
    here = time.perf_counter() - t0 - r.train_seconds
    rows = [f"here {here:.2f} s besides {r.train_seconds:.2f} s of steps"]
    for world in (1, 2):
        t0 = time.perf_counter()
        [(_, g, _)] = list(cluster.map_groups(train, [(ARCH, corpus, CFG, tmp / f"w{world}" / "ckpt.pt")], world,
                                              False, tmp / "ray"))  # fmt: skip
        extra = time.perf_counter() - t0 - g.train_seconds
        rows.append(f"{world}-process {'task' if world == 1 else 'Ray Train group'} {extra:.2f} s besides "
                    f"{g.train_seconds:.2f} s of steps (+{extra - here:.2f} s)")  # fmt: skip
    print(f"training run ({CFG.steps} steps, evaluation and checkpoints included in 'besides'): " + "; ".join(rows))


def main() -> int:
    try:
        import ray
    except ImportError:
        print("Ray is not installed (pip install '.[cluster]'): skipped")
        return 0
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), resources=BOARD, include_dashboard=False, log_to_driver=False)
    up = time.perf_counter() - t0
    print(f"one-machine Ray cluster ({os.cpu_count()} CPUs, board resource 'cpu') up in {up:.1f} s")
    cluster = connect("local")
    assert isinstance(cluster, RayCluster)
    with tempfile.TemporaryDirectory() as tmp:
        scheduling(cluster)
        ok = profiling(Path(tmp))
        training(cluster, Path(tmp))
    ray.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
