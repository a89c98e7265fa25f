"""Enhance speech: any wav in, enhanced wav out.

    python -m speech.enhance noisy.wav clean.wav --checkpoint runs/enhance/cpu
    python -m speech.enhance in_folder/ out_folder/ --checkpoint g_ema.safetensors
    python -m speech.enhance noisy.flac out.wav                # no checkpoint: Wiener filter

Input: any file soundfile reads (wav, flac, ogg), any rate, any channel count, any length:
it is mixed to mono, resampled to the model's 16 kHz with a named method and processed in
overlapping chunks cross-faded by :func:`speech.audio.process_file`, so memory stays flat
(O(chunk)) however long the file is. Output: 16 kHz mono, 16-bit PCM (format from the
extension), written atomically. ``--checkpoint`` takes a training run folder, its
``g_ema.safetensors`` artifact, or a ``checkpoints/step_*.pt`` file; without one the
classical Wiener filter (:mod:`speech.enhance.classical`) runs. A folder is processed
recursively into the same relative paths; files that fail are reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from speech.audio import (
    DEFAULT_RESAMPLE,
    RESAMPLE_METHODS,
    SUPPORTED_EXTENSIONS,
    AudioError,
    process_file,
)

__all__ = ["load_system", "main"]


def load_system(checkpoint: str | None, classical: str, chunk_seconds: float,
                overlap_seconds: float):
    """A trained :class:`~speech.enhance.inference.Enhancer`, or a classical enhancer."""
    if checkpoint is not None:
        from speech.enhance.inference import Enhancer

        return Enhancer.load(checkpoint, chunk_seconds=chunk_seconds,
                             overlap_seconds=overlap_seconds)
    from speech.enhance.classical import ClassicalConfig, ClassicalEnhancer

    return ClassicalEnhancer(ClassicalConfig(method=classical), chunk_seconds=chunk_seconds,
                             overlap_seconds=overlap_seconds)


def _jobs(src: Path, dst: Path) -> list[tuple[Path, Path]]:
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
        return [(p, dst / p.relative_to(src)) for p in files]
    if dst.is_dir():
        return [(src, dst / src.with_suffix(".wav").name)]
    return [(src, dst)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speech.enhance",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="audio file or folder")
    parser.add_argument("output", type=Path, help="output file (or folder)")
    parser.add_argument("--checkpoint", default=None,
                        help="run folder, g_ema.safetensors or checkpoints/step_*.pt")
    parser.add_argument("--classical", choices=("wiener", "specsub"), default="wiener",
                        help="baseline used without --checkpoint (default: wiener)")
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--overlap-seconds", type=float, default=0.5)
    parser.add_argument("--resample", choices=sorted(RESAMPLE_METHODS), default=DEFAULT_RESAMPLE,
                        help="resampler for inputs not at 16 kHz")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-overwrite", action="store_true", help="refuse existing outputs")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not 0 <= args.overlap_seconds < args.chunk_seconds:
        parser.error("need 0 <= --overlap-seconds < --chunk-seconds")
    try:
        jobs = _jobs(args.input, args.output)
        system = load_system(args.checkpoint, args.classical, args.chunk_seconds,
                             args.overlap_seconds)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.checkpoint is None and not args.quiet:
        print(f"note: no --checkpoint given; using the classical {args.classical} filter",
              file=sys.stderr)
    failed = 0
    for src, dst in jobs:
        t0 = time.perf_counter()
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            report = process_file(src, dst, system.enhance_chunk, system.sr,
                                  chunk_seconds=args.chunk_seconds,
                                  overlap_seconds=args.overlap_seconds, method=args.resample,
                                  progress=not args.quiet and sys.stderr.isatty(),
                                  overwrite=not args.no_overwrite)
        except (AudioError, OSError, ValueError) as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            continue
        seconds = time.perf_counter() - t0
        if not args.quiet:
            resampled = (f", resampled from {report.source_sr} Hz ({report.resample_method})"
                         if report.resample_method else "")
            print(f"{src} -> {dst}: {report.seconds:.2f} s of audio{resampled}, "
                  f"{report.chunks} chunk(s), RTF {seconds / max(report.seconds, 1e-9):.3f}")
    if failed:
        print(f"{failed} of {len(jobs)} file(s) failed", file=sys.stderr)
        return 1 if len(jobs) > 1 else 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
