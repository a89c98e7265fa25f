"""Kernel Inception Distance over any feature extractor.

Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs", §4 / appendix:
KID is the *unbiased* estimator of the squared maximum mean discrepancy (MMD²) between
the two feature distributions, with the cubic polynomial kernel

    k(x, y) = (xᵀy / d + 1)³,

averaged over random subsets so the cost stays quadratic in the subset size only. Unlike
FID it has an unbiased estimator, so its value does not drift with the sample count, and
it can be (slightly) negative when the two distributions are equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from common.metrics.frechet import as_float64_2d

__all__ = ["KIDResult", "kernel_inception_distance", "mmd2_unbiased", "polynomial_kernel"]


@dataclass(frozen=True, eq=False)  # ndarray fields: no elementwise ==
class KIDResult:
    """KID over subsets: ``mean`` and sample ``std`` (ddof=1) of the per-subset MMD² values."""

    mean: float
    std: float
    num_subsets: int
    subset_size: int
    values: np.ndarray  # (num_subsets,) unbiased MMD² of each subset

    def as_dict(self) -> dict[str, float | int]:
        return {
            "mean": self.mean,
            "std": self.std,
            "num_subsets": self.num_subsets,
            "subset_size": self.subset_size,
        }




def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (xᵀy / d + 1)³ for all pairs: x [m, d], y [n, d] → [m, n]."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² (U-statistic) between samples x [m, d] and y [n, d] (m, n ≥ 2).

    MMD²_u = Σ_{i≠j} k(xᵢ,xⱼ) / (m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ) / (n(n−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ) / (mn)
    """
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"unbiased MMD² needs at least 2 samples per set, got {m} and {n}")
    k_xx = polynomial_kernel(x, x)
    k_yy = polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    # Dropping the diagonal (i = j) terms is what makes the estimator unbiased.
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    term_xy = k_xy.sum() / (m * n)
    return float(term_xx + term_yy - 2.0 * term_xy)


def kernel_inception_distance(
    f1: Any,
    f2: Any,
    num_subsets: int = 100,
    subset_size: int = 1000,
    *,
    seed: int | None = 0,
    generator: np.random.Generator | None = None,
) -> KIDResult:
    """KID between feature sets f1 [N1, D] and f2 [N2, D] (ndarray or Tensor).

    Each of ``num_subsets`` rounds draws ``subset_size`` rows from each set without
    replacement (``subset_size`` is clipped to the smaller set) and computes the unbiased
    MMD². Randomness comes from ``generator`` if given, else ``np.random.default_rng(seed)``,
    so the default is deterministic.
    """
    x = as_float64_2d(f1, "f1")
    y = as_float64_2d(f2, "f2")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be ≥ 1, got {num_subsets}")
    m = min(int(subset_size), x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError(
            f"KID needs subsets of at least 2 samples; sets have {x.shape[0]} and {y.shape[0]} "
            f"rows, subset_size={subset_size}"
        )
    rng = generator if generator is not None else np.random.default_rng(seed)
    values = np.empty(num_subsets, dtype=np.float64)
    for i in range(num_subsets):
        xs = x[rng.choice(x.shape[0], size=m, replace=False)]
        ys = y[rng.choice(y.shape[0], size=m, replace=False)]
        values[i] = mmd2_unbiased(xs, ys)
    std = float(values.std(ddof=1)) if num_subsets > 1 else 0.0
    return KIDResult(
        mean=float(values.mean()),
        std=std,
        num_subsets=num_subsets,
        subset_size=m,
        values=values,
    )
