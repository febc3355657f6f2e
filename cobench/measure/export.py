"""ONNX export of a candidate: a prefill graph and a decode-step graph, validated, content-addressed.

- prefill: input_ids [batch, seq] → logits [batch, 1, vocab] (last position, as the roofline counts),
  present_k / present_v [layers, batch, kv_heads, seq, head_dim]
- decode: input_ids [batch, 1], past_k / past_v [layers, batch, kv_heads, past, head_dim] → logits,
  present_k / present_v with past + 1 positions

Both come from `torch.onnx.export(..., dynamo=True)` of the same `cobench.arch.model` module, with dynamic
batch / sequence / past axes. Precisions: fp32; fp16 (weights and activations, from a half model);
int8 (onnxruntime dynamic quantisation of the fp32 graphs, for CPU). Every export is checked with the
ONNX checker and by comparing ONNX Runtime with torch on random tokens, with a tolerance per precision.
The cache key hashes the architecture, precision, opset, this module's format version and the
exporter/runtime library versions, so a re-run reuses the files and an upgrade re-exports.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.metadata as md
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cobench.arch.architecture import Architecture
from cobench.errors import CobenchError, InputError, MissingDependency

FORMAT_VERSION = 2  # 2: the engine graph's layer kinds (state inputs, GroupQueryAttention attributes)
DEFAULT_CACHE = Path(os.environ.get("COBENCH_CACHE", ".cobench/cache"))  # content-addressed exports
OPSET = 18
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
# Error = |ORT − torch fp32| / std(torch logits), max over logits for fp32/fp16 (kernels differ only in
# summation order / rounding) and root-mean-square for int8 (dynamic quantisation perturbs every matmul,
# so single logits can move by more than their spread while the distribution stays put).
TOLERANCE = {"fp32": 1e-3, "fp16": 5e-2, "int8": 0.3}
ERROR_NORM = {"fp32": "max", "fp16": "max", "int8": "rms"}
GRAPHS = ("prefill", "decode")


class ExportError(CobenchError):
    """Export or its validation failed; the message says which graph and by how much."""


@dataclass(frozen=True)
class Exported:
    key: str
    directory: Path
    precision: str
    meta: dict[str, Any]

    def graph(self, phase: str) -> Path:
        return self.directory / f"{phase}.onnx"


def library_versions() -> dict[str, str]:
    versions = {}
    for dist in ("torch", "onnx", "onnxscript", "onnxruntime", "onnxruntime-gpu"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return versions


def export_key(arch: Architecture, precision: str, opset: int = OPSET) -> str:
    body = {k: v for k, v in arch.to_dict().items() if k != "name"}
    blob = json.dumps([body, precision, opset, FORMAT_VERSION, library_versions()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export(arch: Architecture, precision: str, cache_dir: Path, seed: int = 0, opset: int = OPSET) -> Exported:
    """Export (or reuse) both graphs of `arch` at `precision` under `cache_dir/<key>/`."""
    if precision not in EXPORT_PRECISIONS:
        raise InputError("precision", f"ONNX export supports {', '.join(EXPORT_PRECISIONS)}, not {precision!r}")
    key = export_key(arch, precision, opset)
    return cached_build(key, cache_dir, precision, lambda work: _export_into(work, arch, precision, seed, opset))


def export_engine(arch: Architecture, precision: str, cache_dir: Path, seed: int = 0) -> Exported:
    """Build (or reuse) the engine graph of `arch` (measure/engine_graph.py) under `cache_dir/<key>/`."""
    from cobench.measure import engine_graph

    if precision not in engine_graph.ENGINE_PRECISIONS:
        raise InputError("precision", f"the engine graph runs {', '.join(engine_graph.ENGINE_PRECISIONS)}")
    key = export_key(arch, f"engine-{precision}", engine_graph.OPSET)
    return cached_build(key, cache_dir, precision, lambda work: _build_engine_into(work, arch, precision, seed))


def cached_build(key: str, cache_dir: Path, precision: str, build: Any) -> Exported:
    """`cache_dir/<key>/` if it is complete, else built by `build(work)` in a private folder and renamed into
    place (atomic: a crash never leaves a half-written entry; a concurrent writer's entry is as good)."""
    target = cache_dir / key
    meta_path = target / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        return Exported(key, target, precision, meta | {"cache_hit": True})
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_dir))
    try:
        meta = build(work)
        (work / "meta.json").write_text(json.dumps(meta, indent=1))
        work.rename(target)
    except OSError as e:
        shutil.rmtree(work, ignore_errors=True)
        if e.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not meta_path.exists():
            raise
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    meta = json.loads(meta_path.read_text())
    return Exported(key, target, precision, meta | {"cache_hit": False})


def _build_engine_into(work: Path, arch: Architecture, precision: str, seed: int) -> dict[str, Any]:
    import onnx
    import torch

    from cobench.arch.model import build_model
    from cobench.measure import engine_graph

    t0 = time.perf_counter()
    model = build_model(arch, seed=seed, dtype=torch.float32)
    with (work / "model.onnx.data").open("wb") as data:  # weights beside the graph: no 2 GiB protobuf limit
        proto = engine_graph.build(model, arch, precision, data, "model.onnx.data")
    onnx.save_model(proto, str(work / "model.onnx"))
    build_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    errors = validate_engine(work, arch, precision, model)
    path = work / "model.onnx"
    files = [f for f in (path, work / "model.onnx.data") if f.exists()]
    return {
        "format": "engine",
        "arch": arch.to_dict(),
        "precision": precision,
        "opset": engine_graph.OPSET,
        "libraries": library_versions(),
        "validation": errors,
        "sha256": {f.name: file_sha256(f) for f in files},
        "bytes": {f.name: f.stat().st_size for f in files},
        "build_s": build_s,
        "validate_s": time.perf_counter() - t1,
    }


def validate_engine(work: Path, arch: Architecture, precision: str, model: Any, steps: int = 3) -> dict[str, float]:
    """Relative error of the engine graph's logits against the torch module: the prompt, then `steps`
    decode steps written in place into the preallocated cache."""
    import torch

    from cobench.measure.runners.ort_engine import OrtEngineRunner

    exported = Exported("validation", work, precision, {"validation": None, "sha256": {}, "cache_hit": False})
    runner = OrtEngineRunner.from_exported(exported, arch, "cpu", {"capacity": 11 + steps + 1, "prepack": False})
    from cobench.arch.model import StaticCache

    ids = np.random.default_rng(0).integers(0, arch.vocab_size, (2, 11))
    cache = runner.new_cache(2)
    got = [runner.logits(ids, cache)]
    reference = StaticCache.allocate(arch, 2, 11 + steps + 1, torch.float32, "cpu", model)  # every layer kind
    with torch.no_grad():
        want = [model.step(torch.from_numpy(ids), reference, torch.arange(11), 11).numpy()]
        token = ids[:, -1:]
        for p in range(11, 11 + steps):
            got.append(runner.logits(token, cache))
            want.append(model.step(torch.from_numpy(token), reference, torch.tensor([p]), p + 1).numpy())
    norm = ERROR_NORM[precision]
    errors = {
        "prefill": rel_error(got[0], want[0], norm),
        "decode": max(rel_error(g, w, norm) for g, w in zip(got[1:], want[1:], strict=True)),
    }
    return _within_tolerance(errors, precision, "engine graph {phase}")


def _modules(arch: Architecture, precision: str, seed: int) -> tuple[Any, Any, Any]:
    import torch

    from cobench.arch.model import build_model

    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = build_model(arch, seed=seed, dtype=dtype)

    class Prefill(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.model(input_ids)

    class Decode(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor
        ) -> tuple[torch.Tensor, ...]:
            return self.model(input_ids, past_k, past_v)

    return model, Prefill(), Decode()


def _export_into(work: Path, arch: Architecture, precision: str, seed: int, opset: int) -> dict[str, Any]:
    try:
        import onnx
        import torch
    except ImportError as e:
        raise MissingDependency(f"export needs torch, onnx and onnxscript ({e.name} missing): make install") from None
    source = "fp32" if precision == "int8" else precision
    model, prefill, decode = _modules(arch, source, seed)
    batch = torch.export.Dim("batch", min=1, max=256)
    seq = torch.export.Dim("seq", min=2, max=arch.max_seq_len)
    past = torch.export.Dim("past", min=1, max=arch.max_seq_len - 1)
    ids = torch.randint(0, arch.vocab_size, (2, 8))  # batch 2: torch.export specialises a size-1 example
    with torch.no_grad():
        _, k, v = model(ids)
    timings: dict[str, float] = {}
    specs = {
        "prefill": (prefill, (ids,), {"input_ids": {0: batch, 1: seq}}, ["input_ids"]),
        "decode": (
            decode,
            (ids[:, :1], k, v),
            {"input_ids": {0: batch}, "past_k": {1: batch, 3: past}, "past_v": {1: batch, 3: past}},
            ["input_ids", "past_k", "past_v"],
        ),
    }
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" chatter
    for phase, (module, args, dynamic, names) in specs.items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                args,
                dynamo=True,
                dynamic_shapes=dynamic,
                input_names=names,
                output_names=["logits", "present_k", "present_v"],
                opset_version=opset,
                verbose=False,
            )
        program.save(str(work / f"{phase}.onnx"))
        timings[f"{phase}_export_s"] = time.perf_counter() - t0
    if precision == "int8":
        _quantize(work)
    for phase in GRAPHS:
        onnx.checker.check_model(str(work / f"{phase}.onnx"))
    errors = validate(work, arch, precision, seed)
    return {
        "arch": arch.to_dict(),
        "precision": precision,
        "opset": opset,
        "format_version": FORMAT_VERSION,
        "libraries": library_versions(),
        "seed": seed,
        **timings,
        "validation": errors,
        "tolerance": TOLERANCE[precision],
        "sha256": {phase: file_sha256(work / f"{phase}.onnx") for phase in GRAPHS},
        "bytes": {phase: (work / f"{phase}.onnx").stat().st_size for phase in GRAPHS},
    }


def _quantize(work: Path) -> None:
    """W8A8 dynamic quantisation (weights int8 per channel, activations quantised at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # its "consider pre-processing" advice is for CNNs
    for phase in GRAPHS:
        src, dst = work / f"{phase}.onnx", work / f"{phase}.int8.onnx"
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True)
        dst.replace(src)


def validate(work: Path, arch: Architecture, precision: str, seed: int) -> dict[str, float]:
    """Relative max error of ORT logits against the fp32 torch module, prefill and a decode step."""
    import onnxruntime as ort
    import torch

    from cobench.arch.model import build_model

    reference = build_model(arch, seed=seed, dtype=torch.float32)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, arch.vocab_size, (2, 11))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    prefill = ort.InferenceSession(str(work / "prefill.onnx"), options, providers=["CPUExecutionProvider"])
    decode = ort.InferenceSession(str(work / "decode.onnx"), options, providers=["CPUExecutionProvider"])
    logits, k, v = prefill.run(None, {"input_ids": ids})
    step_ids = ids[:, -1:]
    step_logits, _, _ = decode.run(None, {"input_ids": step_ids, "past_k": k, "past_v": v})
    with torch.no_grad():
        ref_logits, ref_k, ref_v = reference(torch.from_numpy(ids))
        ref_step, _, _ = reference(torch.from_numpy(step_ids), ref_k, ref_v)
    errors = {
        "prefill": rel_error(logits, ref_logits.numpy(), ERROR_NORM[precision]),
        "decode": rel_error(step_logits, ref_step.numpy(), ERROR_NORM[precision]),
    }
    return _within_tolerance(errors, precision, "{phase} graph")


def _within_tolerance(errors: dict[str, float], precision: str, label: str) -> dict[str, float]:
    """The errors, or ExportError naming the first graph (`label` with {phase}) past the precision's tolerance."""
    for phase, error in errors.items():
        if not error <= TOLERANCE[precision]:
            raise ExportError(
                f"{label.format(phase=phase)} ({precision}) differs from torch by {error:.3g} "
                f"({ERROR_NORM[precision]} / std; tolerance {TOLERANCE[precision]})"
            )
    return errors


def rel_error(got: np.ndarray, want: np.ndarray, norm: str) -> float:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    scale = float(np.std(want)) or 1.0
    return float(np.max(diff) if norm == "max" else np.sqrt(np.mean(diff**2))) / scale


def export_to(
    archs: list[Architecture], precisions: list[str], out_dir: Path, cache_dir: Path | None = None
) -> list[dict[str, Any]]:
    """`cobench export`: each architecture at each precision, from the cache (exported there if new), copied
    to <out_dir>/<arch>-<precision>/; one row per copy with its validation error, hashes and sizes."""
    rows = []
    for a in archs:
        for p in precisions:
            e = export(a, p, cache_dir or DEFAULT_CACHE)
            target = out_dir / f"{a.name}-{p}"
            target.mkdir(parents=True, exist_ok=True)
            for name in ("prefill.onnx", "decode.onnx", "meta.json"):
                shutil.copyfile(e.directory / name, target / name)
            rows.append(
                {
                    "arch": a.name,
                    "precision": p,
                    "key": e.key,
                    "out": str(target),
                    "cache_hit": e.meta["cache_hit"],
                    "validation": e.meta["validation"],
                    "sha256": e.meta["sha256"],
                    "bytes": e.meta["bytes"],
                }
            )
    return rows
