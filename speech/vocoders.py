"""Vocoders: features → waveform. Griffin-Lim (torchaudio) and WORLD synthesis.

Every model in this track predicts features, and a vocoder turns them back into sound, so
the vocoder's analysis→synthesis round trip is the ceiling any model can reach with it.
:func:`roundtrip` runs one named round trip; ``python -m speech.measure ceilings``
measures them on the SynthVoices parallel test set (PESQ, MCD).

Round trips (names used in reports):

- ``world``: WORLD analysis (Harvest F0, CheapTrick, D4C) → synthesis with the full
  envelope (Morise et al. 2016).
- ``world_coded36``: the same with the envelope coded to 36 WORLD mel-cepstral
  coefficients and band aperiodicity, the features CycleGAN-VC(2) converts.
- ``griffin_lim``: linear STFT magnitude (512/128) → 60 Griffin-Lim iterations with
  momentum 0.99 (Griffin & Lim 1984; fast GLA, Perraudin et al. 2013).
- ``griffin_lim_mel``: 80-band log-mel (1024/256) → least-squares inverse mel →
  Griffin-Lim: the ceiling of a mel-spectrogram model without a neural vocoder.

A neural vocoder plugs in as one more entry of :data:`ROUNDTRIPS`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from speech.features import (
    MelConfig,
    StftConfig,
    WorldFeatures,
    code_ap,
    code_sp,
    decode_ap,
    decode_sp,
    log_mel,
    stft_logmag,
    world_analyze,
)

__all__ = [
    "ROUNDTRIPS",
    "griffin_lim",
    "griffin_lim_mel",
    "roundtrip",
    "world_synthesize",
]


def world_synthesize(feats: WorldFeatures | None = None, *, f0: np.ndarray | None = None,
                     sp: np.ndarray | None = None, ap: np.ndarray | None = None,
                     sr: int | None = None, frame_period: float = 5.0) -> np.ndarray:
    """WORLD synthesis → float32 ``[T]``. Pass a :class:`WorldFeatures` or the arrays."""
    import pyworld as pw

    if feats is not None:
        f0, sp, ap, sr, frame_period = feats.f0, feats.sp, feats.ap, feats.sr, feats.frame_period
    if f0 is None or sp is None or ap is None or sr is None:
        raise ValueError("world_synthesize needs feats, or f0, sp, ap and sr")
    if not (len(f0) == len(sp) == len(ap)):
        raise ValueError(f"frame counts differ: f0 {len(f0)}, sp {len(sp)}, ap {len(ap)}")
    y = pw.synthesize(np.ascontiguousarray(f0, dtype=np.float64),
                      np.ascontiguousarray(sp, dtype=np.float64),
                      np.ascontiguousarray(ap, dtype=np.float64), int(sr), frame_period)
    return y.astype(np.float32)


_STFT = StftConfig()
_MEL = MelConfig()


@functools.lru_cache(maxsize=4)
def _gl(n_fft: int, hop: int, win: int, n_iter: int, momentum: float) -> torch.nn.Module:
    import torchaudio

    # rand_init=False: start from zero phase, so the result is deterministic.
    return torchaudio.transforms.GriffinLim(n_fft=n_fft, n_iter=n_iter, win_length=win,
                                            hop_length=hop, power=1.0, momentum=momentum,
                                            rand_init=False)


def griffin_lim(logmag: torch.Tensor, length: int, cfg: StftConfig = _STFT, *,
                n_iter: int = 60, momentum: float = 0.99) -> torch.Tensor:
    """Phase reconstruction from a log-magnitude ``[..., F, N]`` → ``[..., length]``."""
    gl = _gl(cfg.n_fft, cfg.hop, cfg.win, n_iter, momentum)
    with torch.no_grad():
        y = gl(logmag.exp())
    if y.shape[-1] >= length:
        return y[..., :length]
    return torch.nn.functional.pad(y, (0, length - y.shape[-1]))


@functools.lru_cache(maxsize=4)
def _inverse_mel(cfg: MelConfig) -> torch.nn.Module:
    import torchaudio

    return torchaudio.transforms.InverseMelScale(
        n_stft=cfg.n_fft // 2 + 1, n_mels=cfg.n_mels, sample_rate=cfg.sr, f_min=cfg.f_min,
        f_max=cfg.f_max, norm="slaney", mel_scale="slaney", driver="gelsd")


def griffin_lim_mel(logmel: torch.Tensor, length: int, cfg: MelConfig = _MEL, *,
                    n_iter: int = 60, momentum: float = 0.99) -> torch.Tensor:
    """Log-mel ``[..., n_mels, N]`` → least-squares linear magnitude → Griffin-Lim."""
    with torch.no_grad():
        mag = _inverse_mel(cfg)(logmel.exp()).clamp_min(1e-8)
    stft = StftConfig(n_fft=cfg.n_fft, hop=cfg.hop, win=cfg.win)
    return griffin_lim(mag.log(), length, stft, n_iter=n_iter, momentum=momentum)


# --------------------------------------------------------------------------- round trips


def _rt_world(wav: np.ndarray, sr: int) -> np.ndarray:
    return world_synthesize(world_analyze(wav, sr, f0_method="harvest"))


def _rt_world_coded(wav: np.ndarray, sr: int, dim: int = 36) -> np.ndarray:
    f = world_analyze(wav, sr, f0_method="harvest")
    sp = decode_sp(code_sp(f.sp, sr, dim), sr, f.fft_size)
    ap = decode_ap(code_ap(f.ap, sr), sr, f.fft_size)
    return world_synthesize(f0=f.f0, sp=sp, ap=ap, sr=sr, frame_period=f.frame_period)


def _rt_gl(wav: np.ndarray, sr: int) -> np.ndarray:
    spec = stft_logmag(torch.from_numpy(np.asarray(wav, dtype=np.float32)))
    return griffin_lim(spec.logmag, spec.length).numpy()


def _rt_gl_mel(wav: np.ndarray, sr: int) -> np.ndarray:
    cfg = MelConfig(sr=sr, f_max=sr / 2)
    mel = log_mel(torch.from_numpy(np.asarray(wav, dtype=np.float32)), cfg)
    return griffin_lim_mel(mel, len(wav), cfg).numpy()


ROUNDTRIPS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "world": _rt_world,
    "world_coded36": _rt_world_coded,
    "griffin_lim": _rt_gl,
    "griffin_lim_mel": _rt_gl_mel,
}


def roundtrip(wav: np.ndarray, sr: int, name: str) -> np.ndarray:
    """Analysis → synthesis of mono ``wav`` ``[T]`` with vocoder ``name``; same length out."""
    if name not in ROUNDTRIPS:
        raise KeyError(f"unknown vocoder round trip {name!r}; choose from {sorted(ROUNDTRIPS)}")
    y = ROUNDTRIPS[name](np.asarray(wav), sr)
    y = y[: len(wav)]
    if len(y) < len(wav):
        y = np.pad(y, (0, len(wav) - len(y)))
    return np.asarray(y, dtype=np.float32)
