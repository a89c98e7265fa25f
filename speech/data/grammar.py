"""The repository's own small English grammar: the text SynthVoices speakers read.

No sentence comes from a published corpus: every one is drawn from the hand-written
context-free rules and word lists below, so the corpus is free to regenerate and share.
The grammar favours what a speech corpus needs from text: varied phone content (words
from many phonetic shapes), statements and questions (falling and rising intonation),
commas (phrase breaks), and lengths of 5-16 words (about 1.5-6 s of speech).

``sentences(n, seed)`` is deterministic, returns ``n`` distinct sentences, and is prefix
stable: ``sentences(50, s) == sentences(300, s)[:50]``, so asking for more sentences never
changes the ones a smaller corpus already used.
"""

from __future__ import annotations

import random
import re

__all__ = ["GRAMMAR_VERSION", "MAX_WORDS", "MIN_WORDS", "sentences", "vocabulary"]

# Bump when the rules or word lists change: the SynthVoices cache key includes it.
GRAMMAR_VERSION = 1
MIN_WORDS, MAX_WORDS = 5, 16

# --------------------------------------------------------------------------- words

_NAMES = ["Nora", "Elliot", "Maya", "Tobias", "Greta", "Oscar", "Lena", "Felix", "Ruth",
          "Simon", "Clara", "Victor", "Hazel", "Martin", "Irene", "Daniel"]
_PERSONS = ["teacher", "farmer", "doctor", "baker", "pilot", "neighbour", "driver", "singer",
            "painter", "sailor", "student", "captain", "gardener", "nurse", "writer"]
_ANIMALS = ["dog", "cat", "horse", "goat", "rabbit", "parrot", "fox", "owl", "duck", "mouse"]
_THINGS = ["basket", "lamp", "ladder", "kettle", "letter", "umbrella", "candle", "mirror",
           "blanket", "bicycle", "wagon", "bucket", "violin", "map", "jacket", "clock",
           "window", "envelope", "hammer", "pillow", "notebook", "shovel", "teapot",
           "drum", "rope", "key", "coat", "bottle", "box", "chair", "table", "boat"]
_FOODS = ["bread", "soup", "cheese", "honey", "rice", "butter", "coffee", "cake", "lemonade",
          "porridge", "salad", "jam"]
_PLACES = ["kitchen", "garden", "market", "station", "library", "harbour", "village",
           "bakery", "cellar", "school", "museum", "forest", "river", "bridge", "valley",
           "office", "theatre", "hospital", "farm", "hill"]
_ADJ_THING = ["old", "new", "small", "heavy", "bright", "broken", "wooden", "yellow", "green",
              "purple", "silver", "dusty", "empty", "little", "shiny", "narrow", "orange",
              "strange", "brown", "golden"]
_ADJ_PERSON = ["tired", "happy", "quiet", "clever", "busy", "angry", "patient", "nervous",
               "cheerful", "careful", "brave", "hungry", "polite", "young", "curious"]
_ADJ_FOOD = ["warm", "fresh", "sweet", "salty", "cold", "thick", "delicious", "burnt"]
_ADV = ["slowly", "quickly", "carefully", "quietly", "happily", "early", "again", "loudly",
        "gently", "suddenly", "twice", "together"]
_TIMES = ["on Monday", "on Tuesday", "on Friday", "on Sunday", "in the morning",
          "in the evening", "after lunch", "before dinner", "at noon", "at midnight",
          "every weekend"]
_PAST_TIMES = ["yesterday", "last winter", "last night", "an hour ago"]
_FUTURE_TIMES = ["tomorrow", "next summer", "tonight", "next week"]
_PREPS = ["near", "behind", "beside", "under", "inside", "across", "outside", "above"]

# (base, past) for verbs taking a thing as object.
_TV_THING = [("carry", "carried"), ("find", "found"), ("paint", "painted"),
             ("fix", "fixed"), ("drop", "dropped"), ("clean", "cleaned"), ("sell", "sold"),
             ("buy", "bought"), ("hide", "hid"), ("open", "opened"), ("borrow", "borrowed"),
             ("lose", "lost"), ("move", "moved"), ("wrap", "wrapped"), ("push", "pushed"),
             ("lift", "lifted"), ("bring", "brought"), ("keep", "kept"), ("polish", "polished")]
_TV_FOOD = [("eat", "ate"), ("cook", "cooked"), ("share", "shared"), ("taste", "tasted"),
            ("bake", "baked"), ("spill", "spilled"), ("warm", "warmed")]
_TV_AGENT = [("meet", "met"), ("call", "called"), ("help", "helped"), ("follow", "followed"),
             ("visit", "visited"), ("thank", "thanked"), ("wake", "woke"), ("watch", "watched")]
_IV = [("sing", "sang"), ("laugh", "laughed"), ("wait", "waited"), ("sleep", "slept"),
       ("dance", "danced"), ("run", "ran"), ("whistle", "whistled"), ("work", "worked"),
       ("shout", "shouted"), ("listen", "listened"), ("rest", "rested"), ("swim", "swam")]
_MOVE = [("walk", "walked"), ("drive", "drove"), ("hurry", "hurried"), ("return", "returned"),
         ("climb", "climbed"), ("ride", "rode")]
_DET = ["the", "a", "my", "our", "your", "this", "that", "her", "his", "their"]
_DEF = ["the", "my", "our", "your", "this", "that", "her", "his", "their"]

# --------------------------------------------------------------------------- rules
# A rule maps a symbol to alternatives; an alternative is a list of symbols (``<...>``)
# and literal words. Symbols starting with ``@`` are word lists, ``%`` pick one half of a
# (base, past) verb pair. Repeated alternatives weight the draw.

_LISTS: dict[str, list[str]] = {
    "@name": _NAMES, "@person": _PERSONS, "@animal": _ANIMALS, "@thing": _THINGS,
    "@food": _FOODS, "@place": _PLACES, "@past_time": _PAST_TIMES,
    "@future_time": _FUTURE_TIMES, "@adj_thing": _ADJ_THING,
    "@adj_person": _ADJ_PERSON, "@adj_food": _ADJ_FOOD, "@adv": _ADV, "@time": _TIMES,
    "@prep": _PREPS, "@det": _DET, "@def": _DEF,
}
_VERBS: dict[str, list[tuple[str, str]]] = {
    "tv_thing": _TV_THING, "tv_food": _TV_FOOD, "tv_agent": _TV_AGENT, "iv": _IV,
    "move": _MOVE,
}

_RULES: dict[str, list[list[str]]] = {
    "<s>": [["<statement>", "."]] * 5 + [["<question>", "?"]] * 3
    + [["<compound>", "."]] * 2 + [["<fronted>", "."]] * 2 + [["<request>", "."]],
    "<statement>": [["<past>"]] * 6 + [["<subject>", "will", "%base:tv_thing", "<thing_np>",
                                        "<future_when>"]],
    # Statements about the past: the clauses that compounds and fronted phrases combine.
    "<past>": [
        ["<subject>", "%past:tv_thing", "<thing_np>"],
        ["<subject>", "%past:tv_thing", "<thing_np>", "<where>"],
        ["<subject>", "%past:tv_food", "<food_np>"],
        ["<subject>", "%past:tv_food", "<food_np>", "@time"],
        ["<subject>", "%past:tv_agent", "<agent>", "<where>"],
        ["<subject>", "%past:iv", "@adv"],
        ["<subject>", "%past:iv", "<where>", "@time"],
        ["<subject>", "%past:move", "to", "<place_np>", "@adv"],
        ["<agent>", "was", "<adj_person_phrase>", "<where>"],
        ["<plural>", "were", "<adj_person_phrase>", "<where>"],
        ["<thing_np>", "was", "@prep", "<thing_np>"],
        ["there", "was", "<thing_np>", "<where>"],
        ["<food_np>", "tasted", "@adj_food"],
    ],
    "<question>": [
        ["did", "<agent>", "%base:tv_thing", "<thing_np>"],
        ["did", "<subject>", "%base:tv_agent", "<agent>", "<past_when>"],
        ["where", "did", "<agent>", "%base:tv_thing", "<thing_np>"],
        ["why", "was", "<agent>", "so", "@adj_person"],
        ["why", "were", "<plural>", "so", "@adj_person"],
        ["can", "<subject>", "%base:tv_food", "<food_np>", "<future_when>"],
        ["who", "%past:tv_thing", "<thing_np>", "<where>"],
        ["is", "<thing_np>", "still", "@prep", "<thing_np>"],
        ["will", "<subject>", "%base:move", "to", "<place_np>", "<future_when>"],
        ["have", "you", "seen", "<thing_np>", "<where>"],
    ],
    "<compound>": [
        ["<past>", ",", "and", "<past>"],
        ["<past>", ",", "but", "<past>"],
        ["<past>", "because", "<past>"],
        ["<past>", ",", "so", "<past>"],
    ],
    "<fronted>": [
        ["@time", ",", "<past>"],
        ["@past_time", ",", "<past>"],
        ["when", "<past>", ",", "<past>"],
        ["after", "<past>", ",", "<past>"],
    ],
    "<request>": [
        ["please", "%base:tv_thing", "<thing_np>", "<where>"],
        ["please", "%base:tv_food", "<food_np>", "@adv"],
        ["please", "%base:tv_agent", "<agent>", "<future_when>"],
        ["do", "not", "%base:tv_thing", "<thing_np>", "<where>"],
    ],
    "<agent>": [["@name"]] * 3 + [["@def", "@person"]] * 2 + [["@def", "@animal"]]
    + [["the", "@adj_person", "@person"], ["a", "@adj_person", "@animal"]],
    # Subjects of verbs without agreement (past tense, modals): pronouns are fine here.
    "<subject>": [["<agent>"]] * 5 + [["<plural>"]],
    "<plural>": [["we"], ["they"], ["the", "@person", "and", "@name"], ["@name", "and", "@name"]],
    "<past_when>": [["@time"]] * 2 + [["@past_time"]],
    "<future_when>": [["@time"]] * 2 + [["@future_time"]],
    "<thing_np>": [["@det", "@thing"]] * 2 + [["@det", "@adj_thing", "@thing"]] * 2
    + [["@def", "@adj_thing", "@thing"]],
    "<food_np>": [["@food"], ["the", "@food"], ["the", "@adj_food", "@food"],
                  ["some", "@adj_food", "@food"]],
    "<place_np>": [["the", "@place"], ["the", "@adj_thing", "@place"]],
    "<where>": [["@prep", "the", "@place"], ["in", "<place_np>"], ["at", "the", "@place"],
                ["@prep", "<thing_np>"]],
    "<adj_person_phrase>": [["@adj_person"], ["very", "@adj_person"],
                            ["a", "little", "@adj_person"]],
}


def _expand(symbol: str, rng: random.Random, out: list[str]) -> None:
    if symbol in _RULES:
        options = _RULES[symbol]
        for part in options[rng.randrange(len(options))]:
            _expand(part, rng, out)
    elif symbol in _LISTS:
        words = _LISTS[symbol]
        out.append(words[rng.randrange(len(words))])
    elif symbol.startswith("%"):
        form, kind = symbol[1:].split(":")
        pairs = _VERBS[kind]
        base, past = pairs[rng.randrange(len(pairs))]
        out.append(base if form == "base" else past)
    else:
        out.append(symbol)


def _render(tokens: list[str]) -> str:
    """Words -> sentence text: articles agree, punctuation attaches, first letter capital."""
    words: list[str] = []
    for i, tok in enumerate(tokens):
        if tok == "a" and i + 1 < len(tokens) and tokens[i + 1][0].lower() in "aeiou":
            tok = "an"
        words.append(tok)
    text = " ".join(words)
    text = re.sub(r" ([,.?])", r"\1", text)
    return text[0].upper() + text[1:]


def _count_words(text: str) -> int:
    return len(text.split())


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sentences drawn from the grammar with ``seed`` (prefix stable).

    Each ends with ``.`` or ``?``, has :data:`MIN_WORDS`-:data:`MAX_WORDS` words and never
    contains a double quote (so it can be embedded in a Scheme string for festival).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    # Python's Random(int) stream and randrange are stable across Python 3 versions, so
    # the same seed gives the same text on any machine.
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 200 * (n + 10):
            raise RuntimeError(f"the grammar could not produce {n} distinct sentences")
        tokens: list[str] = []
        _expand("<s>", rng, tokens)
        text = _render(tokens)
        if not MIN_WORDS <= _count_words(text) <= MAX_WORDS or text in seen:
            continue
        seen.add(text)
        out.append(text)
    return out


def vocabulary() -> list[str]:
    """Every word the grammar can emit (lower case, sorted)."""
    words: set[str] = set()
    for lst in _LISTS.values():
        for w in lst:
            words.update(w.lower().split())
    for pairs in _VERBS.values():
        for base, past in pairs:
            words.update((base, past))
    for options in _RULES.values():
        for alt in options:
            words.update(p for p in alt if p[0] not in "<@%" and p not in ",.?")
    words.add("an")
    return sorted(words)
