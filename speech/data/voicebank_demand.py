"""VoiceBank+DEMAND (Valentini-Botinhao et al. 2016) in its released folder layout.

The release (and SynthVoices' ``enhance/`` folder) looks like::

    <root>/clean_trainset_28spk_wav/p226_001.wav ...   (or _56spk_)
    <root>/noisy_trainset_28spk_wav/p226_001.wav ...
    <root>/clean_testset_wav/p232_001.wav ...
    <root>/noisy_testset_wav/p232_001.wav ...

The released audio is 48 kHz. :class:`VoiceBankDemand` resamples on the fly to the model
rate with a named method and records it; :func:`resample_corpus` writes a 16 kHz copy once
(same layout, plus ``resample.json`` naming the method) so training reads 16 kHz directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from common.io import atomic_write_json
from common.paths import cache_dir, short_hash
from speech.audio import DEFAULT_RESAMPLE, RESAMPLE_METHODS, read_audio, write_audio

__all__ = ["SplitDirs", "VoiceBankDemand", "find_split_dirs", "resample_corpus"]

_SPLIT_TAG = {"train": "trainset", "test": "testset"}
_RESAMPLE_VERSION = 1  # part of the default output folder's key


@dataclass(frozen=True)
class SplitDirs:
    clean: Path
    noisy: Path


def find_split_dirs(root: str | os.PathLike[str], split: str) -> SplitDirs:
    """The clean and noisy folders of ``split`` ("train" | "test") under ``root``.

    Accepts the released names (``clean_trainset_28spk_wav``, ``clean_testset_wav``) and
    variants with other speaker counts or suffixes (``..._56spk_wav``, ``..._wav_16k``);
    refuses ambiguity (several clean folders for one split) with the names found.
    """
    if split not in _SPLIT_TAG:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    tag = _SPLIT_TAG[split]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (VoiceBank+DEMAND root)")
    clean = sorted(p for p in root.glob(f"clean_{tag}*wav*") if p.is_dir())
    if not clean:
        raise FileNotFoundError(
            f"{root}: no clean_{tag}*_wav folder (expected VoiceBank+DEMAND's layout, e.g. "
            f"clean_{tag}{'_28spk' if split == 'train' else ''}_wav/)")
    if len(clean) > 1:
        raise ValueError(f"{root}: several clean {split} folders {[p.name for p in clean]}; "
                         "keep one (or point root at a folder holding one release)")
    noisy = root / ("noisy_" + clean[0].name[len("clean_"):])
    if not noisy.is_dir():
        raise FileNotFoundError(f"{root}: {clean[0].name}/ has no partner folder {noisy.name}/")
    return SplitDirs(clean[0], noisy)


def _wav_ids(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.wav"))}


class VoiceBankDemand(torch.utils.data.Dataset):
    """(clean, noisy) pairs of one split, mono float32 at ``sr``.

    Item: ``{"clean": Tensor[T], "noisy": Tensor[T], "id": str, "sr": int,
    "resample_method": str | None}``; with ``segment`` (samples) both are the same random
    crop (``torch`` RNG, so DataLoader workers seed it), zero-padded at the end when the
    utterance is shorter.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str,
        *,
        sr: int = 16000,
        resample_method: str = DEFAULT_RESAMPLE,
        segment: int | None = None,
    ) -> None:
        if resample_method not in RESAMPLE_METHODS:
            raise ValueError(f"unknown resample method {resample_method!r}; "
                             f"choose one of {sorted(RESAMPLE_METHODS)}")
        self.root = Path(root)
        self.split = split
        self.dirs = find_split_dirs(self.root, split)
        clean, noisy = _wav_ids(self.dirs.clean), _wav_ids(self.dirs.noisy)
        lonely = sorted(set(clean) ^ set(noisy))
        if lonely:
            raise ValueError(f"{self.root} ({split}): {len(lonely)} files without a partner, "
                             f"e.g. {lonely[:3]} (every clean file needs a noisy one)")
        if not clean:
            raise FileNotFoundError(f"{self.dirs.clean}: no .wav files")
        self.ids = sorted(clean)
        self._clean, self._noisy = clean, noisy
        self.sr = int(sr)
        self.source_sr = int(sf.info(str(clean[self.ids[0]])).samplerate)
        # None when the files are already at the model rate (nothing is resampled).
        self.resample_method = resample_method if self.source_sr != self.sr else None
        self._method = resample_method
        self.segment = segment
        prov = self.root / "resample.json"
        self.provenance: dict[str, Any] | None = (json.loads(prov.read_text())
                                                  if prov.is_file() else None)

    def __len__(self) -> int:
        return len(self.ids)

    def paths(self, index: int) -> tuple[Path, Path]:
        """``(clean, noisy)`` file paths of item ``index``."""
        uid = self.ids[index]
        return self._clean[uid], self._noisy[uid]

    def __getitem__(self, index: int) -> dict[str, Any]:
        uid = self.ids[index]
        clean_path, noisy_path = self.paths(index)
        clean = read_audio(clean_path, self.sr, method=self._method).samples
        noisy = read_audio(noisy_path, self.sr, method=self._method).samples
        if len(clean) != len(noisy):
            raise ValueError(f"{uid}: clean has {len(clean)} samples, noisy {len(noisy)} "
                             "(pairs must be sample-aligned)")
        if self.segment is not None:
            clean, noisy = _crop_pair(clean, noisy, self.segment)
        return {"clean": torch.from_numpy(np.ascontiguousarray(clean)),
                "noisy": torch.from_numpy(np.ascontiguousarray(noisy)),
                "id": uid, "sr": self.sr, "resample_method": self.resample_method}


def _crop_pair(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The same random ``n``-sample window of ``a`` and ``b`` (zero-padded if shorter)."""
    if len(a) >= n:
        start = int(torch.randint(0, len(a) - n + 1, ()).item())
        return a[start : start + n], b[start : start + n]
    pad = n - len(a)
    return np.pad(a, (0, pad)), np.pad(b, (0, pad))


def resample_corpus(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    sr: int = 16000,
    method: str = "soxr_hq",
    progress: bool = True,
) -> Path:
    """Write a ``sr`` copy of the release at ``root`` in the same layout; returns its folder.

    ``out`` defaults to ``<cache>/datasets/resampled/<key>`` (key: source folder, rate,
    method). ``resample.json`` (written last, so its presence means "complete") records
    the source rates, the target rate, the method and the file count; a complete copy is
    reused as is.
    """
    from tqdm import tqdm

    if method not in RESAMPLE_METHODS:
        raise ValueError(f"unknown resample method {method!r}; choose one of "
                         f"{sorted(RESAMPLE_METHODS)}")
    root = Path(root)
    if out is None:
        key = short_hash({"source": str(root.resolve()), "sr": sr, "method": method,
                          "version": _RESAMPLE_VERSION})
        out = cache_dir("datasets", "resampled", key)
    out = Path(out)
    marker = out / "resample.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("sr") == sr and info.get("method") == method:
            return out
    folders = []
    for split in ("train", "test"):
        dirs = find_split_dirs(root, split)
        folders += [dirs.clean, dirs.noisy]
    files = [p for folder in folders for p in sorted(folder.glob("*.wav"))]
    rates: set[int] = set()
    for path in tqdm(files, desc=f"resampling to {sr} Hz", unit="file", disable=not progress):
        audio = read_audio(path, sr, method=method)
        rates.add(audio.source_sr)
        write_audio(out / path.parent.name / path.name, audio.samples, sr)
    atomic_write_json(marker, {
        "source": str(root), "source_sr": sorted(rates), "sr": sr, "method": method,
        "method_description": RESAMPLE_METHODS[method], "files": len(files),
        "folders": [f.name for f in folders],
    })
    return out
