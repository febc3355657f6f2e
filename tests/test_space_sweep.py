"""Search spaces, sweeps and the store: enumeration against brute force, resume, atomic chunks."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cobench.arch import space as space_module
from cobench.arch.architecture import Architecture, param_counts
from cobench.arch.space import load_space, parse_space
from cobench.errors import InputError, StoreError
from cobench.hardware.devices import get_device
from cobench.predict.roofline import RooflineParams
from cobench.search.pareto import frontier
from cobench.search.sweep import Keep, run_sweep
from cobench.store import SCHEMA_VERSION, Store
from cobench.store.export import export_rows
from cobench.store.schema import CANDIDATE_COLUMNS

SMALL = {
    "name": "small",
    "fixed": {"vocab_size": 1000, "tie_embeddings": True},
    "grid": {
        "d_model": [64, 96, 128],
        "n_layers": [2, 4],
        "n_heads": [2, 3, 4],
        "n_kv_heads": [1, 2, 4],
        "ffn_ratio": [2.0, 4.0],
        "n_experts": [0, 4],
        "top_k": [1, 2, 5],
    },
    "constraints": {"max_params": 3.0e6, "ffn_multiple": 16, "head_dim_multiple": 8},
    "workload": {"prompt": 64, "generate": 4},
}


def brute_force(spec: dict) -> set[tuple]:
    """The same space enumerated one candidate at a time through the validated Architecture."""
    g = spec["grid"]
    found = set()
    for d, layers, heads, kv, ratio, experts, k in itertools.product(*g.values()):
        if experts == 0 and k != g["top_k"][0]:
            continue
        try:
            a = Architecture(
                vocab_size=1000,
                d_model=d,
                n_layers=layers,
                n_heads=heads,
                n_kv_heads=kv,
                d_ff=int(np.ceil(ratio * d / 16) * 16),
                tie_embeddings=True,
                n_experts=experts,
                top_k=k if experts else 0,
            )
        except InputError:
            continue
        if a.head_dim % 8 or param_counts(a).total > 3.0e6:
            continue
        found.add((d, layers, heads, kv, a.d_ff, experts, k if experts else 0))
    return found


def test_enumeration_matches_brute_force() -> None:
    s = parse_space(SMALL)
    got = set()
    for _, _, batch in s.chunks():
        got |= set(
            zip(
                batch.d_model.tolist(),
                batch.n_layers.tolist(),
                batch.n_heads.tolist(),
                batch.n_kv_heads.tolist(),
                batch.d_ff.tolist(),
                batch.n_experts.tolist(),
                batch.top_k.tolist(),
                strict=True,
            )
        )
    assert got == brute_force(SMALL)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"grid": {"d_model": [64], "n_layers": [2]}}, "space.grid.n_heads"),
        ({"grid": SMALL["grid"] | {"width": [1]}}, "space.grid.width"),
        ({"grid": SMALL["grid"] | {"n_layers": {"range": [8, 2, 1]}}}, "space.grid.n_layers"),
        ({"grid": SMALL["grid"] | {"n_layers": [2.5]}}, "space.grid.n_layers[0]"),
        ({"grid": SMALL["grid"] | {"d_model": []}}, "space.grid.d_model"),
        ({"constraints": {"max_parms": 1}}, "space.constraints.max_parms"),
        ({"constraints": {"max_params": -5}}, "space.constraints.max_params"),
        ({"fixed": {"ffn": "relu"}}, "space.fixed.ffn"),
        ({"fixed": {"d_model": 64}}, "space.fixed.d_model"),
        ({"workload": {"prompt": 0}}, "workload.prompt"),
        ({"budget": 3}, "space.budget"),
    ],
)
def test_invalid_spaces_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(InputError) as e:
        parse_space(SMALL | change)
    assert e.value.field == field


def test_yaml_exponent_without_sign_is_a_number(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(SMALL).replace("3000000.0", "3.0e6"))
    assert load_space(f).constraints["max_params"] == 3.0e6


def _sweep(store: Store, spec: dict = SMALL, progress=None):  # noqa: ANN001, ANN202
    device = get_device("jetson-orin-nano-8gb")
    device_id = store.catalog.put_device(device)
    return run_sweep(parse_space(spec), device, store, RooflineParams.for_device(device), device_id, progress)


def test_sweep_resumes_after_interrupt_without_redoing_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(space_module, "CHUNK", 100)  # several chunks from a small space
    store = Store(tmp_path / "s.db")
    full = _sweep(Store(tmp_path / "reference.db"))
    assert parse_space(SMALL).n_chunks > 3

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _sweep(store, progress=interrupt)
    assert store.sweeps.done_chunks(full.sweep_id) == {0, 1}
    resumed = _sweep(store)
    assert resumed.chunks_skipped == 2 and resumed.chunks_run == full.chunks_run - 2
    assert resumed.kept == full.kept
    again = _sweep(store)
    assert again.chunks_run == 0
    rows = store.sweeps.candidates(full.sweep_id)
    assert len(rows) == full.kept and len({r["grid_index"] for r in rows}) == full.kept


@pytest.mark.parametrize("sort", ["e2e_s", "-params_total", "tpot_s"])
def test_keeping_the_best_of_each_chunk_keeps_the_grids_top_k_and_frontier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sort: str
) -> None:
    monkeypatch.setattr(space_module, "CHUNK", 100)
    device = get_device("jetson-orin-nano-8gb")
    space, params = parse_space(SMALL), RooflineParams.for_device(device)
    results = {}
    for keep in (Keep(), Keep(best=True, top=5, sort=sort)):
        store = Store(tmp_path / f"{keep.best}.db")
        r = run_sweep(space, device, store, params, store.catalog.put_device(device), keep=keep)
        results[keep.best] = r, store.sweeps.candidates(r.sweep_id, sort)
    (every, all_rows), (best, best_rows) = results[False], results[True]
    assert best.sweep_id != every.sweep_id and (best.valid, best.kept) == (every.valid, every.kept)
    assert best.stored < every.stored == every.kept
    assert best_rows[:5] == all_rows[:5]
    latency = Keep(sort=sort).latency
    grid = lambda rows: {rows[i]["grid_index"] for i in np.flatnonzero(frontier(  # noqa: E731
        np.array([r[latency] for r in rows]), -np.array([r["params_total"] for r in rows], dtype=float)))}  # fmt: skip
    assert grid(best_rows) == grid(all_rows)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_the_union_of_the_chunks_best_holds_the_whole_tables_best(n: int, parts: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 5, size=(n, len(CANDIDATE_COLUMNS))).astype(float)  # small ints: many ties
    table[:, CANDIDATE_COLUMNS.index("grid_index")] = np.arange(n)
    keep = Keep(best=True, top=3, sort="ttft_s")
    cuts = np.sort(rng.integers(0, n + 1, size=parts - 1))
    kept = np.concatenate([start + np.flatnonzero(keep.mask(table[start:stop]))
                           for start, stop in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True)])  # fmt: skip
    assert set(np.flatnonzero(keep.mask(table))) <= set(kept.tolist())


def test_interrupted_chunk_commits_nothing(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    _sweep(store)
    before = store.connection.db.execute("SELECT COUNT(*) FROM sweep_candidates").fetchone()[0]
    with pytest.raises(RuntimeError), store.connection.transaction() as db:
        db.execute("DELETE FROM sweep_candidates")
        raise RuntimeError("crash mid-write")
    assert store.connection.db.execute("SELECT COUNT(*) FROM sweep_candidates").fetchone()[0] == before


def test_store_wal_version_and_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    assert store.connection.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.version == SCHEMA_VERSION
    store.close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(StoreError, match="newer than this cobench"):
        Store(path)
    (tmp_path / "junk.db").write_text("not a database at all" * 100)
    with pytest.raises(StoreError, match="not a usable cobench store"):
        Store(tmp_path / "junk.db")


def test_export_csv_and_json(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    result = _sweep(store)
    rows = store.sweeps.candidates(result.sweep_id, "-params_total", 5)
    assert [r["params_total"] for r in rows] == sorted((r["params_total"] for r in rows), reverse=True)
    export_rows(rows, tmp_path / "top.json")
    assert json.loads((tmp_path / "top.json").read_text()) == rows
    export_rows(rows, tmp_path / "top.csv")
    assert (tmp_path / "top.csv").read_text().count("\n") == 6
    with pytest.raises(InputError, match="give --format or end the name in"):
        export_rows(rows, tmp_path / "top.xlsx")
    with pytest.raises(InputError, match="unknown column"):
        store.sweeps.candidates(result.sweep_id, "speed")


def test_latency_budget_constraint(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    everything = _sweep(store)
    budget = _sweep(store, SMALL | {"constraints": SMALL["constraints"] | {"max_tpot_ms": 0.35}})
    rows = store.sweeps.candidates(budget.sweep_id)
    assert 0 < budget.kept < everything.kept
    assert all(r["tpot_s"] * 1e3 <= 0.35 for r in rows)


def test_layer_pattern_axes_give_the_kinds_and_keep_the_plain_candidates_once(tmp_path: Path) -> None:
    """k local : 1 global, the window (only where there are sliding layers), a linear share and MLA rank."""

    s = parse_space(
        {
            "fixed": {"vocab_size": 1000, "head_dim": 64},
            "grid": {
                "d_model": [512], "n_layers": [12], "n_heads": [8], "local_global": [0, 5],
                "sliding_window": [256, 1024], "linear_fraction": [0.0, 0.75], "mla_rank": [0, 128],
            },
            "workload": {"prompt": 4096},
        }
    )  # fmt: skip
    index, batch = s.chunk(0)
    archs = [batch.architecture(i) for i in range(len(batch))]
    counts = sorted((a.layer_counts["sliding"], a.layer_counts["linear"], a.layer_counts["mla"], a.sliding_window or 0)
                    for a in archs)  # fmt: skip
    # 12 layers: 0 or 9 linear; of the attention layers left one in 6 is global (GQA or MLA), the rest slide
    assert len(archs) == len({json.dumps(a.to_dict(), sort_keys=True) for a in archs})  # no duplicates
    assert (10, 0, 0, 256) in counts and (10, 0, 2, 1024) in counts  # 5:1 → 2 global, MLA or GQA
    assert (0, 9, 3, 0) in counts and (0, 0, 0, 0) in counts  # window irrelevant without sliding layers: once
    assert sum(c == (0, 0, 0, 0) for c in counts) == 1
    for a in archs:
        assert a.layer_counts["full"] + a.layer_counts["mla"] >= 1
        if a.layer_counts["sliding"]:  # the global layer closes each group of six
            assert a.kinds[5] in ("full", "mla") and a.kinds[0] == "sliding"


def test_local_global_without_a_window_is_an_error() -> None:

    with pytest.raises(InputError) as e:
        parse_space({"grid": {"d_model": [512], "n_layers": [12], "n_heads": [8], "local_global": [3]}})
    assert e.value.field == "space.grid.sliding_window"


def test_sweep_stores_hybrid_candidates_and_profile_gets_them_back(tmp_path: Path) -> None:
    """The store keeps the variant columns (migration 9): a stored candidate is the architecture it was."""
    from typer.testing import CliRunner

    from cobench.cli import app
    from cobench.measure.profile import sweep_architecture

    space = tmp_path / "hybrid.yaml"
    space.write_text(
        "fixed: {vocab_size: 1000, qk_norm: head}\n"
        "grid: {d_model: [256], n_layers: [8], n_heads: [4], local_global: [3], sliding_window: [128],"
        " linear_fraction: [0.5]}\n"
        "workload: {prompt: 2048, generate: 8}\n"
    )
    store = tmp_path / "s.db"
    result = CliRunner().invoke(app, ["sweep", "-s", str(space), "-d", "cpu", "--store", str(store), "--json"])
    assert result.exit_code == 0, result.stderr
    rows = Store(store).sweeps.candidates(json.loads(result.stdout)["sweep_id"])
    back = sweep_architecture(rows[0], "hybrid")
    expected = parse_space(__import__("yaml").safe_load(space.read_text())).chunk(0)[1].architecture(0)
    assert back.layer_counts == expected.layer_counts == {"full": 1, "sliding": 3, "mla": 0, "linear": 4, "conv": 0}
    assert back.qk_norm == "head" and back.sliding_window == 128
