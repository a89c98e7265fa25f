"""SynthVoices enhancement mixtures: what to mix (a deterministic plan) and the mixing.

A plan lists, for every mixture of a split, the clean utterance, the noise family, the
SNR, the room (or none) and the babble talkers; it is drawn in the main process from the
seed alone, so the corpus does not depend on how many worker processes mix it. Families
and SNRs are balanced (each used equally often, in random order) and exactly
``round(reverb_prob * n)`` mixtures of a split are reverberated, so a small corpus still
covers every condition it names. Test rooms are drawn apart from training rooms.

:func:`mix_task` runs in a worker: it reads the stored clean utterance, optionally
reverberates it, adds noise at the exact SNR (active speech level vs noise power) and
writes the pair into VoiceBank+DEMAND's folders, the clean target as a hard link.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from speech.audio import write_audio
from speech.data.noise import NOISE_FAMILIES, Room, make_noise, mix_at_snr, reverberate, sample_room

__all__ = ["EnhanceConfig", "MixItem", "MixTask", "enhance_dirs", "mix_task", "plan_rooms",
           "plan_split"]

PEAK = 0.99  # largest sample value written (PCM-16 must not clip)
_BABBLE_POOL = 6  # candidate talkers handed to babble noise (it picks 3-6 of them)
_SPLIT_CODE = {"train": 0, "test": 1}


@dataclass
class EnhanceConfig:
    """Enhancement mixtures (speakers are SynthVoices speaker names; SNRs in dB)."""

    train_speakers: list[str] = field(default_factory=lambda: ["kal", "slt", "f3", "m7"])
    test_speakers: list[str] = field(default_factory=lambda: ["ked"])
    mixtures_per_utterance: int = 2  # per training utterance of each training speaker
    test_mixtures: int = 200  # drawn from all utterances of the test speakers
    train_families: list[str] = field(
        default_factory=lambda: ["white", "brown", "babble", "hum", "clatter"])
    test_families: list[str] = field(default_factory=lambda: ["pink", "traffic", "alarm"])
    train_snrs: list[float] = field(default_factory=lambda: [0.0, 5.0, 10.0, 15.0])
    test_snrs: list[float] = field(default_factory=lambda: [2.5, 7.5, 12.5, 17.5])
    reverb_prob: float = 0.0  # fraction of mixtures reverberated (exactly, per split)
    rooms: int = 8  # distinct rooms per split (test rooms are never training rooms)
    rt60_min: float = 0.2  # seconds; each room's RT60 is uniform in [min, max]
    rt60_max: float = 0.8


def enhance_dirs(n_train_speakers: int) -> dict[str, dict[str, str]]:
    """VoiceBank+DEMAND folder and log names (``trainset_<N>spk`` like ``28spk``)."""
    tag = f"trainset_{n_train_speakers}spk"
    return {"train": {"clean": f"clean_{tag}_wav", "noisy": f"noisy_{tag}_wav",
                      "log": f"log_{tag}.txt"},
            "test": {"clean": "clean_testset_wav", "noisy": "noisy_testset_wav",
                     "log": "log_testset.txt"}}


@dataclass(frozen=True)
class MixItem:
    id: str  # "<speaker>_<n>", like VoiceBank's p226_001
    speaker: str
    utterance: str  # the clean utterance, relative to the corpus folder
    text: str
    family: str
    snr: float
    room: int | None  # index into the split's rooms; None: dry
    rt60: float | None
    babble: list[str]  # candidate babble talkers (relative paths); [] for other families
    noise_seed: list[int]
    clean: str  # outputs, relative to enhance/
    noisy: str


@dataclass(frozen=True)
class MixTask:
    items: list[MixItem]
    corpus_root: str
    sr: int
    rirs: dict[int, np.ndarray]  # room index -> impulse response [L] (rooms these items use)


def plan_rooms(cfg: EnhanceConfig, seed: int, split: str) -> list[dict[str, Any]]:
    """The split's rooms: geometry and RT60 (:class:`Room` fields) plus ``index``."""
    rooms = []
    for r in range(cfg.rooms):
        rng = np.random.default_rng([seed, 300 + _SPLIT_CODE[split], r])
        rt60 = round(float(rng.uniform(cfg.rt60_min, cfg.rt60_max)), 3)
        rooms.append({**asdict(sample_room(rng, rt60)), "index": r})
    return rooms


def room_from_dict(d: dict[str, Any]) -> Room:
    return Room(tuple(d["dims"]), tuple(d["source"]), tuple(d["mic"]), float(d["rt60"]))


def plan_split(cfg: EnhanceConfig, seed: int, split: str, pool: list[tuple[str, str, str]],
               rooms: list[dict[str, Any]] | None = None) -> list[MixItem]:
    """Every mixture of ``split``, sorted by id.

    ``pool``: the clean utterances ``(speaker, relative path, text)`` the split draws
    from: training uses each ``mixtures_per_utterance`` times; test draws
    ``test_mixtures`` without replacement (cycling only if it needs more). ``rooms``
    (from :func:`plan_rooms`) is needed only when ``reverb_prob > 0``.
    """
    code = _SPLIT_CODE[split]
    rng = np.random.default_rng([seed, 100 + code])
    if split == "train":
        picks = [u for u in pool for _ in range(cfg.mixtures_per_utterance)]
        fams, snrs = cfg.train_families, cfg.train_snrs
    else:
        order = rng.permutation(len(pool))
        picks = [pool[int(order[i % len(pool)])] for i in range(cfg.test_mixtures)] \
            if pool else []
        fams, snrs = cfg.test_families, cfg.test_snrs
    n = len(picks)
    fam_seq = [fams[int(i)] for i in rng.permutation(np.resize(np.arange(len(fams)), n))]
    snr_seq = [float(snrs[int(i)]) for i in rng.permutation(np.resize(np.arange(len(snrs)), n))]
    n_reverb = int(math.floor(cfg.reverb_prob * n + 0.5))
    reverb = {int(i) for i in rng.permutation(n)[:n_reverb]}
    if reverb and not rooms:
        raise ValueError("reverberant mixtures need rooms (plan_rooms)")
    dirs = enhance_dirs(len(cfg.train_speakers))[split]
    counters: dict[str, int] = {}
    items = []
    for i, (spk, rel, text) in enumerate(picks):
        counters[spk] = counters.get(spk, 0) + 1
        mid = f"{spk}_{counters[spk]:04d}"
        babble: list[str] = []
        if NOISE_FAMILIES[fam_seq[i]].needs_others:
            others = [p for _, p, _ in pool if p != rel]
            if not others:
                raise ValueError(f"babble in {split} needs other utterances to mix")
            k = min(_BABBLE_POOL, len(others))
            babble = [others[int(j)] for j in rng.choice(len(others), size=k, replace=False)]
        room = int(rng.integers(len(rooms))) if i in reverb and rooms else None
        items.append(MixItem(
            id=mid, speaker=spk, utterance=rel, text=text, family=fam_seq[i], snr=snr_seq[i],
            room=room, rt60=None if room is None or rooms is None else rooms[room]["rt60"],
            babble=babble, noise_seed=[seed, 200 + code, i],
            clean=f"{dirs['clean']}/{mid}.wav", noisy=f"{dirs['noisy']}/{mid}.wav"))
    return sorted(items, key=lambda m: m.id)


def _read(path: Path) -> np.ndarray:
    x, _ = sf.read(str(path), dtype="float64")
    return x


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(src, dst)


def mix_task(task: MixTask) -> list[dict[str, Any]]:
    """Make and write the mixtures of one batch; returns their metadata rows."""
    root = Path(task.corpus_root)
    enhance = root / "enhance"
    out = []
    for m in task.items:
        # Mix the clean file as stored (PCM-16), so noisy - clean is exactly the noise.
        clean = _read(root / m.utterance)
        speech = reverberate(clean, task.rirs[m.room]) if m.room is not None else clean
        others = [_read(root / p) for p in m.babble] if m.babble else None
        noise = make_noise(m.family, len(clean), task.sr, np.random.default_rng(m.noise_seed),
                           others)
        # Reverberant mixtures: the SNR is of the reverberant speech (the target stays dry).
        noisy, gain = mix_at_snr(speech, noise, m.snr, task.sr)
        scale = min(1.0, PEAK / float(np.max(np.abs(noisy))))
        write_audio(enhance / m.noisy, noisy * scale, task.sr)
        if scale == 1.0:
            _link(root / m.utterance, enhance / m.clean)
        else:  # turned down rather than clipped: the target gets the same gain (SNR kept)
            write_audio(enhance / m.clean, clean * scale, task.sr)
        row = {k: v for k, v in asdict(m).items() if k != "noise_seed"}
        row.update(gain=round(gain, 8), scale=round(scale, 8), seconds=len(clean) / task.sr)
        out.append(row)
    return out
