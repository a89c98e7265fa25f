"""How much of a caption's content does a text encoder's sentence vector carry?

A linear probe (Alain & Bengio 2017, "Understanding intermediate layers using linear
classifier probes"): for each SynthBirds attribute, a multinomial logistic regression from
the frozen embedding of a caption to the value of that attribute, trained on captions that
mention it and scored on held-out captions of other birds. A text-conditioned generator
reads the same vector, so these accuracies are what the conditioning can separate at best
(a linear read-out; G is non-linear, but its first layer is the same Linear).

    python -m text2img.probe                          # MiniLM, 4,000 training birds
    python -m text2img.probe --encoder hf:/path/to/bert --n 2000
    python -m text2img.probe --checkpoint RUN         # + what survives each stage's CA

With ``--checkpoint`` the same probe also reads the codes a trained StackGAN's generators
build from the vector: μ(e) and a sampled c = μ + σ·ε of each stage's conditioning
augmentation (StackGAN §3.2) — how much of each attribute G can still see after the
augmentation noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from text2img.data.synthbirds import ATTRIBUTES, SynthBirdsSpec, load_split
from text2img.encoders import EmbeddingCache, get_encoder

__all__ = ["CHANCE", "code_probe", "logistic_regression", "main", "probe", "probe_accuracy"]

CHANCE = {name: 1 / len(values) for name, values in ATTRIBUTES}  # per attribute, uniform values


def probe(encoder_spec: str = "minilm", n: int = 4000, holdout: float = 0.2,
          seed: int = 0) -> dict[str, Any]:
    """{attribute: held-out accuracy} of a linear probe on ``n`` training birds' captions
    (the last ``holdout`` fraction of the birds is held out), plus chance levels."""
    split, emb, cut = _embedded_captions(encoder_spec, n, holdout, seed)
    return {"encoder": encoder_spec, "n_birds": n,
            "accuracy": probe_accuracy(emb, split.attributes, split.mentions, cut),
            "chance": dict(CHANCE)}


def _embedded_captions(encoder_spec: str, n: int, holdout: float, seed: int
                       ) -> tuple[Any, torch.Tensor, int]:
    """(the first ``n`` SynthBirds training birds, their captions' vectors Tensor[n, per,
    E], the number of birds the probe trains on)."""
    split = load_split(SynthBirdsSpec(seed, 128, 10), "train", n)
    per = split.mentions.shape[1]
    emb = EmbeddingCache().encode(get_encoder(encoder_spec), split.flat_captions(),
                                  dataset_hash=f"synthbirds-{split.key}-c{per}")
    return split, emb.view(n, per, -1), int(round(n * (1 - holdout)))


def probe_accuracy(x: torch.Tensor, attributes: Any, mentions: Any, cut: int
                   ) -> dict[str, float]:
    """{attribute: held-out accuracy} of a linear probe from ``x`` (Tensor[n, per, D]: one
    vector per caption of n birds) to the value of each attribute (``attributes`` int [n, 8])
    over the captions that mention it (``mentions`` bool [n, per, 8]); trained on the first
    ``cut`` birds, scored on the rest."""
    n, per = x.shape[:2]
    x = x.double()
    x = (x - x.mean((0, 1))) / (x.std((0, 1)) + 1e-6)  # a well-conditioned problem
    out = {}
    for k, (name, values) in enumerate(ATTRIBUTES):
        said = torch.as_tensor(mentions[:, :, k]).bool()
        y = torch.as_tensor(attributes[:, k]).long()[:, None].expand(n, per)
        x_tr, y_tr = x[:cut][said[:cut]], y[:cut][said[:cut]]
        x_te, y_te = x[cut:][said[cut:]], y[cut:][said[cut:]]
        w, b = logistic_regression(x_tr, y_tr, len(values))
        with torch.no_grad():
            out[name] = float(((x_te @ w + b).argmax(1) == y_te).double().mean())
    return out


@torch.no_grad()
def code_probe(checkpoint: str | Path, n: int = 4000, holdout: float = 0.2, seed: int = 0
               ) -> dict[str, Any]:
    """The probe of :func:`probe` on the caption vector of a trained StackGAN's encoder
    ("e") and on the codes its EMA generators build from it (``checkpoint``: a
    ``text2img.train`` run folder or its artifact): {"e": {attribute: accuracy}, "stage1":
    {"mu": {...}, "c": {...}, "sigma": mean σ}, "stage2": ...}, "c" being one draw of
    μ + σ·ε per caption (conditioning augmentation, StackGAN §3.2)."""
    from text2img.sample import load_generators

    nets = load_generators(checkpoint)
    encoder = nets["meta"]["encoder"]
    split, emb, cut = _embedded_captions(encoder, n, holdout, seed)

    def accuracy(x: torch.Tensor) -> dict[str, float]:
        return probe_accuracy(x.view(*emb.shape[:2], -1), split.attributes, split.mentions, cut)

    gen = torch.Generator().manual_seed(seed)
    out: dict[str, Any] = {"checkpoint": str(nets["path"]), "encoder": encoder, "n_birds": n,
                           "e": accuracy(emb)}
    for stage, g in (("stage1", nets["g1"]), ("stage2", nets["g2"])):
        if g is None:
            continue
        code = g.ca(emb.flatten(0, 1).float(), generator=gen)
        out[stage] = {"mu": accuracy(code.mu), "c": accuracy(code.c),  # sigma 0: CA off, c = μ
                      "sigma": 0.0 if code.logvar is None else
                      float(code.logvar.mul(0.5).exp().mean())}
    return out


def logistic_regression(x: torch.Tensor, y: torch.Tensor, k: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights [D, k] and bias [k] of an L2-regularised multinomial logistic regression."""
    w = torch.zeros(x.shape[1], k, dtype=x.dtype, requires_grad=True)
    b = torch.zeros(k, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + 1e-3 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m text2img.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="minilm", help="text2img.encoders spec")
    parser.add_argument("--n", type=int, default=4000, help="training birds (10 captions each)")
    parser.add_argument("--checkpoint", default=None,
                        help="a text2img.train run (or its g_ema.safetensors): also probe μ "
                             "and a sampled c of each stage's conditioning augmentation "
                             "(the encoder is the checkpoint's)")
    args = parser.parse_args(argv)
    if not args.checkpoint:
        result = probe(args.encoder, args.n)
        print(f"Linear probe of {args.encoder} on {args.n} SynthBirds birds' captions "
              "(held-out accuracy | chance):", file=sys.stderr)
        for name, acc in result["accuracy"].items():
            print(f"  {name:<14} {acc:.3f} | {result['chance'][name]:.2f}")
        return result
    codes = code_probe(args.checkpoint, args.n)
    print(f"Linear probe of {codes['encoder']} on {args.n} SynthBirds birds' captions and of "
          "the codes each stage's conditioning augmentation builds from them (held-out "
          "accuracy):", file=sys.stderr)
    stages = [s for s in ("stage1", "stage2") if s in codes]
    head = ["e"] + [f"{s[0].upper()}{s[-1]} {k}" for s in stages for k in ("μ", "c")]
    print("| attribute | " + " | ".join(head) + " | chance |")
    print("|---|" + "---:|" * (len(head) + 1))
    for name, acc in codes["e"].items():
        cells = [acc] + [codes[s][k][name] for s in stages for k in ("mu", "c")]
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + f" | {CHANCE[name]:.2f} |")
    print("mean σ of the augmentation: " + ", ".join(
        f"{s} {codes[s]['sigma']:.2f}" for s in stages))
    return {"encoder": codes["encoder"], "n_birds": args.n, "accuracy": codes["e"],
            "chance": dict(CHANCE), "codes": codes}


if __name__ == "__main__":
    main()
