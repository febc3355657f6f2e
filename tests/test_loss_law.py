"""Loss laws recover the parameters of runs generated from them; Pareto frontier invariants; CSV errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_cli import run, run_json

from cobench.fit.loss_law import LAWS, LOG_SCALED, PAPER_PUBLISHED, Runs, fit_law, quality, split
from cobench.search.pareto import frontier, select

TRUTH = {
    "chinchilla": {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37},
    "shape": {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.37, "epsilon": 0.02, "gamma": 0.5},
    "codesign": {
        "E": 1.8,
        "A": 400.0,
        "B": 2000.0,
        "alpha": 0.34,
        "beta": 0.37,
        "epsilon": 0.02,
        "gamma": 0.5,
        "kappa": 0.1,
        "phi": 0.2,
        "mu": 0.5,
    },
}


def synthetic(name: str, n: int, noise: float, seed: int) -> Runs:
    """Runs spanning size, data and shape, with losses from the law itself times log-normal noise."""
    rng = np.random.default_rng(seed)
    layers = rng.integers(2, 33, n).astype(float)
    d_model = 64 * rng.integers(2, 33, n).astype(float)
    heads = d_model / 64
    kv = np.maximum(1, heads / rng.choice([1, 2, 4], n))
    experts = rng.choice([0, 0, 8, 16], n).astype(float)
    top_k = np.where(experts > 0, 2, 0).astype(float)
    d_ff = d_model * rng.choice([2.0, 8 / 3, 4.0], n)
    n_params = 12 * layers * d_model**2 * rng.uniform(0.8, 1.2, n)
    tokens = n_params * rng.uniform(2, 60, n)
    arch = {"d_model": d_model, "n_layers": layers, "n_heads": heads, "n_kv_heads": kv, "d_ff": d_ff}
    arch |= {"n_experts": experts, "top_k": top_k, "d_ff_expert": np.where(experts > 0, d_model / 2, 0)}
    runs = Runs(n_params, tokens, np.ones(n), arch)
    law = LAWS[name]
    x = np.array([np.log(v) if p in LOG_SCALED else v for p, v in TRUTH[name].items()])
    loss = np.exp(law.log_loss(x, n_params, tokens, law.features(runs))) * np.exp(rng.normal(0, noise, n))
    return Runs(n_params, tokens, loss, arch)


@pytest.mark.parametrize("name", ["chinchilla", "shape", "codesign"])
def test_fit_recovers_the_law_it_was_generated_from(name: str) -> None:
    runs = synthetic(name, 80, noise=0.002, seed=1)
    fit_runs, held = split(runs, 0.25, seed=0)
    f = fit_law(name, fit_runs, held, bootstrap=40, seed=0)
    for p, true in TRUTH[name].items():
        low, high = f.intervals[p]
        assert low <= true <= high, (p, true, f.intervals[p], f.params[p])
    assert f.heldout_metrics is not None and f.heldout_metrics["r2"] > 0.98


TRUTH["paper"] = PAPER_PUBLISHED | {"L_inf": 2.3, "alpha_l": 1.4, "kappa_d": 300.0}
TRUTH["paper-transfer"] = {"L_inf": 2.2, "s": 1.3}


def test_the_paper_law_is_fitted_from_its_published_coefficients() -> None:
    """Runs from a law near the paper's: the fit from the published start predicts held-out runs. (L∞ alone is
    not identified: with α_m = 0.05 the d_m term is nearly a constant beside it.)"""
    runs = synthetic("paper", 80, noise=0.002, seed=2)
    fit_runs, held = split(runs, 0.25, seed=0)
    f = fit_law("paper", fit_runs, held, bootstrap=10, seed=0)
    assert f.heldout_metrics is not None and f.heldout_metrics["r2"] > 0.98
    assert f.heldout_metrics["max_abs"] < 0.03


def test_paper_transfer_needs_three_runs_and_keeps_the_published_shape() -> None:
    """A new corpus shifts the floor and scales the rest: four runs recover both, the shape is the paper's."""
    runs = synthetic("paper-transfer", 4, noise=0.0005, seed=3)
    f = fit_law("paper-transfer", runs, None, bootstrap=20, seed=0)
    assert f.params["L_inf"] == pytest.approx(2.2, rel=0.02) and f.params["s"] == pytest.approx(1.3, rel=0.05)
    with pytest.raises(Exception, match="at least 3 runs"):
        fit_law("paper-transfer", runs.take(np.arange(2)), None)


def test_quality_is_r2_and_rmse_of_the_loss() -> None:
    observed = np.array([3.0, 3.5, 4.0])
    q = quality(observed + np.array([0.1, -0.1, 0.0]), observed)
    assert q["rmse"] == pytest.approx(np.sqrt(0.02 / 3))
    assert q["r2"] == pytest.approx(1 - 0.02 / 0.5)


def test_too_few_runs_for_the_law_is_an_error() -> None:
    runs = synthetic("chinchilla", 5, 0.01, 2)
    with pytest.raises(Exception, match="runs: the chinchilla law has 5 parameters"):
        fit_law("chinchilla", runs)


points = st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=60)


@given(points)
def test_frontier_points_are_not_dominated_and_dominate_the_rest(pts: list[tuple[int, int]]) -> None:
    lat = np.array([p[0] for p in pts], dtype=float)
    loss = np.array([p[1] for p in pts], dtype=float)
    mask = frontier(lat, loss)

    def dominates(i: int, j: int) -> bool:
        return lat[i] <= lat[j] and loss[i] <= loss[j] and (lat[i] < lat[j] or loss[i] < loss[j])

    n = len(pts)
    for j in range(n):
        dominated = any(dominates(i, j) for i in range(n))
        assert mask[j] == (not dominated)
        if not mask[j]:
            assert any(mask[i] and dominates(i, j) for i in range(n))


def test_select_spreads_over_the_near_frontier_and_avoids_what_is_known() -> None:
    rng = np.random.default_rng(0)
    lat = rng.uniform(1, 100, 500)
    loss = 3 + 1 / lat + rng.uniform(0, 0.5, 500)
    feats = np.c_[np.log(lat), rng.normal(size=500)]
    picks = select(lat, loss, np.ones(500, dtype=bool), feats, np.zeros((0, 2)), 5)
    assert len(set(picks.tolist())) == 5
    front = frontier(lat, loss)
    near = loss[picks] <= np.interp(lat[picks], np.sort(lat[front]), loss[front][np.argsort(lat[front])]) * 1.01 + 1e-9
    assert near.all()
    assert np.ptp(np.log(lat[picks])) > 1.5  # spread along the frontier, not bunched


def test_fit_cli_on_csv_and_its_errors(tmp_path: Path) -> None:
    runs = synthetic("chinchilla", 30, 0.003, 3)
    csv = tmp_path / "runs.csv"
    rows = zip(runs.n_params, runs.n_tokens, runs.loss, strict=True)
    lines = ["n_params,n_tokens,loss"] + [f"{n},{d},{y}" for n, d, y in rows]
    csv.write_text("\n".join(lines) + "\n")
    result = run_json("fit", "--csv", str(csv), "--bootstrap", "20", "--plot", str(tmp_path / "law"))
    assert set(result["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert set(result["intervals"]) == set(result["params"]) and result["heldout"]["r2"] > 0.9
    assert (tmp_path / "law.png").exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("n_params,loss\n1e6,3.0\n")
    assert "csv.n_tokens" in run("fit", "--csv", str(bad), code=2).stderr
    bad.write_text("n_params,n_tokens,loss\n1e6,abc,3.0\n")
    assert "csv line 2.n_tokens: not a number" in run("fit", "--csv", str(bad), code=2).stderr
    assert "law:" in run("fit", "--csv", str(csv), "--law", "kaplan", code=2).stderr
    assert "runs:" in run("fit", code=2).stderr  # empty store


def test_pareto_and_select_cli(tmp_path: Path) -> None:
    import yaml
    from test_space_sweep import SMALL

    from cobench.arch.queue import read_queue

    store = str(tmp_path / "s.db")
    runs = synthetic("chinchilla", 30, 0.003, 4)
    csv = tmp_path / "runs.csv"
    rows = zip(runs.n_params, runs.n_tokens, runs.loss, strict=True)
    csv.write_text("n_params,n_tokens,loss\n" + "".join(f"{n},{d},{y}\n" for n, d, y in rows))
    run_json("fit", "--csv", str(csv), "--bootstrap", "0", "--store", store, "--plot", str(tmp_path / "law"))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SMALL))
    ref = tmp_path / "ref.yaml"
    ref.write_text(
        yaml.safe_dump({"architecture": {"vocab_size": 1000, "d_model": 96, "n_layers": 4, "n_heads": 3, "d_ff": 256}})
    )
    common = ["--space", str(space), "-d", "jetson-orin-nano-8gb", "--store", store]
    p = run_json("pareto", *common, "--reference", str(ref), "--precision", "fp16", "--precision", "int8",
                 "--out", str(tmp_path / "pareto"))  # fmt: skip
    front = p["frontier"]
    assert front and p["feasible"] <= p["candidates"]
    assert [f["latency_s"] for f in front] == sorted(f["latency_s"] for f in front)
    assert all(a["loss"] > b["loss"] for a, b in zip(front, front[1:], strict=False))
    assert {f["precision"] for f in front} <= {"fp16", "int8"}
    r = p["reference"]
    assert r["best"]["latency_s"] <= r["latency_s"] and r["loss_change"] == pytest.approx(r["best"]["loss"] - r["loss"])
    assert all(Path(f).exists() for f in p["figures"])
    budget = run_json("pareto", *common, "--max-latency", str(front[len(front) // 2]["latency_s"] * 1e3),
                      "--out", str(tmp_path / "p2"))  # fmt: skip
    assert max(f["latency_s"] for f in budget["frontier"]) <= front[len(front) // 2]["latency_s"] * (1 + 1e-9)

    queue = tmp_path / "queue.yaml"
    picked = run_json("select", *common, "--k", "3", "--out", str(queue))
    assert len(picked["selected"]) == 3 and len(read_queue(queue)) == 3
    assert "max_latency_ms:" in run("pareto", *common, "--max-latency", "-1", code=2).stderr
    assert (
        "law:"
        in run("pareto", "--space", str(space), "-d", "cpu", "--store", str(tmp_path / "empty.db"), code=2).stderr
    )


def test_select_works_with_a_negative_stand_in_loss() -> None:
    """Before any law is fitted, select ranks by −log(params): negative numbers (a bug once emptied the pool)."""
    rng = np.random.default_rng(1)
    lat = rng.uniform(1, 100, 200)
    loss = -np.log(lat * rng.uniform(1e4, 2e4, 200))
    picks = select(lat, loss, np.ones(200, dtype=bool), np.c_[np.log(lat)], np.zeros((0, 1)), 3)
    assert len(picks) == 3
