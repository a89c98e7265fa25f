"""Convert a voice: any wav in, the target speaker's voice out.

    python -m speech.vc.convert --checkpoint runs/vc/cyclegan-cpu --target slt in.wav out.wav
    python -m speech.vc.convert --checkpoint RUN --target f3 --source kal in_folder/ out_folder/
    python -m speech.vc.convert --checkpoint RUN --list-speakers

Input: any file soundfile reads (wav, flac, ogg), any rate, any channel count, any length:
it is mixed to mono, resampled to the model's 16 kHz with a named method and converted in
overlapping chunks cross-faded by :func:`speech.audio.process_file` (memory stays flat).
Per chunk: WORLD analysis (``--f0-method``, default the model's; DIO is several times faster
than Harvest; ``--ap-stride``: D4C aperiodicity every K-th frame), G on the
speaker-normalised coded envelope, log-Gaussian F0 transform, WORLD synthesis with the
source aperiodicity. ``--source`` names the input's training speaker (its statistics
normalise the input); without it CycleGAN-VC2 uses the pair's other speaker and StarGAN-VC
the training speaker with the nearest mean ln F0. Output: 16 kHz mono,
16-bit PCM, written atomically. A folder is processed recursively into the same relative
paths; files that fail are reported and skipped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from speech.audio import AudioStream
from speech.cli import add_stream_args, check_stream_args, file_jobs, run_jobs

__all__ = ["main"]


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
    parser.add_argument("--ap-stride", type=int, default=None, metavar="K",
                        help="estimate the (copied) aperiodicity on every K-th 5-ms frame and "
                             "interpolate (default: the model's, 4; 1 = every frame, slower)")
    parser.add_argument("--list-speakers", action="store_true", help="print speakers and exit")
    add_stream_args(parser)
    args = parser.parse_args(argv)
    check_stream_args(parser, args)

    from speech.vc.inference import Converter

    try:
        conv = Converter.load(args.checkpoint, f0_method=args.f0_method,
                              ap_stride=args.ap_stride,
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
        jobs = file_jobs(args.input, args.output, suffix=".wav")
        if args.target not in conv.speakers:
            raise ValueError(f"unknown target speaker {args.target!r}; this model converts "
                             f"to {', '.join(conv.speakers)}")
        if args.source is not None:
            conv.resolve(args.source, args.target)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def prepare(src: Path):
        source = args.source
        if source is None and conv.kind == "stargan":
            # Guess from the first chunk only, so memory stays flat on long files.
            with AudioStream(src, conv.sr, method=args.resample) as stream:
                head = stream.read(0, min(stream.frames, int(conv.chunk_seconds * conv.sr)))
            source = conv.resolve(None, args.target, head)
        else:
            source = conv.resolve(source, args.target)
        return (lambda w: conv.convert_chunk(w, source, args.target),
                f"{source} -> {args.target}, F0 {conv.f0_method}")

    return run_jobs(jobs, prepare, conv.sr, args)

if __name__ == "__main__":
    raise SystemExit(main())
