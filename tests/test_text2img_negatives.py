"""Colour-swapped captions (text2img/negatives.py); the matcher's use of them is tested in
test_text2img_matcher.py."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from text2img.negatives import swap_colours, swapped_embeddings


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
