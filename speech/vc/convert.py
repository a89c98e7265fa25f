"""Convert a voice: any wav in, the target speaker's voice out.

    python -m speech.vc.convert --checkpoint runs/vc/cyclegan-cpu --target slt in.wav out.wav
    python -m speech.vc.convert --checkpoint RUN --target f3 --source kal in_folder/ out_folder/
    python -m speech.vc.convert --checkpoint RUN --list-speakers

Input: any file soundfile reads (wav, flac, ogg), any rate, any channel count, any length:
it is mixed to mono, resampled to the model's 16 kHz with a named method and converted in
overlapping chunks cross-faded by :func:`speech.audio.process_file` (memory stays flat).
Per chunk: WORLD analysis (``--f0-method``, default the model's; DIO is several times faster
than Harvest), G on the speaker-normalised coded envelope, log-Gaussian F0 transform, WORLD
synthesis with the source aperiodicity. ``--source`` names the input's training speaker
(its statistics normalise the input); without it CycleGAN-VC2 uses the pair's other speaker
and StarGAN-VC the training speaker with the nearest mean ln F0. Output: 16 kHz mono,
16-bit PCM, written atomically. A folder is processed recursively into the same relative
paths; files that fail are reported and skipped.
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
    AudioStream,
    process_file,
)

__all__ = ["main"]


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
        return [(p, (dst / p.relative_to(src)).with_suffix(".wav")) for p in files]
    if dst.is_dir():
        return [(src, dst / src.with_suffix(".wav").name)]
    return [(src, dst)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speech.vc.convert",
                                     description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, nargs="?", help="audio file or folder")
    parser.add_argument("output", type=Path, nargs="?", help="output file (or folder)")
    parser.add_argument("--checkpoint", required=True,
                        help="run folder, g_ema.safetensors or checkpoints/step_*.pt")
    parser.add_argument("--target", help="target speaker")
    parser.add_argument("--source", default=None, help="source speaker (default: see above)")
    parser.add_argument("--f0-method", choices=("harvest", "dio"), default=None,
                        help="F0 extractor at conversion time (default: the model's)")
    parser.add_argument("--list-speakers", action="store_true", help="print speakers and exit")
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--overlap-seconds", type=float, default=0.5)
    parser.add_argument("--resample", choices=sorted(RESAMPLE_METHODS), default=DEFAULT_RESAMPLE,
                        help="resampler for inputs not at 16 kHz")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--no-overwrite", action="store_true", help="refuse existing outputs")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from speech.vc.inference import Converter

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not 0 <= args.overlap_seconds < args.chunk_seconds:
        parser.error("need 0 <= --overlap-seconds < --chunk-seconds")
    try:
        conv = Converter.load(args.checkpoint, f0_method=args.f0_method,
                              chunk_seconds=args.chunk_seconds,
                              overlap_seconds=args.overlap_seconds)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.list_speakers:
        print(f"{conv.kind}: {' '.join(conv.speakers)}")
        return 0
    if args.input is None or args.output is None or args.target is None:
        parser.error("give INPUT OUTPUT and --target (or --list-speakers)")
    try:
        jobs = _jobs(args.input, args.output)
        if args.target not in conv.speakers:
            raise ValueError(f"unknown target speaker {args.target!r}; this model converts "
                             f"to {', '.join(conv.speakers)}")
        if args.source is not None:
            conv.resolve(args.source, args.target)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    failed = 0
    for src, dst in jobs:
        t0 = time.perf_counter()
        try:
            source = args.source
            if source is None and conv.kind == "stargan":
                # Guess from the first chunk only, so memory stays flat on long files.
                with AudioStream(src, conv.sr, method=args.resample) as stream:
                    head = stream.read(0, min(stream.frames, int(conv.chunk_seconds * conv.sr)))
                source = conv.resolve(None, args.target, head)
            else:
                source = conv.resolve(source, args.target)
            dst.parent.mkdir(parents=True, exist_ok=True)
            report = process_file(src, dst,
                                  lambda w, s=source: conv.convert_chunk(w, s, args.target),
                                  conv.sr, chunk_seconds=args.chunk_seconds,
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
            print(f"{src} -> {dst}: {source} -> {args.target}, {report.seconds:.2f} s of audio"
                  f"{resampled}, {report.chunks} chunk(s), F0 {conv.f0_method}, "
                  f"RTF {seconds / max(report.seconds, 1e-9):.3f}")
    if failed:
        print(f"{failed} of {len(jobs)} file(s) failed", file=sys.stderr)
        return 1 if len(jobs) > 1 else 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
