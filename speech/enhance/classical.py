"""Classical single-channel enhancement baselines: Wiener filter and spectral subtraction.

Both share one STFT (the model's, 512/128 Hann at 16 kHz) and one noise estimate, and keep
the noisy phase, like the cGAN:

- noise PSD: minimum statistics (Martin 2001, "Noise power spectral density estimation
  based on optimal smoothing and minimum statistics", IEEE TSAP 9(5)), simplified: the
  periodogram is smoothed recursively over time (α_s), its minimum over a sliding window
  of ``min_window`` seconds tracks the noise floor, and a fixed bias factor compensates
  for the minimum of a smoothed periodogram lying below its mean (Martin's eq. 14 gives
  ≈ 1.5–2 for these window lengths). The window is centred: the baselines run offline.
- ``wiener``: the Wiener gain ξ/(1+ξ) with the decision-directed a-priori SNR (Ephraim &
  Malah 1984, "Speech enhancement using a minimum mean-square error short-time spectral
  amplitude estimator", IEEE TASSP 32(6), eq. 51; used with the Wiener gain by Scalart &
  Vieira Filho 1996), α_dd = 0.98, gain floored at ``gain_floor``.
- ``specsub``: power spectral subtraction with over-subtraction α and spectral floor β
  (Berouti, Schwartz & Makhoul 1979, "Enhancement of speech corrupted by acoustic noise",
  ICASSP; after Boll 1979): |Ŝ|² = max(|X|² − α·N̂, β·N̂).

:class:`ClassicalEnhancer` has the same ``enhance(wav) -> wav`` call as the trained model
(:class:`speech.enhance.inference.Enhancer`), so the CLI, the evaluation and the benchmark
treat every system alike.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch
from scipy.ndimage import minimum_filter1d
from scipy.signal import lfilter

from speech.audio import apply_chunked
from speech.features import StftConfig, istft_logmag, stft_logmag

__all__ = ["ClassicalConfig", "ClassicalEnhancer", "noise_psd", "specsub_gain", "wiener_gain"]


@dataclass(frozen=True)
class ClassicalConfig:
    """Parameters of the classical baselines (defaults: the papers' usual values)."""

    method: Literal["wiener", "specsub"] = "wiener"
    smooth: float = 0.85  # α_s, recursive periodogram smoothing per 8 ms frame
    min_window: float = 1.5  # seconds of the minimum-statistics window (Martin uses ≈ 1.5 s)
    bias: float = 1.8  # minimum → mean noise power
    dd_alpha: float = 0.98  # decision-directed smoothing (Ephraim & Malah 1984)
    gain_floor: float = 0.1  # −20 dB Wiener gain floor (limits musical noise)
    over_sub: float = 2.0  # spectral subtraction α (Berouti et al. 1979 use 3–6 at 0 dB)
    spec_floor: float = 0.01  # spectral subtraction β


def noise_psd(power: np.ndarray, cfg: ClassicalConfig, frame_seconds: float) -> np.ndarray:
    """Minimum-statistics noise PSD of a periodogram ``power`` [F, N] → [F, N]."""
    a = cfg.smooth
    smoothed = lfilter([1 - a], [1, -a], power, axis=1)
    # Start the recursion at the first frame's value rather than at zero.
    smoothed += power[:, :1] * (a ** np.arange(1, power.shape[1] + 1))[None, :]
    window = max(1, int(round(cfg.min_window / frame_seconds)))
    return cfg.bias * minimum_filter1d(smoothed, size=window, axis=1, mode="nearest")


def wiener_gain(power: np.ndarray, noise: np.ndarray, cfg: ClassicalConfig) -> np.ndarray:
    """Decision-directed Wiener gain [F, N] from periodogram and noise PSD [F, N]."""
    noise = np.maximum(noise, 1e-12)
    post = power / noise  # a-posteriori SNR γ
    gain = np.empty_like(power)
    prev = np.ones(power.shape[0])  # |Ŝ(n−1)|² / N̂ : start from an a-priori SNR of 1
    for n in range(power.shape[1]):
        prior = cfg.dd_alpha * prev + (1 - cfg.dd_alpha) * np.maximum(post[:, n] - 1.0, 0.0)
        g = np.maximum(prior / (1.0 + prior), cfg.gain_floor)
        gain[:, n] = g
        prev = g**2 * post[:, n]
    return gain


def specsub_gain(power: np.ndarray, noise: np.ndarray, cfg: ClassicalConfig) -> np.ndarray:
    """Magnitude gain of power spectral subtraction with over-subtraction and a floor."""
    clean = np.maximum(power - cfg.over_sub * noise, cfg.spec_floor * noise)
    return np.sqrt(clean / np.maximum(power, 1e-12))


class ClassicalEnhancer:
    """``enhance(wav: float32 [T]) -> float32 [T]`` at 16 kHz, chunked like the model."""

    sr = 16000

    def __init__(self, cfg: ClassicalConfig | None = None, stft: StftConfig | None = None,
                 chunk_seconds: float = 10.0, overlap_seconds: float = 0.5) -> None:
        cfg, stft = cfg or ClassicalConfig(), stft or StftConfig()
        if cfg.method not in ("wiener", "specsub"):
            raise ValueError(f"unknown classical method {cfg.method!r}; use wiener or specsub")
        self.cfg, self.stft = cfg, stft
        self.chunk_seconds, self.overlap_seconds = chunk_seconds, overlap_seconds
        self.name = cfg.method

    def describe(self) -> dict:
        return {"kind": "classical", **asdict(self.cfg), "n_fft": self.stft.n_fft,
                "hop": self.stft.hop}

    def enhance_chunk(self, wav: np.ndarray) -> np.ndarray:
        n = len(wav)
        if n < self.stft.n_fft:  # centred frames need more than n_fft/2 samples
            wav = np.pad(wav, (0, self.stft.n_fft - n))
        spec = stft_logmag(torch.from_numpy(np.ascontiguousarray(wav)), self.stft)
        power = np.exp(2.0 * spec.logmag.double().numpy())  # |X|² [F, N]
        noise = noise_psd(power, self.cfg, self.stft.hop / self.sr)
        fn = wiener_gain if self.cfg.method == "wiener" else specsub_gain
        gain = fn(power, noise, self.cfg)
        logmag = spec.logmag + torch.from_numpy(np.log(np.maximum(gain, 1e-8))).float()
        logmag = logmag.clamp_min(math.log(self.stft.eps))
        return istft_logmag(logmag, spec.phase, len(wav), self.stft).numpy()[:n]

    def enhance(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        return apply_chunked(wav, self.enhance_chunk, int(self.chunk_seconds * self.sr),
                             int(self.overlap_seconds * self.sr))

    __call__ = enhance
