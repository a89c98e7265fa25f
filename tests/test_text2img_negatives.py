"""Colour-swapped captions (text2img/negatives.py) and the matcher's swap negatives."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import text2img.matcher as tm
from common.config import to_dict
from common.paths import short_hash
from text2img.negatives import swap_colours, swapped_embeddings

SMALL = tm.MatcherConfig(widths=[8, 16], dim=16, size=16, steps=150, batch_size=32,
                         lr=3e-3, holdout=64)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CGAN_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def test_swap_colours_exchanges_two_different_colour_words_everywhere() -> None:
    assert swap_colours("a red bird with blue wings") == "a blue bird with red wings"
    # every occurrence of each word, capitals kept, other words (even colour-like) untouched
    assert (swap_colours("Red crown, blue wings and a red belly; reddish feet")
            == "Blue crown, red wings and a blue belly; reddish feet")
    # the beak's colour word is a colour word like any other
    assert (swap_colours("a grey bird with a short orange beak")
            == "a orange bird with a short grey beak")
    for one in ("a small bird at dusk", "a red bird with a red crown", ""):
        assert swap_colours(one) is None
    # three colours: three pairs, chosen by pick (modulo their number)
    caption = "a red bird with blue wings and a green crown"
    swaps = [swap_colours(caption, k) for k in range(4)]
    assert swaps[:3] == ["a blue bird with red wings and a green crown",
                         "a green bird with blue wings and a red crown",
                         "a red bird with green wings and a blue crown"]
    assert swaps[3] == swaps[0]


def test_swapped_embeddings_embeds_only_captions_that_have_a_swap() -> None:
    captions = [["a red bird with blue wings", "a small bird"],
                ["mostly green", "a yellow bird with a black crown"]]
    seen: list[list[str]] = []

    def encode(texts: list[str]) -> torch.Tensor:
        seen.append(list(texts))
        return torch.stack([torch.tensor([float(len(t)), float(t.count("e"))]) for t in texts])

    emb, ok = swapped_embeddings(captions, encode)
    assert seen == [["a blue bird with red wings", "a black bird with a yellow crown"]]
    assert emb.shape == (2, 2, 2) and ok.tolist() == [[True, False], [False, True]]
    assert_close(emb[0, 0], encode(["a blue bird with red wings"])[0])
    assert_close(emb[1, 1], encode(["a black bird with a yellow crown"])[0])
    assert_close(emb[~ok], torch.zeros(2, 2))


def test_symmetric_nce_adds_the_swaps_as_image_to_caption_negatives() -> None:
    logits = torch.tensor([[3.0, 0.0, 1.0], [0.5, 2.0, 0.0], [0.0, 1.0, 1.0]])
    swap_logits = torch.tensor([[2.5, 0.2, 0.1], [0.3, 1.9, 0.4], [0.0, 0.6, 0.7]])
    cond = torch.eye(3)
    swap_cond = torch.eye(3).flip(0) * 2  # no swap equals a caption
    ok = torch.tensor([True, True, False])  # caption 2 has no swap
    both = torch.cat([logits, swap_logits.masked_fill(~ok[None, :], float("-inf"))], dim=1)
    rows = F.cross_entropy(both, torch.arange(3))
    cols = F.cross_entropy(logits.t(), torch.arange(3))
    got = tm.symmetric_nce(logits, cond, swap_logits, swap_cond, ok)
    assert_close(got, 0.5 * (rows + cols))
    assert got > tm.symmetric_nce(logits, cond)  # extra negatives: a harder problem
    # a swap that is word for word image 1's own caption is not a negative for image 1
    fitting = swap_cond.clone()
    fitting[0] = cond[1]
    masked = both.clone()
    masked[1, 3] = float("-inf")
    rows = F.cross_entropy(masked, torch.arange(3))
    assert_close(tm.symmetric_nce(logits, cond, swap_logits, fitting, ok), 0.5 * (rows + cols))
    with pytest.raises(ValueError, match="swap_cond and swap_ok"):
        tm.symmetric_nce(logits, cond, swap_logits)
    with pytest.raises(ValueError, match="extra negatives must be"):
        tm.symmetric_nce(logits, cond, swap_logits[:, :2], swap_cond, ok)


def _two_colour_birds(n: int = 320, k: int = 6, levels: int = 8, captions: int = 2):
    """Images whose top half has colour a and bottom half colour b (a ≠ b, from k) inside a
    frame of one of ``levels`` grey levels. The 'caption' embedding (mixed by a random
    matrix) holds the bag of both colours, a weak which-is-where part and the frame level;
    its swap exchanges a and b. In a batch the frame tells most captions apart, as the many
    attributes of a SynthBirds caption do, so in-batch negatives teach little binding."""
    gen = torch.Generator().manual_seed(0)
    palette = torch.rand(k, 3, generator=gen)
    mix = torch.randn(2 * k + levels, 2 * k + levels, generator=gen)
    a = torch.randint(k, (n,), generator=gen)
    b = (a + torch.randint(1, k, (n,), generator=gen)) % k
    frame = torch.randint(levels, (n,), generator=gen)

    def embed(top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        one = F.one_hot(top, k).float(), F.one_hot(bottom, k).float()
        return torch.cat([one[0] + one[1], 0.1 * (one[0] - one[1]),
                          F.one_hot(frame, levels).float()], dim=1) @ mix

    emb = embed(a, b)[:, None].repeat(1, captions, 1)
    swap = embed(b, a)[:, None].repeat(1, captions, 1)
    images = {}
    for r in (8, 16):
        x = torch.empty(n, 3, r, r)
        x[:, :, : r // 2] = palette[a][:, :, None, None]
        x[:, :, r // 2:] = palette[b][:, :, None, None]
        x[..., 0] = x[..., -1] = (frame.float() / (levels - 1))[:, None, None]
        images[r] = (x * 255 + 8 * torch.randn(x.shape, generator=gen)).clamp(0, 255).round(
            ).to(torch.uint8)
    return images, emb, (swap, torch.ones(n, captions, dtype=torch.bool))


def test_swap_negatives_teach_the_matcher_which_part_each_colour_is_on() -> None:
    images, emb, negatives = _two_colour_birds()
    longer = {**SMALL.__dict__, "steps": 300}
    cfg = tm.MatcherConfig(**{**longer, "swap_negatives": True})
    with pytest.raises(ValueError, match="colour swaps"):
        tm.train_matcher(cfg, images, emb, progress=False)
    with pytest.raises(ValueError, match="negatives must be"):
        tm.train_matcher(cfg, images, emb, progress=False,
                         negatives=(negatives[0][:, :1], negatives[1][:, :1]))
    matcher, stats = tm.train_matcher(cfg, images, emb, progress=False, negatives=negatives)
    # the same training without them (the swaps only scored): 0.70 / 0.73 at 8 / 16 px
    _, plain = tm.train_matcher(tm.MatcherConfig(**longer), images, emb, progress=False,
                                negatives=negatives)
    held = slice(len(emb) - cfg.holdout, None)
    for r in ("8", "16"):
        over = stats["heldout_over_swap"][r]  # 0.86 / 0.92 (chance 0.5)
        assert over == tm.swap_preference(matcher, images[int(r)][held], emb[held, 0],
                                          negatives[0][held, 0], negatives[1][held, 0])
        assert over > 0.8 and over > plain["heldout_over_swap"][r] + 0.1
    nothing = torch.zeros_like(negatives[1][held, 0])  # no caption has a swap: no score
    assert math.isnan(tm.swap_preference(matcher, images[16][held], emb[held, 0],
                                         negatives[0][held, 0], nothing))


def test_swap_negatives_get_their_own_cache_key_and_leave_older_keys_alone() -> None:
    plain, swapped = SMALL, tm.MatcherConfig(**{**SMALL.__dict__, "swap_negatives": True})
    key = tm.matcher_key(plain, "colours", [8, 16])
    assert key != tm.matcher_key(swapped, "colours", [8, 16])
    # a default-off option added after version 1 is not in the key of a config without it
    v1 = {k: v for k, v in to_dict(plain).items()
          if k not in ("per_stage", "stages", "swap_negatives")}
    assert key == short_hash({"version": tm.MATCHER_VERSION, "corpus": "colours",
                              "sizes": [8, 16], "config": v1})
    images, emb, negatives = _two_colour_birds(n=160)
    cfg = tm.MatcherConfig(**{**swapped.__dict__, "steps": 3, "holdout": 32})
    with pytest.raises(ValueError, match="colour swaps"):
        tm.load_or_train_matcher(cfg, images, emb, "birds", progress=False)
    calls = []

    def lazy():
        calls.append(1)
        return negatives

    first = tm.load_or_train_matcher(cfg, images, emb, "birds", progress=False, negatives=lazy)
    again = tm.load_or_train_matcher(cfg, images, emb, "birds", progress=False, negatives=lazy)
    assert calls == [1]  # embedded for training only, not to load the cached matcher
    assert first.meta["key"] == again.meta["key"] and "heldout_over_swap" in first.meta
