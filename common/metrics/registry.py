"""Protocol-named metrics, in the manner of StyleGAN's ``fid50k_full``.

A metric's name states its protocol (feature extractor and sample count), so numbers are
only compared when they were measured the same way (METRICS.md). Tracks register their
own metrics at import time of their evaluation module; nothing track-specific lives here.

    @register_metric("fd_judge_5k")
    def fd_judge_5k(**ctx) -> dict[str, float]: ...

    get_metric("fd_judge_5k")(**ctx)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "MetricFn",
    "fd_metric_name",
    "get_metric",
    "kid_metric_name",
    "list_metrics",
    "register_metric",
]

MetricFn = Callable[..., Any]
_F = TypeVar("_F", bound=MetricFn)

_REGISTRY: dict[str, MetricFn] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_EXTRACTOR_RE = re.compile(r"^[a-z][a-z0-9]*$")


def register_metric(name: str) -> Callable[[_F], _F]:
    """Decorator registering ``fn`` under ``name`` (lower_snake_case, unique)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"metric name {name!r} must be lower_snake_case, e.g. 'fd_judge_5k'")

    def decorator(fn: _F) -> _F:
        existing = _REGISTRY.get(name)
        # Re-registering the same function (module re-import) is harmless; a different
        # function under the same name would silently change what a number means.
        if existing is not None and (
            existing.__module__,
            getattr(existing, "__qualname__", None),
        ) != (fn.__module__, getattr(fn, "__qualname__", None)):
            raise ValueError(
                f"metric {name!r} is already registered by "
                f"{existing.__module__}.{getattr(existing, '__qualname__', existing)}"
            )
        _REGISTRY[name] = fn
        return fn

    return decorator


def get_metric(name: str) -> MetricFn:
    """The metric registered under ``name``; ``KeyError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_metrics()) or "(none registered - import the track's metrics)"
        raise KeyError(f"unknown metric {name!r}; registered metrics: {known}") from None


def list_metrics() -> list[str]:
    return sorted(_REGISTRY)


def _format_count(n: int) -> str:
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"sample count must be a positive int, got {n!r}")
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _check_extractor(extractor: str) -> str:
    if not _EXTRACTOR_RE.match(extractor):
        raise ValueError(
            f"extractor name {extractor!r} must be lowercase letters/digits (no '_'), "
            "so that metric names parse unambiguously"
        )
    return extractor


def fd_metric_name(extractor: str, n: int) -> str:
    """Protocol name of a Fréchet distance: ``fd_judge_5k``; ``fid_inception_30k`` for Inception.

    ``n`` is written in thousands when divisible by 1000 (``5000 → 5k``, ``1500 → 1500``).
    """
    prefix = "fid" if _check_extractor(extractor) == "inception" else "fd"
    return f"{prefix}_{extractor}_{_format_count(n)}"


def kid_metric_name(extractor: str, n: int) -> str:
    """Protocol name of a KID: ``kid_judge_5k``, ``kid_inception_50k``."""
    return f"kid_{_check_extractor(extractor)}_{_format_count(n)}"
