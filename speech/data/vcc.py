"""Voice-conversion corpora as speaker folders: VCC2016, VCC2018 and SynthVoices.

All three are read through one :class:`SpeakerCorpus` (speaker -> utterances, and
``pairs`` of the same sentence spoken by a source and a target speaker) and one
:class:`SpeakerDataset`. Layouts, unchanged from the releases::

    VCC2016 (16 kHz):    vcc2016_training/<SF1|SM1|TF2|TM1|...>/100001.wav ...
                         evaluation_all/<speaker>/200001.wav ...           (parallel)
    VCC2018 (22.05 kHz): vcc2018_training/<VCC2SF3|...>/10001.wav ...
                         vcc2018_evaluation/<source speaker>/30001.wav ...
                         vcc2018_reference/<target speaker>/30001.wav ...  (target references)
    SynthVoices (16 kHz): vc/training/<spk>/t0001.wav ...   (non-parallel)
                         vc/evaluation/<spk>/p0001.wav ... (parallel)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from speech.audio import DEFAULT_RESAMPLE, RESAMPLE_METHODS, read_audio

__all__ = ["SpeakerCorpus", "SpeakerDataset", "Utterance", "synthvoices_vc", "vcc2016",
           "vcc2018"]


@dataclass(frozen=True)
class Utterance:
    speaker: str
    id: str  # file stem; the same id in two speakers' folders is the same sentence
    path: Path


@dataclass(frozen=True)
class _Split:
    sources: Path  # folder of source speakers' folders
    targets: Path  # folder of target speakers' folders (references); may equal sources
    missing: str = ""  # why the split is absent ("" when present)


@dataclass
class SpeakerCorpus:
    """Speaker folders of a VC corpus: a training folder and evaluation splits."""

    name: str
    train_dir: Path
    splits: dict[str, _Split] = field(default_factory=dict)
    speaker_order: list[str] | None = None  # listing order; default sorted
    native_sr: int = 0  # the files' rate (read from the first training file)

    def speakers(self) -> list[str]:
        """Training speakers."""
        found = sorted(p.name for p in self.train_dir.iterdir() if p.is_dir())
        if self.speaker_order is None:
            return found
        return [s for s in self.speaker_order if s in found]

    def _folder(self, base: Path, speaker: str) -> Path:
        folder = base / speaker
        if not folder.is_dir():
            have = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
            raise FileNotFoundError(f"{self.name}: no folder for speaker {speaker!r} in {base}; "
                                    f"speakers there: {have}")
        return folder

    def _split(self, split: str) -> _Split:
        s = self.splits.get(split)
        if s is None or s.missing:
            why = s.missing if s is not None else f"splits: {['train', *self.splits]}"
            raise KeyError(f"{self.name}: no {split!r} split ({why})")
        return s

    def utterances(self, speaker: str, split: str = "train") -> list[Utterance]:
        """A speaker's utterances of ``split`` ("train" or an evaluation split), by id."""
        if split == "train":
            folder = self._folder(self.train_dir, speaker)
        else:
            s = self._split(split)
            base = s.sources if (s.sources / speaker).is_dir() else s.targets
            folder = self._folder(base, speaker)
        return [Utterance(speaker, p.stem, p) for p in sorted(folder.glob("*.wav"))]

    def pairs(self, source: str, target: str, split: str = "eval"
              ) -> list[tuple[Utterance, Utterance]]:
        """``(source, target)`` utterances with the same id in ``split`` (parallel text)."""
        s = self._split(split)
        src = {p.stem: p for p in sorted(self._folder(s.sources, source).glob("*.wav"))}
        tgt = {p.stem: p for p in sorted(self._folder(s.targets, target).glob("*.wav"))}
        common = sorted(set(src) & set(tgt))
        if not common:
            raise ValueError(f"{self.name}: {source} and {target} share no utterance ids in "
                             f"the {split!r} split")
        return [(Utterance(source, i, src[i]), Utterance(target, i, tgt[i])) for i in common]


def _native_sr(train_dir: Path) -> int:
    first = next(iter(sorted(train_dir.glob("*/*.wav"))), None)
    return int(sf.info(str(first)).samplerate) if first is not None else 0


def _require(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not found ({what}; expected the released layout)")
    return folder


def vcc2016(root: str | os.PathLike[str]) -> SpeakerCorpus:
    """VCC2016: ``vcc2016_training/`` and (parallel) ``evaluation_all/`` under ``root``."""
    root = Path(root)
    train = _require(root / "vcc2016_training", "VCC2016 training speakers")
    ev = root / "evaluation_all"
    splits = {"eval": _Split(ev, ev, "" if ev.is_dir() else f"{ev} not found")}
    return SpeakerCorpus("vcc2016", train, splits, native_sr=_native_sr(train))


def vcc2018(root: str | os.PathLike[str]) -> SpeakerCorpus:
    """VCC2018: training, evaluation (sources) and reference (targets) folders."""
    root = Path(root)
    train = _require(root / "vcc2018_training", "VCC2018 training speakers")
    ev, ref = root / "vcc2018_evaluation", root / "vcc2018_reference"
    missing = "" if ev.is_dir() else f"{ev} not found"
    # Without the reference release, targets are looked up among the evaluation folders.
    splits = {"eval": _Split(ev, ref if ref.is_dir() else ev, missing)}
    return SpeakerCorpus("vcc2018", train, splits, native_sr=_native_sr(train))


def synthvoices_vc(root: str | os.PathLike[str]) -> SpeakerCorpus:
    """The voice-conversion part of a built SynthVoices corpus (its folder, with manifest)."""
    root = Path(root)
    manifest = root / "manifest.json"
    order = json.loads(manifest.read_text())["speakers"] if manifest.is_file() else None
    train = _require(root / "vc" / "training", "SynthVoices non-parallel training set")
    ev = root / "vc" / "evaluation"
    splits = {"eval": _Split(ev, ev, "" if ev.is_dir() else f"{ev} not found")}
    return SpeakerCorpus("synthvoices", train, splits, speaker_order=order,
                         native_sr=_native_sr(train))


class SpeakerDataset(torch.utils.data.Dataset):
    """Utterances of ``speakers`` (in that order) as mono float32 at ``sr``.

    Item: ``{"wav": Tensor[T], "speaker": str, "speaker_index": int (position in
    speakers), "id": str, "path": str, "sr": int, "resample_method": str | None}``. With
    ``segment`` (samples), a random crop (``torch`` RNG), zero-padded when shorter.
    """

    def __init__(
        self,
        corpus: SpeakerCorpus,
        speakers: Sequence[str] | None = None,
        *,
        split: str = "train",
        sr: int = 16000,
        resample_method: str = DEFAULT_RESAMPLE,
        segment: int | None = None,
    ) -> None:
        if resample_method not in RESAMPLE_METHODS:
            raise ValueError(f"unknown resample method {resample_method!r}; "
                             f"choose one of {sorted(RESAMPLE_METHODS)}")
        self.corpus = corpus
        self.speakers = list(speakers) if speakers is not None else corpus.speakers()
        self.sr, self.method, self.segment = int(sr), resample_method, segment
        self.items: list[tuple[int, Utterance]] = [
            (k, u) for k, s in enumerate(self.speakers) for u in corpus.utterances(s, split)]
        if not self.items:
            raise FileNotFoundError(f"{corpus.name}: no utterances for {self.speakers} ({split})")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        k, utt = self.items[index]
        audio = read_audio(utt.path, self.sr, method=self.method)
        wav = audio.samples
        if self.segment is not None:
            if len(wav) >= self.segment:
                start = int(torch.randint(0, len(wav) - self.segment + 1, ()).item())
                wav = wav[start : start + self.segment]
            else:
                wav = np.pad(wav, (0, self.segment - len(wav)))
        return {"wav": torch.from_numpy(np.ascontiguousarray(wav)), "speaker": utt.speaker,
                "speaker_index": k, "id": utt.id, "path": str(utt.path), "sr": self.sr,
                "resample_method": audio.resample_method}
