"""Where derived, deterministic and expensive things are cached (read on every call).

One cache root, ``$CGAN_CACHE`` or ``~/.cache/cgan-lab``, shared by every track; each kind
has its own folder below it::

    <root>/datasets/synthbirds/<key>/     rendered SynthBirds splits (text2img.data)
    <root>/datasets/synthvoices/<key>/    the built-in speech corpus (speech.data)
    <root>/datasets/resampled/<key>/      16 kHz copies of real corpora (VoiceBank+DEMAND)
    <root>/encoders/<name>/               extracted text-encoder weights
    <root>/embeddings/<encoder hash>/     cached caption embeddings
    <root>/judge/<key>/                   trained SynthBirds judges
    <root>/features/<name>/<key>.npz      speech feature cache
    <root>/real_stats/                    common.metrics.RealStatsCache

Keys are :func:`short_hash` of everything the cached thing depends on (generator
version, parameters, sizes), so a change of any of them is a new folder, never a stale hit.
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
