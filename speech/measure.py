"""Measurements of the speech foundations (the figures the issue's "must show" asks for).

``python -m speech.measure WHAT [--preset default] [--workers 2] [--out reports/speech]``

WHAT:
  corpus       build time and size of a SynthVoices preset; per-speaker median F0 (Harvest
               and DIO+StoneMask); resemblyzer similarity matrix between speakers and
               nearest-speaker identification accuracy (which pairs are truly distinct)
  ceilings     vocoder analysis→synthesis ceilings (PESQ, MCD) on the parallel test set
  baseline     the noisy test set vs clean: PESQ, STOI, CSIG, CBAK, COVL, SSNR, SI-SDR
  mask-oracle  the same metrics for the best a bounded-mask enhancer can do: the ideal
               ratio mask min(|S|/|X|, 1) applied to the noisy STFT with the noisy phase
               (what speech.enhance's G estimates; its ceiling on this test set)
  vc-baseline  source vs target (default kal → slt) on the parallel test set: MCD-DTW,
               log-F0 RMSE/corr, V/UV error, speaker similarity to target and to source
  vc-oracle    the same pair through parallel-trained frame-wise regressors (speech.vc.oracle):
               the MCD and log-F0 correlation a converter that keeps the source's timing
               could reach, held out over sentences and memorised
  world-rtf    WORLD analysis real-time factor, Harvest vs DIO+StoneMask, one thread
  bad-input    what speech.audio.read_audio and the speech.metrics CLI do with bad files
               (zero-length, text named .wav, 8-bit 8 kHz stereo, 48 kHz, NaN samples,
               silence, .mp3, truncated header, a 30-minute file) and the peak RSS of
               streaming a 1-minute vs a 30-minute 48 kHz file through process_file
  all          everything above

Each writes ``<out>/<what>.json`` (atomically) and prints a summary.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write_json

SR = 16000


def _corpus(preset: str, workers: int | None = None):
    from speech.data.synthvoices import build, load_preset

    return build(load_preset(preset), workers=workers)


def _pool_map(fn: Callable, items: Sequence[Any], workers: int, desc: str) -> list[Any]:
    from tqdm import tqdm

    if workers <= 1:
        return [fn(x) for x in tqdm(items, desc=desc, file=sys.stderr)]
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_one_thread) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=2), total=len(items), desc=desc,
                         file=sys.stderr))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _read(path: str | Path) -> np.ndarray:
    from speech.audio import read_audio

    return read_audio(path, SR).samples


# --------------------------------------------------------------------------- corpus


def _f0_medians(path: str) -> dict[str, Any]:
    from speech.features import world_f0

    x = _read(path).astype(np.float64)
    out = {}
    for method in ("harvest", "dio"):
        start = time.perf_counter()
        f0, _ = world_f0(x, SR, method=method)
        out[method] = {"voiced": f0[f0 > 0].tolist(), "seconds": time.perf_counter() - start}
    out["audio_seconds"] = len(x) / SR
    return out


def measure_corpus(preset: str, workers: int) -> dict[str, Any]:
    from speech.data.synthvoices import VOICES, _disk_bytes
    from speech.metrics import mean_embedding, speaker_embedding, speaker_similarity

    corpus = _corpus(preset, workers)
    m = corpus.manifest
    speakers = corpus.speakers
    # F0: every parallel test utterance, both extractors.
    items = [(s, str(p)) for s in speakers for p in corpus.vc_test(s)]
    res = _pool_map(_f0_medians, [p for _, p in items], workers, "F0")
    f0: dict[str, Any] = {}
    rtf = {"harvest": [0.0, 0.0], "dio": [0.0, 0.0]}
    for (s, _), r in zip(items, res, strict=True):
        for method in ("harvest", "dio"):
            f0.setdefault(s, {}).setdefault(method, []).extend(r[method]["voiced"])
            rtf[method][0] += r[method]["seconds"]
            rtf[method][1] += r["audio_seconds"]
    f0_table = {s: {m_: {"median_hz": round(float(np.median(v)), 1),
                         "p10_hz": round(float(np.percentile(v, 10)), 1),
                         "p90_hz": round(float(np.percentile(v, 90)), 1)}
                    for m_, v in d.items()} for s, d in f0.items()}
    # Speaker embeddings: speaker means from 20 training utterances; rows: the parallel
    # test utterances (never part of any mean).
    train_emb = {s: mean_embedding(speaker_embedding(_read(p)) for p in corpus.vc_train(s)[:20])
                 for s in speakers}
    test_emb = {s: [speaker_embedding(_read(p)) for p in corpus.vc_test(s)] for s in speakers}
    matrix = {a: {b: round(float(np.mean([speaker_similarity(e, train_emb[b])
                                           for e in test_emb[a]])), 4) for b in speakers}
              for a in speakers}
    means = {a: {b: round(speaker_similarity(train_emb[a], train_emb[b]), 4) for b in speakers}
             for a in speakers}
    correct = total = 0
    confusions: dict[str, dict[str, int]] = {}
    for a in speakers:
        for e in test_emb[a]:
            best = max(speakers, key=lambda b: speaker_similarity(e, train_emb[b]))
            confusions.setdefault(a, {}).setdefault(best, 0)
            confusions[a][best] += 1
            correct += best == a
            total += 1
    margins = {}
    for a in speakers:
        others = [matrix[a][b] for b in speakers if b != a]
        margins[a] = round(matrix[a][a] - max(others), 4)
    return {
        "preset": preset,
        "folder": str(corpus.root),
        "build_seconds": m["build_seconds"],
        "build_workers": m["workers"],
        "synthesis_seconds": m["synthesis_seconds"],
        "mixing_seconds": m["mixing_seconds"],
        "megabytes": round(_disk_bytes(corpus.root) / 1e6, 1),
        "clean_speech_hours": m["speech_hours"],
        "enhance": m["enhance"],
        "voices": {s: VOICES[s].description for s in speakers},
        "f0": f0_table,
        "f0_rtf_on_corpus": {k: round(v[0] / v[1], 4) for k, v in rtf.items()},
        "similarity_utterance_to_speaker_mean": matrix,
        "similarity_between_speaker_means": means,
        "identification_accuracy": round(correct / total, 4),
        "identification_confusions": confusions,
        "own_minus_best_other_margin": margins,
        "protocol": "resemblyzer 0.1.4 GE2E embeddings; speaker mean = normalised mean of "
                    "20 training utterances; rows average the cosine of each parallel-test "
                    "utterance with each speaker mean",
    }


# --------------------------------------------------------------------------- ceilings


def _ceiling_one(path: str) -> dict[str, dict[str, float]]:
    from speech.metrics import mcd_dtw, pesq_wb, vc_frames
    from speech.vocoders import ROUNDTRIPS, roundtrip

    x = _read(path)
    ref = vc_frames(x, SR)
    out = {}
    for name in ROUNDTRIPS:
        y = roundtrip(x, SR, name)
        d = mcd_dtw(ref, vc_frames(y, SR))
        out[name] = {"pesq_wb": pesq_wb(x, y, SR), "mcd": d["mcd"],
                     "logf0_rmse_cents": d["logf0_rmse_cents"], "f0_gpe": d["f0_gpe"],
                     "vuv_error": d["vuv_error"]}
    return out


def measure_ceilings(preset: str, workers: int, per_speaker: int | None) -> dict[str, Any]:
    from speech.metrics import summarize
    from speech.vocoders import ROUNDTRIPS

    corpus = _corpus(preset, workers)
    items = [(s, str(p)) for s in corpus.speakers for p in corpus.vc_test(s)[:per_speaker]]
    res = _pool_map(_ceiling_one, [p for _, p in items], workers, "round trips")
    out: dict[str, Any] = {"preset": preset, "utterances": len(items)}
    for name in ROUNDTRIPS:
        out[name] = {k: round(v["mean"], 3) for k, v in summarize([r[name] for r in res]).items()}
        out[name]["by_speaker"] = {
            s: {k: round(v["mean"], 3) for k, v in summarize(
                [r[name] for (s2, _), r in zip(items, res, strict=True) if s2 == s]).items()}
            for s in corpus.speakers}
    out["protocol"] = ("PESQ: ITU-T P.862.2 wb (pesq 0.0.4); MCD: mcd_dtw_sptk24 (WORLD Harvest "
                       "CheapTrick -> SPTK mcep D=24, alpha 0.41, DTW, c0 excluded)")
    return out


# --------------------------------------------------------------------------- baseline


def _enh_one(pair: tuple[str, str]) -> dict[str, float]:
    from speech.metrics import enhancement_metrics

    clean, noisy = _read(pair[0]), _read(pair[1])
    return enhancement_metrics(clean, noisy, SR)


def measure_baseline(preset: str, workers: int) -> dict[str, Any]:
    return {**_score_test_set(preset, workers, _enh_one, "noisy_vs_clean"),
            "voicebank_demand_noisy_reference": {"pesq_wb": 1.97, "stoi": 0.91, "csig": 3.35,
                                                 "cbak": 2.44, "covl": 2.63, "ssnr": 1.68}}


def _score_test_set(preset: str, workers: int, score: Callable[[tuple[str, str]], dict],
                    name: str) -> dict[str, Any]:
    """``score((clean, noisy))`` over the enhancement test set: means (and 95 % CIs),
    overall and per noise family / SNR."""
    from speech.data.voicebank_demand import VoiceBankDemand
    from speech.metrics import summarize

    corpus = _corpus(preset, workers)
    ds = VoiceBankDemand(corpus.enhance_root, "test")
    pairs = [tuple(str(p) for p in ds.paths(i)) for i in range(len(ds))]
    rows = _pool_map(score, pairs, workers, name)
    ids, meta = ds.ids, {m["id"]: m for m in corpus.mixtures("test")}

    def means(sel: list[dict[str, float]]) -> dict[str, float]:
        return {k: round(v["mean"], 3) for k, v in summarize(sel).items()}

    groups: dict[str, dict[str, Any]] = {"by_family": {}, "by_snr_db": {}}
    for group, field in (("by_family", "family"), ("by_snr_db", "snr")):
        for value in sorted({m[field] for m in meta.values()}):
            groups[group][str(value)] = means(
                [r for uid, r in zip(ids, rows, strict=True) if meta[uid][field] == value])
    summary = summarize(rows)
    return {"preset": preset, "mixtures": len(rows),
            name: {k: round(v["mean"], 3) for k, v in summary.items()},
            "ci95": {k: round(v["ci95"], 3) for k, v in summary.items()}, **groups}


def _oracle_one(pair: tuple[str, str]) -> dict[str, float]:
    import torch

    from speech.features import istft_logmag, stft_logmag
    from speech.metrics import enhancement_metrics

    clean, noisy = _read(pair[0]), _read(pair[1])
    s, x = stft_logmag(clean), stft_logmag(noisy)
    log_mask = torch.clamp(s.logmag - x.logmag, max=0.0)  # ln min(|S| / |X|, 1)
    out = istft_logmag(x.logmag + log_mask, x.phase, x.length).numpy()
    return enhancement_metrics(clean, out, SR)


def measure_mask_oracle(preset: str, workers: int) -> dict[str, Any]:
    return {"mask": "ideal ratio mask min(|S|/|X|, 1), noisy phase, STFT 512/128 Hann",
            **_score_test_set(preset, workers, _oracle_one, "oracle_vs_clean")}


# --------------------------------------------------------------------------- VC baseline


def _vc_pair(pair: tuple[str, str]) -> dict[str, float]:
    from speech.metrics import vc_metrics

    return vc_metrics(_read(pair[1]), _read(pair[0]), SR)


def measure_vc_baseline(preset: str, workers: int, source: str, target: str) -> dict[str, Any]:
    from speech.metrics import mean_embedding, speaker_embedding, speaker_similarity, summarize

    corpus = _corpus(preset, workers)
    pairs = [(str(a), str(b)) for a, b in corpus.parallel_pairs(source, target)]
    rows = _pool_map(_vc_pair, pairs, workers, f"{source}->{target}")
    emb = {s: mean_embedding(speaker_embedding(_read(p)) for p in corpus.vc_train(s)[:40])
           for s in (source, target)}
    for row, (src, _) in zip(rows, pairs, strict=True):
        e = speaker_embedding(_read(src))
        row["spk_sim_target"] = speaker_similarity(e, emb[target])
        row["spk_sim_source"] = speaker_similarity(e, emb[source])
    # The same numbers for target vs target-mean: what a perfect conversion would score.
    tgt_self = [speaker_similarity(speaker_embedding(_read(b)), emb[target]) for _, b in pairs]
    summary = summarize(rows)
    return {
        "preset": preset, "source": source, "target": target, "pairs": len(rows),
        "source_vs_target": {k: round(v["mean"], 3) for k, v in summary.items()},
        "ci95": {k: round(v["ci95"], 3) for k, v in summary.items()},
        "target_utterances_vs_target_mean": round(float(np.mean(tgt_self)), 4),
        "protocol": "MCD mcd_dtw_sptk24; log-F0 on the DTW path (Harvest 71-800 Hz); speaker "
                    "means from 40 training utterances (resemblyzer)",
    }


def _vc_frames(path: str) -> Any:  # speech.metrics.VCFrames
    from speech.metrics import vc_frames

    return vc_frames(_read(path), SR)


def measure_vc_oracle(preset: str, workers: int, source: str, target: str) -> dict[str, Any]:
    from speech.vc.oracle import parallel_oracle

    pairs = _corpus(preset, workers).parallel_pairs(source, target)
    frames = _pool_map(_vc_frames, [str(p) for pair in pairs for p in pair], workers,
                       f"features {source}, {target}")
    result = parallel_oracle(frames[0::2], frames[1::2])
    return {"preset": preset, "source": source, "target": target, **result,
            "protocol": "mcd_dtw_sptk24 on the regressors' cepstra (feature domain, no "
                        "vocoder); Harvest 71-800 Hz; trained on the parallel test sentences"}


# --------------------------------------------------------------------------- WORLD RTF


def _rtf_one(path: str) -> dict[str, float]:
    from speech.features import world_analyze, world_f0

    x = _read(path).astype(np.float64)
    out = {"audio": len(x) / SR}
    for method in ("harvest", "dio"):
        t = time.perf_counter()
        world_f0(x, SR, method=method)
        out[f"{method}_f0"] = time.perf_counter() - t
        t = time.perf_counter()
        world_analyze(x, SR, f0_method=method)
        out[f"{method}_full"] = time.perf_counter() - t
    return out


def measure_world_rtf(preset: str, n: int = 20) -> dict[str, Any]:
    from speech.features import bench_world

    _one_thread()
    corpus = _corpus(preset)
    paths = [str(p) for s in corpus.speakers for p in corpus.vc_test(s)[: max(1, n // 5)]]
    rows = [_rtf_one(p) for p in paths]
    audio = sum(r["audio"] for r in rows)
    corpus_rtf = {k: round(sum(r[k] for r in rows) / audio, 4)
                  for k in ("harvest_f0", "harvest_full", "dio_f0", "dio_full")}
    return {"synthetic_signal": bench_world(), "synthvoices_utterances": len(rows),
            "synthvoices_audio_seconds": round(audio, 1), "synthvoices_rtf": corpus_rtf,
            "threads": 1, "note": "full = F0 + CheapTrick + D4C; dio = DIO + StoneMask"}


# --------------------------------------------------------------------------- bad input


_BAD_INPUT_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from speech.audio import process_file, resample
resample(np.zeros(48000, dtype=np.float32), 48000, 16000)  # warm the resampler
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
rep = process_file(sys.argv[1], sys.argv[2], lambda a: a * 0.5, 16000)
print(json.dumps({"seconds": time.perf_counter() - t, "chunks": rep.chunks,
                  "rss_before_mb": before / 1024,
                  "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _stream_pass(path: Path, out: Path) -> dict[str, Any]:
    """``process_file`` over ``path`` in a fresh process (under ``/usr/bin/time -v`` when
    it exists, whose peak RSS covers the whole process lifetime)."""
    import soundfile as sf

    timer = ["/usr/bin/time", "-v"] if Path("/usr/bin/time").is_file() else []
    proc = subprocess.run([*timer, sys.executable, "-c", _BAD_INPUT_CHILD, str(path), str(out)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode != 0:
        raise RuntimeError(f"streaming child failed: {proc.stderr[-2000:]}")
    stream = json.loads(proc.stdout.strip().splitlines()[-1])
    info = sf.info(path)
    row = {"input": f"{info.duration / 60:g} min, {info.samplerate} Hz {info.subtype}",
           "seconds": round(stream["seconds"], 2), "chunks": stream["chunks"],
           "rss_after_imports_mb": round(stream["rss_before_mb"], 1),
           "rss_peak_mb": round(stream["rss_peak_mb"], 1),
           "whole_file_float32_mb": round(info.frames * 4 / 1e6, 1),
           "output": f"{sf.info(out).frames} frames at {sf.info(out).samplerate} Hz"}
    for line in proc.stderr.splitlines():
        if "Maximum resident set size" in line:
            row["time_v_max_rss_mb"] = round(int(line.split(":")[-1]) / 1024, 1)
    return row


def _cli_outcome(ref: Path, deg: Path, tmp: Path) -> dict[str, Any]:
    """What ``python -m speech.metrics ref deg --json`` says: the scores, or its error line."""
    proc = subprocess.run([sys.executable, "-m", "speech.metrics", str(ref), str(deg), "--json"],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode == 0:
        out = json.loads(proc.stdout)
        return {"exit": 0, **{k: round(out[k], 3) for k in ("pesq_wb", "stoi", "si_sdr")},
                "notes": [n.replace(str(tmp) + "/", "") for n in out["notes"]]}
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    last = errors[-1] if errors else (proc.stderr.strip().splitlines() or [""])[-1]
    return {"exit": proc.returncode, "message": last.replace(str(tmp) + "/", "")}


def measure_bad_input() -> dict[str, Any]:
    """Each bad file through ``read_audio`` and the ``speech.metrics`` CLI (as the degraded
    file against a clean reference, and as the reference), plus flat-memory streaming of
    a 1-minute and a 30-minute 48 kHz file."""
    import soundfile as sf

    from speech.audio import AudioError, read_audio, resample
    from speech.features import synthetic_voice

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        voice = (0.5 * synthetic_voice(SR, 3.0, 0)["wav"]).astype(np.float32)  # speech-like
        ref = d / "ref.wav"
        sf.write(ref, voice, SR, subtype="FLOAT")
        cases: dict[str, Path] = {}
        (d / "empty.wav").write_bytes(b"")
        cases["zero-length file"] = d / "empty.wav"
        (d / "notes.wav").write_text("this is a text file, not audio\n")
        cases["text file named .wav"] = d / "notes.wav"
        v8 = resample(voice, SR, 8000)
        sf.write(d / "u8_8k_stereo.wav", np.stack([v8, v8], 1), 8000, subtype="PCM_U8")
        cases["8-bit 8 kHz stereo"] = d / "u8_8k_stereo.wav"
        sf.write(d / "r48k.wav", resample(voice, SR, 48000), 48000, subtype="PCM_16")
        cases["48 kHz"] = d / "r48k.wav"
        nan = voice.copy()
        nan[5000:5010] = np.nan
        sf.write(d / "nan.wav", nan, SR, subtype="FLOAT")
        cases["NaN samples"] = d / "nan.wav"
        sf.write(d / "silent.wav", np.zeros(len(voice)), SR)
        cases["silent file"] = d / "silent.wav"
        (d / "song.mp3").write_bytes(b"ID3")
        cases["unsupported extension (.mp3)"] = d / "song.mp3"
        truncated = d / "truncated.wav"
        sf.write(truncated, voice, SR)
        truncated.write_bytes(truncated.read_bytes()[:30])
        cases["truncated header"] = truncated
        # 30 minutes (and 1 minute, to compare memory) at 48 kHz: read_audio refuses it
        # (max_seconds) and process_file streams it in flat memory.
        rng = np.random.default_rng(0)
        block = 0.2 * np.sin(2 * np.pi * 330 * np.arange(48000 * 10) / 48000)
        for minutes in (1, 30):
            path = d / f"long_{minutes}min_48k.wav"
            with sf.SoundFile(path, "w", samplerate=48000, channels=1, subtype="PCM_16") as f:
                for _ in range(6 * minutes):
                    f.write(block + 0.01 * rng.standard_normal(len(block)))
        cases["30-minute file (48 kHz)"] = d / "long_30min_48k.wav"
        for name, path in cases.items():
            try:
                a = read_audio(path, SR)
                row: dict[str, Any] = {
                    "outcome": "accepted", "sr": a.sr, "source_sr": a.source_sr,
                    "channels": a.source_channels, "format": a.source_format,
                    "resample_method": a.resample_method, "notes": a.notes,
                    "seconds": round(a.duration, 3)}
            except (AudioError, FileNotFoundError) as err:
                row = {"outcome": "refused", "error": type(err).__name__,
                       "message": str(err).replace(str(d) + "/", "")}
            results[name] = {"read_audio": row,
                             "cli_as_degraded": _cli_outcome(ref, path, d),
                             "cli_as_reference": _cli_outcome(path, ref, d)}
        results["30-minute file (48 kHz)"]["process_file"] = {
            f"{m}_min": _stream_pass(d / f"long_{m}min_48k.wav", d / f"out_{m}.wav")
            for m in (1, 30)}
    return results


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speech.measure", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["corpus", "ceilings", "baseline", "mask-oracle",
                                         "vc-baseline", "vc-oracle", "world-rtf", "bad-input",
                                         "all"])
    parser.add_argument("--preset", default="default", help="SynthVoices preset (default)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--per-speaker", type=int, default=None,
                        help="ceilings: parallel test utterances per speaker (default all)")
    parser.add_argument("--source", default="kal", help="vc-baseline/-oracle source speaker")
    parser.add_argument("--target", default="slt", help="vc-baseline/-oracle target speaker")
    parser.add_argument("--out", type=Path, default=Path("reports/speech"))
    args = parser.parse_args(argv)
    _one_thread()
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "corpus": lambda: measure_corpus(args.preset, args.workers),
        "ceilings": lambda: measure_ceilings(args.preset, args.workers, args.per_speaker),
        "baseline": lambda: measure_baseline(args.preset, args.workers),
        "mask-oracle": lambda: measure_mask_oracle(args.preset, args.workers),
        "vc-baseline": lambda: measure_vc_baseline(args.preset, args.workers, args.source,
                                                   args.target),
        "vc-oracle": lambda: measure_vc_oracle(args.preset, args.workers, args.source,
                                               args.target),
        "world-rtf": lambda: measure_world_rtf(args.preset),
        "bad-input": measure_bad_input,
    }
    todo = list(jobs) if args.what == "all" else [args.what]
    for name in todo:
        start = time.perf_counter()
        result = jobs[name]()
        result["measured_seconds"] = round(time.perf_counter() - start, 1)
        result["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
        path = atomic_write_json(args.out / f"{name}.json", _finite(result))
        print(json.dumps(_finite(result), indent=1))
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj



if __name__ == "__main__":
    raise SystemExit(main())
