"""Speech features: STFT log-magnitude (+phase), log-mel, WORLD analysis, mel-cepstra,
log-F0 statistics and the log-Gaussian F0 transform, normalisation statistics, and a
feature cache keyed by content hash.

Conventions (shapes are documented on every function):

- torch features are channel-first like torchaudio: ``Tensor[..., F, N]`` (``F``
  frequency bins or mel bands, ``N`` frames);
- WORLD features are numpy float64, frame-first like pyworld: ``f0 [N]``,
  ``sp``/``ap`` ``[N, fft_size // 2 + 1]``, mel-cepstra ``[N, order + 1]``.

References: WORLD — Morise, Yokomori & Ozawa 2016, "WORLD: a vocoder-based high-quality
speech synthesis system for real-time applications" (DIO, Harvest = Morise 2017,
CheapTrick, D4C); mel-cepstral analysis — Tokuda et al. 1994 (SPTK's ``sp2mc``, with the
all-pass constant α = ``pysptk.util.mcepalpha(fs)``); log-Gaussian F0 conversion — the
usual linear transform of ln F0 (e.g. Liu et al. 2007, used by CycleGAN-VC / StarGAN-VC).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import statistics
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from common.benchmark import timed
from common.io import atomic_path, atomic_write_json

__all__ = [
    "FEATURE_VERSION",
    "F0Stats",
    "FeatureCache",
    "MelConfig",
    "NormStats",
    "Spectrogram",
    "StftConfig",
    "WorldFeatures",
    "bench_world",
    "code_ap",
    "code_sp",
    "convert_f0",
    "d4c_strided",
    "decode_ap",
    "decode_sp",
    "istft_logmag",
    "log_mel",
    "logf0_stats",
    "mcep_alpha",
    "mcep_to_sp",
    "norm_stats",
    "sp_to_mcep",
    "stft_logmag",
    "synthetic_voice",
    "world_analyze",
    "world_envelope",
]

# Bump when any extractor's output changes: it is part of every FeatureCache key.
FEATURE_VERSION = 1


# --------------------------------------------------------------------------- STFT


@dataclass(frozen=True)
class StftConfig:
    """STFT at 16 kHz: 32 ms Hann window, 8 ms hop (512/128) by default."""

    n_fft: int = 512
    hop: int = 128
    win: int = 512
    eps: float = 1e-5  # log floor: log(max(|X|, eps)) = -11.5 for silence

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1


@dataclass
class Spectrogram:
    """``logmag`` and ``phase``: ``Tensor[..., F, N]``; ``length``: samples of the source."""

    logmag: torch.Tensor
    phase: torch.Tensor
    length: int


@functools.lru_cache(maxsize=8)
def _hann(win: int) -> torch.Tensor:
    return torch.hann_window(win)


def stft_logmag(wav: torch.Tensor | np.ndarray, cfg: StftConfig = StftConfig()) -> Spectrogram:
    """``wav`` ``[..., T]`` → log-magnitude and phase ``[..., n_fft/2+1, 1 + T // hop]``.

    Centred frames (reflect padding) so frame ``n`` is centred on sample ``n * hop``;
    :func:`istft_logmag` inverts it exactly when given the same phase.
    """
    x = torch.as_tensor(np.asarray(wav) if isinstance(wav, np.ndarray) else wav).float()
    lead = x.shape[:-1]
    spec = torch.stft(
        x.reshape(-1, x.shape[-1]),
        n_fft=cfg.n_fft,
        hop_length=cfg.hop,
        win_length=cfg.win,
        window=_hann(cfg.win).to(x.device),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )  # (B, F, N)
    logmag = spec.abs().clamp_min(cfg.eps).log()
    phase = spec.angle()
    return Spectrogram(
        logmag.reshape(*lead, *logmag.shape[-2:]), phase.reshape(*lead, *phase.shape[-2:]),
        int(x.shape[-1]),
    )


def istft_logmag(
    logmag: torch.Tensor, phase: torch.Tensor, length: int, cfg: StftConfig = StftConfig()
) -> torch.Tensor:
    """Inverse of :func:`stft_logmag`: ``[..., F, N]`` (+ phase) → ``[..., length]``.

    The usual enhancement path: a model's clean log-magnitude with the *noisy* phase.
    """
    if logmag.shape != phase.shape:
        raise ValueError(f"logmag {tuple(logmag.shape)} and phase {tuple(phase.shape)} differ")
    lead = logmag.shape[:-2]
    spec = torch.polar(logmag.exp(), phase).reshape(-1, *logmag.shape[-2:])
    wav = torch.istft(
        spec, n_fft=cfg.n_fft, hop_length=cfg.hop, win_length=cfg.win,
        window=_hann(cfg.win).to(spec.device), center=True, length=length,
    )
    return wav.reshape(*lead, length)


# --------------------------------------------------------------------------- log-mel


@dataclass(frozen=True)
class MelConfig:
    """Log-mel as most 16 kHz mel vocoders use it: 64 ms window, 16 ms hop, 80 Slaney bands."""

    sr: int = 16000
    n_fft: int = 1024
    hop: int = 256
    win: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0
    eps: float = 1e-5


@functools.lru_cache(maxsize=8)
def _mel_transform(cfg: MelConfig) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=cfg.sr, n_fft=cfg.n_fft, win_length=cfg.win, hop_length=cfg.hop,
        f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=1.0,
        norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect",
    )


def log_mel(wav: torch.Tensor | np.ndarray, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """``wav`` ``[..., T]`` at ``cfg.sr`` → natural-log mel magnitude ``[..., n_mels, N]``."""
    x = torch.as_tensor(np.asarray(wav) if isinstance(wav, np.ndarray) else wav).float()
    with torch.no_grad():
        mel = _mel_transform(cfg).to(x.device)(x)
    return mel.clamp_min(cfg.eps).log()


# --------------------------------------------------------------------------- WORLD


def _pyworld():
    try:
        import pyworld
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "WORLD features need pyworld: pip install pyworld-prebuilt==0.3.6.post1 "
            f"(and setuptools<81) ({err})"
        ) from None
    return pyworld


def _pysptk():
    with warnings.catch_warnings():  # pysptk imports pkg_resources, which warns
        warnings.simplefilter("ignore", UserWarning)
        import pysptk
    return pysptk


F0Method = Literal["harvest", "dio"]


@dataclass
class WorldFeatures:
    """WORLD analysis of one utterance (Morise et al. 2016). Frame ``n`` is at
    ``n * frame_period`` ms. ``f0 [N]`` in Hz (0 = unvoiced); ``sp``: CheapTrick spectral
    envelope (power) and ``ap``: D4C aperiodicity, both ``[N, fft_size // 2 + 1]``."""

    f0: np.ndarray
    sp: np.ndarray
    ap: np.ndarray
    sr: int
    frame_period: float
    f0_method: str

    @property
    def fft_size(self) -> int:
        return (self.sp.shape[1] - 1) * 2

    @property
    def voiced(self) -> np.ndarray:
        return self.f0 > 0


def world_f0(
    wav: np.ndarray,
    sr: int,
    *,
    method: F0Method = "harvest",
    frame_period: float = 5.0,
    f0_floor: float = 71.0,
    f0_ceil: float = 800.0,
) -> tuple[np.ndarray, np.ndarray]:
    """F0 contour ``[N]`` (Hz, 0 unvoiced) and frame times ``[N]`` (s).

    ``harvest``: Morise 2017, robust, slower. ``dio``: DIO refined by StoneMask (Morise
    et al. 2016 §2.1), fast; DIO alone is too coarse, so it is always refined here.
    """
    pw = _pyworld()
    x = np.ascontiguousarray(wav, dtype=np.float64)
    if method == "harvest":
        f0, t = pw.harvest(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)
    elif method == "dio":
        f0, t = pw.dio(x, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=frame_period)
        f0 = pw.stonemask(x, f0, t, sr)
    else:
        raise ValueError(f"f0 method must be 'harvest' or 'dio', got {method!r}")
    return f0, t


def world_analyze(
    wav: np.ndarray,
    sr: int,
    *,
    f0_method: F0Method = "harvest",
    frame_period: float = 5.0,
    f0_floor: float = 71.0,
    f0_ceil: float = 800.0,
    fft_size: int | None = None,
    ap_stride: int = 1,
) -> WorldFeatures:
    """Full WORLD analysis of mono ``wav`` ``[T]``: F0, CheapTrick envelope, D4C aperiodicity.

    ``fft_size`` defaults to WORLD's choice for ``f0_floor`` (1024 at 16 kHz, 71 Hz).
    ``ap_stride`` > 1 runs D4C on every ``ap_stride``-th frame only and interpolates the
    aperiodicity linearly in time between them: D4C is the most expensive part of the
    analysis (about half of it at 5 ms frames), and the band aperiodicity it estimates
    (Morise 2016, "D4C, a band-aperiodicity estimator", §3) varies slowly next to a 5 ms hop.
    """
    x = np.ascontiguousarray(wav, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"world_analyze expects mono [T] samples, got shape {x.shape}")
    if fft_size is None:
        fft_size = _pyworld().get_cheaptrick_fft_size(sr, f0_floor)
    f0, t, sp = world_envelope(x, sr, f0_method=f0_method, frame_period=frame_period,
                               f0_floor=f0_floor, f0_ceil=f0_ceil, fft_size=fft_size)
    ap = d4c_strided(x, f0, t, sr, fft_size, ap_stride)
    return WorldFeatures(f0=f0, sp=sp, ap=ap, sr=sr, frame_period=frame_period,
                         f0_method=f0_method)


def world_envelope(
    wav: np.ndarray,
    sr: int,
    *,
    f0_method: F0Method = "harvest",
    frame_period: float = 5.0,
    f0_floor: float = 71.0,
    f0_ceil: float = 800.0,
    fft_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F0 ``[N]``, frame times ``[N]`` and the CheapTrick envelope ``[N, fft/2+1]``: the part
    of :func:`world_analyze` that needs no aperiodicity (training features, VC metrics)."""
    x = np.ascontiguousarray(wav, dtype=np.float64)
    f0, t = world_f0(x, sr, method=f0_method, frame_period=frame_period, f0_floor=f0_floor,
                     f0_ceil=f0_ceil)
    if fft_size is None:
        fft_size = _pyworld().get_cheaptrick_fft_size(sr, f0_floor)
    return f0, t, _pyworld().cheaptrick(x, f0, t, sr, f0_floor=f0_floor, fft_size=fft_size)


def d4c_strided(x: np.ndarray, f0: np.ndarray, t: np.ndarray, sr: int, fft_size: int,
                stride: int = 1) -> np.ndarray:
    """D4C aperiodicity ``[N, fft/2+1]`` for the frames at times ``t``, estimated on every
    ``stride``-th frame (and the last) and linearly interpolated in time for the others."""
    pw = _pyworld()
    if stride < 1:
        raise ValueError(f"ap_stride must be >= 1, got {stride}")
    if stride == 1 or len(t) <= 2:
        return pw.d4c(x, f0, t, sr, fft_size=fft_size)
    keep = np.unique(np.r_[np.arange(0, len(t), stride), len(t) - 1])
    coarse = pw.d4c(x, np.ascontiguousarray(f0[keep]), np.ascontiguousarray(t[keep]), sr,
                    fft_size=fft_size)
    pos = np.interp(np.arange(len(t)), keep, np.arange(len(keep)))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(keep) - 1)
    w = (pos - lo)[:, None]
    return np.ascontiguousarray((1 - w) * coarse[lo] + w * coarse[hi])


def mcep_alpha(sr: int) -> float:
    """All-pass constant approximating the mel scale at ``sr`` (0.41 at 16 kHz)."""
    return float(_pysptk().util.mcepalpha(sr))


def sp_to_mcep(sp: np.ndarray, sr: int, order: int = 24, alpha: float | None = None) -> np.ndarray:
    """SPTK mel-cepstrum of a power spectral envelope: ``[N, fft/2+1]`` → ``[N, order+1]``
    (``c0`` first). ``alpha`` defaults to :func:`mcep_alpha`."""
    alpha = mcep_alpha(sr) if alpha is None else alpha
    return _pysptk().sp2mc(np.ascontiguousarray(sp, dtype=np.float64), order, alpha)


def mcep_to_sp(mc: np.ndarray, sr: int, fft_size: int, alpha: float | None = None) -> np.ndarray:
    """Inverse of :func:`sp_to_mcep`: ``[N, order+1]`` → power envelope ``[N, fft/2+1]``."""
    alpha = mcep_alpha(sr) if alpha is None else alpha
    return _pysptk().mc2sp(np.ascontiguousarray(mc, dtype=np.float64), alpha, fft_size)


def code_sp(sp: np.ndarray, sr: int, dim: int = 36) -> np.ndarray:
    """WORLD's coded spectral envelope (mel-cepstrum-like, ``[N, dim]``), as CycleGAN-VC
    uses it (36 at 16 kHz, 24 in the original)."""
    return _pyworld().code_spectral_envelope(np.ascontiguousarray(sp), sr, dim)


def decode_sp(coded: np.ndarray, sr: int, fft_size: int) -> np.ndarray:
    return _pyworld().decode_spectral_envelope(np.ascontiguousarray(coded, dtype=np.float64),
                                               sr, fft_size)


def code_ap(ap: np.ndarray, sr: int) -> np.ndarray:
    """WORLD's band aperiodicity (1 band at 16 kHz: ``[N, 1]``)."""
    return _pyworld().code_aperiodicity(np.ascontiguousarray(ap), sr)


def decode_ap(coded: np.ndarray, sr: int, fft_size: int) -> np.ndarray:
    return _pyworld().decode_aperiodicity(np.ascontiguousarray(coded, dtype=np.float64), sr,
                                          fft_size)


# --------------------------------------------------------------------------- F0 statistics


@dataclass(frozen=True)
class F0Stats:
    """Mean and standard deviation of ln F0 over voiced frames."""

    mean: float
    std: float
    n_voiced: int

    @property
    def median_hz(self) -> float:  # exp of the mean of ln F0 = geometric mean
        return float(math.exp(self.mean))


def logf0_stats(f0s: Iterable[np.ndarray]) -> F0Stats:
    """Pooled ln-F0 statistics over all voiced frames (f0 > 0) of all contours."""
    logs = [np.log(f[f > 0]) for f in (np.asarray(f, dtype=np.float64) for f in f0s)]
    allv = np.concatenate(logs) if logs else np.zeros(0)
    if len(allv) < 2:
        raise ValueError(f"need at least 2 voiced frames for F0 statistics, got {len(allv)}")
    return F0Stats(mean=float(allv.mean()), std=float(allv.std()), n_voiced=int(len(allv)))


def convert_f0(f0: np.ndarray, src: F0Stats, tgt: F0Stats) -> np.ndarray:
    """Log-Gaussian normalised F0 transform (METRICS.md):
    ``f0' = exp((ln f0 − μ_src) / σ_src · σ_tgt + μ_tgt)`` on voiced frames; 0 stays 0."""
    f0 = np.asarray(f0, dtype=np.float64)
    out = np.zeros_like(f0)
    v = f0 > 0
    out[v] = np.exp((np.log(f0[v]) - src.mean) / src.std * tgt.std + tgt.mean)
    return out


# --------------------------------------------------------------------------- normalisation


@dataclass
class NormStats:
    """Per-dimension mean/std of features; ``feature_axis`` names the dimension axis."""

    mean: np.ndarray
    std: np.ndarray
    count: int
    feature_axis: int = -1

    def _shape(self, x: np.ndarray | torch.Tensor) -> list[int]:
        shape = [1] * x.ndim
        shape[self.feature_axis] = -1
        return shape

    def normalize(self, x):
        """``(x − mean) / std`` broadcast along ``feature_axis`` (numpy or torch)."""
        m, s = self._as(x)
        return (x - m) / s

    def denormalize(self, x):
        m, s = self._as(x)
        return x * s + m

    def _as(self, x):
        shape = self._shape(x)
        if isinstance(x, torch.Tensor):
            return (torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape))
        return self.mean.reshape(shape), self.std.reshape(shape)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count,
                "feature_axis": self.feature_axis}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NormStats:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64),
                   int(d["count"]), int(d.get("feature_axis", -1)))

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NormStats:
        return cls.from_dict(json.loads(Path(path).read_text()))


def norm_stats(
    arrays: Iterable[np.ndarray | torch.Tensor], feature_axis: int = -1, min_std: float = 1e-5
) -> NormStats:
    """Streaming mean/std (Chan et al. parallel update) over every axis but ``feature_axis``.

    ``arrays`` may be a generator (one utterance at a time); ``std`` is floored at
    ``min_std`` so constant dimensions normalise to 0 instead of dividing by zero.
    """
    n = 0
    mean = m2 = None
    for a in arrays:
        x = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        x = np.moveaxis(x.astype(np.float64), feature_axis, -1).reshape(-1, x.shape[feature_axis])
        if len(x) == 0:
            continue
        bn, bmean = len(x), x.mean(axis=0)
        bm2 = ((x - bmean) ** 2).sum(axis=0)
        if mean is None:
            n, mean, m2 = bn, bmean, bm2
            continue
        delta = bmean - mean
        total = n + bn
        mean = mean + delta * bn / total
        m2 = m2 + bm2 + delta**2 * n * bn / total
        n = total
    if mean is None:
        raise ValueError("norm_stats got no frames")
    std = np.maximum(np.sqrt(m2 / n), min_std)
    return NormStats(mean=mean, std=std, count=n, feature_axis=feature_axis)


# --------------------------------------------------------------------------- cache


def _hash_source(source: str | os.PathLike[str] | np.ndarray | bytes) -> str:
    h = hashlib.sha256()
    if isinstance(source, np.ndarray):
        a = np.ascontiguousarray(source)
        h.update(f"ndarray:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(source, bytes):
        h.update(b"bytes:")
        h.update(source)
    else:
        h.update(b"file:")
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class FeatureCache:
    """Features on disk under ``<root>/<name>/<key>.npz``.

    The key is the sha256 of the *content* (file bytes or array bytes, not its path), the
    feature's name, every parameter (canonical JSON) and :data:`FEATURE_VERSION`, so
    editing a file, changing a parameter or changing the extractor never reuses a stale
    entry (STYLE.md: caches whose key misses what they depend on). ``hits``/``misses``
    count lookups.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        from common.paths import cache_dir

        self.root = Path(root) if root is not None else cache_dir("features")
        self.hits = 0
        self.misses = 0

    def key(self, source: str | os.PathLike[str] | np.ndarray | bytes, name: str,
            params: Mapping[str, Any]) -> str:
        blob = json.dumps({"version": FEATURE_VERSION, "name": name, "params": dict(params),
                           "content": _hash_source(source)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:32]

    def path(self, key: str, name: str) -> Path:
        return self.root / name / f"{key}.npz"

    def get_or_compute(
        self,
        source: str | os.PathLike[str] | np.ndarray | bytes,
        name: str,
        params: Mapping[str, Any],
        compute: Callable[[], Mapping[str, np.ndarray]],
    ) -> dict[str, np.ndarray]:
        """Cached ``compute()`` (a dict of arrays) for ``(source content, name, params)``."""
        path = self.path(self.key(source, name, params), name)
        if path.exists():
            try:
                with np.load(path) as data:
                    out = {k: data[k] for k in data.files}
                self.hits += 1
                return out
            except (OSError, ValueError):
                pass  # a damaged entry is recomputed and replaced
        self.misses += 1
        out = {k: np.asarray(v) for k, v in compute().items()}
        with atomic_path(path) as tmp:
            np.savez(tmp, **out)
        return out

    def world(self, source: str | os.PathLike[str], *, sr: int = 16000, **kwargs: Any
              ) -> WorldFeatures:
        """Cached :func:`world_analyze` of an audio file read at ``sr``."""
        from speech.audio import read_audio

        params = {"sr": sr, **kwargs}

        def compute() -> dict[str, np.ndarray]:
            feats = world_analyze(read_audio(source, sr).samples, sr, **kwargs)
            return {"f0": feats.f0, "sp": feats.sp, "ap": feats.ap}

        d = self.get_or_compute(source, "world", params, compute)
        return WorldFeatures(d["f0"], d["sp"], d["ap"], sr, kwargs.get("frame_period", 5.0),
                             kwargs.get("f0_method", "harvest"))


# --------------------------------------------------------------------------- benchmark


def synthetic_voice(
    sr: int = 16000, seconds: float = 4.0, seed: int = 0
) -> dict[str, np.ndarray]:
    """A vowel-like test signal with a KNOWN F0 contour, for F0-extractor checks.

    Harmonics of a gliding, vibrato-modulated F0 (90→220 Hz), shaped by three fixed
    formant bumps, with an unvoiced (noise) stretch in the middle. Returns ``wav [T]``,
    ``f0 [T]`` (true F0 per sample, 0 where unvoiced).
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    f0 = 90 * (220 / 90) ** (t / seconds) * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = np.zeros_like(t)
    for k in range(1, int(sr / 2 / 90)):
        fk = k * f0
        amp = sum(np.exp(-0.5 * ((fk - fc) / bw) ** 2) for fc, bw in
                  ((700, 130), (1200, 150), (2600, 250))) + 0.05
        wav += np.where(fk < sr / 2 - 200, amp / k**0.5, 0.0) * np.sin(k * phase)
    gap = (t > seconds * 0.45) & (t < seconds * 0.55)
    wav[gap] = rng.standard_normal(gap.sum()) * 0.05 * np.std(wav)
    f0[gap] = 0
    wav = 0.3 * wav / np.max(np.abs(wav))
    return {"wav": wav.astype(np.float64), "f0": f0}


def _f0_accuracy(
    est: np.ndarray, times: np.ndarray, truth: np.ndarray, sr: int
) -> dict[str, float]:
    idx = np.minimum((times * sr).astype(int), len(truth) - 1)
    ref = truth[idx]
    both = (ref > 0) & (est > 0)
    cents = 1200 * np.log2(est[both] / ref[both])
    gross = np.abs(cents) > 200 * 1.0  # > 2 semitones (≈ the usual 20 % gross error)
    return {
        "rmse_cents_fine": round(float(np.sqrt(np.mean(cents[~gross] ** 2))), 2),
        "gross_error_rate": round(float(gross.mean()), 4),
        "vuv_error_rate": round(float(np.mean((ref > 0) != (est > 0))), 4),
    }


def bench_world(seconds: float = 4.0, repeats: int = 3, sr: int = 16000) -> dict[str, Any]:
    """Real-time factor of WORLD analysis, Harvest vs DIO+StoneMask, on one thread.

    Protocol (METRICS.md "Speed"): one warm-up, then the median of ``repeats`` timed runs on
    :func:`synthetic_voice`; ``f0_rtf`` = F0 only, ``full_rtf`` = F0 + CheapTrick + D4C
    (what ``world_analyze`` does). RTF = processing time / audio duration. F0 accuracy on
    the known contour is reported alongside (fine RMSE in cents, gross error > 200 cents).
    """
    torch.set_num_threads(1)
    sig = synthetic_voice(sr, seconds)
    wav = sig["wav"]
    out: dict[str, Any] = {"threads": 1, "dtype": "float64", "sr": sr, "audio_seconds": seconds,
                           "frame_period_ms": 5.0, "repeats": repeats}
    for method in ("harvest", "dio"):
        def f0_only(m=method):
            return world_f0(wav, sr, method=m)

        def full(m=method):
            return world_analyze(wav, sr, f0_method=m)

        timings = {}
        for label, fn in (("f0_rtf", f0_only), ("full_rtf", full)):
            times = timed(fn, warmup=1, repeats=repeats)
            timings[label] = round(statistics.median(times) / seconds, 4)
        f0, t = f0_only()
        out[method if method == "harvest" else "dio_stonemask"] = {
            **timings, **_f0_accuracy(f0, t, sig["f0"], sr)}
    return out


