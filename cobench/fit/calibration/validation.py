"""Calibration, step 3 — how wrong it is: errors of a fitted model, cross-validation that leaves whole
architectures out, the prediction interval from the out-of-fold errors (Student t, so few models give an
honestly wide interval), and the learning curve (error against the number of profiled models).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from cobench.fit.calibration.design import Profiled
from cobench.fit.calibration.solve import CacheTier, fit_models
from cobench.hardware.devices import DeviceSpec
from cobench.measure.kernels.results import KernelResult
from cobench.predict.operators import Counting
from cobench.predict.roofline import RooflineParams, predict

LEVEL = 0.90  # prediction-interval coverage


def predicted_pair(p: Profiled, device: DeviceSpec, params: RooflineParams, counting: Counting) -> tuple[float, float]:
    """(TTFT, TPOT) by the product's own path (`roofline.predict`), as `predict` and `sweep` compute them."""
    r = predict(p.arch, device, p.workload, params, counting)
    return float(r.ttft_s[0]), float(r.tpot_s[0])


def log_errors(
    models: Sequence[Profiled], device: DeviceSpec, params: RooflineParams, counting: Counting
) -> dict[str, np.ndarray]:
    """log(predicted / measured) per phase metric ("ttft", "tpot"), one per model."""
    pred = np.array([predicted_pair(p, device, params, counting) for p in models]).reshape(-1, 2)
    meas = np.array([(p.ttft_s, p.tpot_s) for p in models]).reshape(-1, 2)
    logs = np.log(pred / meas)
    return {"ttft": logs[:, 0], "tpot": logs[:, 1]}


def error_metrics(log_err: np.ndarray) -> dict[str, float | int | None]:
    """MAPE, median and max |error|, share within ±5 % and ±10 %, mean signed error (all in %)."""
    if len(log_err) == 0:
        return {"n": 0, "mape": None, "median_ape": None, "max_ape": None, "within_5": None, "within_10": None}
    pct = (np.exp(log_err) - 1) * 100
    ape = np.abs(pct)
    return {
        "n": len(pct),
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "max_ape": float(ape.max()),
        "within_5": float(np.mean(ape <= 5)),
        "within_10": float(np.mean(ape <= 10)),
        "bias": float(pct.mean()),
    }


def shift_and_spread(log_ratios: np.ndarray) -> tuple[float, np.ndarray]:
    """Two runs of the same models apart (log(second / first), one per model), split into the shift that moved
    them all (relative, from their mean log) and what is left per model. On a shared VM a whole hour runs slower
    (ORT GenAI, 2026-12-07: +12.4 % on every held-out model's TPOT, 4.2 % apart beyond that): the spread bounds a
    held-out error measured against one run, the shift how far a calibration carries from one hour to another."""
    logs = np.asarray(log_ratios, dtype=np.float64)
    centre = float(np.mean(logs)) if len(logs) else 0.0
    return float(np.expm1(centre)), logs - centre


def kind(models: Sequence[Profiled], name: str) -> tuple[bool, bool]:
    """The kind of a training architecture that a fold must not take away whole: profiled at batch > 1 (the batched
    steps' GEMMs), with routed experts."""
    mine = [p for p in models if p.arch.name == name]
    return any(p.workload.batch > 1 for p in mine), any(p.arch.n_experts > 0 for p in mine)


def assign_folds(models: Sequence[Profiled], folds: int, seed: int = 0) -> dict[str, int]:
    """Each architecture's fold, stratified: the architectures of each kind, rarest kind first and in a random
    order within it, dealt round-robin, so that a fold never takes away every training model of a kind another
    fold keeps. Random folds did (llama.cpp, 2026-12-07: both batch-4 training models in one fold, whose fit
    then priced their batch-4 steps ×6 slow and widened every step's 90 % interval to ×0.29–2.25)."""
    names = sorted({p.arch.name for p in models})
    shuffled = [names[j] for j in np.random.default_rng(seed).permutation(len(names))]
    kinds = {n: kind(models, n) for n in names}
    size = Counter(kinds.values())
    dealt = sorted(shuffled, key=lambda n: (size[kinds[n]], kinds[n]))  # stable: random within a kind
    k = min(folds, len(names))
    return {n: i % k for i, n in enumerate(dealt)}


def cross_validate(
    models: Sequence[Profiled],
    kernels: Sequence[KernelResult],
    device: DeviceSpec,
    counting: Counting,
    folds: int = 5,
    seed: int = 0,
    tier: CacheTier | None = None,
) -> dict[str, np.ndarray]:
    """Out-of-fold log errors: each model predicted by a fit that never saw its architecture."""
    fold_of = assign_folds(models, folds, seed)
    k = len(set(fold_of.values()))
    out = {"ttft": np.full(len(models), np.nan), "tpot": np.full(len(models), np.nan)}
    for f in range(k):
        test = [i for i, p in enumerate(models) if fold_of[p.arch.name] == f]
        train = [p for p in models if fold_of[p.arch.name] != f]
        params = fit_models(train, kernels, device, counting, "cv", tier).params
        errs = log_errors([models[i] for i in test], device, params, counting)
        for metric in out:
            out[metric][test] = errs[metric]
    return out


def interval(log_err: np.ndarray, level: float = LEVEL) -> dict[str, float] | None:
    """Multiplicative prediction interval from out-of-fold log errors: centred on their mean (the fit's
    residual bias), half-width t · s · √(1 + 1/n); None with fewer than two errors."""
    n = len(log_err)
    if n < 2:
        return None
    mean, s = float(np.mean(log_err)), float(np.std(log_err, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * s * np.sqrt(1 + 1 / n)
    # predicted/measured = exp(e) ⇒ measured = predicted · exp(−e)
    return {"level": level, "low": float(np.exp(-mean - half)), "high": float(np.exp(-mean + half)), "n": n}


def learning_curve(
    models: Sequence[Profiled],
    kernels: Sequence[KernelResult],
    device: DeviceSpec,
    counting: Counting,
    evaluate_on: Sequence[Profiled] | None = None,
    repeats: int = 5,
    seed: int = 0,
    tier: CacheTier | None = None,
) -> list[dict[str, Any]]:
    """Error vs number of profiled models: fits on random subsets of each size, scored on `evaluate_on`
    (default: the models left out of the subset). Size 0 is kernels alone."""
    rng = np.random.default_rng(seed)
    names = sorted({p.arch.name for p in models})
    sizes = range(0 if kernels else 1, len(names) + (1 if evaluate_on else 0))
    rows = []
    for size in sizes:
        scores: dict[str, list[float]] = {"ttft": [], "tpot": []}
        for _ in range(1 if size in (0, len(names)) else repeats):
            chosen = set(rng.choice(names, size, replace=False)) if size else set()
            train = [p for p in models if p.arch.name in chosen]
            test = list(evaluate_on) if evaluate_on else [p for p in models if p.arch.name not in chosen]
            if not test:
                continue
            params = fit_models(train, kernels, device, counting, "learning curve", tier).params
            errs = log_errors(test, device, params, counting)
            for metric in scores:
                scores[metric].append(error_metrics(errs[metric])["mape"] or 0.0)
        if scores["ttft"]:
            rows.append(
                {
                    "models": size,
                    "ttft_mape": float(np.median(scores["ttft"])),
                    "tpot_mape": float(np.median(scores["tpot"])),
                    "repeats": len(scores["ttft"]),
                }
            )
    return rows


ERROR_KINDS = (("raw", "raw roofline"), ("fitted", "calibrated, in-sample"), ("cross_validated", "calibrated, CV"))


def error_rows(report: dict[str, Any]) -> list[list[str]]:
    """The error table of a calibration report: per metric and model, MAPE, median and max |error| (%) and the
    shares within ±5 % and ±10 % — what `calibrate` prints and the report shows."""
    rows = []
    for metric in ("ttft", "tpot"):
        for kind, label in ERROR_KINDS:
            e = report["errors"][metric][kind]
            shares = [f"{e['within_5']:.0%}", f"{e['within_10']:.0%}"]
            rows.append([metric.upper(), label, *(f"{e[k]:.1f}%" for k in ("mape", "median_ape", "max_ape")), *shares])
    return rows
