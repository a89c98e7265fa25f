"""Training data: aligned random crops of (clean, noisy) pairs in VoiceBank+DEMAND's layout.

SynthVoices' enhancement set and the real VoiceBank+DEMAND share the layout, so both are
read through :class:`speech.data.voicebank_demand.VoiceBankDemand` (which pairs the files
and checks partners); :class:`CropSource` then reads only the cropped window of each file
(soundfile seeks), so a batch costs a few small reads whatever the utterance lengths.
Its position is its own RNG state, so ``--resume`` continues the exact batch sequence.

Dynamic mixing (``remix`` > 0): the mixtures are additive (noisy = clean + noise, exactly,
in both layouts), so the noise of a pair is ``noisy − clean``. With probability ``remix``
a training example is re-mixed on the fly: its clean crop plus the noise crop of ANOTHER
random pair, scaled to an SNR drawn uniformly from ``remix_snr`` (crop-level powers). The
model then sees every speaker with every noise at a continuum of SNRs instead of the
fixed pairs — the "dynamic mixing" of speech separation (Zeghidour & Grangier 2021,
Wavesplit §4.3; Subakan et al. 2021, SepFormer §3.3), which they found to reduce
over-fitting to the training mixtures.

Spectral augmentation (``eq`` > 0): with probability ``eq`` the speech and the noise of a
training example each pass through their own random second-order filter
H(z) = (1 + r1 z⁻¹ + r2 z⁻²) / (1 + r3 z⁻¹ + r4 z⁻²), r_i ~ U(−3/8, 3/8) — RNNoise's
augmentation (Valin 2018, "A hybrid DSP/deep learning approach to real-time full-band
speech enhancement", §4), which makes the model robust to spectral tilts and microphone
responses it never saw. The poles stay inside the unit circle for every draw (|r4| < 1
and |r3| < 1 + r4). Each part keeps its crop power, so the SNR of the example is unchanged.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from scipy.signal import lfilter
from torch import Tensor

from speech.data.voicebank_demand import VoiceBankDemand, resample_corpus

__all__ = ["Batch", "CropSource", "Pair", "corpus_root", "load_pairs", "read_conditions"]


@dataclass(frozen=True)
class Pair:
    id: str
    clean: Path
    noisy: Path
    noise: str | None = None  # the mixing log's noise condition ("alarm", "bus", ...), if known
    snr: float | None = None  # and its SNR in dB


@dataclass
class Batch:
    """Sample-aligned crops: ``clean``, ``noisy``: Tensor[B, T]."""

    clean: Tensor
    noisy: Tensor


def corpus_root(corpus: str, preset: str, root: str | None, sr: int = 16000) -> Path:
    """The VoiceBank+DEMAND-layout folder of a config's corpus (built / resampled if needed).

    ``synthvoices``: the preset is built under ``root`` (default: the cache) on first use.
    ``voicebank``: ``root`` is the release; one at another rate is resampled once to a
    cached ``sr`` copy (:func:`speech.data.voicebank_demand.resample_corpus`).
    """
    if corpus == "synthvoices":
        from speech.data.synthvoices import build, load_preset

        return build(load_preset(preset), root=root, progress=sys.stderr.isatty()).enhance_root
    if corpus == "voicebank":
        if root is None:
            raise ValueError("data.corpus=voicebank needs data.root=<VoiceBank+DEMAND folder>")
        ds = VoiceBankDemand(root, "test", sr=sr)
        if ds.source_sr != sr:
            print(f"{root}: {ds.source_sr} Hz release; using a {sr} Hz copy (made once)",
                  file=sys.stderr)
            return resample_corpus(root, sr=sr, progress=sys.stderr.isatty())
        return Path(root)
    raise ValueError(f"unknown corpus {corpus!r}; use synthvoices or voicebank")


def load_pairs(root: str | Path, split: str, sr: int = 16000) -> list[Pair]:
    """Every (clean, noisy) pair of ``split`` ("train" | "test"), sorted by id, with its noise
    condition and SNR when the corpus has a mixing log (:func:`read_conditions`)."""
    ds = VoiceBankDemand(root, split, sr=sr)
    if ds.source_sr != sr:
        raise ValueError(f"{root}: files are {ds.source_sr} Hz, the model reads {sr} Hz; "
                         "resample first (speech.data.voicebank_demand.resample_corpus)")
    cond = read_conditions(root, split)
    return [Pair(uid, *ds.paths(i), *cond.get(uid, (None, None)))
            for i, uid in enumerate(ds.ids)]


def read_conditions(root: str | Path, split: str) -> dict[str, tuple[str, float]]:
    """``{id: (noise, snr_db)}`` from the mixing log of ``split``, or ``{}`` without one.

    Both layouts log one mixture a line as ``<id> <noise> <snr>``: SynthVoices writes
    ``log_testset.txt`` / ``log_trainset_*.txt`` beside the wav folders; VoiceBank+DEMAND
    ships them in ``logfiles/``. A malformed log is skipped with a warning naming the file
    and line (it only labels results; it never stops an evaluation).
    """
    import warnings

    root = Path(root)
    stem = "log_testset" if split == "test" else "log_trainset"
    logs = sorted(p for d in (root, root / "logfiles") if d.is_dir()
                  for p in d.glob(f"{stem}*.txt"))
    out: dict[str, tuple[str, float]] = {}
    for log in logs:
        for lineno, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                snr = float(parts[-1])
                if len(parts) < 3:
                    raise ValueError
            except ValueError:
                warnings.warn(f"{log}:{lineno}: expected '<id> <noise> <snr>', got {line!r}; "
                              "not using this log", stacklevel=2)
                return {}
            out[parts[0]] = (" ".join(parts[1:-1]), snr)
    return out


class CropSource:
    """Endless :class:`Batch` stream of random ``segment``-sample crops (zero-padded if short).

    Utterances and crop offsets come from a private ``torch.Generator`` seeded with
    ``seed``; :meth:`state_dict` is that generator's state (the data position).
    """

    def __init__(self, pairs: list[Pair], segment: int, batch_size: int, seed: int,
                 device: torch.device | str = "cpu", remix: float = 0.0,
                 remix_snr: tuple[float, float] = (-5.0, 20.0), eq: float = 0.0) -> None:
        if not pairs:
            raise ValueError("CropSource needs at least one (clean, noisy) pair")
        if not 0.0 <= remix <= 1.0 or remix_snr[0] > remix_snr[1]:
            raise ValueError(f"remix must be in [0, 1] and remix_snr a (low, high) range, got "
                             f"{remix}, {remix_snr}")
        if not 0.0 <= eq <= 1.0:
            raise ValueError(f"eq is a probability in [0, 1], got {eq}")
        self.pairs, self.segment, self.batch_size = pairs, int(segment), int(batch_size)
        self.remix, self.remix_snr = float(remix), (float(remix_snr[0]), float(remix_snr[1]))
        self.eq = float(eq)
        self.device = torch.device(device)
        self.frames = [sf.info(str(p.noisy)).frames for p in pairs]
        self.gen = torch.Generator().manual_seed(seed)

    def _read(self, path: Path, start: int) -> np.ndarray:
        data, _ = sf.read(str(path), start=start, frames=self.segment, dtype="float32",
                          always_2d=True)
        x = data.mean(axis=1)
        return np.pad(x, (0, self.segment - len(x))) if len(x) < self.segment else x

    def _crop(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        span = max(0, self.frames[i] - self.segment)
        start = int(torch.randint(span + 1, (), generator=self.gen))
        return self._read(self.pairs[i].clean, start), self._read(self.pairs[i].noisy, start)

    def _remixed(self, clean: np.ndarray) -> np.ndarray:
        """clean + another pair's noise crop at a random SNR (dB, crop-level powers)."""
        k = int(torch.randint(len(self.pairs), (), generator=self.gen))
        other_clean, other_noisy = self._crop(k)
        noise = other_noisy - other_clean
        lo, hi = self.remix_snr
        snr = lo + (hi - lo) * float(torch.rand((), generator=self.gen))
        p_clean, p_noise = float(np.mean(clean**2)), float(np.mean(noise**2))
        if p_clean < 1e-10 or p_noise < 1e-10:  # a silent crop: keep the noise as it is
            return clean + noise
        return clean + noise * np.float32(np.sqrt(p_clean / p_noise * 10 ** (-snr / 10)))

    def _random_eq(self, x: np.ndarray) -> np.ndarray:
        """x through a random second-order filter (Valin 2018 §4), at x's crop power."""
        r = (torch.rand(4, generator=self.gen).numpy().astype(np.float64) - 0.5) * 0.75
        x = x.astype(np.float64)
        y = lfilter([1.0, r[0], r[1]], [1.0, r[2], r[3]], x)
        p_x, p_y = float(np.mean(x**2)), float(np.mean(y**2))
        return (y * np.sqrt(p_x / p_y) if p_y > 1e-20 else y).astype(np.float32)

    def next(self) -> Batch:
        idx = torch.randint(len(self.pairs), (self.batch_size,), generator=self.gen).tolist()
        clean, noisy = [], []
        for i in idx:
            c, n = self._crop(i)
            if self.remix > 0 and float(torch.rand((), generator=self.gen)) < self.remix:
                n = self._remixed(c)
            if self.eq > 0 and float(torch.rand((), generator=self.gen)) < self.eq:
                noise = n - c
                c = self._random_eq(c)  # speech first, then noise: the draw order is the data
                n = c + self._random_eq(noise)
            clean.append(c)
            noisy.append(n)
        return Batch(torch.from_numpy(np.stack(clean)).to(self.device),
                     torch.from_numpy(np.stack(noisy).astype(np.float32)).to(self.device))

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
