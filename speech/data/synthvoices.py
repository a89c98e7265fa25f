"""SynthVoices: the built-in speech corpus, synthesised here by festival and espeak-ng.

``python -m speech.data.synthvoices build --preset default`` (``--help`` for the rest).

What a build makes, deterministically from the config's seed (DATASETS.md)::

    <cache>/datasets/synthvoices/<key>/
      manifest.json            config, key, engine versions, sizes, timings
      sentences.json           {"parallel": [...], "train": {speaker: [...]}}
      vc/training/<spk>/t0001.wav ...   non-parallel: every speaker reads DIFFERENT sentences
      vc/evaluation/<spk>/p0001.wav ... parallel: every speaker reads the same held-out ones
      enhance/                 VoiceBank+DEMAND's layout:
        clean_trainset_<N>spk_wav/ noisy_trainset_<N>spk_wav/ clean_testset_wav/ noisy_testset_wav/
        log_trainset_<N>spk.txt log_testset.txt   "<id> <family> <snr>" per line
        mixtures.json          every mixture: speaker, utterance, text, family, SNR, room

All audio is 16 kHz mono PCM-16, utterances trimmed and set to ``level_dbfs`` active
speech level (ITU-T P.56). Enhancement test mixtures use speakers, noise families and SNRs
that training never sees (the VoiceBank+DEMAND convention); clean targets are hard links
to the corpus utterances. ``<key>`` hashes the generator version and every parameter but
``name``, so a cached build is reused only when it was made the same way; a build is
staged in a temporary folder and renamed into place, so a folder with a manifest is
always complete.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.config import ConfigError, from_dict, load_config, to_dict, to_yaml
from common.io import atomic_write_json, atomic_write_text
from common.paths import cache_dir, short_hash
from speech.audio import DEFAULT_RESAMPLE, RESAMPLE_METHODS, write_audio
from speech.data.grammar import GRAMMAR_VERSION, sentences
from speech.data.mixtures import (
    PEAK,
    EnhanceConfig,
    MixTask,
    enhance_dirs,
    mix_task,
    plan_rooms,
    plan_split,
    room_from_dict,
)
from speech.data.noise import NOISE_FAMILIES, active_power
from speech.data.voices import (
    VOICES,
    Voice,
    VoiceMissingError,
    check_voices,
    engine_versions,
    synthesize,
    voice_status,
)

__all__ = [
    "GENERATOR_VERSION",
    "PRESET_DIR",
    "SR",
    "VOICES",
    "EnhanceConfig",
    "SynthVoices",
    "SynthVoicesConfig",
    "Voice",
    "VoiceMissingError",
    "build",
    "check_voices",
    "load_preset",
    "main",
    "presets",
    "synthesize",
]

# Bump whenever a change here, in noise.py or in voices.py changes the audio a config
# produces: it is part of the cache key.
GENERATOR_VERSION = 1
SR = 16000
PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "speech" / "synthvoices"

_TRIM_DB = -50.0  # frames this far below the loudest are leading/trailing silence
_TRIM_MARGIN = 0.1  # seconds of silence kept at each end
_SYNTH_BATCH = 20  # sentences per festival process


# --------------------------------------------------------------------------- config


@dataclass
class SynthVoicesConfig:
    """One SynthVoices corpus. Everything but ``name`` goes into :meth:`key`."""

    name: str = "default"
    seed: int = 0
    speakers: list[str] = field(default_factory=lambda: ["kal", "ked", "slt", "f3", "m7"])
    train_sentences: int = 300  # per speaker, different for every speaker
    parallel_sentences: int = 40  # the same for every speaker (held out of training)
    level_dbfs: float = -26.0  # active speech level of every utterance
    resample_method: str = DEFAULT_RESAMPLE  # engine rate -> 16 kHz
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)

    def key(self) -> str:
        """Cache key: generator and grammar versions plus every parameter except ``name``."""
        params = {k: v for k, v in to_dict(self).items() if k != "name"}
        return short_hash({"generator": GENERATOR_VERSION, "grammar": GRAMMAR_VERSION,
                           "sr": SR, "params": params})

    def validate(self) -> None:
        """Refuse configs that break the corpus's promises (raises :class:`ConfigError`)."""
        e = self.enhance

        def known_speakers(where: str, names: Sequence[str]) -> None:
            for s in names:
                if s not in VOICES:
                    raise ConfigError(f"{where}: unknown speaker {s!r}; known: {sorted(VOICES)}")

        known_speakers("speakers", self.speakers)
        if not self.speakers or len(set(self.speakers)) != len(self.speakers):
            raise ConfigError(f"speakers: need distinct speakers, got {self.speakers}")
        if self.train_sentences < 1 or self.parallel_sentences < 1:
            raise ConfigError("train_sentences and parallel_sentences must be >= 1")
        if not -60.0 < self.level_dbfs < -3.0:
            raise ConfigError(f"level_dbfs must be in (-60, -3), got {self.level_dbfs}")
        if self.resample_method not in RESAMPLE_METHODS:
            raise ConfigError(f"resample_method: choose one of {sorted(RESAMPLE_METHODS)}")
        for where, names in (("enhance.train_speakers", e.train_speakers),
                             ("enhance.test_speakers", e.test_speakers)):
            known_speakers(where, names)
            outside = [s for s in names if s not in self.speakers]
            if outside:
                raise ConfigError(f"{where}: {outside} not among speakers {self.speakers}")
        for where, fams in (("enhance.train_families", e.train_families),
                            ("enhance.test_families", e.test_families)):
            for f in fams:
                if f not in NOISE_FAMILIES:
                    raise ConfigError(f"{where}: unknown noise family {f!r}; "
                                      f"families: {sorted(NOISE_FAMILIES)}")
        # The VoiceBank+DEMAND convention: the test set measures generalisation.
        for what, a, b in (("speakers", e.train_speakers, e.test_speakers),
                           ("noise families", e.train_families, e.test_families),
                           ("SNRs", e.train_snrs, e.test_snrs)):
            both = sorted(set(a) & set(b))
            if both:
                raise ConfigError(f"enhance: test {what} must be unseen in training; "
                                  f"{both} in both")
        if e.mixtures_per_utterance < 0 or e.test_mixtures < 0:
            raise ConfigError("enhance: mixture counts must be >= 0")
        for split, n, spk, fams, snrs in (
                ("train", e.mixtures_per_utterance, e.train_speakers, e.train_families,
                 e.train_snrs),
                ("test", e.test_mixtures, e.test_speakers, e.test_families, e.test_snrs)):
            if n > 0 and not (spk and fams and snrs):
                raise ConfigError(f"enhance: {split} mixtures need speakers, families and SNRs")
        if not 0.0 <= e.reverb_prob <= 1.0:
            raise ConfigError(f"enhance.reverb_prob must be in [0, 1], got {e.reverb_prob}")
        if e.rooms < 1 or not 0.1 <= e.rt60_min <= e.rt60_max <= 2.0:
            raise ConfigError("enhance: need rooms >= 1 and 0.1 <= rt60_min <= rt60_max <= 2")


def presets() -> list[str]:
    """Names of the presets in :data:`PRESET_DIR`."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(preset: str = "default", overrides: Sequence[str] = ()) -> SynthVoicesConfig:
    """A preset by name (or a YAML path) with dotted ``key=value`` overrides, validated."""
    path = Path(preset)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = PRESET_DIR / f"{preset}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown SynthVoices preset {preset!r}; presets: {presets()}")
    cfg = load_config(SynthVoicesConfig, path, overrides)
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------- the corpus


def _vc_name(kind: str, i: int) -> str:
    return f"{'t' if kind == 'train' else 'p'}{i + 1:04d}.wav"


def _vc_rel(speaker: str, kind: str, i: int) -> str:
    folder = "training" if kind == "train" else "evaluation"
    return f"vc/{folder}/{speaker}/{_vc_name(kind, i)}"


@dataclass
class SynthVoices:
    """A built corpus on disk (what :func:`build` returns; :meth:`open` reads one)."""

    root: Path
    manifest: dict[str, Any]
    from_cache: bool = False
    _sentences: dict[str, Any] | None = field(default=None, repr=False)
    _mixtures: dict[str, list[dict[str, Any]]] | None = field(default=None, repr=False)

    @classmethod
    def open(cls, root: str | os.PathLike[str], *, from_cache: bool = True) -> SynthVoices:
        root = Path(root)
        path = root / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{root}: no SynthVoices corpus here (manifest.json missing); build one with "
                "python -m speech.data.synthvoices build --preset default")
        return cls(root, json.loads(path.read_text()), from_cache)

    @property
    def speakers(self) -> list[str]:
        return list(self.manifest["speakers"])

    @property
    def config(self) -> SynthVoicesConfig:
        return from_dict(SynthVoicesConfig, self.manifest["config"], str(self.root))

    @property
    def enhance_root(self) -> Path:
        """The VoiceBank+DEMAND-layout folder (read it with ``VoiceBankDemand``)."""
        return self.root / "enhance"

    def sentences(self) -> dict[str, Any]:
        """``{"train": {speaker: [text, ...]}, "parallel": [text, ...]}``."""
        if self._sentences is None:
            self._sentences = json.loads((self.root / "sentences.json").read_text())
        return self._sentences

    def _check_speaker(self, speaker: str) -> None:
        if speaker not in self.manifest["speakers"]:
            raise KeyError(f"speaker {speaker!r} is not in this corpus; speakers: "
                           f"{self.speakers}")

    def vc_train(self, speaker: str) -> list[Path]:
        """The speaker's non-parallel training utterances, in sentence order."""
        self._check_speaker(speaker)
        n = len(self.sentences()["train"][speaker])
        return [self.root / _vc_rel(speaker, "train", i) for i in range(n)]

    def vc_test(self, speaker: str) -> list[Path]:
        """The speaker's parallel test utterances (``p0001.wav`` ...), in sentence order."""
        self._check_speaker(speaker)
        n = len(self.sentences()["parallel"])
        return [self.root / _vc_rel(speaker, "test", i) for i in range(n)]

    def parallel_pairs(self, source: str, target: str) -> list[tuple[Path, Path]]:
        """``(source utterance, target utterance)`` of the same test sentence."""
        return list(zip(self.vc_test(source), self.vc_test(target), strict=True))

    def mixtures(self, split: str) -> list[dict[str, Any]]:
        """Enhancement mixtures of ``split`` ("train" | "test"), sorted by id.

        Each: ``id, speaker, utterance, text, family, snr, rt60 (None if dry), room, gain,
        scale, seconds, clean, noisy`` (the last two absolute paths).
        """
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if self._mixtures is None:
            raw = json.loads((self.enhance_root / "mixtures.json").read_text())
            self._mixtures = {
                s: [{**m, "clean": str(self.enhance_root / m["clean"]),
                     "noisy": str(self.enhance_root / m["noisy"])} for m in raw[s]]
                for s in ("train", "test")}
        return [dict(m) for m in self._mixtures[split]]

    def text(self, path: str | os.PathLike[str]) -> str:
        """The sentence spoken in a corpus file (an utterance or an enhancement mixture)."""
        p = Path(path)
        rel = p.relative_to(self.root) if p.is_absolute() else p
        parts = rel.parts
        s = self.sentences()
        if len(parts) == 4 and parts[0] == "vc":
            index = int(parts[3][1:5]) - 1
            if parts[1] == "training":
                return s["train"][parts[2]][index]
            if parts[1] == "evaluation":
                return s["parallel"][index]
        if len(parts) == 3 and parts[0] == "enhance":
            for split in ("train", "test"):
                for m in self.mixtures(split):
                    if m["id"] == Path(parts[2]).stem:
                        return m["text"]
        raise KeyError(f"{path}: not an utterance of the corpus at {self.root}")


# --------------------------------------------------------------------------- synthesis


@dataclass(frozen=True)
class _SynthTask:
    speaker: str
    voice: Voice
    items: list[tuple[str, str]]  # (path relative to the corpus, text)
    out_root: str
    level_dbfs: float
    resample_method: str


def _trim(x: np.ndarray, sr: int) -> np.ndarray:
    """Cut leading/trailing silence, keeping :data:`_TRIM_MARGIN` seconds at each end."""
    hop = sr // 100
    n = len(x) // hop
    if n < 2 or not np.any(x):
        return x
    rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (_TRIM_DB / 20))[0]
    margin = int(_TRIM_MARGIN * sr)
    start = max(0, loud[0] * hop - margin)
    end = min(len(x), (loud[-1] + 1) * hop + margin)
    return x[start:end]


def _finish(x: np.ndarray, sr: int, level_dbfs: float) -> tuple[np.ndarray, bool]:
    """Trim, set the active speech level; returns (float64 [T], was it peak-limited)."""
    x = _trim(np.asarray(x, dtype=np.float64), sr)
    power = active_power(x, sr)
    if power <= 0:
        raise RuntimeError("the synthesiser returned silence")
    y = x * (10 ** (level_dbfs / 20) / math.sqrt(power))
    peak = float(np.max(np.abs(y)))
    if peak > PEAK:  # rare: a very peaky utterance is turned down rather than clipped
        return y * (PEAK / peak), True
    return y, False


def _synth_task(task: _SynthTask) -> list[dict[str, Any]]:
    """Synthesise one batch of one speaker and write the finished files (worker process)."""
    import torch

    # One thread: reproducible resampling sums, and workers do not oversubscribe cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        audio = synthesize(task.voice, [t for _, t in task.items], SR, task.resample_method)
    finally:
        torch.set_num_threads(threads)
    out = []
    for (rel, _), x in zip(task.items, audio, strict=True):
        y, limited = _finish(x, SR, task.level_dbfs)
        write_audio(Path(task.out_root) / rel, y, SR)
        out.append({"path": rel, "seconds": len(y) / SR, "peak_limited": limited})
    return out


# --------------------------------------------------------------------------- build


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def _run_tasks(fn: Callable[[Any], list[dict[str, Any]]], tasks: Sequence[Any],
               pool: cf.Executor | None, bar: Any) -> list[dict[str, Any]]:
    """``fn`` over ``tasks`` (each with ``.items``); rows back in task order, whatever the
    order the workers finish in."""
    results: list[list[dict[str, Any]]] = [[] for _ in tasks]
    if pool is None:
        for i, t in enumerate(tasks):
            results[i] = fn(t)
            bar.update(len(t.items))
    else:
        futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            bar.update(len(tasks[i].items))
    return [row for r in results for row in r]


def _chunks(items: Sequence[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def default_root() -> Path:
    """Where built corpora live: ``<cache root>/datasets/synthvoices``."""
    return cache_dir("datasets", "synthvoices")


def _disk_bytes(root: str | os.PathLike[str]) -> int:
    """Bytes used by the files under ``root``, counting each hard-linked file once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def build(
    config: SynthVoicesConfig,
    root: str | os.PathLike[str] | None = None,
    *,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
) -> SynthVoices:
    """Build ``config`` under ``root`` (default :func:`default_root`), or open the cached one.

    ``workers`` processes synthesise and mix (default: up to 4, one per core; 1 runs in
    this process). The output does not depend on ``workers``. ``force`` rebuilds a
    cached corpus. Raises :class:`VoiceMissingError` if a voice is not installed.
    """
    config.validate()
    root = Path(root) if root is not None else default_root()
    final = root / config.key()
    if (final / "manifest.json").is_file() and not force:
        corpus = SynthVoices.open(final, from_cache=True)
        _warn_if_engines_changed(corpus)
        return corpus
    check_voices(config.speakers)
    workers = max(1, int(workers if workers is not None else min(4, os.cpu_count() or 1)))
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{config.key()}.partial-"))
    try:
        _build_into(config, staging, workers, progress)
        _publish(staging, final, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SynthVoices.open(final, from_cache=False)


def _warn_if_engines_changed(corpus: SynthVoices) -> None:
    # The key covers the generator and the parameters (DATASETS.md), not the installed
    # synthesisers: a cached corpus made by other engine versions is still used, but said.
    engines = {"festival" if VOICES[s].engine == "festival" else "espeak-ng"
               for s in corpus.speakers if s in VOICES}
    now, then = engine_versions(), corpus.manifest.get("engines", {})
    changed = [f"{e}: built with {then.get(e)!r}, installed {now.get(e)!r}"
               for e in sorted(engines) if then.get(e) != now.get(e)]
    if changed:
        warnings.warn(f"{corpus.root}: cached SynthVoices corpus was synthesised by other "
                      f"engine versions ({'; '.join(changed)}); rebuild with --force to refresh",
                      stacklevel=3)


def _publish(staging: Path, final: Path, force: bool) -> None:
    """Rename the finished build into place (atomic; a concurrent identical build wins)."""
    if final.exists() and (force or not (final / "manifest.json").is_file()):
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(staging, final)
    except OSError:
        if not (final / "manifest.json").is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)  # someone else finished the same key


def _split_text(cfg: SynthVoicesConfig) -> dict[str, Any]:
    """``{"parallel": [...], "train": {speaker: [...]}}`` from one grammar stream.

    The first sentences are the parallel test set, then one block of training sentences
    per speaker: no training sentence is spoken by two speakers or appears in the test set.
    """
    n_spk, n_train, n_par = len(cfg.speakers), cfg.train_sentences, cfg.parallel_sentences
    texts = sentences(n_par + n_spk * n_train, seed=cfg.seed)
    return {"parallel": texts[:n_par],
            "train": {s: texts[n_par + k * n_train : n_par + (k + 1) * n_train]
                      for k, s in enumerate(cfg.speakers)}}


def _utterances(text: dict[str, Any], speaker: str, parallel: bool = True
                ) -> list[tuple[str, str]]:
    """``(relative path, sentence)`` of a speaker's training (and parallel) utterances."""
    out = [(_vc_rel(speaker, "train", i), t) for i, t in enumerate(text["train"][speaker])]
    if parallel:
        out += [(_vc_rel(speaker, "test", i), t) for i, t in enumerate(text["parallel"])]
    return out


def _mix_tasks(cfg: SynthVoicesConfig, text: dict[str, Any], out: Path
               ) -> tuple[dict[str, list[Any]], dict[str, list[dict[str, Any]]]]:
    """Mixing tasks per split (batches of 16) and the rooms each split drew."""
    e = cfg.enhance
    pools = {  # training mixes training sentences; the unseen test speakers, all they say
        "train": [(s, *u) for s in e.train_speakers for u in _utterances(text, s, False)],
        "test": [(s, *u) for s in e.test_speakers for u in _utterances(text, s)],
    }
    tasks: dict[str, list[Any]] = {}
    rooms: dict[str, list[dict[str, Any]]] = {}
    for sp in ("train", "test"):
        rooms[sp] = plan_rooms(e, cfg.seed, sp) if e.reverb_prob > 0 else []
        plan = plan_split(e, cfg.seed, sp, pools[sp], rooms[sp])
        used = sorted({m.room for m in plan if m.room is not None})
        rirs = {r: room_from_dict(rooms[sp][r]).impulse_response(SR) for r in used}
        tasks[sp] = [MixTask(chunk, str(out), SR,
                             {r: rirs[r] for r in {m.room for m in chunk} if r is not None})
                     for chunk in _chunks(plan, 16)]
    return tasks, rooms


def _build_into(cfg: SynthVoicesConfig, out: Path, workers: int, progress: bool
                ) -> dict[str, Any]:
    from tqdm import tqdm

    start = time.perf_counter()
    e = cfg.enhance
    text = _split_text(cfg)
    atomic_write_json(out / "sentences.json", text)
    synth_tasks = [_SynthTask(s, VOICES[s], chunk, str(out), cfg.level_dbfs,
                              cfg.resample_method)
                   for s in cfg.speakers for chunk in _chunks(_utterances(text, s), _SYNTH_BATCH)]
    dirs = enhance_dirs(len(e.train_speakers))
    for sp in ("train", "test"):
        for folder in (dirs[sp]["clean"], dirs[sp]["noisy"]):
            (out / "enhance" / folder).mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    pool = (cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)
            if workers > 1 else None)
    try:
        with tqdm(total=sum(len(t.items) for t in synth_tasks), desc="synthesis", unit="utt",
                  disable=not progress, file=sys.stderr) as bar:
            synth = _run_tasks(_synth_task, synth_tasks, pool, bar)
        synth_seconds = time.perf_counter() - start
        mix_start = time.perf_counter()
        tasks, rooms = _mix_tasks(cfg, text, out)
        rows: dict[str, list[dict[str, Any]]] = {}
        for sp in ("train", "test"):
            with tqdm(total=sum(len(t.items) for t in tasks[sp]), desc=f"mixing {sp}",
                      unit="mix", disable=not progress, file=sys.stderr) as bar:
                rows[sp] = _run_tasks(mix_task, tasks[sp], pool, bar)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    mix_seconds = time.perf_counter() - mix_start

    atomic_write_json(out / "enhance" / "mixtures.json", {**rows, "rooms": rooms})
    for sp in ("train", "test"):  # VoiceBank-style logs: "<id> <noise> <snr>"
        atomic_write_text(out / "enhance" / dirs[sp]["log"],
                          "".join(f"{r['id']} {r['family']} {r['snr']:g}\n" for r in rows[sp]))

    def summary(sp: str, speakers: list[str], fams: list[str], snrs: list[float]
                ) -> dict[str, Any]:
        return {"speakers": speakers, "families": fams, "snrs": snrs,
                "mixtures": len(rows[sp]),
                "reverberant": sum(r["rt60"] is not None for r in rows[sp]),
                "turned_down": sum(r["scale"] < 1.0 for r in rows[sp]),
                "hours": round(sum(r["seconds"] for r in rows[sp]) / 3600, 4),
                "clean": dirs[sp]["clean"], "noisy": dirs[sp]["noisy"]}

    manifest = {
        "format": 1,
        "key": cfg.key(),
        "name": cfg.name,
        "generator_version": GENERATOR_VERSION,
        "grammar_version": GRAMMAR_VERSION,
        "config": to_dict(cfg),
        "sr": SR,
        "subtype": "PCM_16",
        "speakers": list(cfg.speakers),
        "voices": {s: asdict(VOICES[s]) for s in cfg.speakers},
        "engines": engine_versions(),
        "utterances": {s: {"train": cfg.train_sentences, "test": cfg.parallel_sentences}
                       for s in cfg.speakers},
        "speech_hours": round(sum(r["seconds"] for r in synth) / 3600, 4),
        "peak_limited_utterances": sum(r["peak_limited"] for r in synth),
        "enhance": {
            "layout": "VoiceBank+DEMAND",
            "train": summary("train", e.train_speakers, e.train_families, e.train_snrs),
            "test": summary("test", e.test_speakers, e.test_families, e.test_snrs),
        },
        "workers": workers,
        "synthesis_seconds": round(synth_seconds, 2),
        "mixing_seconds": round(mix_seconds, 2),
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    manifest["bytes"] = _disk_bytes(out)
    manifest["build_seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(out / "manifest.json", manifest)  # written last: marks a complete build
    return manifest


# --------------------------------------------------------------------------- CLI


def _voices_table() -> str:
    rows = [f"  {s:<4} {v.engine:<9} {v.name:<22} {v.package:<19} {v.description}"
            for s, v in VOICES.items()]
    return "\n".join(rows)


_HELP = """\
Build or inspect SynthVoices, the built-in speech corpus (16 kHz mono, festival + espeak-ng).

  build --preset NAME [key=value ...]   build (or reuse the cached) corpus; --dry-run prints
                                        the resolved config and its cache key
  voices                                which voices are installed, and the Debian package
                                        of each missing one
  path --preset NAME                    the folder a preset builds into

Speakers (name, engine, voice, Debian package):
{voices}

Presets live in configs/speech/synthvoices/ ({presets}).
Corpora are cached under $CGAN_CACHE/datasets/synthvoices/<key>/ (default ~/.cache/cgan-lab).
"""


def _cmd_voices() -> int:
    ok = True
    for s, v in VOICES.items():
        why = voice_status(v)
        ok &= why is None
        state = "ok" if why is None else f"MISSING ({why}; apt-get install {v.package})"
        print(f"{s:<4} {v.engine:<9} {v.name:<22} {v.package:<19} {state}")
    for engine, version in engine_versions().items():
        print(f"# {engine}: {version or 'not installed'}")
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    helptext = _HELP.format(voices=_voices_table(), presets=", ".join(presets()))
    parser = argparse.ArgumentParser(prog="python -m speech.data.synthvoices", description=helptext,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build (or reuse) a corpus")
    b.add_argument("--preset", default="default", help="preset name or YAML file (default)")
    b.add_argument("--root", type=Path, default=None, help="parent folder (default: the cache)")
    b.add_argument("--workers", type=int, default=None, help="processes (default: up to 4)")
    b.add_argument("--dry-run", action="store_true", help="print the resolved config and key")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.add_argument("overrides", nargs="*", metavar="key=value")
    p = sub.add_parser("path", help="print the folder of a preset's corpus")
    p.add_argument("--preset", default="default")
    p.add_argument("--root", type=Path, default=None)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    sub.add_parser("voices", help="list the voices and whether they are installed")
    args = parser.parse_args(argv)

    if args.command == "voices":
        return _cmd_voices()
    try:
        cfg = load_preset(args.preset, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    folder = (args.root or default_root()) / cfg.key()
    if args.command == "path":
        print(folder)
        return 0 if (folder / "manifest.json").is_file() else 1
    if args.dry_run:
        print(to_yaml(cfg), end="")
        print(f"# key: {cfg.key()}\n# folder: {folder}")
        return 0
    try:
        corpus = build(cfg, args.root, workers=args.workers, progress=not args.no_progress,
                       force=args.force)
    except VoiceMissingError as err:
        print(str(err), file=sys.stderr)
        return 1
    m = corpus.manifest
    how = "cached" if corpus.from_cache else f"built in {m['build_seconds']:.1f} s"
    print(f"SynthVoices '{cfg.name}' ({how}, {m['workers']} worker(s)): {corpus.root}")
    print(f"  {len(m['speakers'])} speakers, {m['speech_hours']:.3f} h clean speech, "
          f"{m['bytes'] / 1e6:.1f} MB")
    for sp in ("train", "test"):
        s = m["enhance"][sp]
        print(f"  enhance {sp}: {s['mixtures']} mixtures ({s['hours']:.3f} h), speakers "
              f"{s['speakers']}, families {s['families']}, SNRs {s['snrs']}")
    return 0


if __name__ == "__main__":
    # Run through the package module, so worker processes unpickle the same functions.
    from speech.data.synthvoices import main as _main

    raise SystemExit(_main())
