"""Fréchet distance, KID, the real-stats cache and the metric registry against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from common.metrics import (
    FeatureStats,
    RealStatsCache,
    fd_metric_name,
    frechet_distance,
    get_metric,
    kernel_inception_distance,
    kid_metric_name,
    list_metrics,
    mmd2_unbiased,
    register_metric,
)
from common.metrics import registry as registry_module


def _close(actual: float, expected: float, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    assert_close(
        torch.tensor(actual, dtype=torch.float64),
        torch.tensor(expected, dtype=torch.float64),
        rtol=rtol,
        atol=atol,
    )


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# --------------------------------------------------------------------------- Fréchet


def test_fd_identical_stats_is_zero() -> None:
    rng = np.random.default_rng(0)
    stats = FeatureStats(mu=rng.normal(size=16), sigma=_random_cov(rng, 16), n=100)
    _close(frechet_distance(stats, stats), 0.0, atol=1e-9)


def test_fd_diagonal_closed_form() -> None:
    # For diagonal covariances (Σ₁Σ₂)^½ is diagonal with entries √(σ₁σ₂), so
    # d² = Σ (μ₁ − μ₂)² + Σ (σ₁ + σ₂ − 2√(σ₁σ₂))   (per-dimension variances σ).
    mu1, mu2 = np.array([0.0, 1.0, -2.0, 0.5]), np.array([1.0, 1.0, 0.0, -0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25, 2.0]), np.array([4.0, 1.0, 0.25, 0.5])
    by_hand = 0.0
    for i in range(4):
        by_hand += (mu1[i] - mu2[i]) ** 2
        by_hand += var1[i] + var2[i] - 2.0 * np.sqrt(var1[i] * var2[i])
    # = (1 + 0 + 4 + 1) + (1 + 1 + 0 + 0.5) = 8.5
    _close(by_hand, 8.5)
    a = FeatureStats(mu=mu1, sigma=np.diag(var1), n=10)
    b = FeatureStats(mu=mu2, sigma=np.diag(var2), n=10)
    _close(frechet_distance(a, b), 8.5, rtol=1e-12, atol=1e-12)
    _close(frechet_distance(b, a), 8.5, rtol=1e-12, atol=1e-12)


def test_fd_full_covariance_matches_scipy_sqrtm() -> None:
    # Independent reference: the textbook formula with scipy's matrix square root.
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    s1, s2 = _random_cov(rng, 8), _random_cov(rng, 8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    reference = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * sqrtm(s1 @ s2).real))
    fd = frechet_distance(FeatureStats(mu1, s1, 2), FeatureStats(mu2, s2, 2))
    _close(fd, reference, rtol=1e-9, atol=1e-9)


def test_fd_of_samples_approaches_closed_form() -> None:
    # Features drawn from N(0, I) and N(m, diag(v)); the closed form is
    # ‖m‖² + Σ (1 + v − 2√v). With N = 200 000 and D = 4, the plug-in estimate's
    # error is O(√(D/N)) ≈ 0.005 relative; we allow 0.05 absolute on a value of ≈ 2.17.
    rng = np.random.default_rng(2)
    n, d = 200_000, 4
    m = np.array([1.0, -0.5, 0.0, 0.5])
    v = np.array([1.0, 4.0, 0.25, 1.0])
    closed = float(np.sum(m**2) + np.sum(1 + v - 2 * np.sqrt(v)))
    x = rng.normal(size=(n, d))
    y = m + rng.normal(size=(n, d)) * np.sqrt(v)
    fd = frechet_distance(
        FeatureStats.from_features(x), FeatureStats.from_features(torch.from_numpy(y))
    )
    assert abs(fd - closed) < 0.05, (fd, closed)


def test_fd_rank_deficient_covariance_is_finite_and_correct() -> None:
    # Σ₁ = diag(1, 4, 0, 0) is singular (as when N < D or features are dead).
    # With Σ₂ = diag(9, 1, 2, 0): d² = Σ (σ₁ + σ₂ − 2√(σ₁σ₂)) = (1+9−6) + (4+1−4) + 2 + 0 = 7.
    a = FeatureStats(mu=np.zeros(4), sigma=np.diag([1.0, 4.0, 0.0, 0.0]), n=3)
    b = FeatureStats(mu=np.zeros(4), sigma=np.diag([9.0, 1.0, 2.0, 0.0]), n=3)
    fd = frechet_distance(a, b)
    assert np.isfinite(fd)
    _close(fd, 7.0, rtol=1e-10, atol=1e-10)
    # A rotated version (non-diagonal, still rank 2) gives the same distance.
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))
    ar = FeatureStats(mu=np.zeros(4), sigma=q @ a.sigma @ q.T, n=3)
    br = FeatureStats(mu=np.zeros(4), sigma=q @ b.sigma @ q.T, n=3)
    _close(frechet_distance(ar, br), 7.0, rtol=1e-8, atol=1e-8)


def test_fd_from_fewer_samples_than_dims() -> None:
    # N = 5 < D = 16: both covariances are rank 4; the result must be finite and ≥ 0.
    rng = np.random.default_rng(4)
    a = FeatureStats.from_features(rng.normal(size=(5, 16)))
    b = FeatureStats.from_features(rng.normal(size=(5, 16)) + 1.0)
    fd = frechet_distance(a, b)
    assert np.isfinite(fd) and fd > 0.0


def test_feature_stats_unbiased_covariance_and_npz_roundtrip(tmp_path) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(50, 3)).astype(np.float32)
    stats = FeatureStats.from_features(x)
    assert stats.n == 50 and stats.mu.dtype == np.float64
    assert_close(stats.sigma, np.cov(x.astype(np.float64), rowvar=False, ddof=1))
    path = stats.save(tmp_path / "stats.npz")
    loaded = FeatureStats.load(path)
    assert_close(loaded.mu, stats.mu)
    assert_close(loaded.sigma, stats.sigma)
    assert loaded.n == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.npz"]


def test_feature_stats_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats.from_features(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="2-D"):
        FeatureStats.from_features(np.zeros(3))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(
            FeatureStats(np.zeros(2), np.eye(2), 2), FeatureStats(np.zeros(3), np.eye(3), 2)
        )


# --------------------------------------------------------------------------- KID


def test_kid_same_distribution_near_zero_and_shift_positive() -> None:
    rng = np.random.default_rng(6)
    d = 16
    a = rng.normal(size=(600, d))
    b = rng.normal(size=(600, d))
    shifted = rng.normal(size=(600, d)) + 0.5
    same = kernel_inception_distance(a, b, num_subsets=20, subset_size=200, seed=0)
    diff = kernel_inception_distance(a, torch.from_numpy(shifted), num_subsets=20, subset_size=200)
    assert same.subset_size == 200 and same.values.shape == (20,)
    # Same distribution: the mean is within a few standard errors of 0.
    assert abs(same.mean) < 4 * same.std / np.sqrt(20) + 1e-3, same
    assert diff.mean > 0.05 and diff.mean > 20 * abs(same.mean), (diff, same)


def test_kid_unbiased_estimator_goes_negative_where_biased_one_cannot() -> None:
    # The U-statistic drops the i = j kernel terms, so on equal distributions about half
    # of the subset estimates are negative; the biased V-statistic is always ≥ 0.
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    res = kernel_inception_distance(a, b, num_subsets=40, subset_size=50, seed=1)
    assert (res.values < 0).any() and (res.values > 0).any()

    x, y = a[:50], b[:50]
    k = lambda p, q: (p @ q.T / 8 + 1.0) ** 3  # noqa: E731
    biased = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    assert biased >= 0.0
    # Hand-written U-statistic as an independent check of mmd2_unbiased.
    m = 50
    kxx, kyy = k(x, x), k(y, y)
    unbiased = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1))
    unbiased -= 2 * k(x, y).mean()
    _close(mmd2_unbiased(x, y), float(unbiased), rtol=1e-12, atol=1e-12)
    assert mmd2_unbiased(x, y) < biased


def test_kid_subset_size_clipped_and_deterministic() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(80, 4))
    r1 = kernel_inception_distance(a, b, num_subsets=5, subset_size=1000, seed=3)
    r2 = kernel_inception_distance(
        a, b, num_subsets=5, subset_size=1000, generator=np.random.default_rng(3)
    )
    assert r1.subset_size == 30
    assert_close(r1.values, r2.values)


# --------------------------------------------------------------------------- cache


def _parts(**changes):
    parts = dict(
        dataset="synthbirds",
        dataset_hash="abc123",
        split="test",
        resolution=64,
        resizer="pil_bicubic",
        extractor="judge",
        extractor_hash="w0",
        n=100,
    )
    parts.update(changes)
    return parts


def test_cache_hit_does_not_recompute(tmp_path) -> None:
    cache = RealStatsCache(tmp_path / "cache")
    rng = np.random.default_rng(9)
    feats = rng.normal(size=(100, 5))
    calls = []

    def compute():
        calls.append(1)
        return feats

    first = cache.get_or_compute(_parts(), compute)
    second = cache.get_or_compute(_parts(), compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert_close(first.sigma, second.sigma)
    # A fresh object over the same root finds the stored entry too.
    again = RealStatsCache(tmp_path / "cache")
    again.get_or_compute(_parts(), compute)
    assert len(calls) == 1 and again.hits == 1
    # Only final files: no temporaries left behind by the atomic writes.
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    key = cache.key(**_parts())
    assert names == [f"{key}.json", f"{key}.npz"]


@pytest.mark.parametrize(
    "change",
    [
        dict(dataset="cub"),
        dict(dataset_hash="abc124"),
        dict(split="train"),
        dict(resolution=128),
        dict(resizer="torch_bilinear"),
        dict(extractor="inception"),
        dict(extractor_hash="w1"),
        dict(n=200),
        dict(crop="center"),
    ],
)
def test_cache_key_changes_with_every_part(change) -> None:
    assert RealStatsCache.key(**_parts()) != RealStatsCache.key(**_parts(**change))


def test_cache_key_is_order_independent_and_requires_parts() -> None:
    parts = _parts()
    assert RealStatsCache.key(**parts) == RealStatsCache.key(**dict(reversed(parts.items())))
    incomplete = _parts()
    del incomplete["extractor_hash"]
    with pytest.raises(ValueError, match="extractor_hash"):
        RealStatsCache.key(**incomplete)
    with pytest.raises(ValueError, match="dataset_hash"):
        RealStatsCache.key(**_parts(dataset_hash=""))


def test_cache_rejects_n_mismatch(tmp_path) -> None:
    cache = RealStatsCache(tmp_path)
    with pytest.raises(ValueError, match="n=100"):
        cache.get_or_compute(_parts(), lambda: np.zeros((50, 3)) + np.arange(50)[:, None])
    assert not list(tmp_path.glob("*.npz"))


# --------------------------------------------------------------------------- registry


def test_registry_register_get_and_errors(monkeypatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", {})

    @register_metric("fd_toy_1k")
    def fd_toy(**ctx):
        return {"value": 1.0}

    assert get_metric("fd_toy_1k") is fd_toy
    assert list_metrics() == ["fd_toy_1k"]
    with pytest.raises(KeyError, match="fd_toy_1k"):  # the error lists the known names
        get_metric("fid_nope_50k")

    def other(**ctx):
        return {}

    with pytest.raises(ValueError, match="already registered"):
        register_metric("fd_toy_1k")(other)
    with pytest.raises(ValueError, match="lower_snake_case"):
        register_metric("FD-toy")


def test_metric_names() -> None:
    assert fd_metric_name("judge", 5000) == "fd_judge_5k"
    assert fd_metric_name("inception", 30000) == "fid_inception_30k"
    assert fd_metric_name("judge", 1500) == "fd_judge_1500"
    assert kid_metric_name("inception", 50000) == "kid_inception_50k"
    with pytest.raises(ValueError):
        fd_metric_name("my_net", 1000)
    with pytest.raises(ValueError):
        fd_metric_name("judge", 0)


def test_fd_warns_on_a_matrix_that_is_not_a_covariance() -> None:
    bad = FeatureStats(mu=np.zeros(2), sigma=np.diag([1.0, -0.5]), n=2)
    good = FeatureStats(mu=np.zeros(2), sigma=np.eye(2), n=2)
    with pytest.warns(RuntimeWarning, match="negative eigenvalue"):
        assert np.isfinite(frechet_distance(bad, good))
