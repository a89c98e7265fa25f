"""SynthBirds vocabulary: the eight attributes, caption writing and caption parsing.

An image's attributes are an int vector ``[8]`` indexing :data:`ATTRIBUTES` (in
:data:`ATTRIBUTE_NAMES` order). Each caption mentions a random subset of 2-5 of them in
one of several sentence shapes, e.g.::

    this bird has a red crown, a white belly and a short orange beak
    a small bird with blue striped wings
    the bird is mostly green with a black head
    at dusk, a large yellow bird has spotted wings and a long beak

Colours are always one of the ten base words (no synonyms: paraphrase robustness belongs
to the text encoder, not to the data). :func:`parse_caption` inverts the templates
exactly, so every caption's mentioned attributes can be checked, and it also reads the
same phrases in free text (evaluation prompts).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_NAMES",
    "BACKGROUNDS",
    "BACKGROUND_PHRASES",
    "BEAK_COLOURS",
    "BEAK_LENGTHS",
    "COLOURS",
    "PATTERNS",
    "SIZES",
    "SIZE_WORDS",
    "attributes_to_indices",
    "make_captions",
    "parse_caption",
    "sample_attributes",
]

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white",
           "grey")
BEAK_COLOURS = ("black", "orange", "yellow", "grey")
BEAK_LENGTHS = ("short", "long")
PATTERNS = ("plain", "striped", "spotted")
SIZES = ("small", "medium", "large")
BACKGROUNDS = ("sky", "foliage", "dusk", "plain")

ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("body", COLOURS),  # breast and belly
    ("wing", COLOURS),
    ("crown", COLOURS),  # top of the head
    ("beak_colour", BEAK_COLOURS),
    ("beak_length", BEAK_LENGTHS),
    ("wing_pattern", PATTERNS),
    ("size", SIZES),
    ("background", BACKGROUNDS),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(name for name, _ in ATTRIBUTES)
N_VALUES = np.array([len(values) for _, values in ATTRIBUTES])  # (8,)
(BODY, WING, CROWN, BEAK_COLOUR, BEAK_LENGTH, PATTERN, SIZE, BACKGROUND) = range(8)


def sample_attributes(rng: np.random.Generator) -> np.ndarray:
    """int64 ``[8]``: every attribute drawn independently and uniformly."""
    return rng.integers(0, N_VALUES).astype(np.int64)


def attributes_to_indices(named: dict[str, str]) -> dict[str, int]:
    """``{"body": "red", ...}`` → ``{"body": 0, ...}``; unknown names or values raise
    ``ValueError`` listing the choices."""
    out = {}
    for name, value in named.items():
        if name not in ATTRIBUTE_NAMES:
            raise ValueError(f"unknown attribute {name!r}; attributes: "
                             f"{', '.join(ATTRIBUTE_NAMES)}")
        values = ATTRIBUTES[ATTRIBUTE_NAMES.index(name)][1]
        if value not in values:
            raise ValueError(f"attribute {name!r} has no value {value!r}; values: "
                             f"{', '.join(values)}")
        out[name] = values.index(value)
    return out


# ----------------------------------------------------------------------------- writing

# How captions say each size and background (index order of SIZES / BACKGROUNDS).
SIZE_WORDS = ("small", "medium-sized", "large")
BACKGROUND_PHRASES = (
    ("in the sky", "against the sky"),
    ("among the foliage", "among the leaves", "in the foliage"),
    ("at dusk", "in the dusk light"),
    ("against a plain background", "on a plain background"),
)
_PATTERN_NOUNS = {"striped": "stripes", "spotted": "spots"}


class _Draws:
    """Uniform floats drawn from a numpy Generator in blocks.

    One ``rng.random(k)`` call costs about as much as the Python work for a whole
    caption, so captions consume pre-drawn floats instead of calling the Generator per
    choice (deterministic: the block sizes are fixed).
    """

    def __init__(self, rng: np.random.Generator, block: int = 256) -> None:
        self._rng, self._block = rng, block
        self._next = iter(()).__next__

    def u(self) -> float:
        try:
            return self._next()
        except StopIteration:
            self._next = iter(self._rng.random(self._block).tolist()).__next__
            return self._next()

    def below(self, n: int) -> int:
        return int(self.u() * n)  # u < 1, so u * n rounds to at most n - 1

    def pick(self, options: Sequence[str]) -> str:
        return options[int(self.u() * len(options))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _join(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _wing_phrase(colour: str | None, pattern: str | None, d: _Draws) -> str:
    if colour and pattern:
        if pattern != "plain" and d.u() < 0.35:
            return f"{colour} wings with {_PATTERN_NOUNS[pattern]}"
        return f"plain {colour} wings" if pattern == "plain" else f"{colour} {pattern} wings"
    if colour:
        return f"{colour} wings"
    assert pattern is not None
    if pattern != "plain" and d.u() < 0.35:
        return f"wings with {_PATTERN_NOUNS[pattern]}"
    return f"{pattern} wings"


def _beak_phrase(colour: str | None, length: str | None, d: _Draws) -> str:
    noun = "bill" if d.u() < 0.25 else "beak"
    words = [w for w in (length, colour) if w]
    return f"{_article(words[0])} {' '.join(words)} {noun}"


def _caption(attrs: np.ndarray, chosen: set[int], d: _Draws) -> str:
    """One sentence mentioning exactly the attributes in ``chosen``."""
    colour = [COLOURS[int(attrs[k])] for k in (BODY, WING, CROWN)]
    adjectives: list[str] = []  # before "bird"
    predicates: list[str] = []  # "is small and mostly green"
    nouns: list[str] = []  # "has a red crown, ..."
    if BODY in chosen:
        mode = d.below(4)
        if mode == 0:
            adjectives.append(colour[BODY])
        elif mode == 3:
            predicates.append(f"mostly {colour[BODY]}")
        else:
            part = d.pick(("belly", "breast", "body"))
            nouns.append(f"{_article(colour[BODY])} {colour[BODY]} {part}")
    if SIZE in chosen:
        word = SIZE_WORDS[int(attrs[SIZE])]
        (adjectives if d.u() < 0.7 else predicates).insert(0, word)
    if CROWN in chosen:
        part = d.pick(("crown", "crown", "head"))
        nouns.append(f"{_article(colour[CROWN])} {colour[CROWN]} {part}")
    if WING in chosen or PATTERN in chosen:
        nouns.append(_wing_phrase(colour[WING] if WING in chosen else None,
                                  PATTERNS[int(attrs[PATTERN])] if PATTERN in chosen else None,
                                  d))
    if BEAK_COLOUR in chosen or BEAK_LENGTH in chosen:
        nouns.append(_beak_phrase(
            BEAK_COLOURS[int(attrs[BEAK_COLOUR])] if BEAK_COLOUR in chosen else None,
            BEAK_LENGTHS[int(attrs[BEAK_LENGTH])] if BEAK_LENGTH in chosen else None, d))
    for i in range(len(nouns) - 1, 0, -1):  # Fisher-Yates: vary the order of the parts
        j = d.below(i + 1)
        nouns[i], nouns[j] = nouns[j], nouns[i]

    # "a bird is small" reads badly: predicates take a definite subject.
    det = d.pick(("this", "the") if predicates else ("this", "a", "the"))
    if det == "a" and adjectives:
        det = _article(adjectives[0])
    subject = " ".join([det, *adjectives, "bird"])
    if det in ("a", "an") and d.u() < 0.3:
        subject = "this is " + subject
    sentence = subject
    nested = any(" with " in n for n in nouns)  # avoid "with ... wings with stripes"
    if predicates:
        sentence += " is " + " and ".join(predicates)
        if nouns:
            sentence += (" and has " if nested else d.pick((" with ", " and has "))) + \
                _join(nouns)
    elif nouns:
        if det in ("this", "the") and not subject.startswith("this is"):
            link = " has "
        else:
            link = " that has " if nested else d.pick((" with ", " that has "))
        sentence += link + _join(nouns)
    if BACKGROUND in chosen:
        where = d.pick(BACKGROUND_PHRASES[int(attrs[BACKGROUND])])
        sentence = f"{where}, {sentence}" if d.u() < 0.25 else f"{sentence} {where}"
    return sentence


def make_captions(attrs: np.ndarray, rng: np.random.Generator, n: int = 10,
                  ) -> tuple[list[str], np.ndarray]:
    """``n`` captions for one image and bool ``[n, 8]``: which attributes each mentions
    (a uniform subset of 2-5 of the 8)."""
    d = _Draws(rng)
    captions = []
    mentions = np.zeros((n, len(ATTRIBUTES)), dtype=bool)
    order = list(range(len(ATTRIBUTES)))
    for j in range(n):
        k = 2 + d.below(4)
        for i in range(k):  # partial Fisher-Yates: the first k of a random permutation
            t = i + d.below(len(order) - i)
            order[i], order[t] = order[t], order[i]
        chosen = set(order[:k])
        mentions[j, list(chosen)] = True
        captions.append(_caption(attrs, chosen, d))
    return captions, mentions


# ----------------------------------------------------------------------------- parsing

_C = "|".join(COLOURS)
_P = "|".join(PATTERNS)
_RULES: tuple[tuple[re.Pattern[str], tuple[str | None, ...]], ...] = (
    # Each rule: a regex and, per group, the attribute it reads (None: group unused).
    (re.compile(r"\b(dusk)\b"), ("background",)),
    (re.compile(r"\b(sky)\b"), ("background",)),
    (re.compile(r"\b(foliage|leaves)\b"), ("background",)),
    (re.compile(r"\b(plain)\s+background\b"), ("background",)),
    (re.compile(rf"\b(?:({_C}|{_P})\s+)?(?:({_C}|{_P})\s+)?wings?(?:\s+with\s+(stripes|spots))?\b"),
     ("wing*", "wing*", "wing_pattern")),
    (re.compile(rf"\b(?:(short|long)\s+)?(?:({'|'.join(BEAK_COLOURS)})\s+)?(?:beak|bill)\b"),
     ("beak_length", "beak_colour")),
    (re.compile(rf"\b({_C})\s+(?:crown|head|cap)\b"), ("crown",)),
    (re.compile(rf"\bmostly\s+({_C})\b"), ("body",)),
    (re.compile(rf"\b({_C})\s+(?:belly|breast|body|underparts)\b"), ("body",)),
    (re.compile(rf"\b({_C})\s+bird\b"), ("body",)),
    (re.compile(r"\b(small|medium-sized|medium|large)\b"), ("size",)),
)
_CANONICAL = {"leaves": "foliage", "medium-sized": "medium", "stripes": "striped",
              "spots": "spotted"}


def parse_caption(caption: str) -> dict[str, str]:
    """The attributes a caption states, ``{name: value}`` (first statement wins).

    Reads the phrases :func:`make_captions` writes ("a red crown", "blue striped wings",
    "a short orange beak", "mostly green", "a small bird", "at dusk", ...); text it does
    not recognise (other words, other colour names) is ignored.
    """
    text = caption.lower()
    found: dict[str, str] = {}
    for pattern, slots in _RULES:
        for match in pattern.finditer(text):
            for slot, word in zip(slots, match.groups(), strict=True):
                if word is None or slot is None:
                    continue
                if slot == "wing*":  # a colour or a pattern word before "wings"
                    slot = "wing_pattern" if word in PATTERNS else "wing"
                found.setdefault(slot, _CANONICAL.get(word, word))
    return {name: found[name] for name in ATTRIBUTE_NAMES if name in found}
