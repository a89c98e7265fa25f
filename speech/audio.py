"""Audio I/O: read anything soundfile reads, as mono float32 at the model's rate; write
atomically; process arbitrarily long files chunk by chunk in flat memory.

Reading (:func:`read_audio`) refuses, with one line naming the file and the cause:

- a missing file, a directory, an extension outside :data:`SUPPORTED_EXTENSIONS`;
- an empty file (0 bytes) or one with no samples;
- a file that soundfile cannot decode (corrupt, or not audio: a text file named ``.wav``);
- non-finite samples (NaN/inf in float WAVs), unless ``nonfinite="zero"``;
- a silent file (peak below -80 dBFS), unless ``allow_silent=True``;
- a file longer than ``max_seconds`` (default 10 minutes): such files go through
  :func:`process_file` / :class:`AudioStream`, which never hold the whole signal.

Everything else is accepted: any channel count is mixed down to mono (channel mean), any
sample format (8-bit, 16/24/32-bit, float) becomes float32 in [-1, 1], and any rate is
resampled to the requested one with a *named* method (:data:`RESAMPLE_METHODS`), which is
recorded in the returned :class:`Audio` together with notes such as "upsampled from
8000 Hz: nothing above 4000 Hz".

Long files: :class:`AudioStream` reads any output-rate segment ``[start, end)`` of a file
by resampling an input window with enough context on both sides that the result equals
(to the filter's precision) slicing the whole-file resampled signal. :func:`overlap_add`
runs a model on overlapping chunks and cross-fades them with complementary raised-cosine
ramps (they sum to one, so an identity model reproduces its input exactly), emitting
finished samples as it goes; :func:`process_file` ties the two together file → file,
so memory is O(chunk), not O(file).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from common.io import atomic_path

__all__ = [
    "RESAMPLE_METHODS",
    "SUPPORTED_EXTENSIONS",
    "Audio",
    "AudioError",
    "AudioStream",
    "AudioTooLongError",
    "Chunk",
    "CorruptAudioError",
    "EmptyAudioError",
    "NonFiniteAudioError",
    "ProcessReport",
    "SilentAudioError",
    "UnsupportedAudioError",
    "apply_chunked",
    "chunk_plan",
    "overlap_add",
    "process_file",
    "read_audio",
    "resample",
    "to_mono",
    "write_audio",
]

SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg")
# Peak below this is "silent": -80 dBFS, a little under 16-bit PCM's 1-LSB level x 3.
SILENCE_PEAK = 10 ** (-80 / 20)
DEFAULT_MAX_SECONDS = 600.0


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the cause."""


class UnsupportedAudioError(AudioError):
    pass


class EmptyAudioError(AudioError):
    pass


class CorruptAudioError(AudioError):
    pass


class SilentAudioError(AudioError):
    pass


class NonFiniteAudioError(AudioError):
    pass


class AudioTooLongError(AudioError):
    pass


# --------------------------------------------------------------------------- resampling

# name -> (description, parameters). Every resampled signal records the name it used.
RESAMPLE_METHODS: dict[str, str] = {
    # Windowed-sinc (torchaudio) with the Kaiser parameters librosa/resampy call
    # "kaiser_best": 64 zero crossings, roll-off 0.9476, beta 14.77. Slow, very clean.
    "kaiser_best": "torchaudio sinc_interp_kaiser, width 64, rolloff 0.9475937, beta 14.7696566",
    # torchaudio's default Hann-windowed sinc, 6 zero crossings, roll-off 0.99. Fast.
    "sinc_hann": "torchaudio sinc_interp_hann, width 6, rolloff 0.99",
    # scipy polyphase FIR (Kaiser window, beta 5). Fast, integer ratios after gcd.
    "polyphase": "scipy.signal.resample_poly, kaiser beta 5.0",
    # libsoxr's high-quality preset (what librosa uses by default).
    "soxr_hq": "soxr HQ (libsoxr)",
}
DEFAULT_RESAMPLE = "kaiser_best"

# Input context (in input samples, per unit of ratio) each method needs on either side of
# a chunk so that chunked resampling equals whole-signal resampling (filter half-length).
_CONTEXT_ZERO_CROSSINGS = {"kaiser_best": 64, "sinc_hann": 6, "polyphase": 12, "soxr_hq": 1024}


def resample(
    wav: np.ndarray, orig_sr: int, new_sr: int, method: str = DEFAULT_RESAMPLE
) -> np.ndarray:
    """Resample ``wav`` (float ``[T]`` or ``[C, T]``) from ``orig_sr`` to ``new_sr``.

    Output length is ``ceil(T * new_sr / orig_sr)`` for every method, so results of
    different methods can be compared sample by sample.
    """
    if method not in RESAMPLE_METHODS:
        raise ValueError(
            f"unknown resample method {method!r}; choose one of {sorted(RESAMPLE_METHODS)}"
        )
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    wav = np.asarray(wav, dtype=np.float32)
    if orig_sr == new_sr:
        return wav.copy()
    n_out = math.ceil(wav.shape[-1] * new_sr / orig_sr)
    if method in ("kaiser_best", "sinc_hann"):
        import torch
        import torchaudio.functional as AF

        kwargs = (
            dict(
                lowpass_filter_width=64,
                rolloff=0.9475937167399596,
                resampling_method="sinc_interp_kaiser",
                beta=14.769656459379492,
            )
            if method == "kaiser_best"
            else dict(lowpass_filter_width=6, rolloff=0.99, resampling_method="sinc_interp_hann")
        )
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(wav))
            out = AF.resample(x, orig_sr, new_sr, **kwargs)
        out = out.numpy()
    elif method == "polyphase":
        from scipy.signal import resample_poly

        g = math.gcd(orig_sr, new_sr)
        out = resample_poly(wav, new_sr // g, orig_sr // g, axis=-1).astype(np.float32)
    else:  # soxr_hq
        import soxr

        x = wav.T if wav.ndim == 2 else wav  # soxr wants [T, C]
        out = soxr.resample(np.ascontiguousarray(x), orig_sr, new_sr, quality="HQ")
        out = out.T if wav.ndim == 2 else out
        out = out.astype(np.float32)
    # Normalise the length convention across methods (they differ by a sample or so).
    if out.shape[-1] > n_out:
        out = out[..., :n_out]
    elif out.shape[-1] < n_out:
        pad = [(0, 0)] * (out.ndim - 1) + [(0, n_out - out.shape[-1])]
        out = np.pad(out, pad)
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------- reading


@dataclass
class Audio:
    """A mono signal at ``sr`` and where it came from."""

    samples: np.ndarray  # float32 [T], in [-1, 1] for integer sources
    sr: int
    source_sr: int
    source_channels: int
    source_format: str  # e.g. "WAV/PCM_U8"
    resample_method: str | None = None  # None when no resampling was needed
    path: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sr


def to_mono(x: np.ndarray) -> np.ndarray:
    """Channel mean of ``[T, C]`` (soundfile's layout) → ``[T]``; ``[T]`` passes through."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"expected [T] or [T, C] samples, got shape {x.shape}")
    return x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]


def _check_path(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such audio file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise UnsupportedAudioError(
            f"{path}: unsupported extension {path.suffix or '(none)'!r}; "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)} (convert e.g. with "
            f"`ffmpeg -i {path.name} out.wav`)"
        )
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path}: file is empty (0 bytes)")


def _info(path: Path) -> sf._SoundFileInfo:
    try:
        info = sf.info(str(path))
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        head = path.read_bytes()[:4]
        what = "text, not audio" if _looks_like_text(path) else f"starts with {head!r}"
        raise CorruptAudioError(
            f"{path}: not a readable {path.suffix.lstrip('.').upper()} file ({what}; "
            f"libsndfile: {str(err).strip() or type(err).__name__})"
        ) from None
    if info.frames <= 0:
        raise EmptyAudioError(
            f"{path}: contains no samples ({info.format}/{info.subtype} header only)"
        )
    return info


def _looks_like_text(path: Path) -> bool:
    head = path.read_bytes()[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)


def _check_finite(x: np.ndarray, path: Path | str, sr: int, nonfinite: str) -> np.ndarray:
    bad = ~np.isfinite(x)
    if not bad.any():
        return x
    n_bad = int(bad.sum())
    first = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
    if nonfinite == "zero":
        x = np.where(bad, 0.0, x).astype(np.float32)
        return x
    raise NonFiniteAudioError(
        f"{path}: {n_bad} non-finite sample(s) (NaN/inf), first at {first / sr:.3f} s; "
        "refusing to guess (pass nonfinite='zero' to replace them with silence)"
    )


def read_audio(
    path: str | os.PathLike[str],
    sr: int | None = None,
    *,
    method: str = DEFAULT_RESAMPLE,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    allow_silent: bool = False,
    nonfinite: str = "raise",
) -> Audio:
    """Read ``path`` as mono float32, resampled to ``sr`` (``None`` keeps the file's rate).

    ``nonfinite``: ``"raise"`` (default) or ``"zero"``. Raises an :class:`AudioError`
    subclass (or ``FileNotFoundError``) with a one-line message naming the file.
    """
    if nonfinite not in ("raise", "zero"):
        raise ValueError(f"nonfinite must be 'raise' or 'zero', got {nonfinite!r}")
    path = Path(path)
    _check_path(path)
    info = _info(path)
    if max_seconds is not None and info.duration > max_seconds:
        raise AudioTooLongError(
            f"{path}: {info.duration / 60:.1f} minutes is longer than max_seconds={max_seconds:g}; "
            "long files are processed in chunks with speech.audio.process_file / AudioStream "
            "(flat memory), or pass max_seconds=None to load it whole"
        )
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise CorruptAudioError(f"{path}: decoding failed part-way ({err})") from None
    if data.shape[0] == 0:
        raise EmptyAudioError(f"{path}: contains no samples")
    data = _check_finite(data, path, file_sr, nonfinite)
    wav = to_mono(data)
    notes: list[str] = []
    if info.channels > 1:
        notes.append(f"mixed {info.channels} channels down to mono (channel mean)")
    peak = float(np.max(np.abs(wav)))
    if peak < SILENCE_PEAK and not allow_silent:
        level = "digital silence" if peak == 0 else f"peak {20 * math.log10(peak):.1f} dBFS"
        raise SilentAudioError(
            f"{path}: silent ({level}, below -80 dBFS); nothing to process "
            "(pass allow_silent=True to accept it)"
        )
    used_method = None
    out_sr = file_sr if sr is None else int(sr)
    if out_sr != file_sr:
        wav = resample(wav, file_sr, out_sr, method)
        used_method = method
        if out_sr > file_sr:
            notes.append(
                f"upsampled from {file_sr} Hz: nothing above {file_sr // 2} Hz in this signal"
            )
    if info.subtype in ("PCM_U8", "PCM_S8"):
        notes.append("8-bit source: about 48 dB dynamic range")
    return Audio(
        samples=wav,
        sr=out_sr,
        source_sr=file_sr,
        source_channels=info.channels,
        source_format=f"{info.format}/{info.subtype}",
        resample_method=used_method,
        path=str(path),
        notes=notes,
    )


# --------------------------------------------------------------------------- writing

_FORMAT_BY_EXT = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def write_audio(
    path: str | os.PathLike[str],
    wav: np.ndarray,
    sr: int,
    *,
    subtype: str | None = "PCM_16",
    overwrite: bool = True,
) -> Path:
    """Write mono ``[T]`` (or ``[T, C]``) float audio atomically; format from the extension.

    Integer subtypes clip to [-1, 1] (the number of clipped samples is not silently
    hidden: more than 0.1 % clipped raises). OGG ignores ``subtype`` (Vorbis).
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _FORMAT_BY_EXT:
        raise UnsupportedAudioError(
            f"{path}: cannot write {ext!r}; use one of {SUPPORTED_EXTENSIONS}"
        )
    x = np.asarray(wav, dtype=np.float32)
    if hasattr(wav, "detach"):  # a torch tensor
        x = wav.detach().cpu().numpy().astype(np.float32)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise ValueError(f"{path}: expected non-empty [T] or [T, C] samples, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).sum())
        raise NonFiniteAudioError(f"{path}: refusing to write {bad} NaN/inf samples")
    fmt = _FORMAT_BY_EXT[ext]
    if fmt == "OGG":
        subtype = "VORBIS"
    if subtype is not None and not subtype.startswith(("FLOAT", "DOUBLE")):
        over = np.abs(x) > 1.0
        if over.mean() > 1e-3:
            raise ValueError(
                f"{path}: {over.mean():.1%} of samples exceed full scale; normalise before "
                "writing integer PCM (or write subtype='FLOAT')"
            )
        x = np.clip(x, -1.0, 1.0)
    with atomic_path(path, overwrite=overwrite) as tmp:
        sf.write(str(tmp), x, int(sr), format=fmt, subtype=subtype)
    return path


# --------------------------------------------------------------------------- long files


class AudioStream:
    """Random access to a file as mono float32 at ``sr``, without loading it.

    ``read(start, end)`` returns output-rate samples ``[start, end)`` (zero beyond the
    end). Resampling uses an input window aligned to the rate ratio's grid plus
    ``context`` filter half-lengths on both sides, so chunk seams are invisible.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sr: int | None = None,
        *,
        method: str = DEFAULT_RESAMPLE,
        nonfinite: str = "raise",
    ) -> None:
        self.path = Path(path)
        _check_path(self.path)
        info = _info(self.path)
        self.source_sr = info.samplerate
        self.channels = info.channels
        self.source_frames = info.frames
        self.sr = self.source_sr if sr is None else int(sr)
        self.method = method
        self.nonfinite = nonfinite
        g = math.gcd(self.source_sr, self.sr)
        self._in_step, self._out_step = self.source_sr // g, self.sr // g
        ratio = max(1.0, self.source_sr / self.sr)
        # Filter half-length in input samples, rounded up to the alignment grid.
        ctx = int(math.ceil(_CONTEXT_ZERO_CROSSINGS[method] * ratio * 2 + 16))
        self._ctx_in = int(math.ceil(ctx / self._in_step)) * self._in_step
        self._file = sf.SoundFile(str(self.path))
        self.frames = math.ceil(self.source_frames * self.sr / self.source_sr)

    @property
    def duration(self) -> float:
        return self.source_frames / self.source_sr

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> AudioStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_source(self, start: int, end: int) -> np.ndarray:
        """Source-rate mono samples [start, end), zero-padded outside the file."""
        lo, hi = max(start, 0), min(end, self.source_frames)
        out = np.zeros(end - start, dtype=np.float32)
        if hi > lo:
            self._file.seek(lo)
            data = self._file.read(hi - lo, dtype="float32", always_2d=True)
            where = f"{self.path} (at {lo / self.source_sr:.1f} s)"
            data = _check_finite(data, where, self.source_sr, self.nonfinite)
            out[lo - start : lo - start + len(data)] = to_mono(data)
        return out

    def read(self, start: int, end: int) -> np.ndarray:
        """Output-rate samples ``[start, end)`` as float32 mono."""
        if end <= start:
            return np.zeros(0, dtype=np.float32)
        if self.sr == self.source_sr:
            return self._read_source(start, end)
        # Align to the rate grid: output k*out_step <-> input k*in_step exactly.
        k0 = start // self._out_step
        k1 = -(-end // self._out_step)
        in_lo = k0 * self._in_step - self._ctx_in
        in_hi = k1 * self._in_step + self._ctx_in
        src = self._read_source(in_lo, in_hi)
        out = resample(src, self.source_sr, self.sr, self.method)
        ctx_out = self._ctx_in // self._in_step * self._out_step
        offset = ctx_out + (start - k0 * self._out_step)
        return out[offset : offset + (end - start)]


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int


def chunk_plan(n: int, chunk: int, overlap: int) -> list[Chunk]:
    """Chunks of length ``chunk`` covering ``[0, n)``, consecutive ones sharing ``overlap``.

    The last chunk ends at ``n`` and is longer than ``overlap`` (so every seam has a full
    cross-fade); a signal no longer than ``chunk`` is one chunk.
    """
    if chunk <= 0 or overlap < 0 or overlap >= chunk:
        raise ValueError(f"need 0 <= overlap < chunk, got chunk={chunk}, overlap={overlap}")
    if n <= chunk:
        return [Chunk(0, n)]
    hop = chunk - overlap
    count = math.ceil((n - overlap) / hop)
    return [Chunk(i * hop, min(i * hop + chunk, n)) for i in range(count)]


def _fades(overlap: int) -> tuple[np.ndarray, np.ndarray]:
    # sin^2 / cos^2 ramps: complementary (sum exactly 1), smooth at both ends.
    t = (np.arange(overlap, dtype=np.float64) + 0.5) / max(overlap, 1)
    fade_in = np.sin(0.5 * np.pi * t) ** 2
    return fade_in.astype(np.float32), (1.0 - fade_in).astype(np.float32)


def overlap_add(
    chunks: Iterable[np.ndarray], plan: list[Chunk], overlap: int
) -> Iterator[np.ndarray]:
    """Cross-fade processed chunks (``plan`` order) into a stream of finished samples.

    ``chunks`` yields the model output for each planned chunk (same length as the chunk).
    Each yielded array is final output; concatenated they have length ``plan[-1].end``.
    Only ``overlap`` samples are held between chunks.
    """
    fade_in, fade_out = _fades(overlap)
    tail: np.ndarray | None = None
    count = 0
    for i, (c, y) in enumerate(zip(plan, chunks, strict=True)):
        count += 1
        y = np.asarray(y, dtype=np.float32).reshape(-1)
        if len(y) != c.end - c.start:
            raise ValueError(
                f"chunk {i} [{c.start}, {c.end}): the model returned {len(y)} samples, "
                f"expected {c.end - c.start} (overlap-add needs length-preserving models)"
            )
        last = i == len(plan) - 1
        if tail is not None:
            y = y.copy()
            y[:overlap] = tail * fade_out + y[:overlap] * fade_in
        if last:
            yield y
            tail = None
        else:
            yield y[: len(y) - overlap]
            tail = y[len(y) - overlap :].copy()
    if count != len(plan):
        raise ValueError(f"got {count} processed chunks for a plan of {len(plan)}")


def apply_chunked(
    wav: np.ndarray, fn: Callable[[np.ndarray], np.ndarray], chunk: int, overlap: int
) -> np.ndarray:
    """In-memory version of :func:`process_file`: ``fn`` over overlapping chunks of ``wav``."""
    wav = np.asarray(wav, dtype=np.float32)
    plan = chunk_plan(len(wav), chunk, overlap)
    outs = overlap_add((fn(wav[c.start : c.end]) for c in plan), plan, overlap)
    return np.concatenate(list(outs))


@dataclass
class ProcessReport:
    input: str
    output: str
    sr: int
    source_sr: int
    resample_method: str | None
    seconds: float
    chunks: int


def process_file(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    fn: Callable[[np.ndarray], np.ndarray],
    sr: int,
    *,
    chunk_seconds: float = 30.0,
    overlap_seconds: float = 0.5,
    method: str = DEFAULT_RESAMPLE,
    subtype: str = "PCM_16",
    progress: bool = False,
    allow_silent: bool = False,
    overwrite: bool = True,
) -> ProcessReport:
    """Run ``fn`` (mono float32 ``[T]`` at ``sr`` → same length) over a file of any length.

    The output is written at ``sr`` through a temporary file that replaces ``out_path``
    only on success. Memory stays O(``chunk_seconds``) however long the input is.
    """
    chunk = int(round(chunk_seconds * sr))
    overlap = int(round(overlap_seconds * sr))
    out_path = Path(out_path)
    ext = out_path.suffix.lower()
    if ext not in _FORMAT_BY_EXT:
        raise UnsupportedAudioError(
            f"{out_path}: cannot write {ext!r}; use one of {SUPPORTED_EXTENSIONS}"
        )
    with AudioStream(in_path, sr, method=method) as stream:
        plan = chunk_plan(stream.frames, chunk, overlap)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(plan), unit="chunk", desc=Path(in_path).name)
        peak = 0.0

        def processed() -> Iterator[np.ndarray]:
            nonlocal peak
            for c in plan:
                x = stream.read(c.start, c.end)
                peak = max(peak, float(np.max(np.abs(x))))
                yield fn(x)
                if bar is not None:
                    bar.update(1)

        fmt = _FORMAT_BY_EXT[ext]
        with atomic_path(out_path, overwrite=overwrite) as tmp:
            with sf.SoundFile(str(tmp), "w", samplerate=sr, channels=1, format=fmt,
                              subtype="VORBIS" if fmt == "OGG" else subtype) as out:
                for block in overlap_add(processed(), plan, overlap):
                    if not np.isfinite(block).all():
                        raise NonFiniteAudioError(f"{in_path}: the model produced NaN/inf samples")
                    out.write(np.clip(block, -1.0, 1.0))
            if peak < SILENCE_PEAK and not allow_silent:
                raise SilentAudioError(
                    f"{in_path}: silent (peak below -80 dBFS); nothing to process"
                )
        if bar is not None:
            bar.close()
        return ProcessReport(
            input=str(in_path),
            output=str(out_path),
            sr=sr,
            source_sr=stream.source_sr,
            resample_method=method if stream.source_sr != sr else None,
            seconds=stream.duration,
            chunks=len(plan),
        )
