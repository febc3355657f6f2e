"""Every loader under fuzz: random bytes, random YAML/JSON trees, and valid files with one value replaced
by an edge case (NaN, ±inf, 1e308, −0, huge and negative integers, strings, lists, nesting). Each input
either loads into an object that computes physically meaningful numbers, or raises the one-line
InputError naming the field — never another exception, within a bounded time."""

from __future__ import annotations

import copy
import json
import math
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cobench.arch.architecture import Architecture, param_counts
from cobench.arch.queue import read_queue
from cobench.arch.space import load_space
from cobench.arch.spec import load_architecture
from cobench.arch.workload import Workload
from cobench.errors import InputError
from cobench.files import read_mapping
from cobench.fit.calibration.record import Calibration
from cobench.fit.runs import read_runs_csv
from cobench.hardware.devices import get_device, parse_device
from cobench.measure.kernels.suites import cost, load_suites
from cobench.predict.operators import Counting
from cobench.predict.roofline import RooflineParams, predict

ROOT = Path(__file__).resolve().parents[1]
SECONDS = 10  # per input: anything slower counts as a hang
SMALL = Architecture(name="t", vocab_size=512, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128)
WORKLOAD = Workload(batch=1, prompt=64, generate=4, precision="fp32")


class Hang(Exception):
    pass


@contextmanager
def bounded(seconds: int = SECONDS) -> Iterator[None]:
    def stop(*_: Any) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _finite_positive(*values: Any) -> None:
    for v in values:
        a = np.asarray(v, dtype=float)
        assert np.all(np.isfinite(a)) and np.all(a >= 0), f"not a physical number: {v}"


def _check_device(path: Path) -> None:
    spec = parse_device(read_mapping(path, "device"), str(path))
    p = predict(SMALL, spec, WORKLOAD, RooflineParams.for_device(spec))
    _finite_positive(p.ttft_s, p.tpot_s)
    assert p.ttft_s > 0 and p.tpot_s > 0


def _check_arch(path: Path) -> None:
    a = load_architecture(str(path))
    total = param_counts(a).total
    assert 0 < int(total) < 10**16
    p = predict(a, get_device("cpu"), WORKLOAD, RooflineParams.for_device(get_device("cpu")))
    _finite_positive(p.ttft_s, p.tpot_s)


def _check_space(path: Path) -> None:
    space = load_space(path)
    assert isinstance(space.grid_size, int) and space.grid_size >= 0
    if space.grid_size <= 20_000:
        for _, _, batch in space.chunks():
            _finite_positive(param_counts(batch).total)


def _check_runs(path: Path) -> None:
    runs = read_runs_csv(path)
    _finite_positive(runs.n_params, runs.n_tokens, runs.loss)


def _check_calibration(path: Path) -> None:
    c = Calibration.from_json(read_mapping(path, "calibration"), where=str(path))
    p = predict(SMALL, get_device("cpu"), WORKLOAD, c.params, c.counting)
    _finite_positive(p.ttft_s, p.tpot_s)


def _check_queue(path: Path) -> None:
    for job in read_queue(path):
        assert 0 < int(param_counts(job.arch).total) < 10**16
        assert all(v is None or 0 < v <= 10**13 for v in (job.tokens, job.prompt, job.batch))


def _check_suite(path: Path) -> None:
    for spec in load_suites(extra=[path]):
        _finite_positive(*cost(spec.kind, spec.shape, 4))


def _hybrid_space() -> dict[str, Any]:
    """cpu-tiny with the layer-pattern axes and fixed variants."""
    space = yaml.safe_load((ROOT / "spaces" / "cpu-tiny.yaml").read_text())
    space["grid"] |= {
        "local_global": [0, 1],
        "sliding_window": [64],
        "linear_fraction": [0.0, 0.5],
        "mla_rank": [0, 32],
    }
    space["fixed"] = (space.get("fixed") or {}) | {"qk_norm": "head", "norm_layout": "sandwich"}
    return space


def _calibration_doc() -> dict[str, Any]:
    params = RooflineParams.for_device(get_device("cpu"))
    interval = {"level": 0.9, "low": 0.9, "high": 1.1, "n": 10}
    return Calibration("cpu", None, "ort", "fp32", params, Counting(), {"ttft": interval, "tpot": interval}).to_json()


def _runs_csv(rows: list[dict[str, Any]]) -> str:
    columns = list(rows[0]) if rows else ["n_params", "n_tokens", "loss"]
    return "\n".join([",".join(columns), *(",".join(str(r.get(c, "")) for c in columns) for r in rows)]) + "\n"


BASES: dict[str, tuple[str, Any, Callable[[Path], None]]] = {
    "device": (".yaml", yaml.safe_load((ROOT / "devices" / "cpu.yaml").read_text()), _check_device),
    "jetson": (".yaml", yaml.safe_load((ROOT / "devices" / "jetson-orin-nx-16gb.yaml").read_text()), _check_device),
    "arch": (".yaml", yaml.safe_load((ROOT / "presets" / "tiny-gqa-4l.yaml").read_text()), _check_arch),
    "hf-config": (".json", json.loads((ROOT / "tests/fixtures/hf/qwen2.5-0.5b.json").read_text()), _check_arch),
    **{  # the 2026 families' readers: nested text_config, layer_types, MLA, linear attention, convolutions
        f"hf-{name}": (".json", json.loads((ROOT / f"tests/fixtures/hf/{name}.json").read_text()), _check_arch)
        for name in ("gemma-3-4b-it", "gpt-oss-20b", "deepseek-v3", "lfm2-350m", "qwen3-next-80b-a3b", "smollm3-3b")
    },
    "space": (".yaml", yaml.safe_load((ROOT / "spaces" / "cpu-tiny.yaml").read_text()), _check_space),
    "space-hybrid": (".yaml", _hybrid_space(), _check_space),
    "calibration": (".json", _calibration_doc(), _check_calibration),
    "queue": (
        ".yaml",
        {
            "source": "test",
            "jobs": [{"architecture": SMALL.to_dict(), "tokens": 1000, "precision": "fp32", "prompt": 64, "batch": 2}],
        },
        _check_queue,
    ),
    "kernels": (".yaml", yaml.safe_load((ROOT / "kernels" / "gemm.yaml").read_text()) | {"name": "fz"}, _check_suite),
    "runs": (
        ".csv",
        [{"n_params": 1e6, "n_tokens": 2e7, "loss": 3.1}, {"n_params": 2e6, "n_tokens": 4e7, "loss": 2.9}],
        _check_runs,
    ),
}

EDGES = [
    math.nan, math.inf, -math.inf, 1e308, -1e308, -0.0, 0, -1, 10**30, -(2**63), 2**64, 1e-300, 0.5,
    "", "abc", "1e3", [], [1, 2], {}, {"a": 1}, None, True, False,
]  # fmt: skip


def _leaves(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += _leaves(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += _leaves(v, (*path, i))
    return found


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


def _write(path: Path, suffix: str, doc: Any) -> None:
    if suffix == ".csv":
        text = _runs_csv(doc) if isinstance(doc, list) and all(isinstance(r, dict) for r in doc) else str(doc)
    elif suffix == ".json":
        text = json.dumps(doc, allow_nan=True)
    else:
        text = yaml.safe_dump(doc, allow_unicode=True)
    path.write_text(text)


def _outcome(check: Callable[[Path], None], path: Path) -> None:
    """Loads and computes meaningful numbers, or one InputError line; anything else fails the test."""
    with bounded():
        try:
            check(path)
        except InputError as e:
            line = str(e)
            assert line and "\n" not in line and "Traceback" not in line, line


edge_values = st.sampled_from(EDGES) | st.integers() | st.floats() | st.text(max_size=8)
trees = st.recursive(
    edge_values, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)  # fmt: skip
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("kind", BASES)
@FUZZ
@given(data=st.data())
def test_one_value_replaced_by_an_edge_case(tmp_path: Path, kind: str, data: st.DataObject) -> None:
    suffix, base, check = BASES[kind]
    where = data.draw(st.sampled_from(_leaves(base)))
    value = data.draw(edge_values | trees)
    path = tmp_path / f"fz{suffix}"
    _write(path, suffix, _replace(base, where, value))
    _outcome(check, path)


@pytest.mark.parametrize("kind", BASES)
@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_random_bytes(tmp_path: Path, kind: str, raw: bytes) -> None:
    suffix, _, check = BASES[kind]
    path = tmp_path / f"fz{suffix}"
    path.write_bytes(raw)
    _outcome(check, path)


@pytest.mark.parametrize("kind", BASES)
@FUZZ
@given(tree=trees)
def test_random_trees(tmp_path: Path, kind: str, tree: Any) -> None:
    suffix, _, check = BASES[kind]
    path = tmp_path / f"fz{suffix}"
    _write(path, suffix, tree)
    _outcome(check, path)


HOSTILE = {
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)),
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "deep mapping": "a: " + "{a: " * 5000 + "1" + "}" * 5000,
    "non-utf8": b"name: \xff\xfe\xfa",
    "binary": bytes(range(256)) * 4,
    "huge": "a: " + "x" * (20 << 20),
}


@pytest.mark.parametrize("kind", BASES)
@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_files_are_refused_in_one_line(tmp_path: Path, kind: str, case: str) -> None:
    suffix, _, check = BASES[kind]
    path = tmp_path / f"fz{suffix}"
    content = HOSTILE[case]
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with bounded(), pytest.raises(InputError) as e:
        check(path)
    assert "\n" not in str(e.value)
