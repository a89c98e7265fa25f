"""Sample a trained StackGAN: a caption in, a PNG grid of Stage-I and Stage-II images out.

    python -m text2img.sample "a small bird with a red crown and blue striped wings" \\
        --n 8 --checkpoint runs/text2img/<run> --out grid.png
    python -m text2img.sample --prompts my_sentences.txt --n 4 --out docs/grid.png

Several captions (positional and/or one per line of ``--prompts``) give one titled block
each, stacked top to bottom.

``--checkpoint`` is a run folder (its ``g_ema.safetensors``) or that file itself; without
it the newest ``runs/text2img/*/g_ema.safetensors`` is used. Images come from the EMA
generators, and the caption is embedded by the text encoder the checkpoint was trained
with (checked against its recorded content hash). Every sample is shown as a pair: the
Stage-I image (nearest-upsampled to the Stage-II size) left of its Stage-II refinement.

:func:`load_sampler` is also the default sampler of ``python -m text2img.evaluate``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.checkpoint import CheckpointError, import_weights
from common.config import from_dict
from common.tracking import make_grid
from text2img.models import freeze

__all__ = ["StackGANSampler", "checked_encoder", "find_checkpoint", "load_generators",
           "load_sampler", "read_prompt_file", "sample_grid", "sampler_for", "save_png", "main"]

ARTIFACT = "g_ema.safetensors"


class StackGANSampler:
    """:class:`text2img.evaluate.Sampler` over the EMA generators of one stage.

    ``stage=1`` returns Stage-I images, ``stage=2`` the Stage-II refinements of them.
    ``sample`` gives Tensor[N, n_z, 3, R, R] in [-1, 1]; z and the conditioning noise are
    drawn from ``generator`` (a CPU generator) so results do not depend on the device.
    ``words``: captions → (word features Tensor[N, T, H], mask bool Tensor[N, T]), the
    encoder's ``encode_tokens``; needed when Stage II attends over the words.
    """

    def __init__(self, g1: nn.Module, g2: nn.Module | None, encoder: str | None, stage: int,
                 device: torch.device | str = "cpu",
                 words: Callable[[Sequence[str]], tuple[Tensor, Tensor]] | None = None) -> None:
        if stage == 2 and g2 is None:
            raise ValueError("stage=2 needs a Stage-II generator")
        self.needs_words = stage == 2 and getattr(g2, "word_dim", 0) > 0
        if self.needs_words and words is None:
            raise ValueError("this Stage-II G attends over the caption's words: give the "
                             "sampler the encoder's word features (words=encoder.encode_tokens)")
        self.g1, self.g2, self.stage, self.words = g1, g2, stage, words
        self.encoder = encoder
        self.device = torch.device(device)
        self.resolution = (g2 if stage == 2 else g1).resolution

    @torch.no_grad()
    def both(self, embeddings: Tensor, n_z: int, generator: torch.Generator,
             captions: Sequence[str] | None = None) -> dict:
        """{"stage1": Tensor[N·n_z, 3, R1, R1], "stage2": Tensor[N·n_z, 3, R2, R2] | None};
        ``captions`` (the N texts) when Stage II attends over their words."""
        emb = embeddings.float().repeat_interleave(n_z, 0)  # (N·n_z, E)
        z = torch.randn(len(emb), self.g1.z_dim, generator=generator)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        ca_gen = torch.Generator(self.device).manual_seed(seed)  # CA noise on the device
        emb, z = emb.to(self.device), z.to(self.device)
        low = self.g1(emb, z, generator=ca_gen).image.float()
        high = None
        if self.g2 is not None and self.stage == 2:
            words = mask = None
            if self.needs_words:
                if captions is None or len(captions) != len(embeddings):
                    raise ValueError("Stage II attends over the words: give the captions")
                words, mask = self.words(list(captions))
                words = words.float().repeat_interleave(n_z, 0).to(self.device)
                mask = mask.repeat_interleave(n_z, 0).to(self.device)
            high = self.g2(low, emb, words, mask, generator=ca_gen).image.float().cpu()
        return {"stage1": low.cpu(), "stage2": high}

    def sample(self, captions: Sequence[str], embeddings: Tensor | None, n_z: int,
               generator: torch.Generator) -> Tensor:
        if embeddings is None:
            raise ValueError("StackGANSampler needs caption embeddings")
        out = self.both(embeddings, n_z, generator, captions)
        x = out["stage2"] if self.stage == 2 else out["stage1"]
        return x.reshape(len(captions), n_z, *x.shape[1:])  # (N, n_z, 3, R, R)


def find_checkpoint(ref: str | Path | None) -> Path:
    """The ``g_ema.safetensors`` a run folder or path names; newest run's when None."""
    if ref is None:
        found = sorted(Path("runs").glob(f"text2img/**/{ARTIFACT}"),
                       key=lambda p: p.stat().st_mtime)
        if not found:
            raise CheckpointError(f"no runs/text2img/*/{ARTIFACT} found; train with python -m "
                                  "text2img.train or pass --checkpoint RUN_OR_FILE")
        return found[-1]
    path = Path(ref)
    if path.is_dir():
        path = path / ARTIFACT
        if not path.is_file():
            raise CheckpointError(f"{path}: not found; the run has not finished Stage I yet "
                                  "(the artifact is written when a stage ends)")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: expected a run folder or its {ARTIFACT}")
    return path


def load_generators(ref: str | Path | None, device: torch.device | str = "cpu"
                    ) -> dict[str, Any]:
    """{"g1", "g2" (None for a Stage-I-only artifact), "meta", "path"}: frozen EMA nets."""
    from text2img.train import ModelConfig, build_generator

    path = find_checkpoint(ref)
    meta = json.loads(path.with_suffix(".json").read_text())
    if meta.get("entry") != "text2img.train":
        raise CheckpointError(f"{path}: not a text2img.train artifact (entry "
                              f"{meta.get('entry')!r})")
    model = from_dict(ModelConfig, meta["model"], source=str(path.with_suffix(".json")))
    nets = {"stage1": build_generator(1, model, int(meta["embed_dim"]))}
    if int(meta["stages"]) == 2:
        nets["stage2"] = build_generator(2, model, int(meta["embed_dim"]),
                                         int(meta.get("word_dim", 0)))
    modules = nn.ModuleDict(nets)
    import_weights(path, modules)
    modules.to(device)
    freeze(modules)
    return {"g1": modules["stage1"], "g2": modules["stage2"] if "stage2" in nets else None,
            "meta": meta, "path": path}


def load_sampler(checkpoint: str | Path, device: torch.device | str = "cpu") -> StackGANSampler:
    """Sampler of the highest stage in ``checkpoint`` (``text2img.evaluate``'s default)."""
    nets = load_generators(checkpoint, device)
    return sampler_for(nets, device)


def sampler_for(nets: dict[str, Any], device: torch.device | str, encoder: Any = None
             ) -> StackGANSampler:
    """The highest stage's sampler; when Stage II attends over the caption's words, the
    checkpoint's encoder (``encoder``, or loaded here) gives them."""
    meta, words = nets["meta"], None
    if getattr(nets["g2"], "word_dim", 0) > 0:
        words = (encoder or checked_encoder(meta)).encode_tokens
    stage = 2 if nets["g2"] is not None else 1
    return StackGANSampler(nets["g1"], nets["g2"], meta["encoder"], stage, device, words)


def checked_encoder(meta: dict[str, Any]) -> Any:
    """The checkpoint's text encoder, refusing one whose weights differ."""
    from text2img.encoders import get_encoder

    encoder = get_encoder(meta["encoder"])
    if meta.get("encoder_hash") and encoder.content_hash() != meta["encoder_hash"]:
        raise CheckpointError(
            f"text encoder {meta['encoder']!r} hashes to {encoder.content_hash()} here, but the "
            f"checkpoint was trained with {meta['encoder_hash']}: its embeddings would differ")
    if encoder.dim != int(meta["embed_dim"]):
        raise CheckpointError(f"encoder gives {encoder.dim}-d embeddings, the checkpoint "
                              f"expects {meta['embed_dim']}")
    return encoder


def sample_grid(images: dict[str, Tensor | None], per_row: int = 4) -> np.ndarray:
    """uint8 [H, W, 3]: pairs (Stage-I upsampled | Stage-II), ``per_row`` pairs a row."""
    low, high = images["stage1"], images["stage2"]
    if high is None:
        return make_grid(low, nrow=min(per_row * 2, len(low)))
    up = F.interpolate(low, size=high.shape[-2:], mode="nearest")
    pairs = torch.cat([up, high], dim=-1)  # (n, 3, R2, 2·R2): side by side
    return make_grid(pairs, nrow=min(per_row, len(pairs)))


def _with_title(grid: np.ndarray, title: str) -> Any:
    """The grid under a white strip holding ``title`` (word-wrapped, PIL's default font)."""
    import textwrap

    from PIL import Image, ImageDraw

    image = Image.fromarray(grid).convert("RGB")
    lines = textwrap.wrap(title, width=max(8, (image.width - 8) // 6)) or [""]
    strip = 4 + 14 * len(lines)
    out = Image.new("RGB", (image.width, image.height + strip), "white")
    out.paste(image, (0, strip))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, 2 + 14 * i), line, fill="black")
    return out


def save_png(picture: Any, out: Path, colors: int = 0) -> Path:
    """Write the PIL ``picture`` to ``out`` atomically; ``colors`` > 0 saves a palette PNG of
    that many colours (median cut, no dithering: dither noise compresses badly)."""
    from PIL import Image

    from common.io import atomic_path

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if colors:
            picture = picture.quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                       dither=Image.Dither.NONE)
        picture.save(tmp, format="PNG", optimize=bool(colors))
    return out


def read_prompt_file(path: Path) -> list[str]:
    """One caption per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the prompts file ({err})") from None
    prompts = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"{path}: no prompts (one caption per line)")
    return prompts


def _stack(pictures: list[Any]) -> Any:
    """Titled grids one under another on white (all share the grid width)."""
    from PIL import Image

    width = max(p.width for p in pictures)
    out = Image.new("RGB", (width, sum(p.height for p in pictures)), "white")
    y = 0
    for picture in pictures:
        out.paste(picture, (0, y))
        y += picture.height
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m text2img.sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prompt", nargs="*", help="the caption(s) to draw, one block each")
    parser.add_argument("--prompts", type=Path, default=None, metavar="FILE",
                        help="a text file of captions, one per line (added after PROMPT)")
    parser.add_argument("--n", type=int, default=8, help="samples (different z) per caption")
    parser.add_argument("--per-row", type=int, default=4,
                        help="Stage-I|Stage-II pairs per row of a caption's block")
    parser.add_argument("--checkpoint", default=None, help="run folder or g_ema.safetensors")
    parser.add_argument("--out", type=Path, default=Path("grid.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-title", action="store_true", help="omit the caption strips")
    parser.add_argument("--colors", type=int, default=0, metavar="K",
                        help="save as a K-colour palette PNG (2-256; smaller files for docs)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.per_row < 1:
        parser.error("--n and --per-row must be at least 1")
    if args.colors and not 2 <= args.colors <= 256:
        parser.error("--colors must be between 2 and 256")
    from text2img.encoders import EncoderError

    try:
        prompts = list(args.prompt) + (read_prompt_file(args.prompts) if args.prompts else [])
        if not prompts:
            parser.error("give a caption or --prompts FILE")
        nets = load_generators(args.checkpoint, args.device)
        encoder = checked_encoder(nets["meta"])
        emb = encoder.encode(prompts)
    except (CheckpointError, EncoderError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    sampler = sampler_for(nets, args.device, encoder)
    stage = sampler.stage
    from PIL import Image

    gen = torch.Generator().manual_seed(args.seed)
    pictures = []
    for i, prompt in enumerate(prompts):
        images = sampler.both(emb[i:i + 1], args.n, gen, [prompt])
        grid = sample_grid(images, per_row=args.per_row)
        pictures.append(Image.fromarray(grid) if args.no_title else _with_title(grid, prompt))
    save_png(_stack(pictures), args.out, args.colors)
    print(f"wrote {args.out} ({len(prompts)} caption(s) x {args.n} samples, "
          f"stage{'s I+II' if stage == 2 else ' I'}, from {nets['path']})")
    return args.out


if __name__ == "__main__":
    main()
