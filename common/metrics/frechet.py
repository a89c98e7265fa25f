"""Fréchet distance between Gaussian fits of two feature sets (FID over any extractor).

Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
Nash Equilibrium", eq. (6):

    d² = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^½)

which is the squared 2-Wasserstein distance between N(μ₁, Σ₁) and N(μ₂, Σ₂).

How the trace term is computed, and why
---------------------------------------
The common implementation calls ``scipy.linalg.sqrtm(Σ₁ Σ₂)``. That product is not
symmetric; when either covariance is singular (fewer samples than feature dimensions,
dead ReLU units) ``sqrtm`` returns complex values or fails, and the customary fix adds
``eps·I`` to both covariances, which changes the answer.

Here we only need the *trace* of the square root, i.e. Σᵢ √λᵢ(Σ₁ Σ₂). The eigenvalues of
Σ₁ Σ₂ equal those of the symmetric PSD matrix M = Σ₁^½ Σ₂ Σ₁^½ (similar matrices), so

    Tr((Σ₁ Σ₂)^½) = Σᵢ √λᵢ(M),

computed with two symmetric eigendecompositions (``numpy.linalg.eigh``): always real, no
``eps`` fudge, exact for rank-deficient covariances. Eigenvalues that come out slightly
negative are floating-point round-off of a PSD matrix and are clipped to 0; clearly
negative ones (below ``-tol · λ_max``) mean the input was not a covariance and raise a
warning before being clipped.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_path

__all__ = ["FeatureStats", "frechet_distance"]

# Relative size below which a negative eigenvalue is treated as round-off.
_NEG_EIG_RTOL = 1e-6


def as_float64_2d(feats: Any, name: str = "features") -> np.ndarray:
    """Features [N, D] (ndarray or Tensor) as a finite float64 array; clear errors otherwise."""
    if hasattr(feats, "detach"):  # torch.Tensor, without importing torch here
        feats = feats.detach().cpu().numpy()
    arr = np.asarray(feats, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


@dataclass(frozen=True, eq=False)  # ndarray fields: no elementwise ==
class FeatureStats:
    """Mean and covariance of a feature set: ``mu`` [D], ``sigma`` [D, D], sample count ``n``."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def __post_init__(self) -> None:
        mu = np.asarray(self.mu, dtype=np.float64)
        sigma = np.asarray(self.sigma, dtype=np.float64)
        if mu.ndim != 1:
            raise ValueError(f"mu must be 1-D [D], got shape {mu.shape}")
        if sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"sigma must be [D, D] = {(mu.shape[0],) * 2}, got {sigma.shape}")
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "n", int(self.n))

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    @classmethod
    def from_features(cls, feats: Any) -> FeatureStats:
        """Fit from features ``[N, D]`` (ndarray or Tensor), in float64, unbiased covariance."""
        x = as_float64_2d(feats)  # (N, D)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"need at least 2 feature vectors for a covariance, got {n}")
        mu = x.mean(axis=0)
        centred = x - mu
        sigma = centred.T @ centred / (n - 1)  # unbiased (ddof=1)
        return cls(mu=mu, sigma=sigma, n=n)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``mu``, ``sigma`` and ``n`` to an ``.npz`` file, atomically."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, mu=self.mu, sigma=self.sigma, n=np.int64(self.n))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FeatureStats:
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(mu=z["mu"], sigma=z["sigma"], n=int(z["n"]))


def _sym_eig(mat: np.ndarray, what: str, *, vectors: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Eigen-decompose a symmetric PSD matrix, clipping round-off negatives to zero."""
    mat = 0.5 * (mat + mat.T)  # remove asymmetric round-off before eigh
    if vectors:
        vals, vecs = np.linalg.eigh(mat)
    else:
        vals, vecs = np.linalg.eigvalsh(mat), None  # values only: cheaper
    scale = max(float(np.max(np.abs(vals))), np.finfo(np.float64).tiny) if vals.size else 1.0
    if vals.size and vals.min() < -_NEG_EIG_RTOL * scale:
        warnings.warn(
            f"{what} has a negative eigenvalue {vals.min():.3g} (largest |λ| {scale:.3g}); "
            "it is not a valid covariance, clipping to 0",
            RuntimeWarning,
            stacklevel=3,
        )
    return np.clip(vals, 0.0, None), vecs


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Fréchet distance between N(a.mu, a.sigma) and N(b.mu, b.sigma) (Heusel et al. 2017)."""
    if a.dim != b.dim:
        raise ValueError(f"feature dimensions differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu
    mean_term = float(diff @ diff)

    # Σ₁^½ from its eigendecomposition, then M = Σ₁^½ Σ₂ Σ₁^½ (symmetric PSD).
    vals1, vecs1 = _sym_eig(a.sigma, "sigma of the first set", vectors=True)
    assert vecs1 is not None
    sqrt1 = (vecs1 * np.sqrt(vals1)) @ vecs1.T
    vals_m, _ = _sym_eig(sqrt1 @ b.sigma @ sqrt1, "Σ₁^½ Σ₂ Σ₁^½", vectors=False)
    trace_sqrt = float(np.sum(np.sqrt(vals_m)))

    value = mean_term + float(np.trace(a.sigma)) + float(np.trace(b.sigma)) - 2.0 * trace_sqrt
    # d² is a squared Wasserstein distance, hence ≥ 0; a tiny negative is round-off.
    return max(value, 0.0)
