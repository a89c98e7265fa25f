"""On-disk cache of real-data feature statistics, keyed by everything they depend on.

Real statistics for FID-style metrics are expensive (a pass over the dataset through the
feature extractor) and silently wrong when reused after any of their inputs changed. The
key is therefore the sha256 of a canonical JSON of *all* named parts (STYLE.md item 6):

    dataset, dataset_hash   which data, and a hash of its content (not just its name)
    split                   train / val / test ...
    resolution              image size fed to the extractor
    resizer                 how images were resized (e.g. "pil_bicubic", "torch_bilinear_aa")
    extractor, extractor_hash  feature network name and a hash of its weights
    n                       number of real samples (int), or "full" for the whole split

Extra parts (crop, dtype, feature layer, ...) are allowed and enter the key too.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.io import atomic_write_json
from common.metrics.frechet import FeatureStats

__all__ = ["REQUIRED_PARTS", "RealStatsCache", "stats_key"]

REQUIRED_PARTS: tuple[str, ...] = (
    "dataset",
    "dataset_hash",
    "split",
    "resolution",
    "resizer",
    "extractor",
    "extractor_hash",
    "n",
)


def _canonical_json(parts: dict[str, Any]) -> str:
    try:
        return json.dumps(
            parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
    except (TypeError, ValueError) as e:
        raise TypeError(f"cache key parts must be plain JSON values: {e}") from e


def _validate(parts: dict[str, Any]) -> None:
    missing = [p for p in REQUIRED_PARTS if p not in parts]
    if missing:
        raise ValueError(
            f"real-stats cache key is missing required part(s) {missing}; "
            f"required: {list(REQUIRED_PARTS)}, got: {sorted(parts)}"
        )
    empty = [p for p in REQUIRED_PARTS if parts[p] is None or parts[p] == ""]
    if empty:
        raise ValueError(f"real-stats cache key part(s) {empty} are empty; give real values")
    n = parts["n"]
    if not (n == "full" or (isinstance(n, int) and not isinstance(n, bool) and n > 0)):
        raise ValueError(f"cache key part n must be a positive int or 'full', got {n!r}")


def stats_key(**parts: Any) -> str:
    """sha256 hex digest of the canonical JSON of ``parts`` (all REQUIRED_PARTS present)."""
    _validate(parts)
    return hashlib.sha256(_canonical_json(parts).encode("ascii")).hexdigest()


class RealStatsCache:
    """Real-data ``FeatureStats`` stored as ``<root>/<key>.npz`` plus a ``<key>.json`` record.

    ``hits`` and ``misses`` count lookups in this object's lifetime (for tests and logs).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(**parts: Any) -> str:
        return stats_key(**parts)

    def path_for(self, parts: dict[str, Any]) -> Path:
        return self.root / f"{stats_key(**parts)}.npz"

    def get_or_compute(self, parts: dict[str, Any], compute_fn: Callable[[], Any]) -> FeatureStats:
        """Load cached stats for ``parts``, or call ``compute_fn()`` once and store its result.

        ``compute_fn`` returns ``FeatureStats`` or real features ``[N, D]``. When ``parts["n"]``
        is an int it must equal the number of samples the stats were computed from.
        """
        key = stats_key(**parts)
        path = self.root / f"{key}.npz"
        if path.exists():
            try:
                stats = FeatureStats.load(path)
            except (OSError, ValueError, KeyError) as e:
                warnings.warn(
                    f"unreadable real-stats cache file {path} ({e}); recomputing", stacklevel=2
                )
            else:
                self.hits += 1
                return stats

        self.misses += 1
        result = compute_fn()
        stats = result if isinstance(result, FeatureStats) else FeatureStats.from_features(result)
        n = parts["n"]
        if n != "full" and stats.n != n:
            raise ValueError(
                f"compute_fn returned statistics of {stats.n} samples but the cache key says "
                f"n={n}; the key must describe what was computed"
            )
        # The record first: if we die between the two writes, the next run simply
        # recomputes (the .npz is what marks an entry as present).
        atomic_write_json(
            self.root / f"{key}.json",
            {"key": key, "parts": parts, "n": stats.n, "dim": stats.dim},
            sort_keys=True,
        )
        stats.save(path)
        return stats
