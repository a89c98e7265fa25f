"""The frozen image–caption matcher (text2img/matcher.py) and its G loss in StackGAN."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import text2img.matcher as tm
import text2img.train as t2i
from common.config import RuntimeConfig, load_config, to_dict
from common.paths import short_hash
from common.runtime import setup_runtime

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "text2img" / "tiny.yaml"
SMALL = tm.MatcherConfig(widths=[8, 16], dim=16, size=16, steps=150, batch_size=32,
                         lr=3e-3, holdout=64)


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CGAN_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _colour_pairs(n: int = 320, captions: int = 2, e: int = 12):
    """Images of one random colour each (+ pixel noise) at 8 and 16 px; each image's
    'captions' are a fixed random linear map of its colour, plus a little noise."""
    gen = torch.Generator().manual_seed(0)
    rgb = torch.rand(n, 3, generator=gen)
    mix = torch.randn(3, e, generator=gen)
    emb = (rgb @ mix)[:, None, :] + 0.02 * torch.randn(n, captions, e, generator=gen)
    images = {}
    for r in (8, 16):
        x = rgb[:, :, None, None].expand(n, 3, r, r) * 255
        x = x + 8 * torch.randn(n, 3, r, r, generator=gen)
        images[r] = x.clamp(0, 255).round().to(torch.uint8)
    return images, emb


def test_matcher_learns_which_caption_belongs_to_which_image() -> None:
    images, emb = _colour_pairs()
    untrained = tm.ImageTextMatcher(SMALL, emb.shape[-1]).eval()
    held = slice(len(emb) - SMALL.holdout, None)
    before = tm.retrieval_accuracy(untrained, images[16][held], emb[held], batch=16)
    matcher, stats = tm.train_matcher(SMALL, images, emb, progress=False)
    # chance is 1/16; the held-out images were never trained on
    assert before < 0.25
    for r in ("8", "16"):
        assert stats["heldout_r1_of_64"][r] > 0.6  # among 64 close colours
        assert tm.retrieval_accuracy(matcher, images[int(r)][held], emb[held], batch=16) > 0.85
    assert not any(p.requires_grad for p in matcher.parameters())


def test_symmetric_nce_counts_both_directions_and_skips_duplicate_captions() -> None:
    logits = torch.tensor([[3.0, 0.0, 1.0], [0.5, 2.0, 0.0], [0.0, 1.0, 1.0]])
    cond = torch.eye(3)
    rows = torch.nn.functional.cross_entropy(logits, torch.arange(3))
    cols = torch.nn.functional.cross_entropy(logits.t(), torch.arange(3))
    assert_close(tm.symmetric_nce(logits, cond), 0.5 * (rows + cols))
    dup = cond.clone()
    dup[2] = dup[0]  # captions 0 and 2 are the same sentence: not each other's negatives
    masked = logits.clone()
    masked[0, 2] = masked[2, 0] = float("-inf")
    rows = torch.nn.functional.cross_entropy(masked, torch.arange(3))
    cols = torch.nn.functional.cross_entropy(masked.t(), torch.arange(3))
    assert_close(tm.symmetric_nce(logits, dup), 0.5 * (rows + cols))


def test_trained_matcher_is_cached_by_corpus_and_config(monkeypatch) -> None:
    images, emb = _colour_pairs()
    cfg = tm.MatcherConfig(**{**SMALL.__dict__, "steps": 5})
    first = tm.load_or_train_matcher(cfg, images, emb, "colours-v1", progress=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached matcher was trained again")

    monkeypatch.setattr(tm, "train_matcher", no_training)
    again = tm.load_or_train_matcher(cfg, images, emb, "colours-v1", progress=False)
    for (k, a), (_, b) in zip(first.state_dict().items(), again.state_dict().items(), strict=True):
        assert_close(a, b, msg=k)
    assert again.meta["corpus"] == "colours-v1" and not again.training
    with pytest.raises(AssertionError, match="trained again"):  # another corpus: new key
        tm.load_or_train_matcher(cfg, images, emb, "colours-v2", progress=False)
    with pytest.raises(ValueError, match="corpus's key"):
        tm.load_or_train_matcher(cfg, images, emb, "", progress=False)


def _random_corpus() -> t2i.Corpus:
    """12 random birds at 16 and 32 px with 3 random 16-d caption embeddings each."""
    gen = torch.Generator().manual_seed(0)
    images = {r: torch.randint(0, 256, (12, 3, r, r), generator=gen, dtype=torch.uint8)
              for r in (16, 32)}
    rng = np.random.default_rng(0)
    return t2i.Corpus(images, torch.randn(12, 3, 16, generator=gen),
                      attributes=rng.integers(0, 3, (12, 8)),
                      mentions=rng.random((12, 3, 8)) < .4, key="random-12")


def test_g_matcher_term_trains_g_through_the_frozen_matcher(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["loss.matcher=2"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    corpus = _random_corpus()
    with pytest.raises(ValueError, match="needs the trained matcher"):
        t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash")
    matcher = tm.ImageTextMatcher(SMALL, 16).eval().requires_grad_(False)
    stage = t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash", matcher=matcher)
    g, d = stage.state.nets["g"], stage.state.nets["d"]
    d_phase, g_phase = stage.phases
    assert g_phase.weights["g/matcher"] == 2.0 and "d/matcher" not in d_phase.weights
    losses = g_phase.loss_fn(stage.state, stage.data.next())
    assert losses["g/matcher"].item() > 0
    losses["g/matcher"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert all(p.grad is None for p in [*d.parameters(), *matcher.parameters()])


def test_matcher_stages_leave_the_other_stage_without_the_term(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["loss.matcher=2", "matcher.stages=[1]"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    corpus = _random_corpus()
    with pytest.raises(ValueError, match="needs the trained matcher"):  # stage 1 is scored
        t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash")
    lower = t2i.build_generator(1, cfg.model, 16)
    stage2 = t2i.build_stage(2, cfg, corpus, runtime, tmp_path, "hash", lower=lower)
    assert "g/matcher" not in stage2.phases[-1].weights
    assert "g/matcher" not in stage2.phases[-1].loss_fn(stage2.state, stage2.data.next())
    bad = load_config(t2i.StackGANConfig, TINY, ["loss.matcher=2", "matcher.stages=[3]"])
    with pytest.raises(ValueError, match="matcher.stages"):
        t2i.build_stage(1, bad, corpus, runtime, tmp_path, "hash")
    # per stage, only the scored resolutions get (and train) a matcher
    own = tm.MatcherConfig(**{**SMALL.__dict__, "steps": 5, "per_stage": True})
    pairs, emb = _colour_pairs()
    assert sorted(tm.stage_matchers(own, pairs, emb, "colours", progress=False,
                                    scored=[8])) == [8]


def test_matcher_view_scores_g_s_images_downsampled_and_keeps_the_matcher_s_key(
        tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["loss.matcher=2", "matcher.view=16"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    corpus = _random_corpus()
    seen = []

    class Recording(tm.ImageTextMatcher):
        def image_features(self, images):
            seen.append(images.detach().clone())
            return super().image_features(images)

    matcher = Recording(SMALL, 16).eval().requires_grad_(False)
    lower = t2i.build_generator(1, cfg.model, 16)
    stage2 = t2i.build_stage(2, cfg, corpus, runtime, tmp_path, "hash", lower=lower,
                             matcher=matcher)
    batch = stage2.data.next()
    torch.manual_seed(0)
    losses = stage2.phases[-1].loss_fn(stage2.state, batch)
    assert losses["g/matcher"].item() > 0 and seen[0].shape[-2:] == (16, 16)  # 32 px → 16
    full = replace(cfg, matcher=replace(cfg.matcher, view=0))
    g_full = t2i.build_stage(2, full, corpus, runtime, tmp_path, "hash", lower=lower,
                             matcher=matcher).phases[-1]
    torch.manual_seed(0)  # the same G, batch and noise, seen whole: the view is 2×2 means
    g_full.loss_fn(stage2.state, batch)
    assert seen[1].shape[-2:] == (32, 32)
    assert_close(seen[0], F.avg_pool2d(seen[1], 2))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert_close(t2i.matcher_view(x, 16), F.avg_pool2d(x, 2))
    assert t2i.matcher_view(x, 0) is x and t2i.matcher_view(x, 32) is x
    # a G-side option: the matcher's cache key does not change
    assert tm.matcher_key(replace(SMALL, view=16), "c", [8]) == tm.matcher_key(SMALL, "c", [8])
    for bad in ("12", "-1"):  # must divide every scored stage's resolution
        wrong = load_config(t2i.StackGANConfig, TINY, ["loss.matcher=2", f"matcher.view={bad}"])
        with pytest.raises(ValueError, match="matcher.view"):
            t2i.build_stage(1, wrong, corpus, runtime, tmp_path, "hash", matcher=matcher)


def test_training_entry_trains_caches_and_reuses_the_matcher(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    small = ["loss.matcher=1", "matcher.steps=3", "matcher.widths=[4, 8]", "matcher.dim=8",
             "matcher.size=16", "matcher.batch_size=8", "matcher.holdout=8",
             "eval.enabled=false", "run.wandb_mode=disabled", "train.stage1.steps=2",
             "train.stage2.steps=2"]
    t2i.main(["--config", str(TINY), "--run-dir", str(tmp_path / "a"), *small])
    folders = list((tmp_path / "cache" / "matcher").iterdir())
    assert len(folders) == 1 and (folders[0] / "matcher.json").is_file()
    log = (tmp_path / "a" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in log.splitlines()]
    for stage in (1, 2):
        assert any(f"train/stage{stage}/g/matcher" in row for row in rows)

    def no_training(*args, **kwargs):
        raise AssertionError("a cached matcher was trained again")

    trainer = tm.train_matcher
    monkeypatch.setattr(tm, "train_matcher", no_training)
    t2i.main(["--config", str(TINY), "--run-dir", str(tmp_path / "b"), *small, "seed=1"])
    assert list((tmp_path / "cache" / "matcher").iterdir()) == folders
    # the CLI loads the same cached matcher and scores every attribute at both resolutions
    report = tm.main(["--config", str(TINY), *small])
    assert report["key"] == {16: folders[0].name, 32: folders[0].name}
    assert sorted(report["auc"]) == [16, 32]
    for row in report["auc"].values():
        assert len(row) == 9 and all(0.0 <= v <= 1.0 for v in row.values())
        assert "over swap" in row  # a render against its caption's colour swap
    assert 0.5 < report["caption_swap_cosine"] < 1.0  # swaps embed close, not identical
    # swap negatives: another matcher, trained on the corpus's colour-swapped captions
    monkeypatch.setattr(tm, "train_matcher", trainer)
    t2i.main(["--config", str(TINY), "--run-dir", str(tmp_path / "c"), *small,
              "matcher.swap_negatives=true"])
    (swapped,) = set((tmp_path / "cache" / "matcher").iterdir()) - set(folders)
    meta = json.loads((swapped / "matcher.json").read_text())
    assert meta["config"]["swap_negatives"] is True
    assert set(meta["heldout_over_swap"]) == {"16", "32"}
    log = (tmp_path / "c" / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in log.splitlines()]
    assert any("train/stage2/g/matcher" in row for row in rows)  # G trained against the swaps


def test_per_stage_matchers_train_on_their_own_resolution_only() -> None:
    images, emb = _colour_pairs()
    cfg = tm.MatcherConfig(**{**SMALL.__dict__, "steps": 5})
    shared = tm.stage_matchers(cfg, images, emb, "colours", progress=False)
    assert shared[8] is shared[16] and shared[8].meta["sizes"] == [8, 16]
    own = tm.stage_matchers(tm.MatcherConfig(**{**cfg.__dict__, "per_stage": True}), images,
                            emb, "colours", progress=False)
    assert own[8] is not own[16]
    assert own[8].meta["sizes"] == [8] and own[16].meta["sizes"] == [16]
    # per_stage picks which resolutions a matcher sees; it is not part of what it is
    assert tm.matcher_key(cfg, "colours", [8, 16]) == shared[8].meta["key"]


def _with_swaps(corpus: t2i.Corpus) -> t2i.Corpus:
    gen = torch.Generator().manual_seed(1)
    corpus.swaps = torch.randn(corpus.embeddings.shape, generator=gen)
    corpus.swap_ok = torch.rand(corpus.embeddings.shape[:2], generator=gen) < 0.7
    return corpus


def _stage_losses(overrides: list[str], corpus: t2i.Corpus, tmp_path: Path,
                  matcher: tm.ImageTextMatcher | None) -> dict[str, torch.Tensor]:
    cfg = load_config(t2i.StackGANConfig, TINY, ["model.d_head=projection", *overrides])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    stage = t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash", matcher=matcher)
    batch = stage.data.next()
    torch.manual_seed(0)
    losses = dict(stage.phases[0].loss_fn(stage.state, batch))
    losses.update(stage.phases[1].loss_fn(stage.state, batch))
    return losses


def test_swap_negatives_are_added_to_the_matcher_and_head_nce_terms(tmp_path) -> None:
    matcher = tm.ImageTextMatcher(SMALL, 16).eval().requires_grad_(False)
    corpus = _with_swaps(_random_corpus())
    on = ["loss.matcher=1", "loss.head_nce=1"]
    plain = _stage_losses(on, corpus, tmp_path / "a", matcher)
    swaps = _stage_losses([*on, "matcher.swap_negatives=true", "loss.head_nce_swaps=true"],
                          corpus, tmp_path / "b", matcher)
    # the same networks, batch and noise: every other term is unchanged, the three with
    # extra negatives grow (a softmax over more candidates puts less mass on the right one)
    for name in ("g/matcher", "d/head_nce", "g/head_nce"):
        assert swaps[name] > plain[name], name
    for name in ("d/real", "d/wrong", "d/fake", "g/adv"):
        assert_close(swaps[name], plain[name], msg=name)
    swaps["g/matcher"].backward()  # the swaps' term trains G
    with pytest.raises(ValueError, match="are off"):
        _stage_losses(["loss.head_nce_swaps=true"], corpus, tmp_path / "c", None)
    with pytest.raises(ValueError, match="colour swaps in the corpus"):
        _stage_losses([*on, "loss.head_nce_swaps=true"], _random_corpus(), tmp_path / "d",
                      matcher)


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
          if k not in ("per_stage", "stages", "view", "swap_negatives")}
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
