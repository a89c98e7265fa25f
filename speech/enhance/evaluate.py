"""Evaluate enhancement systems on a test set: eval.json, a W&B table, a listening page.

    python -m speech.enhance.evaluate --run-dir runs/enhance/cpu-combined
    python -m speech.enhance.evaluate --run-dir RUN --system l1=runs/enhance/cpu-none
    python -m speech.enhance.evaluate --test-root DIR --out DIR --system gan=g_ema.safetensors

Systems: ``noisy`` (the unprocessed input), the classical ``wiener`` / ``specsub``
(:mod:`speech.enhance.classical`), the run's own EMA generator (``model``) and any further
trained generator given by ``--system NAME=PATH`` (e.g. the L1-only run, ``d_head=none``).
Every system runs through the same chunked ``enhance(wav)`` path as the CLI.

Metrics per utterance (METRICS.md, :func:`speech.metrics.enhancement_metrics`): WB PESQ
(P.862.2), STOI, CSIG/CBAK/COVL (Hu & Loizou 2008), SSNR, SI-SDR. ``eval.json`` holds the
means, flat: ``eval/<system>/<metric>`` (plus ``eval/n_utterances``); ``eval_rows.json``
the per-utterance rows and mean / std / 95 % CI per system. Baseline scores depend only on
the test files and the baseline's parameters, so they are cached under a key of both
(``<cache>/enhance/scores/<key>.json``). ``listen/index.html`` plays the first clips of
every system next to their spectrograms; the same clips go to W&B as a table.
"""

from __future__ import annotations

import argparse
import html
import json
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from common.io import atomic_path, atomic_write_json, atomic_write_text
from common.paths import cache_dir, short_hash
from speech.audio import read_audio, write_audio
from speech.enhance.classical import ClassicalConfig, ClassicalEnhancer
from speech.enhance.config import EnhanceConfig, EvalConfig, FeatureConfig
from speech.enhance.data import Pair, corpus_root, load_pairs
from speech.enhance.inference import Enhancer, System

__all__ = ["EVAL_METRICS", "NoisyInput", "condition_means", "evaluate_systems", "main",
           "make_baselines", "score_system", "spectrogram_image"]

EVAL_METRICS = ("pesq_wb", "stoi", "csig", "cbak", "covl", "ssnr", "si_sdr")
PROTOCOL_VERSION = 1  # bump when the metrics or the reading of test files change


class NoisyInput:
    """The identity "system": scores of the unprocessed mixture."""

    name = "noisy"
    sr = 16000

    def describe(self) -> dict[str, Any]:
        return {"kind": "noisy"}

    def enhance(self, wav: np.ndarray) -> np.ndarray:
        return np.asarray(wav, dtype=np.float32)

    enhance_chunk = enhance


def make_baselines(names: Sequence[str], feature: FeatureConfig,
                   ev: EvalConfig | None = None) -> list[System]:
    """``noisy`` | ``wiener`` | ``specsub`` by name."""
    ev = ev or EvalConfig()
    out: list[System] = []
    for name in names:
        if name == "noisy":
            out.append(NoisyInput())
        elif name in ("wiener", "specsub"):
            out.append(ClassicalEnhancer(ClassicalConfig(method=name), feature.stft(),
                                         ev.chunk_seconds, ev.overlap_seconds))
        else:
            raise ValueError(f"unknown baseline {name!r}; baselines: noisy, wiener, specsub")
    return out


# --------------------------------------------------------------------------- scoring


def _finite(x: Any) -> Any:
    return x if not isinstance(x, float) or math.isfinite(x) else None


def _score_pair(clean: np.ndarray, out: np.ndarray, uid: str) -> dict[str, Any]:
    from speech.metrics import enhancement_metrics

    try:
        m = enhancement_metrics(clean, out)
    except ValueError as err:  # e.g. PESQ finds no speech in a reference
        warnings.warn(f"{uid}: metrics failed ({err}); row left empty", stacklevel=2)
        return {"id": uid}
    return {"id": uid, **{k: _finite(float(v)) for k, v in m.items()}}


def _fingerprint(pairs: Sequence[Pair]) -> list[list[Any]]:
    out = []
    for p in pairs:
        c, n = p.clean.stat(), p.noisy.stat()
        out.append([p.id, str(p.clean.resolve()), c.st_size, c.st_mtime_ns,
                    str(p.noisy.resolve()), n.st_size, n.st_mtime_ns])
    return out


def score_system(system: System, pairs: Sequence[Pair], *, keep: int = 0,
                 progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """Per-utterance metric rows of ``system`` over ``pairs``, and the outputs of the first
    ``keep`` pairs (by id). Systems with ``describe()`` (the baselines) are cached."""
    key_path = None
    if hasattr(system, "describe"):
        key = short_hash({"protocol": PROTOCOL_VERSION, "system": system.describe(),
                          "pairs": _fingerprint(pairs)})
        key_path = cache_dir("enhance", "scores", f"{key}.json")
    rows: list[dict[str, Any]] | None = None
    if key_path is not None and key_path.is_file():
        rows = json.loads(key_path.read_text())["rows"]
    kept: dict[str, np.ndarray] = {}
    todo = pairs if rows is None else pairs[:keep]
    bar = None
    if progress and rows is None:
        from tqdm import tqdm

        bar = tqdm(total=len(pairs), desc=f"eval {system.name}", unit="utt", file=sys.stderr)
    fresh = []
    for i, p in enumerate(todo):
        noisy = read_audio(p.noisy, system.sr).samples
        out = system.enhance(noisy)
        if i < keep:
            kept[p.id] = out
        if rows is None:
            fresh.append(_score_pair(read_audio(p.clean, system.sr).samples, out, p.id))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if rows is None:
        rows = fresh
        if key_path is not None:
            atomic_write_json(key_path, {"system": system.describe(), "rows": rows})
    return rows, kept


def condition_means(pairs: Sequence[Pair], rows: dict[str, list[dict[str, Any]]]
                    ) -> dict[str, float]:
    """Means per noise condition and per SNR of the mixing log, for every system:
    ``eval/<system>/by_noise/<noise>/<metric>`` and ``eval/<system>/by_snr/<snr>/<metric>``
    (pairs without a logged condition are left out; ``{}`` when none has one)."""
    groups: dict[str, dict[str, list[str]]] = {"by_noise": {}, "by_snr": {}}
    for p in pairs:
        if p.noise is not None:
            groups["by_noise"].setdefault(p.noise.replace("/", "-"), []).append(p.id)
        if p.snr is not None:
            groups["by_snr"].setdefault(f"{p.snr:g}", []).append(p.id)
    out: dict[str, float] = {}
    for name, system_rows in rows.items():
        by_id = {r["id"]: r for r in system_rows}
        for kind, members in groups.items():
            for label, ids in sorted(members.items(), key=_label_order):
                for metric in EVAL_METRICS:
                    vals = [by_id[i][metric] for i in ids
                            if isinstance(by_id.get(i, {}).get(metric), (int, float))]
                    if vals:
                        out[f"eval/{name}/{kind}/{label}/{metric}"] = float(np.mean(vals))
    return out


def _label_order(item: tuple[str, Any]) -> tuple[int, float, str]:
    """Numeric labels (SNRs) in numeric order, names alphabetically."""
    try:
        return (0, float(item[0]), "")
    except ValueError:
        return (1, 0.0, item[0])


def _summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    from speech.metrics import summarize

    clean = [{k: v for k, v in r.items() if isinstance(v, (int, float))} for r in rows]
    return summarize(clean)


# --------------------------------------------------------------------------- media


def spectrogram_image(wav: np.ndarray, feature: FeatureConfig) -> np.ndarray:
    """Log-magnitude image of ``wav`` (low frequencies at the bottom) → uint8 RGB [F, N, 3]."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps

    from speech.features import stft_logmag

    logmag = stft_logmag(np.ascontiguousarray(wav, dtype=np.float32), feature.stft()).logmag
    x = np.clip((logmag.numpy() + 9.0) / 11.0, 0.0, 1.0)[::-1]  # ln|X| in [−9, 2] → [0, 1]
    return (colormaps["magma"](x)[..., :3] * 255).astype(np.uint8)


def _save_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


_PAGE_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;
vertical-align:top;font-size:13px}th{background:#f3f3f3}img{width:260px;height:120px;
image-rendering:pixelated;display:block}audio{width:260px}.note{color:#666;font-size:12px}"""


def _listening_page(out_dir: Path, media: dict[str, dict[str, tuple[Path, Path]]],
                    rows: dict[str, dict[str, dict[str, Any]]], means: dict[str, float],
                    systems: list[str], info: dict[str, Any]) -> Path:
    page_dir = out_dir / "listen"
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in EVAL_METRICS)
    mean_rows = "".join(
        f"<tr><td>{e(s)}</td>" + "".join(
            f"<td>{means[f'eval/{s}/{m}']:.3f}</td>" if f"eval/{s}/{m}" in means else "<td>—</td>"
            for m in EVAL_METRICS) + "</tr>" for s in systems)
    cols = ["clean", *systems]
    clip_rows = []
    for uid, by_system in media.items():
        cells = []
        for s in cols:
            if s not in by_system:
                cells.append("<td class='note'>—</td>")
                continue
            wav, png = by_system[s]
            r = rows.get(s, {}).get(uid, {})
            score = " ".join(f"{k} {r[k]:.2f}" for k in ("pesq_wb", "stoi", "si_sdr")
                             if r.get(k) is not None)
            cells.append(f"<td><img src='{e(png.relative_to(page_dir).as_posix())}' alt=''>"
                         f"<audio controls preload='none' "
                         f"src='{e(wav.relative_to(page_dir).as_posix())}'></audio>"
                         f"<div class='note'>{e(score)}</div></td>")
        clip_rows.append(f"<tr><td>{e(uid)}</td>{''.join(cells)}</tr>")
    facts = " · ".join(f"{e(str(k))}: {e(str(v))}" for k, v in info.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Enhancement listening page</title><style>{_PAGE_CSS}</style></head><body>
<h1>Speech enhancement: listening page</h1><p class="note">{facts}</p>
<h2>Means over the test set</h2>
<table><thead><tr><th>system</th>{head}</tr></thead><tbody>{mean_rows}</tbody></table>
<h2>Clips</h2><p class="note">Spectrograms: ln|X| of a 512/128 STFT, 0–8 kHz, −9…2.</p>
<table><thead><tr><th>clip</th>{''.join(f'<th>{e(c)}</th>' for c in cols)}</tr></thead>
<tbody>{''.join(clip_rows)}</tbody></table></body></html>
"""
    return atomic_write_text(page_dir / "index.html", page)


# --------------------------------------------------------------------------- evaluation


def evaluate_systems(
    systems: Sequence[System],
    pairs: Sequence[Pair],
    *,
    out_dir: str | Path,
    tracker: Any = None,
    step: int = 0,
    listen: int = 4,
    info: dict[str, Any] | None = None,
    feature: FeatureConfig | None = None,
    progress: bool | None = None,
) -> dict[str, float]:
    """Score every system on ``pairs``; write ``eval_rows.json``, ``listen/``, the W&B table
    and (last, atomically) ``eval.json`` into ``out_dir``; return the flat means."""
    if not pairs:
        raise ValueError("no test pairs to evaluate")
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError(f"system names must be unique, got {names}")
    out_dir = Path(out_dir)
    feature = feature or FeatureConfig()
    progress = sys.stderr.isatty() if progress is None else progress
    listen = min(listen, len(pairs))
    t0 = time.perf_counter()
    rows: dict[str, list[dict[str, Any]]] = {}
    kept: dict[str, dict[str, np.ndarray]] = {}
    for system in systems:
        rows[system.name], kept[system.name] = score_system(system, pairs, keep=listen,
                                                            progress=progress)
    means: dict[str, float] = {"eval/n_utterances": len(pairs)}
    details: dict[str, Any] = {}
    for name, system_rows in rows.items():
        summary = _summary(system_rows)
        details[name] = {"summary": summary, "rows": system_rows}
        for metric in EVAL_METRICS:
            if metric in summary:
                means[f"eval/{name}/{metric}"] = summary[metric]["mean"]
    means.update(condition_means(pairs, rows))
    info = {**(info or {}), "utterances": len(pairs), "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out_dir / "eval_rows.json", {"info": info, "metrics": list(EVAL_METRICS),
                                                   "systems": details})

    # Listening page and W&B table: the first `listen` clips of every system.
    media: dict[str, dict[str, tuple[Path, Path]]] = {}
    page_dir = out_dir / "listen"
    for p in pairs[:listen]:
        clip: dict[str, tuple[Path, Path]] = {}
        sources = {"clean": read_audio(p.clean, feature.sr).samples,
                   **{name: kept[name][p.id] for name in names}}
        for name, wav in sources.items():
            wav_path = write_audio(page_dir / "audio" / f"{p.id}_{name}.wav",
                                   np.clip(wav, -1.0, 1.0), feature.sr)
            png = _save_png(page_dir / "spec" / f"{p.id}_{name}.png",
                            spectrogram_image(wav, feature))
            clip[name] = (wav_path, png)
        media[p.id] = clip
    by_id = {name: {r["id"]: r for r in system_rows} for name, system_rows in rows.items()}
    _listening_page(out_dir, media, by_id, means, names, info)
    if tracker is not None:
        _log_table(tracker, media, by_id, step, feature.sr)
        tracker.summary(means)
    atomic_write_json(out_dir / "eval.json", means)  # last: the runner's "done" marker
    _print_table(means, names)
    return means


def _log_table(tracker: Any, media: dict[str, dict[str, tuple[Path, Path]]],
               rows: dict[str, dict[str, dict[str, Any]]], step: int, sr: int) -> None:
    run = getattr(tracker, "wandb_run", None)
    if run is None:
        return
    import wandb

    columns = ["clip", "system", "audio", "spectrogram", *EVAL_METRICS]
    table = wandb.Table(columns=columns)
    for uid, by_system in media.items():
        for name, (wav, png) in by_system.items():
            r = rows.get(name, {}).get(uid, {})
            caption = f"{uid} {name}"
            table.add_data(uid, name, wandb.Audio(str(wav), sample_rate=sr, caption=caption),
                           wandb.Image(str(png), caption=caption),
                           *[r.get(m) for m in EVAL_METRICS])
    run.log({"eval/examples": table}, step=int(step))


def _print_table(means: dict[str, float], names: Sequence[str]) -> None:
    print("system      " + " ".join(f"{m:>8}" for m in EVAL_METRICS))
    for name in names:
        vals = [means.get(f"eval/{name}/{m}") for m in EVAL_METRICS]
        print(f"{name:<11} " + " ".join(f"{v:8.3f}" if v is not None else f"{'—':>8}"
                                         for v in vals))
    first = f"eval/{names[0]}/" if names else ""
    labels = [k[len(first):-len("/pesq_wb")] for k in means  # "by_noise/alarm", in order
              if first and k.startswith(first + "by_") and k.endswith("/pesq_wb")]
    if labels:  # PESQ per logged condition: where a system gains and where it does not
        print("\nPESQ wb    " + " ".join(f"{lab.split('/', 1)[1]:>8}" for lab in labels))
        for name in names:
            vals = [means.get(f"eval/{name}/{lab}/pesq_wb") for lab in labels]
            print(f"{name:<11} " + " ".join(f"{v:8.3f}" if v is not None else f"{'—':>8}"
                                             for v in vals))


# --------------------------------------------------------------------------- CLI


def _parse_system(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--system {text!r}: expected NAME=PATH")
    name, path = text.split("=", 1)
    if not name or not path:
        raise argparse.ArgumentTypeError(f"--system {text!r}: expected NAME=PATH")
    return name, path


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m speech.enhance.evaluate",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:3]))
    parser.add_argument("--run-dir", type=Path, help="training run: its G is system 'model'")
    parser.add_argument("--system", action="append", default=[], type=_parse_system,
                        metavar="NAME=PATH", help="another trained G (run folder or artifact)")
    parser.add_argument("--test-root", type=Path,
                        help="VoiceBank+DEMAND-layout folder (default: the run's corpus)")
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder)")
    parser.add_argument("--baselines", default=None,
                        help="comma-separated: noisy,wiener,specsub (default: the run's)")
    parser.add_argument("--limit", type=int, default=None, help="first N test utterances")
    parser.add_argument("--listen", type=int, default=None, help="clips on the listening page")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)

    import torch

    from common.config import from_dict, to_dict
    from common.tracking import Tracker

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cfg = EnhanceConfig()
    if args.run_dir is not None:
        config_path = args.run_dir / "config.yaml"
        if not config_path.is_file():
            parser.error(f"{args.run_dir}: not a run folder (no config.yaml)")
        cfg = from_dict(EnhanceConfig, yaml.safe_load(config_path.read_text()), str(config_path))
    out_dir = args.out or args.run_dir
    if out_dir is None:
        parser.error("give --run-dir, or --out with --test-root")
    if args.run_dir is None and args.test_root is None:
        parser.error("--test-root is needed without --run-dir")
    ev = cfg.eval
    if args.limit is not None:
        ev.limit = args.limit
    if args.listen is not None:
        ev.listen = args.listen
    baselines = ev.baselines if args.baselines is None else [
        b for b in args.baselines.split(",") if b]
    try:
        root = args.test_root or corpus_root(cfg.data.corpus, cfg.data.preset, cfg.data.root,
                                             cfg.feature.sr)
        pairs = load_pairs(root, "test", cfg.feature.sr)
        systems: list[System] = make_baselines(baselines, cfg.feature, ev)
        kwargs = {"chunk_seconds": ev.chunk_seconds, "overlap_seconds": ev.overlap_seconds}
        step = 0
        if args.run_dir is not None:
            model = Enhancer.load(args.run_dir, name="model", **kwargs)
            step = int(model.meta.get("step", 0))
            systems.append(model)
        for name, path in args.system:
            systems.append(Enhancer.load(path, name=name, **kwargs))
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if ev.limit is not None:
        pairs = pairs[: ev.limit]
    if args.run_dir is not None and out_dir == args.run_dir:
        tracker = Tracker(out_dir, to_dict(cfg),
                          project=cfg.run.wandb_project, group=cfg.run.group,
                          name=cfg.run.name or out_dir.name, wandb_mode=cfg.run.wandb_mode,
                          resume_id=Tracker.stored_wandb_id(out_dir), resume=True)
    else:
        tracker = Tracker(out_dir, {"evaluate": {"test_root": str(root),
                                                 "systems": [s.name for s in systems]}},
                          project=cfg.run.wandb_project, name=f"eval-{out_dir.name}",
                          wandb_mode=cfg.run.wandb_mode, resume=True)
    info = {"test_root": str(root), "step": step,
            "systems": ", ".join(s.name for s in systems)}
    try:
        return evaluate_systems(systems, pairs, out_dir=out_dir, tracker=tracker, step=step,
                                listen=ev.listen, info=info, feature=cfg.feature)
    finally:
        tracker.finish()


if __name__ == "__main__":
    main()
