"""Where the speech track keeps its caches (read on every call, never at import).

Everything derived, deterministic and expensive lives under one cache root,
``$CGAN_CACHE`` or ``~/.cache/cgan-lab``::

    <root>/datasets/synthvoices/<key>/   the built-in corpus (speech.data.synthvoices)
    <root>/datasets/resampled/<key>/     16 kHz copies of real corpora (e.g. VoiceBank+DEMAND)
    <root>/features/<name>/<key>.npz     feature cache (speech.features.FeatureCache)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["cache_dir", "cache_root", "short_hash"]


def cache_root() -> Path:
    """``$CGAN_CACHE`` if set, else ``~/.cache/cgan-lab``."""
    env = os.environ.get("CGAN_CACHE", "").strip()
    return Path(env).expanduser() if env else Path("~/.cache/cgan-lab").expanduser()


def cache_dir(*parts: str) -> Path:
    """``<cache root>/<parts...>`` (not created here)."""
    return cache_root().joinpath(*parts)


def short_hash(obj: Any, n: int = 16) -> str:
    """First ``n`` hex digits of the sha256 of the canonical JSON of ``obj``."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()[:n]
