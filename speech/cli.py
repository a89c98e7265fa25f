"""What the file-in/file-out speech CLIs share (``speech.enhance``, ``speech.vc.convert``).

Both take a file or a folder, stream each file through a per-chunk function with
:func:`speech.audio.process_file` (mono, resampled to the model rate, overlapping chunks
cross-faded, flat memory, atomic writes) and report each file's real-time factor. A file
that fails is reported and skipped; the exit code is 2 for a single failed file, 1 when some
files of a folder failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from speech.audio import (
    DEFAULT_RESAMPLE,
    RESAMPLE_METHODS,
    SUPPORTED_EXTENSIONS,
    AudioError,
    ProcessReport,
    process_file,
)

__all__ = ["add_stream_args", "check_stream_args", "file_jobs", "run_jobs"]

ChunkFn = Callable[[np.ndarray], np.ndarray]


def add_stream_args(parser: argparse.ArgumentParser) -> None:
    """Chunking, resampling, threads, overwrite and verbosity options."""
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--overlap-seconds", type=float, default=0.5)
    parser.add_argument("--resample", choices=sorted(RESAMPLE_METHODS), default=DEFAULT_RESAMPLE,
                        help="resampler for inputs not at 16 kHz")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-overwrite", action="store_true", help="refuse existing outputs")
    parser.add_argument("--quiet", action="store_true")


def check_stream_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validate the options of :func:`add_stream_args` and apply ``--threads``."""
    if not 0 <= args.overlap_seconds < args.chunk_seconds:
        parser.error("need 0 <= --overlap-seconds < --chunk-seconds")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


def file_jobs(src: Path, dst: Path, *, suffix: str | None = None) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one file, or a folder's audio files (recursively) into the same
    relative paths under ``dst`` (with ``suffix`` if given, else each input's own)."""
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise ValueError(f"{dst}: input is a folder, so the output must be a folder")
        if dst.resolve() == src.resolve():
            raise ValueError(f"{dst}: the output folder must differ from the input folder")
        files = sorted(p for p in src.rglob("*")
                       if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
                       and dst.resolve() not in p.resolve().parents)
        if not files:
            raise ValueError(f"{src}: no {'/'.join(SUPPORTED_EXTENSIONS)} files in this folder")
        outs = [dst / p.relative_to(src) for p in files]
        return list(zip(files, [o.with_suffix(suffix) if suffix else o for o in outs],
                        strict=True))
    if dst.is_dir():
        return [(src, dst / src.with_suffix(".wav").name)]
    return [(src, dst)]


def run_jobs(jobs: list[tuple[Path, Path]], prepare: Callable[[Path], tuple[ChunkFn, str]],
             sr: int, args: argparse.Namespace) -> int:
    """Process every job; ``prepare(src)`` returns the chunk function and a label for the
    report line (may raise for that file only). Returns the exit code."""
    failed = 0
    for src, dst in jobs:
        t0 = time.perf_counter()
        try:
            fn, label = prepare(src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            report = process_file(src, dst, fn, sr, chunk_seconds=args.chunk_seconds,
                                  overlap_seconds=args.overlap_seconds, method=args.resample,
                                  progress=not args.quiet and sys.stderr.isatty(),
                                  overwrite=not args.no_overwrite)
        except (AudioError, OSError, ValueError) as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            continue
        if not args.quiet:
            print(_describe(src, dst, label, report, time.perf_counter() - t0))
    if failed:
        print(f"{failed} of {len(jobs)} file(s) failed", file=sys.stderr)
        return 1 if len(jobs) > 1 else 2
    return 0


def _describe(src: Path, dst: Path, label: str, report: ProcessReport, seconds: float) -> str:
    resampled = (f", resampled from {report.source_sr} Hz ({report.resample_method})"
                 if report.resample_method else "")
    head = f"{src} -> {dst}: " + (f"{label}, " if label else "")
    return (f"{head}{report.seconds:.2f} s of audio{resampled}, {report.chunks} chunk(s), "
            f"RTF {seconds / max(report.seconds, 1e-9):.3f}")
