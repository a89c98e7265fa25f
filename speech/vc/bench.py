"""Speed of the VC CLI: end-to-end real-time factor on one thread, per F0 extractor.

:func:`bench_vc` writes a ``seconds`` long 16 kHz file (the vowel-like synthetic voice of
:func:`speech.features.synthetic_voice`, repeated), exports a generator with a preset's
widths (untrained: speed does not depend on the weights; default the ``cyclegan-cpu`` preset)
and runs the real CLI, ``python -m speech.vc.convert --checkpoint ... --target slt in.wav
out.wav --threads 1 --f0-method M``, in a fresh process per repeat, for M = DIO (+ StoneMask)
and Harvest. Protocol (METRICS.md "Speed"): RTF = wall time / audio duration, end to end
(file in → file out: interpreter start-up, torch import, WORLD analysis, G, WORLD synthesis),
median over ``repeats`` after one warm-up run; one intra-op thread (``OMP_NUM_THREADS=1``),
fp32. ``startup_seconds`` is the same command on a 1-second file (≈ the fixed cost: about 5 s
of interpreter, torch and model start-up, which is why the default file is two minutes long).
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from common.benchmark import run_timed

__all__ = ["bench_vc"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write_voice(path: Path, seconds: float, sr: int = 16000) -> None:
    from speech.features import synthetic_voice

    block = synthetic_voice(sr, 4.0, seed=0)["wav"].astype(np.float32)
    reps = int(np.ceil(seconds * sr / len(block)))
    sf.write(str(path), np.tile(block, reps)[: int(round(seconds * sr))], sr, subtype="PCM_16")


def _export(path: Path, preset: Path) -> None:
    from common.checkpoint import export_weights
    from common.config import load_config, to_dict
    from speech.features import F0Stats, NormStats
    from speech.vc.config import VCConfig
    from speech.vc.features import SpeakerStats
    from speech.vc.inference import build_generator

    cfg = load_config(VCConfig, preset)
    g = build_generator(cfg.model, cfg.feature, len(cfg.data.speakers)).eval()
    d = cfg.feature.sp_dim
    stats = {s: SpeakerStats(NormStats(np.zeros(d), np.ones(d), 1), F0Stats(5.0, 0.2, 100))
             for s in cfg.data.speakers}
    export_weights(path, g, {"entry": "speech.vc", "model": to_dict(cfg.model),
                             "feature": to_dict(cfg.feature), "speakers": cfg.data.speakers,
                             "stats": {k: v.to_dict() for k, v in stats.items()}, "step": 0,
                             "note": "untrained, for speed measurements"})


def bench_vc(seconds: float = 120.0, repeats: int = 3, threads: int = 1,
             preset: str | Path = REPO_ROOT / "configs/speech/vc/cyclegan-cpu.yaml",
             target: str = "slt") -> dict[str, Any]:
    """CLI RTF per F0 extractor (``dio`` = DIO + StoneMask, ``harvest``) and peak memory."""

    out: dict[str, Any] = {"threads": threads, "dtype": "fp32", "repeats": repeats,
                           "audio_seconds": seconds, "chunk_seconds": 10.0,
                           "preset": Path(preset).name, "target": target,
                           "pipeline": "WORLD analysis + G + WORLD synthesis"}
    with tempfile.TemporaryDirectory(prefix="bench-vc-") as tmp:
        tmp = Path(tmp)
        long_wav, short_wav = tmp / "long.wav", tmp / "short.wav"
        _write_voice(long_wav, seconds)
        _write_voice(short_wav, 1.0)
        art = tmp / "g.safetensors"
        _export(art, Path(preset))

        def cli(src: Path, method: str) -> dict[str, float]:
            return run_timed([sys.executable, "-m", "speech.vc.convert", str(src),
                         str(tmp / "out.wav"), "--checkpoint", str(art), "--target", target,
                         "--f0-method", method, "--threads", str(threads), "--quiet"],
                             threads=threads)

        for method in ("dio", "harvest"):
            short = cli(short_wav, method)  # warm-up, and the fixed start-up cost
            runs = [cli(long_wav, method) for _ in range(repeats)]
            secs = statistics.median(r["seconds"] for r in runs)
            out[f"f0_{method}"] = {
                "extractor": "DIO + StoneMask" if method == "dio" else "Harvest",
                "rtf": round(secs / seconds, 4),
                "seconds": round(secs, 2),
                "startup_seconds": round(short["seconds"], 2),
                "rtf_without_startup": round(max(secs - short["seconds"], 0.0) / seconds, 4),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
            }
    return out


if __name__ == "__main__":
    print(json.dumps(bench_vc(*(float(a) for a in sys.argv[1:2])), indent=2))
