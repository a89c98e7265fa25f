"""VC features: WORLD analysis → coded spectral envelope, per-speaker statistics, synthesis.

Per utterance (Kaneko et al. 2019 §4.1; Kameoka et al. 2018 §5): WORLD F0 (Harvest or
DIO + StoneMask), CheapTrick envelope coded to ``sp_dim`` dimensions
(``pyworld.code_spectral_envelope``, 36 at 16 kHz), D4C aperiodicity. The model converts the
coded envelope normalised per speaker and dimension; F0 goes through the log-Gaussian
transform (:func:`speech.features.convert_f0`); the aperiodicity is copied. Analysis of
corpus files is cached (:class:`speech.features.FeatureCache`: key = file content + every
parameter + FEATURE_VERSION).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speech.features import (
    F0Stats,
    FeatureCache,
    NormStats,
    code_sp,
    convert_f0,
    decode_sp,
    logf0_stats,
    norm_stats,
    world_analyze,
    world_envelope,
)
from speech.vc.config import FeatureConfig
from speech.vocoders import world_synthesize

__all__ = ["SpeakerStats", "Utterance", "analyze", "analyze_file", "speaker_stats", "synthesize"]


@dataclass
class Utterance:
    """WORLD features of one utterance: ``f0 [N]`` Hz, ``coded [N, D]``, ``ap [N, fft/2+1]``."""

    f0: np.ndarray
    coded: np.ndarray
    ap: np.ndarray
    fft_size: int


def _world_kwargs(cfg: FeatureConfig, f0_method: str | None = None) -> dict[str, Any]:
    return {"f0_method": f0_method or cfg.f0_method, "frame_period": cfg.frame_period,
            "f0_floor": cfg.f0_floor, "f0_ceil": cfg.f0_ceil}


def analyze(wav: np.ndarray, cfg: FeatureConfig, f0_method: str | None = None,
            ap_stride: int | None = None) -> Utterance:
    """Mono float ``[T]`` at ``cfg.sr`` → :class:`Utterance` (D4C every ``ap_stride``-th
    frame, default ``cfg.ap_stride``)."""
    w = world_analyze(np.asarray(wav, dtype=np.float64), cfg.sr, **_world_kwargs(cfg, f0_method),
                      ap_stride=cfg.ap_stride if ap_stride is None else ap_stride)
    return Utterance(w.f0, code_sp(w.sp, cfg.sr, cfg.sp_dim), w.ap, w.fft_size)


def analyze_file(path: str | Path, cfg: FeatureConfig, cache: FeatureCache | None = None
                 ) -> Utterance:
    """Cached :func:`analyze` of an audio file (F0 and coded envelope only: what training
    and the statistics need; ``ap`` is left empty)."""
    from speech.audio import read_audio

    cache = cache or FeatureCache()
    params = {"sr": cfg.sr, "sp_dim": cfg.sp_dim, **_world_kwargs(cfg)}

    def compute() -> dict[str, np.ndarray]:
        # F0 + CheapTrick only: training never needs D4C's aperiodicity (a third of the cost).
        x = read_audio(path, cfg.sr).samples
        f0, _, sp = world_envelope(x, cfg.sr, **_world_kwargs(cfg))
        return {"f0": f0, "coded": code_sp(sp, cfg.sr, cfg.sp_dim)}

    d = cache.get_or_compute(path, "vc_world_coded", params, compute)
    return Utterance(d["f0"], d["coded"], np.zeros((len(d["f0"]), 0)), 0)


@dataclass
class SpeakerStats:
    """A speaker's coded-envelope mean/std per dimension and ln-F0 statistics."""

    sp: NormStats
    f0: F0Stats

    def to_dict(self) -> dict[str, Any]:
        return {"sp": self.sp.to_dict(), "f0": {"mean": self.f0.mean, "std": self.f0.std,
                                                "n_voiced": self.f0.n_voiced}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeakerStats:
        return cls(NormStats.from_dict(d["sp"]), F0Stats(float(d["f0"]["mean"]),
                                                         float(d["f0"]["std"]),
                                                         int(d["f0"]["n_voiced"])))


def speaker_stats(utts: Sequence[Utterance]) -> SpeakerStats:
    """Statistics over all frames (envelope) and voiced frames (ln F0) of ``utts``."""
    return SpeakerStats(norm_stats((u.coded for u in utts), feature_axis=-1),
                        logf0_stats(u.f0 for u in utts))


def synthesize(src: Utterance, coded: np.ndarray, src_stats: SpeakerStats,
               tgt_stats: SpeakerStats, cfg: FeatureConfig) -> np.ndarray:
    """Converted coded envelope ``[N, D]`` + source F0 / aperiodicity → float32 ``[T]``.

    F0: log-Gaussian transform source → target; aperiodicity copied (CycleGAN-VC2 §4.1).
    """
    f0 = convert_f0(src.f0, src_stats.f0, tgt_stats.f0)
    sp = decode_sp(np.ascontiguousarray(coded, dtype=np.float64), cfg.sr, src.fft_size)
    return world_synthesize(f0=f0, sp=sp, ap=src.ap, sr=cfg.sr, frame_period=cfg.frame_period)
