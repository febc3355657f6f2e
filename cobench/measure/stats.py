"""Statistics of timing samples, kept apart from measuring (which only returns raw samples).

The median's confidence interval is distribution-free: for n samples the ranks of its bounds come
from the Binomial(n, 1/2) distribution, so no normality is assumed (latency samples are skewed and
often multi-modal). A run is flagged noisy when its coefficient of variation exceeds `NOISY_CV`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

NOISY_CV = 0.02  # CV above 2 % marks a run as noisy (serious harnesses use 1-2 %)
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """Seconds, except n, cv (ratio) and the flags."""

    n: int
    min_s: float
    median_s: float
    mean_s: float
    std_s: float
    p90_s: float
    p95_s: float
    p99_s: float
    iqr_s: float
    cv: float
    median_ci_low_s: float
    median_ci_high_s: float
    confidence: float
    noisy: bool

    @property
    def median_ci_rel(self) -> float:
        """Half-width of the median's CI relative to the median."""
        return (self.median_ci_high_s - self.median_ci_low_s) / 2 / self.median_s if self.median_s else float("inf")


def median_ci(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Order-statistic CI of the median: ranks from the binomial quantiles (exact coverage ≥ confidence)."""
    x = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(x)
    if n < 3:
        return float(x[0]), float(x[-1])
    # smallest k with P(B <= k) >= alpha/2; then P(B <= k-1) < alpha/2 and [x_(k), x_(n-k+1)] (1-based)
    # covers the median with probability >= confidence
    k = int(sp.binom.ppf((1 - confidence) / 2, n, 0.5))
    low, high = max(k - 1, 0), min(n - k, n - 1)
    return float(x[low]), float(x[high])


def summarize(samples: np.ndarray, confidence: float = CONFIDENCE) -> Summary:
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no samples")
    p25, p50, p75, p90, p95, p99 = np.percentile(x, [25, 50, 75, 90, 95, 99])
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if x.size > 1 else 0.0
    low, high = median_ci(x, confidence)
    cv = std / mean if mean else 0.0
    return Summary(
        n=int(x.size),
        min_s=float(x.min()),
        median_s=float(p50),
        mean_s=mean,
        std_s=std,
        p90_s=float(p90),
        p95_s=float(p95),
        p99_s=float(p99),
        iqr_s=float(p75 - p25),
        cv=cv,
        median_ci_low_s=low,
        median_ci_high_s=high,
        confidence=confidence,
        noisy=cv > NOISY_CV,
    )
