"""The SynthVoices speakers: Debian's festival and espeak-ng voices, run as subprocesses.

Each speaker is a :class:`Voice` (engine, voice name, the Debian package that provides it).
:func:`check_voices` asks the installed engines which voices exist and names the package
to ``apt-get install`` for every missing one; :func:`synthesize` runs the real binaries
(``festival --batch`` with one Scheme script per batch of sentences, so festival starts
once per batch; ``espeak-ng`` once per sentence, it starts in milliseconds) and returns
the audio resampled to the corpus rate.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from speech.audio import DEFAULT_RESAMPLE, resample

__all__ = [
    "VOICES",
    "Voice",
    "VoiceMissingError",
    "check_voices",
    "engine_versions",
    "synthesize",
    "voice_status",
]


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker."""

    engine: Literal["festival", "espeak"]
    name: str  # festival voice (``voice_<name>``) or espeak-ng ``language+variant``
    package: str  # the Debian package that installs it
    gender: str
    description: str
    pitch: int | None = None  # espeak-ng -p (0-99); festival voices keep their own


VOICES: dict[str, Voice] = {
    "kal": Voice("festival", "kal_diphone", "festvox-kallpc16k", "male",
                 "festival kal_diphone: US English male, diphone, 16 kHz"),
    "ked": Voice("festival", "ked_diphone", "festvox-kdlpc16k", "male",
                 "festival ked_diphone: US English male, diphone, 16 kHz"),
    "slt": Voice("festival", "cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "female",
                 "festival cmu_us_slt_arctic_hts: US English female, HTS, 32 kHz -> 16 kHz"),
    "f3": Voice("espeak", "en-us+f3", "espeak-ng", "female",
                "espeak-ng en-us+f3, pitch 70: US English female, formant, 22.05 -> 16 kHz",
                pitch=70),
    "m7": Voice("espeak", "en+m7", "espeak-ng", "male",
                "espeak-ng en+m7, pitch 30: English male, formant, 22.05 -> 16 kHz", pitch=30),
}


class VoiceMissingError(RuntimeError):
    """A corpus voice is not installed; the message names the Debian packages to install."""


# --------------------------------------------------------------------------- engines


def _run(cmd: list[str], timeout: float = 60.0, stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)


@functools.lru_cache(maxsize=1)
def _festival_voices() -> frozenset[str]:
    """Voices festival finds on its voice path (empty if festival is not installed)."""
    if shutil.which("festival") is None:
        return frozenset()
    out = _run(["festival", "--batch", "(print (voice.list))"]).stdout
    return frozenset(re.findall(r"[A-Za-z0-9_]+", out))


@functools.lru_cache(maxsize=1)
def _espeak_variants() -> frozenset[str]:
    if shutil.which("espeak-ng") is None:
        return frozenset()
    out = _run(["espeak-ng", "--voices=variant"]).stdout
    return frozenset(re.findall(r"!v/(\S+)", out))


@functools.lru_cache(maxsize=32)
def _espeak_has_language(lang: str) -> bool:
    # espeak-ng exits 1 with "The specified espeak-ng voice does not exist" for unknown ones.
    return _run(["espeak-ng", "-q", "-v", lang, ""]).returncode == 0


def voice_status(voice: Voice) -> str | None:
    """``None`` if ``voice`` is usable, else why not (one phrase)."""
    if voice.engine == "festival":
        if shutil.which("festival") is None:
            return "festival is not installed"
        if voice.name not in _festival_voices():
            return f"festival has no voice {voice.name}"
        return None
    if voice.engine == "espeak":
        if shutil.which("espeak-ng") is None:
            return "espeak-ng is not installed"
        lang, _, variant = voice.name.partition("+")
        if not _espeak_has_language(lang):
            return f"espeak-ng has no language {lang!r}"
        if variant and variant not in _espeak_variants():
            return f"espeak-ng has no variant {variant!r} (voice {voice.name})"
        return None
    return f"unknown engine {voice.engine!r}"


def check_voices(speakers: Sequence[str]) -> None:
    """Raise :class:`VoiceMissingError` naming every missing voice and its Debian package."""
    unknown = [s for s in speakers if s not in VOICES]
    if unknown:
        raise KeyError(f"unknown speaker(s) {unknown}; known: {sorted(VOICES)}")
    missing = [(s, VOICES[s], why) for s in speakers if (why := voice_status(VOICES[s]))]
    if not missing:
        return
    lines = [f"  {s}: {why} -> apt-get install {v.package}" for s, v, why in missing]
    packages: list[str] = []  # in the order the speakers were asked for, each once
    for _, v, why in missing:
        for pkg in (["festival"] if why == "festival is not installed" else []) + [v.package]:
            if pkg not in packages:
                packages.append(pkg)
    raise VoiceMissingError(
        "SynthVoices needs voices that are not installed:\n" + "\n".join(lines)
        + f"\ninstall them with: sudo apt-get install {' '.join(packages)}"
    )


def engine_versions() -> dict[str, str | None]:
    """Version strings of festival and espeak-ng (``None`` when not installed)."""
    out: dict[str, str | None] = {"festival": None, "espeak-ng": None}
    if shutil.which("festival"):
        text = _run(["festival", "--version"]).stdout.strip()
        out["festival"] = text.split(":", 1)[-1].strip() or text
    if shutil.which("espeak-ng"):
        text = _run(["espeak-ng", "--version"]).stdout.strip()
        out["espeak-ng"] = text.split("Data at:")[0].strip()
    return out


# --------------------------------------------------------------------------- synthesis


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival(voice: Voice, texts: Sequence[str], tmp: Path) -> list[Path]:
    outs = [tmp / f"{i:05d}.wav" for i in range(len(texts))]
    lines = [f"(voice_{voice.name})"]
    for text, out in zip(texts, outs, strict=True):
        lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                     f"{_scheme_string(str(out))} 'riff)")
    script = tmp / "batch.scm"
    script.write_text("\n".join(lines) + "\n")
    proc = _run(["festival", "--batch", str(script)], timeout=120 + 20 * len(texts))
    missing = [o for o in outs if not o.is_file() or o.stat().st_size <= 44]
    if proc.returncode != 0 or missing or "SIOD ERROR" in proc.stdout + proc.stderr:
        raise RuntimeError(
            f"festival ({voice.name}) failed on {len(missing)} of {len(texts)} sentences "
            f"(exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}"
        )
    return outs


def _espeak(voice: Voice, texts: Sequence[str], tmp: Path) -> list[Path]:
    outs = []
    for i, text in enumerate(texts):
        out = tmp / f"{i:05d}.wav"
        cmd = ["espeak-ng", "-v", voice.name, "-w", str(out), "--stdin"]
        if voice.pitch is not None:
            cmd[1:1] = ["-p", str(voice.pitch)]
        proc = _run(cmd, stdin=text)
        if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            raise RuntimeError(f"espeak-ng ({voice.name}) failed on {text!r} "
                               f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
        outs.append(out)
    return outs


def synthesize(
    voice: Voice, texts: Sequence[str], sr: int = 16000, resample_method: str = DEFAULT_RESAMPLE
) -> list[np.ndarray]:
    """Speak each of ``texts`` with ``voice``: float32 mono ``[T_i]`` at ``sr`` per text.

    The engine's own rate (16 kHz kal/ked, 32 kHz slt, 22.05 kHz espeak-ng) is resampled
    with ``resample_method`` (see :data:`speech.audio.RESAMPLE_METHODS`). The audio is as
    the engine made it: no trimming or level normalisation here.
    """
    if not texts:
        return []
    with tempfile.TemporaryDirectory(prefix="synthvoices-") as tmp:
        run = _festival if voice.engine == "festival" else _espeak
        paths = run(voice, texts, Path(tmp))
        out = []
        for p in paths:
            x, file_sr = sf.read(str(p), dtype="float32", always_2d=True)
            out.append(resample(x.mean(axis=1), file_sr, sr, resample_method))
    return out
