"""Colour-swapped captions: hard negatives that differ from the caption only in binding.

A sentence encoder pooled over words is close to a bag of words: "a red bird with blue
wings" and "a blue bird with red wings" embed at cosine 0.988 on average with MiniLM, and a
matcher trained with in-batch negatives alone, which almost never holds such a pair, learns
which colours are in the picture but hardly where (it prefers a SynthBirds test caption
over its colour swap 69 % of the time; ``python -m text2img.matcher --config
configs/text2img/cpu.yaml`` prints both). NegCLIP (Yuksekgonul et
al. 2023, "When and why vision-language models behave like bags-of-words", §4) adds, for
every caption, a copy with words swapped as an extra negative; here the words swapped are
two different colour words, so the copy states the same colours on the wrong parts and is
false for the image whatever else the caption says.

    swap_colours("a red bird with blue wings")  ->  "a blue bird with red wings"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from itertools import combinations

import torch
from torch import Tensor

__all__ = ["COLOUR_WORDS", "swap_colours", "swapped_embeddings"]

# SynthBirds' ten colours and the other colour words of bird captions (CUB, Oxford-102).
COLOUR_WORDS = frozenset((
    "red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white", "grey",
    "gray", "pink", "violet", "gold", "golden", "tan", "buff", "olive", "crimson", "scarlet",
    "maroon", "magenta", "cream", "beige", "rust", "chestnut", "rufous", "cyan", "teal",
    "lavender", "silver"))
_WORD = re.compile(r"[A-Za-z]+")


def swap_colours(caption: str, pick: int = 0) -> str | None:
    """``caption`` with two different colour words exchanged (every occurrence of each), or
    None when it names fewer than two different colours. With k colours there are
    k(k-1)/2 pairs; ``pick`` chooses one (modulo their number, in order of appearance)."""
    words = [m.group(0).lower() for m in _WORD.finditer(caption)]
    colours = list(dict.fromkeys(w for w in words if w in COLOUR_WORDS))
    pairs = list(combinations(colours, 2))
    if not pairs:
        return None
    a, b = pairs[pick % len(pairs)]

    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        low = word.lower()
        if low not in (a, b):
            return word
        new = b if low == a else a
        return new.capitalize() if word[0].isupper() else new

    return _WORD.sub(swap, caption)


def swapped_embeddings(captions: Sequence[Sequence[str]],
                       encode: Callable[[list[str]], Tensor]) -> tuple[Tensor, Tensor]:
    """One colour swap per caption, embedded: (float Tensor[N, C, E], bool Tensor[N, C]
    which captions have one). Caption j of image i swaps pair number ``i * C + j`` (spread
    over the pairs of captions that name three or more colours); ``encode`` embeds a list of
    strings (e.g. an :class:`~text2img.encoders.EmbeddingCache` bound to the encoder)."""
    per = len(captions[0])
    flat = [swap_colours(c, i * per + j) for i, caps in enumerate(captions)
            for j, c in enumerate(caps)]
    ok = torch.tensor([s is not None for s in flat]).view(len(captions), per)
    texts = [s for s in flat if s is not None]
    emb = encode(texts) if texts else torch.zeros(0, 1)
    out = torch.zeros(len(flat), emb.shape[-1], dtype=emb.dtype)
    out[ok.flatten()] = emb
    return out.view(len(captions), per, -1), ok
