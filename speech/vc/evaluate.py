"""Evaluate a VC model on the parallel test set: eval.json, a W&B table, a listening page.

    python -m speech.vc.evaluate --run-dir runs/vc/cyclegan-cpu
    python -m speech.vc.evaluate --run-dir RUN --pairs kal:slt,slt:kal --limit 10 --out DIR

For each direction ``src:tgt`` and each test sentence, the source utterance is converted
(the CLI's chunked ``convert`` path) and compared with the real target utterance of the same
sentence (METRICS.md "Voice conversion", :mod:`speech.metrics`):

* ``mcd``: MCD-DTW [dB] on SPTK mel-cepstra (D = 24, α = mcepalpha(16 kHz), c0 excluded,
  energy-VAD trimmed), from WORLD envelopes with ``eval.metric_f0`` F0 (protocol name
  ``mcd_dtw_sptk24`` + extractor);
* ``logf0_rmse_cents``, ``logf0_corr``, ``vuv_error``: log-F0 on the MCD path, frames voiced
  in both;
* ``spk_sim_target`` / ``spk_sim_source``: cosine of the converted utterance's resemblyzer
  embedding with the target's / source's mean embedding (``eval.embed_utterances``
  training utterances each); ``closer_to_target``: the fraction of utterances whose
  ``spk_sim_target > spk_sim_source``.

``eval/baseline/*`` scores the unconverted source utterance against the target the same way
(the "do nothing" system). ``eval.json`` is flat: ``eval/<metric>``, ``eval/baseline/<metric>``
(means over all directions) and ``eval/dir/<src>_<tgt>/<metric>``; ``eval_rows.json`` holds
the rows and mean / std / 95 % CI. ``listen/index.html`` plays source / converted / target of
the first sentences of every direction, with spectrograms.
"""

from __future__ import annotations

import argparse
import html
import itertools
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from common.io import atomic_path, atomic_write_json, atomic_write_text
from speech.audio import read_audio, write_audio
from speech.vc.config import EvalConfig, VCConfig

__all__ = ["EVAL_METRICS", "directions", "evaluate_converter", "main", "spectrogram_image",
           "spectrogram_png"]

EVAL_METRICS = ("mcd", "logf0_rmse_cents", "logf0_corr", "vuv_error", "spk_sim_target",
                "spk_sim_source", "closer_to_target")


# --------------------------------------------------------------------------- media


def spectrogram_image(wav: np.ndarray, sr: int = 16000) -> np.ndarray:
    """ln|X| of a 512/128 STFT (low frequencies at the bottom) → uint8 RGB [F, N, 3]."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import colormaps

    from speech.features import stft_logmag

    logmag = stft_logmag(np.ascontiguousarray(wav, dtype=np.float32)).logmag.numpy()
    x = np.clip((logmag + 9.0) / 11.0, 0.0, 1.0)[::-1]  # ln|X| in [−9, 2] → [0, 1]
    return (colormaps["magma"](x)[..., :3] * 255).astype(np.uint8)


def spectrogram_png(panels: Sequence[tuple[np.ndarray, str]], sr: int = 16000) -> np.ndarray:
    """Spectrograms of (wav, title) panels side by side, 4-pixel white gaps → uint8 RGB."""
    images = [spectrogram_image(w, sr) for w, _ in panels]
    gap = np.full((images[0].shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([x for im in images for x in (im, gap)][:-1], axis=1)


def _save_png(path: Path, image: np.ndarray) -> Path:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path


# --------------------------------------------------------------------------- scoring


def directions(kind: str, speakers: Sequence[str], pairs: Sequence[str] | None
               ) -> list[tuple[str, str]]:
    """``eval.pairs`` ("src:tgt") or the default: every ordered pair of speakers."""
    if pairs is None:
        return list(itertools.permutations(speakers, 2)) if kind == "stargan" else [
            (speakers[0], speakers[1]), (speakers[1], speakers[0])]
    out = []
    for p in pairs:
        src, sep, tgt = p.partition(":")
        if not sep or src not in speakers or tgt not in speakers or src == tgt:
            raise ValueError(f"eval.pairs: {p!r} is not 'src:tgt' over {list(speakers)}")
        out.append((src, tgt))
    return out


def _finite(x: Any) -> Any:
    return x if not isinstance(x, float) or math.isfinite(x) else None


class _Scorer:
    """MCD / log-F0 against a reference, and speaker similarity, with per-speaker mean
    embeddings computed once."""

    def __init__(self, corpus: Any, ev: EvalConfig, sr: int) -> None:
        self.corpus, self.ev, self.sr = corpus, ev, sr
        self._emb: dict[str, np.ndarray] = {}

    def frames(self, wav: np.ndarray):
        from speech.metrics import vc_frames

        return vc_frames(wav, self.sr, f0_method=self.ev.metric_f0)

    def speaker(self, name: str) -> np.ndarray:
        from speech.metrics import mean_embedding, speaker_embedding

        if name not in self._emb:
            paths = self.corpus.vc_train(name)[: self.ev.embed_utterances]
            self._emb[name] = mean_embedding(
                speaker_embedding(read_audio(p, self.sr).samples, self.sr) for p in paths)
        return self._emb[name]

    def score(self, ref_frames, wav: np.ndarray, src: str, tgt: str) -> dict[str, Any]:
        from speech.metrics import mcd_dtw, speaker_embedding, speaker_similarity

        try:
            m = mcd_dtw(ref_frames, self.frames(wav))
        except ValueError as err:  # e.g. NaN output
            return {"error": str(err)}
        row = {k: m[k] for k in ("mcd", "logf0_rmse_cents", "logf0_corr", "vuv_error")}
        if self.ev.speaker_similarity:
            try:
                e = speaker_embedding(wav, self.sr)
                row["spk_sim_target"] = speaker_similarity(e, self.speaker(tgt))
                row["spk_sim_source"] = speaker_similarity(e, self.speaker(src))
                row["closer_to_target"] = float(row["spk_sim_target"] > row["spk_sim_source"])
            except ValueError:  # less than 0.1 s of speech after VAD
                pass
        return {k: _finite(float(v)) for k, v in row.items()}


def _means(rows: list[dict[str, Any]], prefix: str) -> dict[str, float]:
    from speech.metrics import summarize

    summary = summarize([{k: v for k, v in r.items() if isinstance(v, (int, float))}
                         for r in rows])
    return {f"{prefix}/{m}": summary[m]["mean"] for m in EVAL_METRICS if m in summary}


# --------------------------------------------------------------------------- page

_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;
margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}
th{background:#f3f3f3}img{width:260px;height:120px;image-rendering:pixelated;display:block}
audio{width:260px}.note{color:#666;font-size:12px}"""


def _page(out_dir: Path, media: list[dict[str, Any]], means: dict[str, float],
          info: dict[str, Any]) -> Path:
    page_dir = out_dir / "listen"
    e = html.escape
    head = "".join(f"<th>{e(m)}</th>" for m in EVAL_METRICS)

    def cells(prefix: str) -> str:
        return "".join(f"<td>{means[f'{prefix}/{m}']:.3f}</td>" if f"{prefix}/{m}" in means
                       else "<td>—</td>" for m in EVAL_METRICS)

    table = (f"<tr><td>converted</td>{cells('eval')}</tr>"
             f"<tr><td>source (no conversion)</td>{cells('eval/baseline')}</tr>")
    rows = []
    for item in media:
        tds = []
        for role in ("source", "converted", "target"):
            wav, png = item[role]
            note = (f"MCD {item['mcd']:.2f} dB" if role == "converted" and item.get("mcd")
                    else "")
            tds.append(f"<td><img src='{e(png.relative_to(page_dir).as_posix())}' alt=''>"
                       f"<audio controls preload='none' "
                       f"src='{e(wav.relative_to(page_dir).as_posix())}'></audio>"
                       f"<div class='note'>{e(note)}</div></td>")
        rows.append(f"<tr><td>{e(item['id'])}<div class='note'>{e(item['text'])}</div></td>"
                    f"{''.join(tds)}</tr>")
    facts = " · ".join(f"{e(str(k))}: {e(str(v))}" for k, v in info.items())
    page = f"""<!doctype html><html><head><meta charset="utf-8">
<title>Voice conversion listening page</title><style>{_CSS}</style></head><body>
<h1>Voice conversion: listening page</h1><p class="note">{facts}</p>
<h2>Means over the test set</h2>
<table><thead><tr><th>system</th>{head}</tr></thead><tbody>{table}</tbody></table>
<h2>Same sentence: source, converted, real target</h2>
<p class="note">Spectrograms: ln|X| of a 512/128 STFT, 0–8 kHz, −9…2.</p>
<table><thead><tr><th>sentence</th><th>source</th><th>converted</th><th>target</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table></body></html>
"""
    return atomic_write_text(page_dir / "index.html", page)


def _log_table(tracker: Any, media: list[dict[str, Any]], step: int, sr: int) -> None:
    run = getattr(tracker, "wandb_run", None)
    if run is None:
        return
    import wandb

    table = wandb.Table(columns=["sentence", "direction", "text", "source", "converted",
                                 "target", "spectrogram converted", "mcd"])
    for item in media:
        audio = [wandb.Audio(str(item[r][0]), sample_rate=sr, caption=f"{item['id']} {r}")
                 for r in ("source", "converted", "target")]
        table.add_data(item["id"], item["direction"], item["text"], *audio,
                       wandb.Image(str(item["converted"][1]), caption=item["id"]), item.get("mcd"))
    run.log({"eval/examples": table}, step=int(step))


# --------------------------------------------------------------------------- evaluation


def evaluate_converter(conv: Any, corpus: Any, ev: EvalConfig, *, out_dir: str | Path,
                       tracker: Any = None, step: int = 0,
                       info: dict[str, Any] | None = None) -> dict[str, float]:
    """Score ``conv`` (a :class:`speech.vc.inference.Converter`) on ``corpus``'s parallel test
    set; write ``eval_rows.json``, ``listen/``, the W&B table and (last) ``eval.json``."""
    out_dir = Path(out_dir)
    sr = conv.sr
    scorer = _Scorer(corpus, ev, sr)
    texts = corpus.sentences()["parallel"]
    t0 = time.perf_counter()
    rows: dict[str, list[dict[str, Any]]] = {"converted": [], "baseline": []}
    by_dir: dict[str, list[dict[str, Any]]] = {}
    media: list[dict[str, Any]] = []
    page_dir = out_dir / "listen"
    for src, tgt in directions(conv.kind, conv.speakers, ev.pairs):
        pairs = corpus.parallel_pairs(src, tgt)[: ev.limit]
        tag = f"{src}_{tgt}"
        for i, (sp, tp) in enumerate(pairs):
            s_wav, t_wav = read_audio(sp, sr).samples, read_audio(tp, sr).samples
            out = conv.convert(s_wav, src, tgt)
            ref = scorer.frames(t_wav)
            uid = f"{tag}_{Path(sp).stem}"
            row = {"id": uid, "direction": tag, **scorer.score(ref, out, src, tgt)}
            base = {"id": uid, "direction": tag, **scorer.score(ref, s_wav, src, tgt)}
            rows["converted"].append(row)
            rows["baseline"].append(base)
            by_dir.setdefault(tag, []).append(row)
            if i < ev.listen:
                item = {"id": uid, "direction": tag, "mcd": row.get("mcd"),
                        "text": texts[i] if i < len(texts) else ""}
                for role, wav in (("source", s_wav), ("converted", out), ("target", t_wav)):
                    wav_path = write_audio(page_dir / "audio" / f"{uid}_{role}.wav",
                                           np.clip(wav, -1.0, 1.0), sr)
                    png = _save_png(page_dir / "spec" / f"{uid}_{role}.png",
                                    spectrogram_image(wav, sr))
                    item[role] = (wav_path, png)
                media.append(item)
    if not rows["converted"]:
        raise ValueError("no test pairs to evaluate")
    means: dict[str, float] = {"eval/n_utterances": len(rows["converted"])}
    means.update(_means(rows["converted"], "eval"))
    means.update(_means(rows["baseline"], "eval/baseline"))
    for tag, r in by_dir.items():
        means.update(_means(r, f"eval/dir/{tag}"))
    info = {**(info or {}), "metric_protocol": f"mcd_dtw_sptk24 (WORLD {ev.metric_f0})",
            "speaker_similarity": "spk_sim_resemblyzer", "utterances": len(rows["converted"]),
            "seconds": round(time.perf_counter() - t0, 1)}
    atomic_write_json(out_dir / "eval_rows.json", {"info": info, "rows": rows})
    _page(out_dir, media, means, info)
    if tracker is not None:
        _log_table(tracker, media, step, sr)
        tracker.summary(means)
    atomic_write_json(out_dir / "eval.json", means)  # last: the runner's "done" marker
    for prefix, label in (("eval", "converted"), ("eval/baseline", "source")):
        print(f"{label:<10} " + " ".join(
            f"{m} {means[f'{prefix}/{m}']:.3f}" for m in EVAL_METRICS if f"{prefix}/{m}" in means))
    return means


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(prog="python -m speech.vc.evaluate",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:3]))
    parser.add_argument("--run-dir", type=Path, required=True, help="training run folder")
    parser.add_argument("--checkpoint", default=None,
                        help="artifact or checkpoint to score (default: the run's)")
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder)")
    parser.add_argument("--pairs", default=None, help="comma-separated src:tgt directions")
    parser.add_argument("--limit", type=int, default=None, help="first N sentences per direction")
    parser.add_argument("--listen", type=int, default=None,
                        help="sentences per direction on the page")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)

    import torch

    from common.config import from_dict, to_dict
    from common.tracking import Tracker
    from speech.vc.inference import Converter
    from speech.vc.train import load_corpus

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    config_path = args.run_dir / "config.yaml"
    if not config_path.is_file():
        parser.error(f"{args.run_dir}: not a run folder (no config.yaml)")
    cfg = from_dict(VCConfig, yaml.safe_load(config_path.read_text()), str(config_path))
    ev = cfg.eval
    if args.pairs is not None:
        ev.pairs = [p for p in args.pairs.split(",") if p]
    if args.limit is not None:
        ev.limit = args.limit
    if args.listen is not None:
        ev.listen = args.listen
    out_dir = args.out or args.run_dir
    try:
        conv = Converter.load(args.checkpoint or args.run_dir)
        corpus = load_corpus(cfg)
    except (OSError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    step = int(conv.meta.get("step", 0))
    if out_dir == args.run_dir:
        tracker = Tracker(out_dir, to_dict(cfg), project=cfg.run.wandb_project,
                          group=cfg.run.group, name=cfg.run.name or out_dir.name,
                          wandb_mode=cfg.run.wandb_mode,
                          resume_id=Tracker.stored_wandb_id(out_dir), resume=True)
    else:
        tracker = Tracker(out_dir, {"evaluate": {"run": str(args.run_dir)}},
                          project=cfg.run.wandb_project, name=f"eval-{out_dir.name}",
                          wandb_mode=cfg.run.wandb_mode, resume=True)
    try:
        return evaluate_converter(conv, corpus, ev, out_dir=out_dir, tracker=tracker, step=step,
                                  info={"run": str(args.run_dir), "kind": conv.kind, "step": step})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        tracker.finish()


if __name__ == "__main__":
    main()
