"""How much of a caption's content does a text encoder's sentence vector carry?

A linear probe (Alain & Bengio 2017, "Understanding intermediate layers using linear
classifier probes"): for each SynthBirds attribute, a multinomial logistic regression from
the frozen embedding of a caption to the value of that attribute, trained on captions that
mention it and scored on held-out captions of other birds. A text-conditioned generator
reads the same vector, so these accuracies are what the conditioning can separate at best
(a linear read-out; G is non-linear, but its first layer is the same Linear).

    python -m text2img.probe                          # MiniLM, 4,000 training birds
    python -m text2img.probe --encoder hf:/path/to/bert --n 2000
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
import torch.nn.functional as F

from text2img.data.synthbirds import ATTRIBUTES, SynthBirdsSpec, load_split
from text2img.encoders import EmbeddingCache, get_encoder

__all__ = ["logistic_regression", "probe", "main"]


def probe(encoder_spec: str = "minilm", n: int = 4000, holdout: float = 0.2,
          seed: int = 0) -> dict[str, Any]:
    """{attribute: held-out accuracy} of a linear probe on ``n`` training birds' captions
    (the last ``holdout`` fraction of the birds is held out), plus chance levels."""
    split = load_split(SynthBirdsSpec(seed, 128, 10), "train", n)
    encoder = get_encoder(encoder_spec)
    per = split.mentions.shape[1]
    emb = EmbeddingCache().encode(encoder, split.flat_captions(),
                                  dataset_hash=f"synthbirds-{split.key}-c{per}")
    emb = emb.view(n, per, -1).double()
    emb = (emb - emb.mean((0, 1))) / (emb.std((0, 1)) + 1e-6)  # a well-conditioned problem
    cut = int(round(n * (1 - holdout)))
    out: dict[str, Any] = {"encoder": encoder_spec, "n_birds": n, "accuracy": {}, "chance": {}}
    for k, (name, values) in enumerate(ATTRIBUTES):
        said = torch.from_numpy(split.mentions[:, :, k]).bool()
        y = torch.from_numpy(split.attributes[:, k]).long()[:, None].expand(n, per)
        x_tr, y_tr = emb[:cut][said[:cut]], y[:cut][said[:cut]]
        x_te, y_te = emb[cut:][said[cut:]], y[cut:][said[cut:]]
        w, b = logistic_regression(x_tr, y_tr, len(values))
        with torch.no_grad():
            out["accuracy"][name] = float(((x_te @ w + b).argmax(1) == y_te).double().mean())
        out["chance"][name] = 1 / len(values)
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
    args = parser.parse_args(argv)
    result = probe(args.encoder, args.n)
    print(f"Linear probe of {args.encoder} on {args.n} SynthBirds birds' captions "
          "(held-out accuracy | chance):", file=sys.stderr)
    for name, acc in result["accuracy"].items():
        print(f"  {name:<14} {acc:.3f} | {result['chance'][name]:.2f}")
    return result


if __name__ == "__main__":
    main()
