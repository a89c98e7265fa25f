"""Where the text-to-image track keeps its caches.

Everything that is derived, deterministic and expensive (rendered datasets, the extracted
MiniLM weights, text embeddings, judge weights, real-feature statistics) lives under one
cache root, ``$CGAN_CACHE`` or ``~/.cache/cgan-lab``. Each kind has its own folder::

    <root>/datasets/synthbirds/<key>/    rendered splits
    <root>/encoders/<name>/              extracted encoder weights
    <root>/embeddings/<encoder hash>/    cached caption embeddings
    <root>/judge/<key>/                  trained judges
    <root>/real_stats/                   common.metrics.RealStatsCache
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["cache_root", "cache_dir", "short_hash"]


def cache_root() -> Path:
    """``$CGAN_CACHE`` if set, else ``~/.cache/cgan-lab`` (read on every call, not at import)."""
    env = os.environ.get("CGAN_CACHE", "").strip()
    return Path(env).expanduser() if env else Path("~/.cache/cgan-lab").expanduser()


def cache_dir(kind: str) -> Path:
    """``<cache root>/<kind>`` (not created here)."""
    return cache_root() / kind


def short_hash(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()[:n]
