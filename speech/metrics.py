"""Speech metrics with named protocols (METRICS.md): enhancement and voice conversion.

Enhancement (16 kHz, reference and degraded signals sample-aligned, same length):

- ``pesq_wb``: ITU-T P.862.2 wide-band MOS-LQO through the ``pesq`` package.
- ``stoi``: Taal et al. 2011 short-time objective intelligibility through ``pystoi``.
- ``si_sdr``: scale-invariant SDR (Le Roux et al. 2019), both signals made zero-mean.
- ``ssnr``: segmental SNR as in Hu & Loizou 2008 — 30 ms Hann-windowed frames, 75 %
  overlap, each frame clamped to [−10, 35] dB, mean over all frames.
- ``llr``, ``wss`` and the composites ``csig``/``cbak``/``covl`` of Hu & Loizou 2008
  ("Evaluation of objective quality measures for speech enhancement", IEEE TASLP 16(1)),
  with WB PESQ plugged in. LLR: LPC order 16 at 16 kHz (10 below 10 kHz), autocorrelation
  method with Levinson–Durbin; WSS: Klatt's (1982) weighted spectral slope over 25 Gaussian
  critical-band filters, Kmax = 20, Klocmax = 1; both averaged over the lowest 95 % of
  frames. Frame count, window (MATLAB ``hanning``: no zero end points) and the tiny
  ``eps`` added to both signals follow the authors' published MATLAB algorithm, so numbers
  are comparable with the VoiceBank+DEMAND literature (noisy input: PESQ 1.97, CSIG 3.35,
  CBAK 2.44, COVL 2.63, SSNR 1.68).

Voice conversion (any two recordings of the same words, aligned by DTW):

- ``mcd``: Kubichek 1993 mel-cepstral distortion, protocol ``mcd_dtw_sptk24``: WORLD
  CheapTrick envelope (Harvest F0, 5 ms frames) → SPTK mel-cepstrum of order D = 24 with
  α = ``pysptk.util.mcepalpha(fs)`` (0.41 at 16 kHz); c0 excluded; leading and trailing
  silence trimmed by an energy VAD (frames within 40 dB of the loudest frame); DTW with
  Euclidean cost on c1..c24; MCD = (10/ln 10)·√(2·Σ_d (c_d − ĉ_d)²) averaged over the path.
- ``logf0_rmse_cents`` / ``logf0_rmse_ln`` / ``logf0_corr``: same Harvest extractor and
  range (71–800 Hz) for both signals, on the MCD path, frames voiced in both.
  ``vuv_error``: fraction of path pairs whose voicing decisions disagree; ``f0_gpe``:
  gross pitch error, the fraction of voiced-in-both pairs more than 20 % apart.
- ``spk_sim``: cosine between resemblyzer (GE2E d-vector) embeddings: an utterance
  against a speaker's mean embedding (the normalised mean of utterance embeddings).

Command line: ``python -m speech.metrics ref.wav deg.wav`` (``--help``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.metrics.registry import register_metric

__all__ = [
    "COMPOSITE_WEIGHTS",
    "SpeakerEncoder",
    "VCFrames",
    "composite",
    "enhancement_metrics",
    "evaluate_vc",
    "mean_embedding",
    "summarize",
    "llr",
    "mcd_dtw",
    "pesq_wb",
    "si_sdr",
    "speaker_embedding",
    "speaker_similarity",
    "ssnr",
    "stoi",
    "vc_frames",
    "vc_metrics",
    "wss",
]

# Hu & Loizou 2008, Table (multiple linear regression with PESQ, LLR, WSS, segSNR).
COMPOSITE_WEIGHTS = {
    "csig": {"const": 3.093, "llr": -1.029, "pesq": 0.603, "wss": -0.009},
    "cbak": {"const": 1.634, "pesq": 0.478, "wss": -0.007, "ssnr": 0.063},
    "covl": {"const": 1.594, "pesq": 0.805, "llr": -0.512, "wss": -0.007},
}
_EPS = float(np.finfo(np.float64).eps)


def _pair(ref: np.ndarray, deg: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    deg = np.asarray(deg, dtype=np.float64).reshape(-1)
    if len(ref) != len(deg):
        raise ValueError(
            f"{name}: reference has {len(ref)} samples, degraded has {len(deg)}; enhancement "
            "metrics compare sample-aligned signals (trim or pad them first)"
        )
    if len(ref) == 0:
        raise ValueError(f"{name}: empty signals")
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
        raise ValueError(f"{name}: signals contain NaN/inf")
    return ref, deg


# --------------------------------------------------------------------------- PESQ / STOI


@register_metric("pesq_wb")
def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """ITU-T P.862.2 wide-band PESQ (MOS-LQO, about 1.04–4.64) via the ``pesq`` package.

    Raises ``ValueError`` (one line) for a wrong rate, signals shorter than 0.25 s, a
    silent reference, a reference without detectable speech, or a silent degraded signal.
    """
    from pesq import pesq
    from pesq.cypesq import PesqError

    if sr != 16000:
        raise ValueError(f"wide-band PESQ is defined at 16000 Hz, got {sr}; resample first")
    ref, deg = _pair(ref, deg, "pesq_wb")
    if len(ref) < 4000:  # the pesq package's own limit, said in seconds
        raise ValueError(f"pesq_wb: signals are {len(ref) / 16000:.3f} s long; PESQ needs at "
                         "least 0.25 s")
    if not np.any(ref):
        raise ValueError("pesq_wb: the reference is digital silence; PESQ finds no speech in it")
    try:
        return float(pesq(16000, ref, deg, "wb"))
    except PesqError as err:
        raise ValueError(f"pesq_wb: {type(err).__name__}: the reference holds no speech "
                         f"PESQ can detect ({err})") from None
    except ValueError as err:
        # A (near-)silent degraded signal makes P.862's level alignment divide by zero
        # deep inside cypesq ("cannot convert float NaN to integer").
        peak = float(np.max(np.abs(deg)))
        if peak < 1e-6:
            level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.0f} dBFS"
            raise ValueError(f"pesq_wb: the degraded signal is silent ({level}); PESQ cannot "
                             "level-align it, so there is no score") from None
        raise ValueError(f"pesq_wb: the pesq package failed ({err})") from None


@register_metric("stoi")
def stoi(ref: np.ndarray, deg: np.ndarray, sr: int = 16000, extended: bool = False) -> float:
    """STOI (Taal et al. 2011) via ``pystoi`` (resamples to 10 kHz internally)."""
    from pystoi import stoi as _stoi

    ref, deg = _pair(ref, deg, "stoi")
    return float(_stoi(ref, deg, sr, extended=extended))


# --------------------------------------------------------------------------- SI-SDR, SSNR


@register_metric("si_sdr")
def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019, eq. 3); +inf for a perfect estimate,
    -inf for one with nothing of the reference in it (orthogonal, silent or constant)."""
    s, s_hat = _pair(ref, est, "si_sdr")
    s = s - s.mean()
    s_hat = s_hat - s_hat.mean()
    energy = float(np.dot(s, s))
    if energy == 0:
        raise ValueError("si_sdr: the reference is constant (zero energy after removing the mean)")
    alpha = float(np.dot(s_hat, s)) / energy
    target = alpha * s
    noise = s_hat - target
    num, den = float(np.dot(target, target)), float(np.dot(noise, noise))
    if num == 0:  # first: a silent estimate has den == 0 too, and recovers nothing
        return -math.inf
    if den == 0:
        return math.inf
    return 10 * math.log10(num / den)


def _frames(x: np.ndarray, sr: int) -> np.ndarray:
    """Hann-windowed frames ``[n_frames, win]``: 30 ms windows, 75 % overlap.

    Frame count = floor(T / hop − win / hop), as in the authors' MATLAB code (which drops
    the last full frame); window = MATLAB ``hanning(win)`` (no zero end points).
    """
    win = int(round(0.030 * sr))
    hop = win // 4
    n = int(math.floor(len(x) / hop - win / hop))
    if n <= 0:
        raise ValueError(f"signal of {len(x)} samples is shorter than two 30 ms frames")
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    window = 0.5 * (1 - np.cos(2 * np.pi * np.arange(1, win + 1) / (win + 1)))
    return x[idx] * window


def _ssnr_frames(ref: np.ndarray, deg: np.ndarray, sr: int) -> np.ndarray:
    c, p = _frames(ref, sr), _frames(deg, sr)
    signal = np.sum(c**2, axis=1)
    noise = np.sum((c - p) ** 2, axis=1)
    seg = 10 * np.log10(signal / (noise + _EPS) + _EPS)
    return np.clip(seg, -10.0, 35.0)


@register_metric("ssnr")
def ssnr(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Segmental SNR in dB (Hu & Loizou 2008): frames clamped to [−10, 35], mean of all."""
    ref, deg = _pair(ref, deg, "ssnr")
    return float(np.mean(_ssnr_frames(ref + _EPS, deg + _EPS, sr)))


# --------------------------------------------------------------------------- LLR


def _autocorr(frames: np.ndarray, order: int) -> np.ndarray:
    """Autocorrelation lags 0..order of each frame ``[n, win]`` → ``[n, order+1]``."""
    win = frames.shape[1]
    return np.stack([np.sum(frames[:, : win - k] * frames[:, k:], axis=1)
                     for k in range(order + 1)], axis=1)


def _levinson(r: np.ndarray) -> np.ndarray:
    """LPC polynomials ``[n, order+1]`` (1, −a1, ..., −aP) from autocorrelations ``[n, P+1]``."""
    n, p1 = r.shape
    order = p1 - 1
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.sum(a[:, 1:i] * r[:, i - 1 : 0 : -1], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.where(err > 0, -acc / err, 0.0)
        prev = a.copy()
        a[:, i] = k
        a[:, 1:i] = prev[:, 1:i] + k[:, None] * prev[:, i - 1 : 0 : -1]
        err = (1 - k**2) * err
    return a


def _llr_frames(ref: np.ndarray, deg: np.ndarray, sr: int) -> np.ndarray:
    order = 10 if sr < 10000 else 16
    c, p = _frames(ref, sr), _frames(deg, sr)
    rc, rp = _autocorr(c, order), _autocorr(p, order)
    ac, ap = _levinson(rc), _levinson(rp)
    # a R a^T with R the Toeplitz matrix of the clean lags: sum_ij a_i a_j r_|i-j|.
    lag = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toe = rc[:, lag]  # (n, P+1, P+1)
    num = np.einsum("ni,nij,nj->n", ap, toe, ap)
    den = np.einsum("ni,nij,nj->n", ac, toe, ac)
    return np.log(num / den)


def _mean_lowest(values: np.ndarray, fraction: float = 0.95) -> float:
    v = np.sort(values)
    return float(np.mean(v[: int(round(len(v) * fraction))]))


@register_metric("llr")
def llr(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Log-likelihood ratio (Itakura/Quackenbush), mean of the lowest 95 % of frames."""
    ref, deg = _pair(ref, deg, "llr")
    return _mean_lowest(_llr_frames(ref + _EPS, deg + _EPS, sr))


# --------------------------------------------------------------------------- WSS

# Critical bands of Klatt's WSS as Hu & Loizou's implementation defines them (Hz).
_WSS_CENTRES = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378, 798.717,
    904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
    2446.71, 2701.97, 2978.04, 3276.17, 3597.63])
_WSS_BANDWIDTHS = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398, 105.411, 116.256,
    127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631, 255.255,
    276.072, 298.126, 321.465, 346.136])


def _wss_filterbank(sr: int, n_half: int) -> np.ndarray:
    """Gaussian critical-band filters ``[25, n_half]`` (equal log-area, cut below −30 dB)."""
    bins = np.arange(n_half)[None, :]
    centre = np.floor(_WSS_CENTRES / (sr / 2) * n_half)[:, None]
    width = (_WSS_BANDWIDTHS / (sr / 2) * n_half)[:, None]
    gain = np.log(_WSS_BANDWIDTHS[0]) - np.log(_WSS_BANDWIDTHS)[:, None]
    fb = np.exp(-11 * ((bins - centre) / width) ** 2 + gain)
    return fb * (fb > np.exp(-30.0 / (2.0 * 2.303)))


def _nearest_peaks(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """For each band i < 25: the level of the nearest spectral peak, searching right when
    the slope rises and left otherwise (the published algorithm's indexing, including its
    use of the band *before* the peak on a rightward search)."""
    n_frames, n_slopes = slope.shape
    peaks = np.empty_like(slope)
    rising = slope > 0
    # Rightward: first j >= i with slope <= 0 (or the end); the published code reads
    # energy[j - 1] there. Leftward: last j <= i with slope > 0 (or -1); reads energy[j + 1].
    next_fall = np.full((n_frames, n_slopes), n_slopes)
    last_rise = np.full((n_frames, n_slopes), -1)
    cur = np.full(n_frames, n_slopes)
    for j in range(n_slopes - 1, -1, -1):
        cur = np.where(~rising[:, j], j, cur)
        next_fall[:, j] = cur
    cur = np.full(n_frames, -1)
    for j in range(n_slopes):
        cur = np.where(rising[:, j], j, cur)
        last_rise[:, j] = cur
    rows = np.arange(n_frames)[:, None]
    right = energy[rows, next_fall - 1]
    left = energy[rows, last_rise + 1]
    peaks[:] = np.where(rising, right, left)
    return peaks


def _wss_frames(ref: np.ndarray, deg: np.ndarray, sr: int, kmax: float = 20.0,
                klocmax: float = 1.0) -> np.ndarray:
    c, p = _frames(ref, sr), _frames(deg, sr)
    win = c.shape[1]
    n_fft = 1 << int(math.ceil(math.log2(2 * win)))
    n_half = n_fft // 2
    fb = _wss_filterbank(sr, n_half)
    out = []
    for frames in (c, p):
        spec = np.abs(np.fft.fft(frames, n_fft, axis=1)[:, :n_half]) ** 2
        energy = 10 * np.log10(np.maximum(spec @ fb.T, 1e-10))  # (n, 25)
        slope = energy[:, 1:] - energy[:, :-1]  # (n, 24)
        peaks = _nearest_peaks(energy, slope)
        e = energy[:, :-1]
        top = energy.max(axis=1, keepdims=True)
        w = kmax / (kmax + top - e) * (klocmax / (klocmax + peaks - e))
        out.append((slope, w))
    (sc, wc), (sp, wp) = out
    w = (wc + wp) / 2
    return np.sum(w * (sc - sp) ** 2, axis=1) / np.sum(w, axis=1)


@register_metric("wss")
def wss(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Weighted spectral slope (Klatt 1982), mean of the lowest 95 % of frames."""
    ref, deg = _pair(ref, deg, "wss")
    return _mean_lowest(_wss_frames(ref + _EPS, deg + _EPS, sr))


# --------------------------------------------------------------------------- composite


def _clamp(x: float) -> float:
    return float(min(5.0, max(1.0, x)))


@register_metric("composite_hu2008")
def composite(ref: np.ndarray, deg: np.ndarray, sr: int = 16000,
              pesq: float | None = None) -> dict[str, float]:
    """CSIG/CBAK/COVL (Hu & Loizou 2008) with WB PESQ, plus their inputs.

    Returns ``pesq_wb``, ``llr``, ``wss``, ``ssnr``, ``csig``, ``cbak``, ``covl``. Pass
    ``pesq`` to reuse an already computed WB PESQ.
    """
    ref, deg = _pair(ref, deg, "composite")
    p = pesq_wb(ref, deg, sr) if pesq is None else float(pesq)
    r, d = ref + _EPS, deg + _EPS
    parts = {
        "pesq": p,
        "llr": _mean_lowest(_llr_frames(r, d, sr)),
        "wss": _mean_lowest(_wss_frames(r, d, sr)),
        "ssnr": float(np.mean(_ssnr_frames(r, d, sr))),
    }
    out = {"pesq_wb": p, "llr": parts["llr"], "wss": parts["wss"], "ssnr": parts["ssnr"]}
    for name, weights in COMPOSITE_WEIGHTS.items():
        value = weights["const"] + sum(w * parts[k] for k, w in weights.items() if k != "const")
        out[name] = _clamp(value)
    return out


def enhancement_metrics(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> dict[str, float]:
    """Every enhancement metric of one pair: PESQ, STOI, SI-SDR, SSNR, LLR, WSS, CSIG/CBAK/COVL."""
    out = composite(ref, deg, sr)
    out["stoi"] = stoi(ref, deg, sr)
    out["si_sdr"] = si_sdr(ref, deg)
    return out


# --------------------------------------------------------------------------- MCD / log-F0


@dataclass
class VCFrames:
    """Per-frame features for the VC metrics, after silence trimming.

    ``mcep [N, D+1]`` (c0 first), ``f0 [N]`` Hz (0 = unvoiced)."""

    mcep: np.ndarray
    f0: np.ndarray
    order: int
    protocol: str


def _energy_trim(power_db: np.ndarray, floor_db: float) -> slice:
    speech = power_db > power_db.max() - floor_db
    idx = np.flatnonzero(speech)
    return slice(int(idx[0]), int(idx[-1]) + 1)


def vc_frames(wav: np.ndarray, sr: int = 16000, *, order: int = 24, f0_method: str = "harvest",
              f0_floor: float = 71.0, f0_ceil: float = 800.0, vad_db: float = 40.0) -> VCFrames:
    """WORLD (F0 + CheapTrick) → SPTK mel-cepstrum (order ``order``, α = mcepalpha(sr)),
    with leading/trailing frames quieter than ``vad_db`` below the loudest frame removed."""
    from speech.features import sp_to_mcep, world_envelope

    wav = np.ascontiguousarray(wav, dtype=np.float64)
    if not np.isfinite(wav).all():  # WORLD would return NaN features and the VAD no frames
        raise ValueError(f"vc_frames: {int((~np.isfinite(wav)).sum())} NaN/inf samples")
    # F0 and the CheapTrick envelope only (what the metrics read; D4C would double the cost).
    f0, _, sp = world_envelope(wav, sr, f0_method=f0_method, f0_floor=f0_floor, f0_ceil=f0_ceil)
    power_db = 10 * np.log10(np.maximum(sp.mean(axis=1), 1e-20))
    keep = _energy_trim(power_db, vad_db)
    mcep = sp_to_mcep(sp[keep], sr, order)
    return VCFrames(mcep=mcep, f0=f0[keep], order=order,
                    protocol=f"world_{f0_method}_sptk{order}")


_MCD_K = 10.0 / math.log(10.0) * math.sqrt(2.0)


def dtw_path(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices ``(i, j)`` of the DTW path between ``ref [N, D]`` and ``deg [M, D]``
    (Euclidean frame distance), in time order."""
    import librosa
    from scipy.spatial.distance import cdist

    _, path = librosa.sequence.dtw(C=cdist(ref, deg), backtrack=True)
    path = path[::-1]
    return path[:, 0], path[:, 1]


@register_metric("mcd_dtw_sptk24")
def mcd_dtw(ref: VCFrames, deg: VCFrames) -> dict[str, float]:
    """MCD with DTW, log-F0 RMSE/correlation on the DTW path, V/UV disagreement."""
    if ref.protocol != deg.protocol:
        raise ValueError(f"features were extracted differently: {ref.protocol} vs {deg.protocol}")
    a, b = ref.mcep[:, 1:], deg.mcep[:, 1:]  # c0 (energy) excluded
    i, j = dtw_path(a, b)
    mcd = float(np.mean(_MCD_K * np.sqrt(np.sum((a[i] - b[j]) ** 2, axis=1))))
    f0 = logf0_scores(ref.f0[i], deg.f0[j])
    return {"mcd": mcd, "vuv_error": f0["vuv_error"], "path_length": float(len(i)), **f0}


def logf0_scores(f_ref: np.ndarray, f_deg: np.ndarray) -> dict[str, float]:
    """V/UV disagreement and log-F0 RMSE / correlation / GPE of two aligned F0 tracks (Hz,
    0 = unvoiced), over the frames voiced in both."""
    v_ref, v_deg = f_ref > 0, f_deg > 0
    both = v_ref & v_deg
    out: dict[str, float] = {"vuv_error": float(np.mean(v_ref != v_deg)),
                             "voiced_pairs": float(both.sum())}
    if both.sum() >= 2:
        lr, ld = np.log(f_ref[both]), np.log(f_deg[both])
        rmse_ln = float(np.sqrt(np.mean((lr - ld) ** 2)))
        out["logf0_rmse_ln"] = rmse_ln
        out["logf0_rmse_cents"] = rmse_ln * 1200 / math.log(2)
        out["logf0_corr"] = (float(np.corrcoef(lr, ld)[0, 1])
                             if lr.std() > 0 and ld.std() > 0 else float("nan"))
        # Gross pitch error: the RMSE is dominated by a few octave-type errors, so report
        # how many there are (deviation > 20 %, the usual GPE threshold).
        out["f0_gpe"] = float(np.mean(np.abs(f_deg[both] / f_ref[both] - 1) > 0.2))
    else:
        out.update(logf0_rmse_ln=float("nan"), logf0_rmse_cents=float("nan"),
                   logf0_corr=float("nan"), f0_gpe=float("nan"))
    return out


def vc_metrics(ref: np.ndarray, deg: np.ndarray, sr: int = 16000, **kwargs: Any
               ) -> dict[str, float]:
    """MCD-DTW and log-F0 metrics of two waveforms (see :func:`vc_frames` for options)."""
    return mcd_dtw(vc_frames(ref, sr, **kwargs), vc_frames(deg, sr, **kwargs))


# --------------------------------------------------------------------------- speaker similarity


class SpeakerEncoder:
    """resemblyzer's GE2E speaker encoder (weights ship inside the wheel; no download)."""

    def __init__(self) -> None:
        try:
            with warnings.catch_warnings():  # resemblyzer imports a deprecated scipy path
                warnings.simplefilter("ignore", DeprecationWarning)
                from resemblyzer import VoiceEncoder
        except ImportError as err:
            raise ImportError(
                "speaker similarity needs resemblyzer: pip install webrtcvad-wheels==2.0.14.post1 "
                f"&& pip install --no-deps resemblyzer==0.1.4 ({err})"
            ) from None
        self._encoder = VoiceEncoder(device="cpu", verbose=False)

    def embed(self, wav: np.ndarray, sr: int = 16000) -> np.ndarray:
        """L2-normalised 256-d embedding of one utterance (resemblyzer preprocessing:
        volume normalisation to −30 dBFS and webrtcvad silence trimming)."""
        from resemblyzer import preprocess_wav

        wav = np.asarray(wav, dtype=np.float32)
        if not np.isfinite(wav).all():
            raise ValueError(f"speaker embedding: {int((~np.isfinite(wav)).sum())} NaN/inf "
                             "samples")
        x = preprocess_wav(wav, source_sr=sr)
        if len(x) < 1600:
            raise ValueError("speaker embedding: less than 0.1 s of speech after VAD trimming")
        return self._encoder.embed_utterance(x)


@functools.lru_cache(maxsize=1)
def _encoder() -> SpeakerEncoder:
    return SpeakerEncoder()


def speaker_embedding(wav: np.ndarray, sr: int = 16000) -> np.ndarray:
    return _encoder().embed(wav, sr)


def mean_embedding(embeddings: Iterable[np.ndarray]) -> np.ndarray:
    """A speaker's embedding: the normalised mean of its utterance embeddings."""
    m = np.mean(np.stack(list(embeddings)), axis=0)
    return m / np.linalg.norm(m)


@register_metric("spk_sim_resemblyzer")
def speaker_similarity(utterance: np.ndarray, speaker: np.ndarray) -> float:
    """Cosine between an utterance embedding and a speaker (mean) embedding."""
    u, s = np.asarray(utterance, dtype=np.float64), np.asarray(speaker, dtype=np.float64)
    return float(np.dot(u, s) / (np.linalg.norm(u) * np.linalg.norm(s)))


# --------------------------------------------------------------------------- set-level


def summarize(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, 95 % CI half-width (normal approx.) and count per key,
    ignoring NaN (e.g. log-F0 of a pair without voiced overlap)."""
    keys = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float))})
    out = {}
    for k in keys:
        v = np.array([r[k] for r in rows if k in r], dtype=np.float64)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        out[k] = {"mean": float(v.mean()), "std": sd, "ci95": 1.96 * sd / math.sqrt(len(v)),
                  "n": int(len(v))}
    return out


def evaluate_vc(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    sr: int = 16000,
    *,
    target_embedding: np.ndarray | None = None,
    source_embedding: np.ndarray | None = None,
) -> dict[str, Any]:
    """VC metrics of (converted, target-reference) waveform pairs saying the same words.

    Per pair: MCD-DTW, log-F0 RMSE/corr, V/UV error (:func:`vc_metrics`), and, when the
    speaker embeddings are given, ``spk_sim_target`` / ``spk_sim_source``: cosine of the
    converted utterance's embedding with the target's / source's mean embedding.
    """
    rows = []
    for converted, reference in pairs:
        row = vc_metrics(reference, converted, sr)
        if target_embedding is not None or source_embedding is not None:
            e = speaker_embedding(converted, sr)
            if target_embedding is not None:
                row["spk_sim_target"] = speaker_similarity(e, target_embedding)
            if source_embedding is not None:
                row["spk_sim_source"] = speaker_similarity(e, source_embedding)
        rows.append(row)
    return {"per_pair": rows, "summary": summarize(rows)}


# --------------------------------------------------------------------------- CLI


def _fmt(v: float) -> str:
    return "nan" if v != v else f"{v:.4f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speech.metrics",
        description="Score a degraded/enhanced/converted recording against a reference.\n"
        "Both files are read as mono and resampled to 16 kHz (soundfile + named resampler).\n\n"
        "enhancement: PESQ (ITU-T P.862.2 wb), STOI, SI-SDR, SSNR, LLR, WSS, CSIG/CBAK/COVL\n"
        "  (Hu & Loizou 2008). Needs sample-aligned signals; a length difference up to\n"
        "  --max-trim-ms is trimmed from the end, more is an error.\n"
        "vc: MCD with DTW (WORLD + SPTK mel-cepstrum, D=24), log-F0 RMSE/corr, V/UV error,\n"
        "  speaker similarity of deg to ref (resemblyzer). Any lengths.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ref", help="reference (clean / target speaker) audio file")
    parser.add_argument("deg", help="degraded, enhanced or converted audio file")
    parser.add_argument("--set", choices=["enhancement", "vc", "all"], default="enhancement",
                        help="which metrics (default: enhancement)")
    from speech.audio import RESAMPLE_METHODS

    parser.add_argument("--resample", default="kaiser_best", choices=sorted(RESAMPLE_METHODS),
                        help="resampling method for files not at 16 kHz (default kaiser_best)")
    parser.add_argument("--max-trim-ms", type=float, default=50.0,
                        help="largest length difference (ms) trimmed, with a note, before the "
                        "enhancement metrics (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from speech.audio import AudioError, read_audio

    sr = 16000
    try:
        ref = read_audio(args.ref, sr, method=args.resample)
        deg = read_audio(args.deg, sr, method=args.resample, allow_silent=True)
    except (AudioError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"ref": args.ref, "deg": args.deg, "sr": sr}
    notes = [f"{a.path}: {n}" for a in (ref, deg) for n in a.notes]
    try:
        if args.set in ("enhancement", "all"):
            x, y = ref.samples, deg.samples
            diff_ms = abs(len(x) - len(y)) / sr * 1000
            if diff_ms > args.max_trim_ms:
                raise ValueError(
                    f"lengths differ by {diff_ms:.0f} ms ({args.ref}: {len(x)} samples, "
                    f"{args.deg}: {len(y)}); enhancement metrics need aligned signals "
                    "(use --set vc for DTW-aligned metrics)")
            n = min(len(x), len(y))
            if diff_ms > 0:
                notes.append(f"trimmed both to {n} samples ({diff_ms:.1f} ms difference)")
            results.update(enhancement_metrics(x[:n], y[:n], sr))
        if args.set in ("vc", "all"):
            results.update(vc_metrics(ref.samples, deg.samples, sr))
            results["spk_sim"] = speaker_similarity(speaker_embedding(deg.samples, sr),
                                                    speaker_embedding(ref.samples, sr))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results["notes"] = notes
    if args.json:
        print(json.dumps(results, indent=2, allow_nan=True))
    else:
        for note in notes:
            print(f"note: {note}")
        for k, v in results.items():
            if isinstance(v, float):
                print(f"{k:>18s}  {_fmt(v)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
