"""Loss laws: predicted loss as a function of size, data and shape, fitted to (short) training runs.

Three forms, each a superset of the one before:
- chinchilla: L = E + A/N^α + B/D^β (Hoffmann et al. 2022), N non-embedding parameters, D tokens.
- shape: (E + A·N^−α + B·D^−β)(1 + ε·R^γ), R = d_model/n_layers (Bian et al., ICML 2025).
- codesign: the shape form with an effective size N_eff = N · q^κ · (f/f₀)^φ · ρ^−μ, where q = n_kv/n_heads
  (KV sharing), f = d_ff/d_model against f₀ = 8/3 (FFN ratio), ρ = top_k/n_experts (MoE sparsity; 1 for
  dense, with N the active parameters, so μ = 1 means total parameters count and μ = 0 active ones).

- paper: the co-design paper's own law (arXiv 2602.10377) at its one training budget (no D term):
  L = κ_l/l^α_l + κ_ρ·ρ^α_ρ/(r^α_r·d^β1) + κ_d/(r^α_r·d^β2) + κ_m/d_m^α_m + L∞, with l layers, ρ = K/E, r the
  total FFN expansion K·d_ff/d, d = d_model, d_m = d·n_kv/n_heads; fitted from its published coefficients.
- paper-transfer: the paper's law with its published shape, only L∞ and a scale s of the reducible part
  fitted (L = L∞ + s·reducible): for the few runs a new corpus or tokenizer gets, 3 runs suffice.

Fit (as Hoffmann et al.): Huber loss (δ = 1e-3) on log-loss residuals, summed, minimised by L-BFGS-B
from a grid of initialisations; scale parameters live in log space. Uncertainty: bootstrap over runs.
Quality: R² and RMSE of the loss itself on the fitting runs and on held-out runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize

from cobench.errors import InputError

HUBER_DELTA = 1e-3
FFN_REFERENCE = 8 / 3
ARCH_COLUMNS = ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "n_experts", "top_k", "d_ff_expert")
# the co-design paper's fitted law (arXiv 2602.10377 v1): 9.96/l^1.63 + 0.031·ρ^1.09/(r^0.17·d^−0.33)
# + 500/(r^0.17·d^0.97) + 0.20/d_m^0.05 + 2.53
PAPER_PUBLISHED = {
    "L_inf": 2.53, "kappa_l": 9.96, "alpha_l": 1.63, "kappa_rho": 0.031, "alpha_rho": 1.09, "alpha_r": 0.17,
    "beta1": -0.33, "kappa_d": 500.0, "beta2": 0.97, "kappa_m": 0.20, "alpha_m": 0.05,
}  # fmt: skip
LOG_SCALED = ("E", "A", "B", "epsilon", "L_inf", "kappa_l", "kappa_rho", "kappa_d", "kappa_m", "s")


@dataclass(frozen=True)
class Runs:
    """Training runs as columns: non-embedding parameters N (active, for MoE), tokens D, final loss, and
    the architecture columns the shape-aware laws need (NaN where unknown)."""

    n_params: np.ndarray
    n_tokens: np.ndarray
    loss: np.ndarray
    arch: Mapping[str, np.ndarray] = field(default_factory=dict)
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.loss)

    def take(self, index: np.ndarray) -> Runs:
        return Runs(
            self.n_params[index],
            self.n_tokens[index],
            self.loss[index],
            {k: v[index] for k, v in self.arch.items()},
            tuple(self.names[i] for i in index) if self.names else (),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "n_params": self.n_params.tolist(),
            "n_tokens": self.n_tokens.tolist(),
            "loss": self.loss.tolist(),
            "arch": {k: np.where(np.isnan(v), None, v).tolist() for k, v in self.arch.items()},
            "names": list(self.names),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Runs:
        arch = {k: np.array([np.nan if x is None else x for x in v], dtype=float) for k, v in data["arch"].items()}
        columns = (np.asarray(data[k], dtype=float) for k in ("n_params", "n_tokens", "loss"))
        return cls(*columns, arch, tuple(data.get("names", ())))

    def column(self, name: str, law: str) -> np.ndarray:
        if name not in self.arch or np.isnan(self.arch[name]).any():
            raise InputError(name, f"the {law} law needs the architecture column {name!r} for every run")
        return self.arch[name]


@dataclass(frozen=True)
class Law:
    """A loss-law form: its parameter names, their bounds, initial grid, and the prediction."""

    name: str
    params: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    grid: tuple[tuple[float, ...], ...]

    def features(self, runs: Runs) -> dict[str, np.ndarray]:
        """What the form needs beyond N and D (validated up front, so a missing column is one clear error)."""
        f: dict[str, np.ndarray] = {}
        if self.name.startswith("paper"):
            return paper_features(runs, self.name)
        if self.name in ("shape", "codesign"):
            f["R"] = runs.column("d_model", self.name) / runs.column("n_layers", self.name)
        if self.name == "codesign":
            f["q"] = runs.column("n_kv_heads", self.name) / runs.column("n_heads", self.name)
            f["ffn"] = runs.column("d_ff", self.name) / runs.column("d_model", self.name) / FFN_REFERENCE
            experts = runs.arch.get("n_experts", np.zeros(len(runs)))
            top_k = runs.arch.get("top_k", np.zeros(len(runs)))
            f["rho"] = np.where(np.nan_to_num(experts) > 0, np.nan_to_num(top_k) / np.maximum(experts, 1), 1.0)
        return f

    def log_loss(self, x: np.ndarray, n: np.ndarray, d: np.ndarray, f: Mapping[str, np.ndarray]) -> np.ndarray:
        """log L for raw parameter vector x (log E, log A, log B, α, β, then the form's extras)."""
        return self.log_loss_and_grad(x, n, d, f)[0]

    def log_loss_and_grad(
        self, x: np.ndarray, n: np.ndarray, d: np.ndarray, f: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """log L and its Jacobian (runs × parameters), analytically: L-BFGS needs exact gradients to
        converge on the tiny Huber objective, and finite differences would cost a pass per parameter."""
        if self.name == "paper":
            value, jac, _ = _paper_terms(x, f)
            return value, jac
        if self.name == "paper-transfer":
            reducible = np.logaddexp.reduce(_paper_terms(_PAPER_X, f)[2][1:], axis=0)
            terms = np.stack(np.broadcast_arrays(x[0], x[1] + reducible))
            value = np.logaddexp.reduce(terms, axis=0)
            return value, np.exp(terms - value).T
        log_e, log_a, log_b, alpha, beta = x[:5]
        log_n = np.log(n)
        if self.name == "codesign":
            kappa, phi, mu = x[7:10]
            logs = (np.log(f["q"]), np.log(f["ffn"]), -np.log(f["rho"]))
            log_n = log_n + kappa * logs[0] + phi * logs[1] + mu * logs[2]
        terms = np.stack(np.broadcast_arrays(log_e, log_a - alpha * log_n, log_b - beta * np.log(d)))
        value = np.logaddexp.reduce(terms, axis=0)
        w = np.exp(terms - value)  # each term's share of L
        jac = np.zeros((len(value), len(x)))
        jac[:, 0], jac[:, 1], jac[:, 2] = w[0], w[1], w[2]
        jac[:, 3], jac[:, 4] = -w[1] * log_n, -w[2] * np.log(d)
        if self.name == "chinchilla":
            return value, jac
        log_eps, gamma = x[5:7]
        s = log_eps + gamma * np.log(f["R"])
        share = 1 / (1 + np.exp(-s))  # d log1p(e^s) / ds
        jac[:, 5], jac[:, 6] = share, share * np.log(f["R"])
        if self.name == "codesign":
            for j, g in enumerate(logs):
                jac[:, 7 + j] = -alpha * w[1] * g
        return value + np.logaddexp(0, s), jac

    def named(self, x: np.ndarray) -> dict[str, float]:
        """Parameters by their published names (E, A, B, ε in natural units)."""
        out = {}
        for name, value in zip(self.params, x, strict=True):
            if name in LOG_SCALED:
                out[name] = float(np.exp(value))
            else:
                out[name] = float(value)
        return out


def paper_features(runs: Runs, name: str) -> dict[str, np.ndarray]:
    """The paper's variables: layers l, sparsity ρ = K/E (1 dense), total expansion r = K·d_ff(expert)/d,
    width d and the KV width d_m = d / (n_heads / n_kv)."""
    d, layers = runs.column("d_model", name), runs.column("n_layers", name)
    experts = np.nan_to_num(runs.arch.get("n_experts", np.zeros(len(runs))))
    top_k = np.nan_to_num(runs.arch.get("top_k", np.zeros(len(runs))))
    moe = experts > 0
    width = np.where(moe, np.nan_to_num(runs.arch.get("d_ff_expert", np.zeros(len(runs)))), runs.column("d_ff", name))
    if np.any(moe & (width <= 0)):
        raise InputError("d_ff_expert", f"the {name} law needs the expert width of every MoE run")
    return {
        "l": layers,
        "rho": np.where(moe, top_k / np.maximum(experts, 1), 1.0),
        "r": np.where(moe, top_k, 1.0) * width / d,
        "d": d,
        "d_m": d * runs.column("n_kv_heads", name) / runs.column("n_heads", name),
    }


def _paper_terms(x: np.ndarray, f: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log L of the paper's law, its Jacobian and its five log terms (L∞ first), in parameter order
    (log L∞, log κ_l, α_l, log κ_ρ, α_ρ, α_r, β1, log κ_d, β2, log κ_m, α_m)."""
    log_inf, log_kl, a_l, log_krho, a_rho, a_r, b1, log_kd, b2, log_km, a_m = x
    ll, lrho, lr, ld, ldm = (np.log(f[k]) for k in ("l", "rho", "r", "d", "d_m"))
    terms = np.stack(
        np.broadcast_arrays(
            log_inf,
            log_kl - a_l * ll,
            log_krho + a_rho * lrho - a_r * lr - b1 * ld,
            log_kd - a_r * lr - b2 * ld,
            log_km - a_m * ldm,
        )
    )
    value = np.logaddexp.reduce(terms, axis=0)
    w = np.exp(terms - value)
    jac = np.column_stack(
        [
            w[0],
            w[1],
            -w[1] * ll,
            w[2],
            w[2] * lrho,
            -(w[2] + w[3]) * lr,
            -w[2] * ld,
            w[3],
            -w[3] * ld,
            w[4],
            -w[4] * ldm,
        ]
    )
    return value, jac, terms


_BASE_BOUNDS = ((-5.0, 3.0), (-5.0, 30.0), (-5.0, 30.0), (0.0, 2.0), (0.0, 2.0))
_BASE_GRID = ((-1.0, 0.5), (0.0, 5.0, 10.0), (0.0, 5.0, 10.0), (0.0, 0.5), (0.0, 0.5))
LAWS = {
    "chinchilla": Law("chinchilla", ("E", "A", "B", "alpha", "beta"), _BASE_BOUNDS, _BASE_GRID),
    "shape": Law(
        "shape",
        ("E", "A", "B", "alpha", "beta", "epsilon", "gamma"),
        (*_BASE_BOUNDS, (-15.0, 3.0), (-3.0, 3.0)),
        (*_BASE_GRID, (-6.0, -2.0), (-0.5, 0.5)),
    ),
    "codesign": Law(
        "codesign",
        ("E", "A", "B", "alpha", "beta", "epsilon", "gamma", "kappa", "phi", "mu"),
        (*_BASE_BOUNDS, (-15.0, 3.0), (-3.0, 3.0), (-2.0, 2.0), (-2.0, 2.0), (0.0, 1.5)),
        (*_BASE_GRID, (-6.0, -2.0), (-0.5, 0.5), (0.0,), (0.0,), (0.0, 0.5)),
    ),
}


_PAPER_PARAMS = tuple(PAPER_PUBLISHED)
_PAPER_X = np.array([np.log(v) if k in LOG_SCALED else v for k, v in PAPER_PUBLISHED.items()])
LAWS["paper"] = Law(
    "paper",
    _PAPER_PARAMS,
    tuple((-12.0, 12.0) if k in LOG_SCALED else (-3.0, 3.0) for k in _PAPER_PARAMS),
    tuple((float(v),) for v in _PAPER_X),  # the published fit is the start
)
LAWS["paper-transfer"] = Law(
    "paper-transfer", ("L_inf", "s"), ((-5.0, 3.0), (-8.0, 8.0)), ((float(_PAPER_X[0]),), (0.0,))
)


def published_fit() -> LawFit:
    """The paper's law at its published coefficients, unfitted: a loss for every candidate before any run
    of one's own (`--law paper-published`); it describes the paper's corpus, tokenizer and 10B-token budget."""
    return LawFit("paper", _PAPER_X.copy(), dict(PAPER_PUBLISHED), {}, {}, None, 0, 0)


def law(name: str) -> Law:
    if name not in LAWS:
        raise InputError("law", f"unknown law {name!r} (one of {', '.join(LAWS)})")
    return LAWS[name]


def huber(r: np.ndarray, delta: float = HUBER_DELTA) -> np.ndarray:
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta))


def _objective(form: Law, runs: Runs) -> Any:
    n, d, target, f = runs.n_params, runs.n_tokens, np.log(runs.loss), form.features(runs)

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, jac = form.log_loss_and_grad(x, n, d, f)
        r = value - target
        # the sum, not the mean, of the Huber terms: the mean's tiny gradients stop L-BFGS early
        return float(np.sum(huber(r))), jac.T @ np.clip(r, -HUBER_DELTA, HUBER_DELTA)

    return objective


def _minimise(form: Law, runs: Runs, starts: list[np.ndarray], keep: int = 3) -> np.ndarray:
    """L-BFGS-B from every start briefly, then to convergence from the `keep` best."""
    objective = _objective(form, runs)

    def run(x0: np.ndarray, iterations: int) -> Any:
        options = {"maxiter": iterations, "ftol": 1e-15, "gtol": 1e-12}
        return optimize.minimize(objective, x0, jac=True, method="L-BFGS-B", bounds=form.bounds, options=options)

    coarse = sorted((run(x0, 60) for x0 in starts), key=lambda r: r.fun) if len(starts) > keep else []
    polished = [run(r.x, 5000) for r in coarse[:keep]] if coarse else [run(x0, 5000) for x0 in starts]
    return np.asarray(min(polished, key=lambda r: r.fun).x)


def _starts(form: Law, runs: Runs) -> list[np.ndarray]:
    """The Chinchilla grid, then the form's extra parameters from their grid around the best base fit."""
    if form.name.startswith("paper"):  # from the published coefficients
        return [np.array(s, dtype=float) for s in itertools.product(*form.grid)]
    base = [np.array(s, dtype=float) for s in itertools.product(*_BASE_GRID)]
    if form.name == "chinchilla":
        return base
    x = _minimise(LAWS["chinchilla"], runs, base)
    return [np.r_[x, extra] for extra in itertools.product(*form.grid[5:])]


@dataclass(frozen=True)
class LawFit:
    law: str
    x: np.ndarray  # raw parameter vector (log scales)
    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]  # 95 % bootstrap percentile intervals
    fit_metrics: dict[str, float]
    heldout_metrics: dict[str, float] | None
    n_fit: int
    n_heldout: int

    def predict(self, runs: Runs) -> np.ndarray:
        form = law(self.law)
        return np.exp(form.log_loss(self.x, runs.n_params, runs.n_tokens, form.features(runs)))

    def to_json(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "x": self.x.tolist(),
            "params": self.params,
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "fit": self.fit_metrics,
            "heldout": self.heldout_metrics,
            "n_fit": self.n_fit,
            "n_heldout": self.n_heldout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LawFit:
        return cls(
            data["law"],
            np.asarray(data["x"], dtype=float),
            dict(data["params"]),
            {k: (float(v[0]), float(v[1])) for k, v in data["intervals"].items()},
            dict(data["fit"]),
            data.get("heldout"),
            int(data["n_fit"]),
            int(data["n_heldout"]),
        )


def quality(predicted: np.ndarray, observed: np.ndarray) -> dict[str, float]:
    """R² and RMSE of the loss itself (not its log), and the worst absolute error."""
    residual = predicted - observed
    total = float(np.sum((observed - observed.mean()) ** 2))
    return {
        "r2": 1 - float(np.sum(residual**2)) / total if total > 0 else float("nan"),
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "max_abs": float(np.max(np.abs(residual))),
        "n": len(observed),
    }


def fit_law(
    name: str,
    runs: Runs,
    heldout: Runs | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> LawFit:
    """Fit one form on `runs` (grid of starts), bootstrap its parameters, score fit and held-out runs;
    `progress(done, total)` after each bootstrap resample (a large fit takes minutes)."""
    form = law(name)
    if len(runs) < len(form.params) + 1:
        raise InputError(
            "runs", f"the {name} law has {len(form.params)} parameters: fit it on at least {len(form.params) + 1} runs"
        )
    x = _minimise(form, runs, _starts(form, runs))
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(bootstrap):
        pick = rng.integers(0, len(runs), len(runs))
        if len(np.unique(pick)) >= len(form.params):
            samples.append(form.named(_minimise(form, runs.take(pick), [x])))
        if progress:
            progress(i + 1, bootstrap)
    intervals = (
        {
            p: (float(np.percentile([s[p] for s in samples], 2.5)), float(np.percentile([s[p] for s in samples], 97.5)))
            for p in form.params
        }
        if samples
        else {}
    )
    fitted = LawFit(name, x, form.named(x), intervals, {}, None, len(runs), len(heldout) if heldout else 0)
    fit_q = quality(fitted.predict(runs), runs.loss)
    held_q = quality(fitted.predict(heldout), heldout.loss) if heldout is not None and len(heldout) else None
    return LawFit(name, x, fitted.params, intervals, fit_q, held_q, len(runs), len(heldout) if heldout else 0)


def split(runs: Runs, heldout_fraction: float, seed: int = 0) -> tuple[Runs, Runs]:
    """A seeded random split into fitting and held-out runs."""
    if not 0 <= heldout_fraction < 1:
        raise InputError("heldout", f"a fraction in [0, 1), got {heldout_fraction}")
    order = np.random.default_rng(seed).permutation(len(runs))
    k = int(round(heldout_fraction * len(runs)))
    return runs.take(np.sort(order[k:])), runs.take(np.sort(order[:k]))
