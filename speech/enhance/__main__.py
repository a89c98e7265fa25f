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
from collections.abc import Sequence
from pathlib import Path

from speech.cli import add_stream_args, check_stream_args, file_jobs, run_jobs

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
    add_stream_args(parser)
    args = parser.parse_args(argv)
    check_stream_args(parser, args)
    try:
        jobs = file_jobs(args.input, args.output)
        system = load_system(args.checkpoint, args.classical, args.chunk_seconds,
                             args.overlap_seconds)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.checkpoint is None and not args.quiet:
        print(f"note: no --checkpoint given; using the classical {args.classical} filter",
              file=sys.stderr)
    return run_jobs(jobs, lambda src: (system.enhance_chunk, ""), system.sr, args)


if __name__ == "__main__":
    raise SystemExit(main())
