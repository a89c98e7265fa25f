"""Where each word goes: Stage-II G's word attention drawn for one caption.

    python -m text2img.attention "a yellow bird with a red crown and blue striped wings" \\
        --checkpoint runs/stackgan-attn/cpu/g2_words_res-16/seed0 --n 2 --out attention.png

For a checkpoint trained with ``model.g2_words`` (Stage II attends over the caption's word
features, AttnGAN's F^attn, Xu et al. 2018, §3.1 eq. 2), each row is one sample: the
Stage-II image, then one map per word piece of the caption — the attention weight β that
the cells of G's grid give that word, as heat over the darkened image (each map scaled to
its own maximum; the number under the word is the share of the grid's total attention it
gets). AttnGAN's Fig. 4 shows the same kind of map.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from common.checkpoint import CheckpointError

__all__ = ["attention_maps", "render", "main"]


@torch.no_grad()
def attention_maps(checkpoint: str | Path, caption: str, n: int = 2, seed: int = 0,
                   device: str = "cpu") -> dict[str, Any]:
    """{"image": Tensor[n, 3, R, R] in [-1, 1] (Stage II), "beta": Tensor[n, h, w, T] (the
    attention of each grid cell over the caption's T word pieces), "tokens": [T] str}."""
    from text2img.sample import checked_encoder, load_generators, sampler_for

    nets = load_generators(checkpoint, device)
    if getattr(nets["g2"], "attn", None) is None:
        raise CheckpointError(f"{nets['path']}: its Stage II does not attend over words "
                              "(train with model.g2_words=true)")
    encoder = checked_encoder(nets["meta"])
    sampler = sampler_for(nets, device, encoder)
    seen: list[tuple[Tensor, Tensor]] = []  # (β, mask) of the attention's one call
    hook = nets["g2"].attn.register_forward_hook(
        lambda module, args, out: seen.append((module.weights(*args).float().cpu(), args[2])))
    try:
        out = sampler.both(encoder.encode([caption]), n, torch.Generator().manual_seed(seed),
                           [caption])
    finally:
        hook.remove()
    beta, mask = seen[0]
    pieces = encoder.tokenizer.tokenize(caption)[: int(mask[0].sum())]
    beta = beta[..., : len(pieces)]  # (n, h, w, T): the real words only
    return {"image": out["stage2"], "beta": beta, "tokens": pieces}


def _heat(beta: Tensor, size: int) -> Tensor:
    """(h, w) weights → (3, size, size) in [0, 1]: black → red → yellow, scaled to the max."""
    m = beta / beta.max().clamp_min(1e-12)
    m = F.interpolate(m[None, None], size=(size, size), mode="bilinear", align_corners=False)[0, 0]
    return torch.stack([(2 * m).clamp(0, 1), (2 * m - 1).clamp(0, 1), torch.zeros_like(m)])


def render(maps: dict[str, Any], scale: int = 2) -> Any:
    """A PIL image: per sample a row [image | one heat map per word piece], words on top."""
    from PIL import Image, ImageDraw

    images, beta, tokens = maps["image"], maps["beta"], maps["tokens"]
    r = images.shape[-1] * scale
    pad, label = 2, 26
    cols = 1 + len(tokens)
    canvas = Image.new("RGB", (cols * (r + pad) + pad, label + len(images) * (r + pad) + pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    share = beta.sum(dim=(1, 2)).mean(0)  # (T,) attention mass per word, averaged over samples
    share = share / share.sum()
    draw.text((pad, 2), "Stage II", fill="black")
    for t, word in enumerate(tokens):
        x = (1 + t) * (r + pad) + pad
        draw.text((x, 2), word, fill="black")
        draw.text((x, 13), f"{share[t]:.2f}", fill="grey")
    for i, image in enumerate(images):
        img = F.interpolate(((image + 1) / 2).clamp(0, 1)[None], scale_factor=scale,
                            mode="nearest")[0]
        tiles = [img] + [0.35 * img + 0.65 * _heat(beta[i, ..., t], r) for t in range(len(tokens))]
        y = label + i * (r + pad)
        for t, tile in enumerate(tiles):
            u8 = (tile.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            canvas.paste(Image.fromarray(u8), (pad + t * (r + pad), y))
    return canvas


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m text2img.attention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("caption", help="the sentence to draw and trace")
    parser.add_argument("--checkpoint", default=None,
                        help="run folder or g_ema.safetensors of a model.g2_words run "
                             "(default: the newest runs/text2img run)")
    parser.add_argument("--n", type=int, default=2, help="samples (rows), each its own z")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=int, default=2, help="pixel upscaling of every tile")
    parser.add_argument("--out", type=Path, default=Path("attention.png"))
    parser.add_argument("--colors", type=int, default=0, metavar="K",
                        help="save as a K-colour palette PNG (2-256; smaller files for docs)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.n < 1 or args.scale < 1:
        parser.error("--n and --scale must be at least 1")
    if args.colors and not 2 <= args.colors <= 256:
        parser.error("--colors must be between 2 and 256")
    from text2img.encoders import EncoderError

    try:
        maps = attention_maps(args.checkpoint, args.caption, args.n, args.seed, args.device)
    except (CheckpointError, EncoderError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    from text2img.sample import save_png

    save_png(render(maps, args.scale), args.out, args.colors)
    print(f"wrote {args.out} ({args.n} sample(s) x {len(maps['tokens'])} word pieces)")
    return args.out


if __name__ == "__main__":
    main()
