"""Speed of the enhancement CLI: real-time factor on one thread and peak memory.

:func:`bench_enhance` (registered by ``scripts/bench.py``) writes a long noisy 16 kHz file
(default 10 minutes: a vowel-like synthetic voice from :func:`speech.features.synthetic_voice`
plus white noise at 5 dB SNR, repeated), exports a generator with the ``cpu-long`` preset's widths
(untrained: speed does not depend on the weights) and runs the real CLI,
``python -m speech.enhance in.wav out.wav --checkpoint ... --threads 1``, in a fresh process
per repeat. Protocol (METRICS.md "Speed"): RTF = wall time / audio duration, end to end
(file in → file out, including interpreter start-up and torch import), median over
``repeats`` after one warm-up run on a short file; one intra-op thread
(``OMP_NUM_THREADS=1``), fp32. Peak memory is the child's maximum resident set size
(``wait4`` rusage); the same figure for a 10-second file shows that memory does not grow
with the length of the input (chunked overlap-add), and ``import_torch_rss_mb`` (a process
that only imports torch) how much of it is the torch runtime itself.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from common.benchmark import run_timed

__all__ = ["bench_enhance", "run_cli"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def _write_noisy(path: Path, seconds: float, sr: int = 16000) -> None:
    """A ``seconds`` long noisy file, written block by block (never whole in memory)."""
    from speech.features import synthetic_voice

    rng = np.random.default_rng(0)
    block = synthetic_voice(sr, 10.0, seed=0)["wav"].astype(np.float32)
    noise_rms = np.sqrt(np.mean(block**2)) / 10 ** (5 / 20)  # 5 dB SNR
    total = int(round(seconds * sr))
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        done = 0
        while done < total:
            n = min(len(block), total - done)
            x = block[:n] + noise_rms * rng.standard_normal(n).astype(np.float32)
            f.write(np.clip(x, -1.0, 1.0))
            done += n


def run_cli(args: list[str], threads: int = 1) -> dict[str, float]:
    """Run ``python -m speech.enhance *args`` in a fresh process: wall seconds, peak RSS (MB)."""
    return run_timed([sys.executable, "-m", "speech.enhance", *args, "--threads", str(threads),
                      "--quiet"], threads=threads)


def _export_generator(path: Path, preset: Path) -> None:
    from common.checkpoint import export_weights
    from common.config import load_config, to_dict
    from speech.enhance.config import EnhanceConfig
    from speech.enhance.inference import build_generator

    cfg = load_config(EnhanceConfig, preset)
    g = build_generator(cfg.model).eval()
    export_weights(path, g, {"entry": "speech.enhance", "model": to_dict(cfg.model),
                             "feature": to_dict(cfg.feature), "d_head": cfg.model.d_head,
                             "step": 0, "note": "untrained, for speed measurements"})


def bench_enhance(minutes: float = 10.0, repeats: int = 3, threads: int = 1,
                  preset: str | Path = REPO_ROOT / "configs/speech/enhance/cpu-long.yaml"
                  ) -> dict[str, Any]:
    """CLI RTF and peak memory for a ``minutes`` long file (model and Wiener baseline)."""
    out: dict[str, Any] = {"threads": threads, "dtype": "fp32", "repeats": repeats,
                           "audio_seconds": minutes * 60, "chunk_seconds": 10.0,
                           "preset": Path(preset).name}
    with tempfile.TemporaryDirectory(prefix="bench-enhance-") as tmp:
        tmp = Path(tmp)
        long_wav, short_wav = tmp / "long.wav", tmp / "short.wav"
        _write_noisy(long_wav, minutes * 60)
        _write_noisy(short_wav, 10.0)
        art = tmp / "g.safetensors"
        _export_generator(art, Path(preset))
        out["import_torch_rss_mb"] = round(
            run_timed([sys.executable, "-c", "import torch"], threads=threads)["peak_rss_mb"], 1)
        systems = {"model": ["--checkpoint", str(art)], "wiener": ["--classical", "wiener"]}
        for name, extra in systems.items():
            short = run_cli([str(short_wav), str(tmp / "short_out.wav"), *extra], threads)
            runs = [run_cli([str(long_wav), str(tmp / "long_out.wav"), *extra], threads)
                    for _ in range(repeats)]
            seconds = statistics.median(r["seconds"] for r in runs)
            out[name] = {
                "rtf": round(seconds / (minutes * 60), 4),
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1),
                "peak_rss_mb_10s_file": round(short["peak_rss_mb"], 1),
                "seconds_10s_file": round(short["seconds"], 2),  # ≈ start-up cost
            }
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(bench_enhance(*(float(a) for a in sys.argv[1:2])), indent=2))
