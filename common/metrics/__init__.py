"""Image-generation metrics over any feature extractor: Fréchet distance, KID, a keyed cache
of real statistics and a registry of protocol-named metrics (see docs METRICS.md)."""

from common.metrics.cache import REQUIRED_PARTS, RealStatsCache, stats_key
from common.metrics.frechet import FeatureStats, frechet_distance
from common.metrics.kid import KIDResult, kernel_inception_distance, mmd2_unbiased
from common.metrics.registry import (
    fd_metric_name,
    get_metric,
    kid_metric_name,
    list_metrics,
    register_metric,
)

__all__ = [
    "REQUIRED_PARTS",
    "FeatureStats",
    "KIDResult",
    "RealStatsCache",
    "fd_metric_name",
    "frechet_distance",
    "get_metric",
    "kernel_inception_distance",
    "kid_metric_name",
    "list_metrics",
    "mmd2_unbiased",
    "register_metric",
    "stats_key",
]
