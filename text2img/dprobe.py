"""What does a trained StackGAN discriminator know about the caption?

G learns to bind a caption's words to the image only as far as D's condition head checks
them. This probe asks D directly: for each SynthBirds attribute it writes one short caption
per value ("the bird is mostly red", "the bird is mostly orange", ...), scores every test
render against each with the head's conditional logit (``joint`` for the combined and
projection heads, ``match`` for the split head; mean over patches), and reports the
one-vs-rest ROC AUC of each value's caption — the chance that a render which has the value
scores higher than one which has not — averaged over values. Per-caption offsets (some
sentences score high on every image) do not affect an AUC. 0.5 = D ignores the attribute,
1 = D ranks perfectly. Read it next to the linear probe of the text encoder
(``python -m text2img.probe``: what the caption vector carries) and the generator's
attribute accuracy (eval.json).

A second table asks what D's image features carry at all: a linear probe (as
``text2img.probe``) from the sum-pooled backbone features of the renders — what the
projection head reads — to each attribute, fitted on the first three quarters of the renders
and scored on the rest. An attribute the features do not separate cannot be checked by any
head on top of them; one they separate but the AUC misses is lost on the text side.

    python -m text2img.dprobe runs/stackgan/cpu            # Stage I's newest checkpoint
    python -m text2img.dprobe RUN --stage 2 --n 1000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from text2img.data.synthbirds_text import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    BACKGROUND_PHRASES,
    BEAK_COLOURS,
    BEAK_LENGTHS,
    COLOURS,
    PATTERNS,
    SIZE_WORDS,
)

__all__ = ["PROMPTS", "auc", "dprobe", "main", "prompt_aucs"]

# One caption per value, in the captions' own phrasing (each states that attribute only;
# tests/test_text2img_dprobe.py parses them back). Index order = the attribute's values.
PROMPTS: dict[str, list[str]] = {
    "body": [f"the bird is mostly {c}" for c in COLOURS],
    "wing": [f"a bird with {c} wings" for c in COLOURS],
    "crown": [f"a bird with a {c} crown" for c in COLOURS],
    "beak_colour": [f"a bird with a {c} beak" for c in BEAK_COLOURS],
    "beak_length": [f"a bird with a {n} beak" for n in BEAK_LENGTHS],
    "wing_pattern": [f"a bird with {p} wings" for p in PATTERNS],
    "size": [f"a {word} bird" for word in SIZE_WORDS],
    "background": [f"a bird {phrases[0]}" for phrases in BACKGROUND_PHRASES],
}


def auc(score: Tensor, positive: Tensor) -> float:
    """ROC AUC of ``score`` for the boolean labels ``positive`` (ties count one half)."""
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def prompt_aucs(encoder: Any, attributes: np.ndarray,
                score: Callable[[Tensor], Tensor]) -> dict[str, list[float]]:
    """One-vs-rest AUC of every attribute value's one-attribute caption (:data:`PROMPTS`):
    ``score(emb Tensor[V, E]) → Tensor[N, V]`` scores N images against the V captions of one
    attribute; ``attributes`` int[N, 8] are the images' true values. {attribute: [AUC per
    value]}."""
    out = {}
    for name, prompts in PROMPTS.items():
        scores = score(encoder.encode(prompts).float())  # (N, values)
        labels = torch.as_tensor(attributes[:, ATTRIBUTE_NAMES.index(name)])
        out[name] = [auc(scores[:, v], labels == v) for v in range(len(prompts))]
    return out


def _conditional_logit(d: torch.nn.Module, feats: Tensor, emb: Tensor) -> Tensor:
    out = d.head(feats, emb)
    logit = out.joint if out.joint is not None else out.match
    if logit is None:
        raise ValueError("D's head gives no conditional logit (joint or match)")
    return logit.float().mean(dim=1)


@torch.no_grad()
def dprobe(run_dir: str | Path, stage: int = 1, n: int = 2000,
           checkpoint: str | Path | None = None) -> dict[str, Any]:
    """What stage ``stage``'s D (the run's newest checkpoint unless ``checkpoint``) knows,
    over the first ``n`` SynthBirds test renders: {"auc": {attribute: mean one-vs-rest AUC},
    "per_value": {attribute: [AUC per value]}, "features": {attribute: linear-probe
    accuracy}, "checkpoint": ..., ...}."""
    from common.checkpoint import Checkpointer, load_checkpoint
    from common.config import RuntimeConfig, load_config
    from common.runtime import setup_runtime
    from text2img import train as t2i
    from text2img.data.synthbirds import SynthBirdsSpec, load_split
    from text2img.encoders import get_encoder

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: no config.yaml (not a text2img.train run folder)")
    cfg = load_config(t2i.StackGANConfig, run_dir / "config.yaml", [])
    if cfg.data.dataset != "synthbirds":
        raise ValueError(f"{run_dir}: trained on {cfg.data.dataset}; the probe knows SynthBirds")
    path = Path(checkpoint) if checkpoint else \
        Checkpointer(run_dir / "checkpoints" / f"stage{stage}", "").latest()
    if path is None:
        raise FileNotFoundError(f"{run_dir / 'checkpoints' / f'stage{stage}'}: no checkpoint")
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    encoder = get_encoder(cfg.data.encoder)
    corpus = t2i.load_corpus(cfg, encoder)
    built = t2i.build_stage(stage, cfg, corpus, runtime, run_dir, "")
    built.state.load_state_dict(load_checkpoint(path))
    d = built.state.nets["d"].eval()

    spec = SynthBirdsSpec(cfg.data.synth_seed, cfg.data.synth_master, cfg.data.heldout_pairs)
    test = load_split(spec, "test", n)
    images = np.ascontiguousarray(test.images_at(built.resolution))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
    feats = torch.cat([d.backbone(chunk) for chunk in x.split(100)])
    out: dict[str, Any] = {"run": str(run_dir), "checkpoint": str(path), "stage": stage,
                           "n": len(x), "auc": {}, "per_value": {}}
    def score(emb: Tensor) -> Tensor:
        return torch.stack([_conditional_logit(d, feats, e.expand(len(x), -1)) for e in emb],
                           dim=1)

    for name, per in prompt_aucs(encoder, test.attributes, score).items():
        out["per_value"][name] = per
        out["auc"][name] = float(np.nanmean(per))
    out["features"] = _feature_probe(feats, test.attributes)
    return out


def _feature_probe(feats: Tensor, attributes: np.ndarray, train: float = 0.75
                   ) -> dict[str, float]:
    """{attribute: held-out accuracy} of a linear probe on sum-pooled features."""
    from text2img.probe import logistic_regression

    pooled = (feats.sum(dim=(2, 3)) if feats.dim() == 4 else feats).double()
    cut = int(round(len(pooled) * train))
    mean, std = pooled[:cut].mean(0), pooled[:cut].std(0) + 1e-6
    pooled = (pooled - mean) / std
    out = {}
    for k, (name, values) in enumerate(ATTRIBUTES):
        y = torch.from_numpy(attributes[:, k]).long()
        w, b = logistic_regression(pooled[:cut], y[:cut], len(values))
        out[name] = float(((pooled[cut:] @ w + b).argmax(1) == y[cut:]).double().mean())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m text2img.dprobe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a text2img.train run folder")
    parser.add_argument("--stage", type=int, choices=(1, 2), default=1)
    parser.add_argument("--n", type=int, default=2000, help="SynthBirds test renders")
    parser.add_argument("--checkpoint", help="a checkpoint file (default: the stage's newest)")
    args = parser.parse_args(argv)
    try:
        result = dprobe(args.run_dir, args.stage, args.n, args.checkpoint)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"Stage-{args.stage} D of {args.run_dir} ({result['checkpoint']}), {result['n']} "
          "test renders: one-vs-rest AUC of each value's caption (0.5 = ignored) | "
          "held-out accuracy of a linear probe on D's pooled features", file=sys.stderr)
    for name, value in result["auc"].items():
        print(f"  {name:<14} {value:.3f} | {result['features'][name]:.3f}")
    return result


if __name__ == "__main__":
    main()
