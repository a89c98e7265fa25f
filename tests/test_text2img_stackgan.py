"""StackGAN: channel tables, shapes, the exact fused up-block, one training step per head,
and a smoke test of the real entry points (train both stages, sample, evaluate, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.testing import assert_close

from common.config import RuntimeConfig, load_config
from common.nn import Standardize
from common.runtime import setup_runtime
from common.training import train
from text2img import models
from text2img import train as t2i
from text2img.models import (
    StageIGenerator,
    StageIIGenerator,
    UpBlock,
    build_discriminator,
    d_channels,
    stage1_channels,
    stage2_channels,
)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "text2img" / "tiny.yaml"
HEADS = ("combined", "split", "projection")


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _env(cache_root, monkeypatch):
    monkeypatch.setenv("CGAN_CACHE", str(cache_root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    torch.set_num_threads(1)


# ----------------------------------------------------------------------------- networks


def test_channel_tables_follow_the_paper_networks() -> None:
    assert stage1_channels(64, 128) == [1024, 512, 256, 128, 64]  # Ng = 8·128 at 4×4
    assert stage2_channels(64, 256, 128) == {"encoder": [128, 256, 512],
                                             "up": [256, 128, 64, 32]}
    assert d_channels(64, 64) == {"down": [64, 128, 256, 512], "squeeze": []}
    assert d_channels(256, 64) == {"down": [64, 128, 256, 512, 1024, 2048],
                                   "squeeze": [1024, 512]}
    assert stage1_channels(32, 16) == [128, 64, 32, 16]
    with pytest.raises(ValueError, match="resolution 48"):
        stage1_channels(48, 8)


@pytest.mark.parametrize(("r1", "r2"), [(16, 32), (64, 256)])
def test_generator_shapes(r1: int, r2: int) -> None:
    e, z = torch.randn(3, 24), torch.randn(3, 5)
    g1 = StageIGenerator(24, resolution=r1, width=2, cond_dim=6, z_dim=5)
    out1 = g1(e, z)
    assert out1.image.shape == (3, 3, r1, r1) and out1.ca.mu.shape == (3, 6)
    assert out1.image.abs().max() <= 1.0  # tanh output
    g2 = StageIIGenerator(24, in_res=r1, out_res=r2, width=2, cond_dim=6, res_blocks=1)
    out2 = g2(out1.image, e)
    assert out2.image.shape == (3, 3, r2, r2) and out2.ca.logvar.shape == (3, 6)
    with pytest.raises(ValueError, match=rf"Tensor\[B, 3, {r1}, {r1}\]"):
        g2(torch.randn(3, 3, r2, r2), e)


@pytest.mark.parametrize("norm", ["bn", "sn"])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("resolution", [16, 64])
def test_discriminator_shapes(head: str, resolution: int, norm: str) -> None:
    d = build_discriminator(head, resolution=resolution, width=4, embed_dim=24, cond_ch=8,
                            norm=norm)
    has_bn = any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)) for m in d.modules())
    assert has_bn == (norm == "bn")
    x, e = torch.randn(5, 3, resolution, resolution), torch.randn(5, 24)
    assert d.backbone(x).shape == (5, d.backbone.out_ch, 4, 4)
    out = d(x, e)
    fields = {k for k in ("realism", "match", "joint") if getattr(out, k) is not None}
    assert fields == ({"realism", "match"} if head == "split" else {"joint"})
    assert all(getattr(out, k).shape == (5, 1) for k in fields)


def test_fused_up_block_equals_upsample_then_conv() -> None:
    torch.manual_seed(0)
    block = UpBlock(6, 5)
    x = torch.randn(2, 6, 17, 16, requires_grad=True)
    fused = block(x)
    grads_fused = torch.autograd.grad(fused.square().sum(), [x, block.conv.weight])
    block.fused = False
    literal = block(x)
    assert literal.shape == (2, 5, 34, 32)
    grads_literal = torch.autograd.grad(literal.square().sum(), [x, block.conv.weight])
    assert_close(fused, literal, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_fused, grads_literal, strict=True):
        assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_conditional_up_blocks_modulate_by_the_code() -> None:
    torch.manual_seed(0)
    block = UpBlock(6, 5, cond_dim=3).train()
    x = torch.randn(4, 6, 8, 8)
    c = torch.randn(4, 3)
    with torch.no_grad():
        block.film.weight.zero_()
        block.film.bias.zero_()
        pre = F.batch_norm(block.conv(F.interpolate(x, scale_factor=2)), None, None,
                           training=True)
        assert_close(block(x, c), F.relu(pre), rtol=1e-4, atol=1e-4)  # γ = β = 0: plain BN
        block.film.bias[5:].fill_(0.5)  # β = 0.5 for every channel
        block.film.weight[:5, 0].fill_(1.0)  # γ = c[:, 0] for every channel
        want = F.relu(pre * (1 + c[:, :1, None, None]) + 0.5)
        assert_close(block(x, c), want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="needs c"):
        block(x)
    # Both generators pass the CA code to every up-block; different captions, different images
    g1 = StageIGenerator(8, resolution=16, width=2, cond_dim=4, z_dim=3, cond_norm=True).eval()
    g2 = StageIIGenerator(8, in_res=16, out_res=32, width=2, cond_dim=4, res_blocks=1,
                          cond_norm=True).eval()
    assert all(b.film is not None for b in [*g1.up, *g2.up])
    e, z = torch.randn(2, 8), torch.randn(1, 3).expand(2, 3)
    low = g1(e, z, sample=False).image
    assert low.shape == (2, 3, 16, 16) and g2(low, e).image.shape == (2, 3, 32, 32)
    assert (low[0] - low[1]).abs().max() > 1e-4


@pytest.mark.parametrize("size", [(4, 4), (7, 5)])
def test_nearest_upsample_conv_is_a_transposed_conv(size: tuple[int, int]) -> None:
    x, w = torch.randn(2, 3, *size, dtype=torch.float64), torch.randn(4, 3, 3, 3,
                                                                   dtype=torch.float64)
    literal = torch.nn.functional.conv2d(
        torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)
    fused = torch.nn.functional.conv_transpose2d(x, models.nearest_conv_as_transposed(w),
                                                 stride=2, padding=1)
    assert_close(fused, literal)


def test_stage2_sees_stage1_detached() -> None:
    g1 = StageIGenerator(8, resolution=16, width=2, cond_dim=4, z_dim=3)
    g2 = StageIIGenerator(8, in_res=16, out_res=32, width=2, cond_dim=4, res_blocks=1)
    e = torch.randn(2, 8)
    low = g1(e, torch.randn(2, 3)).image
    g2(low, e).image.sum().backward()
    assert all(p.grad is None for p in g1.parameters())
    assert all(p.grad is not None for p in g2.parameters())


SHIPPED = REPO / "configs" / "text2img"


@pytest.mark.parametrize("path", sorted(p.name for p in SHIPPED.glob("*.yaml")
                                         if not p.name.startswith("judge")))
def test_every_shipped_stackgan_config_parses(path: str) -> None:
    cfg = load_config(t2i.StackGANConfig, SHIPPED / path, [])
    assert cfg.model.stage2_res > cfg.model.stage1_res  # and no key unknown to the config


def test_stage2_subpixel_last_block_can_texture_a_uniform_region() -> None:
    # A constant 32 px map in, through the last up-block to 64 px: nearest ×2 + conv gives
    # one value inside (away from the zero-padded border); the free transposed conv gives
    # each of the four 2×2 phases its own.
    torch.manual_seed(0)
    for subpixel in (False, True):
        g2 = StageIIGenerator(8, in_res=32, out_res=64, width=4, cond_dim=4, res_blocks=1,
                              subpixel=subpixel).eval()
        last = g2.up[-1]
        assert last.mode == ("transposed" if subpixel else "nearest")
        assert all(b.mode == "nearest" for b in g2.up[:-1])
        x = torch.ones(1, last.conv.in_channels, 8, 8)
        inner = last(x)[0, :, 2:-2, 2:-2]  # (C, 12, 12)
        phases = torch.stack([inner[:, i::2, j::2] for i in (0, 1) for j in (0, 1)])
        assert_close(phases, phases[:, :, :1, :1].expand_as(phases))  # each phase uniform
        spread = (phases[:, :, 0, 0].amax(0) - phases[:, :, 0, 0].amin(0)).max()
        assert (spread > 1e-3) == subpixel, spread


def test_stage2_with_word_attention_draws_from_the_real_words() -> None:
    torch.manual_seed(0)
    g2 = StageIIGenerator(8, in_res=16, out_res=32, width=2, cond_dim=4, res_blocks=1,
                          word_dim=10).eval()
    low, e = torch.rand(3, 3, 16, 16) * 2 - 1, torch.randn(3, 8)
    words, mask = torch.randn(3, 5, 10), torch.arange(5) < torch.tensor([[5], [2], [4]])
    out = g2(low, e, words, mask, sample=False).image
    other = g2(low, e, torch.randn(3, 5, 10), mask, sample=False).image
    change = (out - other).abs().amax(dim=(1, 2, 3)) / out.abs().amax(dim=(1, 2, 3))
    assert change.min() > 0.01  # every image hears its own words (eval mode: no batch stats)
    padded = words.clone()
    padded[1, 2:] = 9.0
    assert_close(g2(low, e, padded, mask, sample=False).image, out)
    with pytest.raises(ValueError, match="give words and word_mask"):
        g2(low, e)
    fine = StageIIGenerator(8, in_res=16, out_res=32, width=2, cond_dim=4, res_blocks=1,
                            word_dim=10, words_res=16).eval()  # after the 8 → 16 up-block
    seen = []
    fine.attn.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    assert fine(low, e, words, mask, sample=False).image.shape == (3, 3, 32, 32)
    assert seen == [(3, fine.channels["up"][1], 16, 16)]
    with pytest.raises(ValueError, match=r"words_res=12 must be one of its grids \[4, 8, 16, 32\]"):
        StageIIGenerator(8, in_res=16, out_res=32, width=2, word_dim=10, words_res=12)
    plain = StageIIGenerator(8, in_res=16, out_res=32, width=2, cond_dim=4, res_blocks=1).eval()
    assert torch.equal(plain(low, e, words, mask, sample=False).image,
                       plain(low, e, sample=False).image)  # word_dim 0: words ignored


# ----------------------------------------------------------------------------- training


def _corpus(n: int = 12, c: int = 3, e: int = 16) -> t2i.Corpus:
    gen = torch.Generator().manual_seed(0)
    images = {r: torch.randint(0, 256, (n, 3, r, r), generator=gen, dtype=torch.uint8)
              for r in (16, 32)}
    rng = np.random.default_rng(0)
    return t2i.Corpus(images, torch.randn(n, c, e, generator=gen),
                      attributes=rng.integers(0, 3, (n, 8)), mentions=rng.random((n, c, 8)) < .4)


def _corpus_with_words() -> t2i.Corpus:
    """:func:`_corpus` with 10-d word features, 1 to 6 real words per caption."""
    corpus = _corpus()
    gen = torch.Generator().manual_seed(1)
    corpus.words = torch.randn(12, 3, 6, 10, generator=gen).half()
    corpus.word_mask = torch.arange(6) < torch.randint(1, 7, (12, 3, 1), generator=gen)
    return corpus


class _Quiet:
    """Stands in for the run's tracker in loop-level unit tests (the smoke test uses the
    real Tracker)."""

    def log(self, *args, **kwargs) -> None:
        pass

    def progress(self, total: int, initial: int = 0):
        return self

    def update(self, *args) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("head", "d_norm"), [(h, "bn") for h in HEADS] + [("projection", "sn")])
def test_one_training_step_per_head_and_stage(head: str, d_norm: str, tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, [f"model.d_head={head}", f"model.d_norm={d_norm}"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    corpus = _corpus()
    s1 = t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash")
    lower = models.freeze(s1.state.ema.module)
    s2 = t2i.build_stage(2, cfg, corpus, runtime, tmp_path, "hash", lower=lower)
    expected_d = {"d/real", "d/fake", *(("d/match", "d/mismatch") if head == "split"
                                        else ("d/wrong",))}
    expected_g = {"g/adv", "g/kl", *(("g/match",) if head == "split" else ())}
    for stage in (s1, s2):
        d_phase, g_phase = stage.phases
        g, d = stage.state.nets["g"], stage.state.nets["d"]
        d_losses = d_phase.loss_fn(stage.state, stage.data.next())
        assert set(d_losses) == expected_d and all(torch.isfinite(v) for v in d_losses.values())
        d_losses["d/real"].backward()
        assert all(p.grad is None for p in g.parameters())  # D's loss never reaches G
        d.zero_grad(set_to_none=True)
        g_losses = g_phase.loss_fn(stage.state, stage.data.next())  # reuses the D step's fakes
        assert set(g_losses) == expected_g
        sum(g_losses.values()).backward()
        assert all(p.grad is None for p in d.parameters())  # no D weight gradients in G's step
        assert all(p.grad is not None for p in g.parameters())
        g.zero_grad(set_to_none=True)
        before = [p.detach().clone() for p in g.parameters()]
        train(stage.state, stage.phases, stage.data, steps=1, runtime=runtime, tracker=_Quiet())
        assert stage.state.step == 1
        assert any(not torch.equal(a, b) for a, b in zip(before, g.parameters(), strict=True))
    assert all(p.grad is None for p in lower.parameters())


def test_stage2_word_attention_trains_on_the_batch_words(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["model.d_head=projection", "model.g2_words=true"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    with pytest.raises(ValueError, match="g2_words needs the caption's word features"):
        t2i.build_stage(2, cfg, _corpus(), runtime, tmp_path, "hash")
    corpus = _corpus_with_words()
    s1 = t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash")
    assert not hasattr(s1.state.nets["g"], "attn")  # Stage I has no words
    lower = models.freeze(s1.state.ema.module)
    s2 = t2i.build_stage(2, cfg, corpus, runtime, tmp_path, "hash", lower=lower)
    g, (d_phase, g_phase) = s2.state.nets["g"], s2.phases
    assert g.attn.project.in_features == 10
    seen = []
    forward = g.attn.forward
    g.attn.forward = lambda h, w, m: seen.append(m.clone()) or forward(h, w, m)
    batch = s2.data.next()
    d_phase.loss_fn(s2.state, batch)
    assert torch.equal(seen[0], batch.word_mask)  # the D phase's fakes heard their captions
    sum(g_phase.loss_fn(s2.state, s2.data.next()).values()).backward()  # reused fakes
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.attn.parameters())


def test_stage_networks_standardize_with_the_training_caption_statistics(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["model.d_head=projection"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    corpus = _corpus()
    corpus.embeddings = corpus.embeddings * 0.03 + 0.5  # small spread around a big offset
    stage = t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash")
    flat = corpus.embeddings.flatten(0, 1)
    norms = [m for net in (stage.state.nets["g"], stage.state.nets["d"], stage.state.ema.module)
             for m in net.modules() if isinstance(m, Standardize)]
    assert len(norms) == 3  # G's CA, D's head, and the EMA copy of G
    for m in norms:
        assert_close(m(flat).mean(0), torch.zeros(flat.shape[1]), atol=1e-4, rtol=0)
    off = load_config(t2i.StackGANConfig, TINY, ["model.cond_standardize=false"])
    stage = t2i.build_stage(1, off, corpus, runtime, tmp_path, "hash")
    assert not any(isinstance(m, Standardize) for m in stage.state.nets["g"].modules())


def test_conditioning_augmentation_off_drops_the_kl_term(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["model.ca=false"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    stage = t2i.build_stage(1, cfg, _corpus(), runtime, tmp_path, "hash")
    d_phase, g_phase = stage.phases
    d_phase.loss_fn(stage.state, stage.data.next())
    assert set(g_phase.loss_fn(stage.state, stage.data.next())) == {"g/adv"}
    assert t2i.loss_weights(cfg)[1] == {"g/adv": 1.0}


def test_loss_weights_default_per_head_and_reject_unknown_terms() -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["loss.weights={d/wrong: 0.25}"])
    d_w, g_w = t2i.loss_weights(cfg)
    assert d_w == {"d/real": 1.0, "d/wrong": 0.25, "d/fake": 0.5}  # StackGAN's ½ for fakes
    assert g_w == {"g/adv": 1.0, "g/kl": 2.0}  # KL weight 2.0 as in the official code
    bad = load_config(t2i.StackGANConfig, TINY, ["loss.weights={d/mismatch: 1.0}"])
    with pytest.raises(ValueError, match="no loss term 'd/mismatch' for head 'combined'"):
        t2i.loss_weights(bad)


def test_wrong_captions_contradict_their_image() -> None:
    n = 6
    attrs = np.zeros((n, 8), np.int64)
    attrs[:, 0] = [0, 0, 0, 1, 1, 2]  # body colours
    mentions = np.zeros((n, 1, 8), bool)
    mentions[:, 0, 0] = True  # every caption states the body colour only
    corpus = t2i.Corpus({16: torch.zeros(n, 3, 16, 16, dtype=torch.uint8)},
                        torch.randn(n, 1, 4), attributes=attrs, mentions=mentions)
    data = t2i.CaptionedImages(corpus, 16, n, flip=False, seed=0, device=torch.device("cpu"),
                               channels_last=False)
    for _ in range(20):
        idx = data._indices()
        wrong = data._wrong(idx, torch.zeros(n, dtype=torch.long))
        body = torch.from_numpy(attrs[:, 0])[idx]
        assert (body[wrong] != body).all()  # "a red bird" is never the wrong caption of a red one


def test_hard_wrong_captions_are_the_nearest_mismatched_ones() -> None:
    n = 4
    attrs = np.zeros((n, 8), np.int64)
    attrs[:, 0] = [0, 0, 1, 2]  # body colours: images 0 and 1 share theirs
    mentions = np.zeros((n, 1, 8), bool)
    mentions[:, 0, 0] = True
    emb = torch.tensor([[1.0, 0.0], [0.99, 0.1], [0.8, 0.6], [0.0, 1.0]])  # caption 1 ≈ 0
    corpus = t2i.Corpus({16: torch.zeros(n, 3, 16, 16, dtype=torch.uint8)}, emb[:, None],
                        attributes=attrs, mentions=mentions)
    hard = t2i.CaptionedImages(corpus, 16, n, flip=False, seed=0, device=torch.device("cpu"),
                               channels_last=False, hard_wrong=1.0)
    idx, cap = torch.arange(n), torch.zeros(n, dtype=torch.long)
    # Caption 1 is the closest to caption 0 but fits image 0: the hardest WRONG one is 2.
    assert hard._wrong(idx, cap, emb).tolist() == [2, 2, 1, 2]
    uniform = t2i.CaptionedImages(corpus, 16, n, flip=False, seed=0,
                                  device=torch.device("cpu"), channels_last=False)
    draws = {tuple(uniform._wrong(idx, cap, emb).tolist()) for _ in range(30)}
    assert len(draws) > 1  # share 0: the uniform draw, as StackGAN
    with pytest.raises(ValueError, match="data.hard_wrong=1.5 must be a share in"):
        t2i.CaptionedImages(corpus, 16, n, flip=False, seed=0, device=torch.device("cpu"),
                            channels_last=False, hard_wrong=1.5)


def test_dprobe_prompts_state_exactly_their_attribute_and_auc_ranks() -> None:
    from text2img.data.synthbirds import ATTRIBUTES
    from text2img.data.synthbirds_text import parse_caption
    from text2img.dprobe import PROMPTS, auc

    for name, values in ATTRIBUTES:
        assert [parse_caption(p) for p in PROMPTS[name]] == [{name: v} for v in values]
    score = torch.tensor([0.9, 0.8, 0.1, 0.5, 0.5])
    assert auc(score, torch.tensor([True, True, False, False, False])) == 1.0
    assert auc(-score, torch.tensor([True, True, False, False, False])) == 0.0
    # 0.5 against 0.9, 0.8, 0.1 and a tied 0.5: (0 + 0 + 1 + ½) / 4
    assert auc(score, torch.tensor([False, False, False, True, False])) == 0.375


def test_data_position_resumes_exactly() -> None:
    data = t2i.CaptionedImages(_corpus(), 16, 4, flip=True, seed=3,
                               device=torch.device("cpu"), channels_last=True)
    for _ in range(4):  # crosses an epoch boundary (12 images, batches of 4)
        data.next()
    state = data.state_dict()
    a = data.next()
    data.load_state_dict(state)
    b = data.next()
    for x, y in ((a.image, b.image), (a.emb, b.emb), (a.wrong, b.wrong)):
        assert torch.equal(x, y)
    assert a.image.is_contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- entry points


def _train(run_dir: Path, *overrides: str, resume: bool = False, wandb: str = "disabled"
           ) -> dict:
    return t2i.main(["--config", str(TINY), "--run-dir", str(run_dir),
                     *(["--resume"] if resume else []), f"run.wandb_mode={wandb}", *overrides])


def _nets(path: Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, weights_only=True)
    flat = {f"ema.{k}": v for k, v in payload["ema"].items()}
    for net, sd in payload["nets"].items():
        flat.update({f"{net}.{k}": v for k, v in sd.items()})
    return flat


def test_entry_points_train_sample_evaluate_and_resume(tmp_path, capsys) -> None:
    from text2img import evaluate as ev
    from text2img import sample

    run = tmp_path / "run"
    result = _train(run, wandb="offline")
    m = json.loads((run / "eval.json").read_text())
    assert m == json.loads(json.dumps(result))
    for stage in ("stage1", "stage2"):
        assert 0.0 <= m[f"metrics/{stage}/attr_acc"] <= 1.0
        assert m[f"metrics/{stage}/fd_judge_16"] >= 0.0 and f"metrics/{stage}/diversity" in m
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in records if "train/stage1/d/total" in r
                   or "train/stage2/d/total" in r]
    assert train_steps == [2, 4, 6, 8]  # stage 2 continues the step axis of stage 1
    assert "train/stage2/g/kl" in records[-2] or "train/stage2/g/kl" in records[-1]
    assert len(list((run / "samples").glob("samples_stage2_p1_step*.png"))) == 2
    assert list((run / "wandb").glob("offline-run-*"))
    meta = json.loads((run / "g_ema.json").read_text())
    assert meta["stages"] == 2 and meta["encoder"] == "minilm"

    # Sampling: a PNG with Stage-I | Stage-II pairs, from the run folder's EMA generators.
    grid = tmp_path / "grid.png"
    sample.main(["a small bird with a red crown and blue striped wings", "--n", "3",
                 "--checkpoint", str(run), "--out", str(grid), "--no-title"])
    with Image.open(grid) as im:
        assert im.size == (2 + 3 * (64 + 2), 2 + 32 + 2)  # 3 pairs of 32 px images a row
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# my sentences\na crimson bird\n\na navy bird with spotted wings\n")
    sample.main(["a green bird", "--prompts", str(prompts), "--n", "4", "--per-row", "2",
                 "--checkpoint", str(run), "--out", str(grid), "--no-title", "--colors", "16"])
    with Image.open(grid) as im:  # 3 captions stacked, each 2 rows of 2 pairs
        assert im.size == (2 + 2 * (64 + 2), 3 * (2 + 2 * (32 + 2)))
        assert im.mode == "P" and len(im.getcolors()) <= 16

    # Offline evaluation through the default sampler hook (text2img.sample:load_sampler).
    judge_dir = json.loads((run / "eval.json").read_text())["details"]["judge"]
    report = ev.main([f"checkpoint={run}", "n=8", "n_z=2", "diversity_captions=2",
                      "batch_size=8", f"judge={judge_dir}", "run.wandb_mode=disabled",
                      "--run-dir", str(tmp_path / "eval")])
    assert report["resolution"] == 32 and "metrics/attr_acc" in report["metrics"]

    # What each stage's D knows about the caption: an AUC per attribute.
    from text2img import dprobe

    for stage in (1, 2):
        found = dprobe.main([str(run), "--stage", str(stage), "--n", "40"])
        assert set(found["auc"]) == set(dprobe.PROMPTS)
        assert all(0.0 <= v <= 1.0 for v in found["auc"].values()), found["auc"]
        assert set(found["features"]) == set(dprobe.PROMPTS)
        assert found["checkpoint"].endswith("step_000000004.pt")

    # What of the caption each stage's conditioning augmentation passes on to G.
    from text2img.probe import code_probe

    codes = code_probe(run, n=40)
    assert codes["checkpoint"].endswith("g_ema.safetensors")
    assert set(codes["e"]) == set(dprobe.PROMPTS)  # the caption vector itself, for reference
    for stage in ("stage1", "stage2"):
        for code in ("mu", "c"):
            assert set(codes[stage][code]) == set(dprobe.PROMPTS)
            assert all(0.0 <= v <= 1.0 for v in codes[stage][code].values())
        assert codes[stage]["sigma"] > 0  # CA on in the tiny config

    # Resume: drop Stage II's last checkpoint and the results, continue from step 2.
    ck2 = run / "checkpoints" / "stage2"
    final = _nets(ck2 / "step_000000004.pt")
    (ck2 / "step_000000004.pt").unlink()
    (run / "eval.json").unlink()
    probes = (run / "probes.safetensors").read_bytes()
    _train(run, resume=True)
    resumed = _nets(ck2 / "step_000000004.pt")
    assert final.keys() == resumed.keys()
    for key in final:  # the continued run reproduces the uninterrupted one exactly
        assert torch.equal(final[key], resumed[key]), key
    assert (run / "eval.json").is_file() and (run / "probes.safetensors").read_bytes() == probes
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "train/stage2/d/total" in line]
    assert steps == [6, 8]  # the steps after the restored one were logged once

    # A changed config is refused, naming the key.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _train(run, "loss.kl=1.0", resume=True)
    assert exit_info.value.code == 2
    assert "loss.kl: 2.0 -> 1.0" in capsys.readouterr().err


def test_word_attention_run_samples_and_evaluates_with_its_encoders_words(tmp_path) -> None:
    from text2img import evaluate as ev
    from text2img import sample

    run = tmp_path / "run"
    m = _train(run, "model.g2_words=true")
    assert 0.0 <= m["metrics/stage2/attr_acc"] <= 1.0
    assert json.loads((run / "g_ema.json").read_text())["word_dim"] == 384  # MiniLM's states
    assert len(list((run / "samples").glob("samples_stage2_p0_step*.png"))) == 2
    nets = sample.load_generators(run)
    with pytest.raises(ValueError, match="words=encoder.encode_tokens"):
        sample.StackGANSampler(nets["g1"], nets["g2"], "minilm", 2)
    sampler = sample.load_sampler(run)
    captions = ["a crimson bird", "a navy bird with spotted wings"]
    emb = sample.checked_encoder(nets["meta"]).encode(captions)
    a = sampler.sample(captions, emb, 2, torch.Generator().manual_seed(0))
    b = sampler.sample(captions[::-1], emb, 2, torch.Generator().manual_seed(0))
    assert a.shape == (2, 2, 3, 32, 32) and not torch.equal(a, b)  # the words count
    grid = tmp_path / "grid.png"
    sample.main(["a small bird with a red crown", "--n", "2", "--checkpoint", str(run),
                 "--out", str(grid), "--no-title"])
    assert grid.is_file()
    judge_dir = m["details"]["judge"]
    report = ev.main([f"checkpoint={run}", "n=8", "n_z=2", "diversity_captions=2",
                      "batch_size=8", f"judge={judge_dir}", "run.wandb_mode=disabled",
                      "--run-dir", str(tmp_path / "eval")])
    assert 0.0 <= report["metrics"]["metrics/attr_acc"] <= 1.0

    # Where each word goes: one heat map per word piece, weights summing to 1 per cell.
    from text2img import attention

    caption = "a red bird with blue wings"
    maps = attention.attention_maps(run, caption, n=2)
    assert maps["tokens"] == ["a", "red", "bird", "with", "blue", "wings"]
    joint = 16 // 4  # the tiny Stage II's joint grid: its 16 px input halved twice
    assert maps["beta"].shape == (2, joint, joint, 6) and maps["image"].shape == (2, 3, 32, 32)
    assert_close(maps["beta"].sum(-1), torch.ones(2, joint, joint), atol=1e-5, rtol=0)
    out = attention.main([caption, "--checkpoint", str(run), "--n", "2", "--scale", "1",
                          "--out", str(tmp_path / "attn.png"), "--colors", "64"])
    with Image.open(out) as im:  # a label strip, then 2 rows of 1 image + 6 maps
        assert im.size == (2 + 7 * (32 + 2), 26 + 2 * (32 + 2) + 2) and im.mode == "P"
    plain = tmp_path / "plain"
    _train(plain)
    with pytest.raises(SystemExit) as exit_info:
        attention.main([caption, "--checkpoint", str(plain)])
    assert exit_info.value.code == 2


def test_speed_bench_times_the_reference_and_ours_on_identical_networks() -> None:
    from text2img import bench
    from text2img.models import build_discriminator
    from text2img.train import build_generator

    cfg = bench._config("fp32", False, True)
    torch.manual_seed(0)
    init = {"g": build_generator(1, cfg.model, bench.EMBED).state_dict(),
            "d": build_discriminator("combined", resolution=bench.RES, width=64,
                                           embed_dim=bench.EMBED, cond_ch=128).state_dict()}
    ref, ours = bench._Reference(init), bench._Ours("fp32", False, True, init)
    for mine, theirs in ((ours.stage.state.nets["g"], ref.g), (ours.stage.state.nets["d"], ref.d)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_contrastive_terms_train_d_on_real_and_g_on_fakes(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["model.d_head=projection",
                                                  "loss.contrastive=0.5"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    stage = t2i.build_stage(1, cfg, _corpus(), runtime, tmp_path, "hash")
    g, d = stage.state.nets["g"], stage.state.nets["d"]
    d_phase, g_phase = stage.phases
    assert d_phase.weights["d/contrast"] == g_phase.weights["g/contrast"] == 0.5
    d_losses = d_phase.loss_fn(stage.state, stage.data.next())
    d_losses["d/contrast"].backward()  # real images only: G is not involved
    assert all(p.grad is None for p in g.parameters())
    assert all(p.grad is not None for p in d.contrast.parameters())
    d.zero_grad(set_to_none=True)
    g_losses = g_phase.loss_fn(stage.state, stage.data.next())
    g_losses["g/contrast"].backward()  # through D's frozen encoders into G
    assert all(p.grad is None for p in d.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    assert "d/contrast" not in t2i.loss_weights(load_config(t2i.StackGANConfig, TINY, []))[0]
    negative = load_config(t2i.StackGANConfig, TINY, ["loss.contrastive=-1"])
    with pytest.raises(ValueError, match="loss.contrastive must be >= 0"):
        t2i.build_phases(negative, None, torch.device("cpu"))


def test_word_region_terms_use_the_d_phase_captions_words_in_the_g_phase(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["model.d_head=projection", "loss.words=0.5"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    with pytest.raises(ValueError, match="word features"):
        t2i.build_stage(1, cfg, _corpus(), runtime, tmp_path, "hash")
    corpus = _corpus_with_words()
    stage = t2i.build_stage(1, cfg, corpus, runtime, tmp_path, "hash")
    g, d = stage.state.nets["g"], stage.state.nets["d"]
    d_phase, g_phase = stage.phases
    assert d_phase.weights["d/words"] == g_phase.weights["g/words"] == 0.5
    seen = []
    forward = d.words.forward
    d.words.forward = lambda f, w, m: seen.append((w.clone(), m.clone())) or forward(f, w, m)
    batch = stage.data.next()
    assert batch.words.shape[:2] == batch.word_mask.shape and batch.words.shape[-1] == 10
    assert batch.word_mask.sum(1).max() == batch.words.shape[1]  # trimmed to the batch
    d_losses = d_phase.loss_fn(stage.state, batch)
    d_losses["d/words"].backward()  # real images only
    assert all(p.grad is None for p in g.parameters())
    assert all(p.grad is not None for p in d.words.parameters())
    d.zero_grad(set_to_none=True)
    g_losses = g_phase.loss_fn(stage.state, stage.data.next())  # a new batch, reused fakes
    g_losses["g/words"].backward()
    assert all(p.grad is None for p in d.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    (d_words, d_mask), (g_words, g_mask) = seen
    assert torch.equal(d_words, g_words) and torch.equal(d_mask, g_mask)
    negative = load_config(t2i.StackGANConfig, TINY, ["loss.words=-1"])
    with pytest.raises(ValueError, match="loss.words must be >= 0"):
        t2i.build_phases(negative, None, torch.device("cpu"))


def test_corpus_carries_word_features_only_when_asked(tmp_path) -> None:
    from text2img.encoders import get_encoder

    encoder = get_encoder("minilm")
    plain = t2i.load_corpus(load_config(t2i.StackGANConfig, TINY, []), encoder)
    assert plain.words is None and plain.word_mask is None
    cfg = load_config(t2i.StackGANConfig, TINY, ["loss.words=1"])
    corpus = t2i.load_corpus(cfg, encoder)
    n, c = corpus.embeddings.shape[:2]
    assert corpus.words.shape[:2] == (n, c) and corpus.words.shape[-1] == 384
    caption = corpus.captions[3][1]
    pieces = len(encoder.tokenizer(caption)["input_ids"]) - 2
    assert int(corpus.word_mask[3, 1].sum()) == pieces
    alone, _ = encoder.encode_tokens([caption])
    assert_close(corpus.words[3, 1, :pieces].float(), alone[0].float(), atol=2e-3, rtol=0)


def test_head_nce_trains_the_projection_heads_own_matching_term(tmp_path) -> None:
    cfg = load_config(t2i.StackGANConfig, TINY, ["model.d_head=projection", "loss.head_nce=0.5"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), 0)
    stage = t2i.build_stage(1, cfg, _corpus(), runtime, tmp_path, "hash")
    g, d = stage.state.nets["g"], stage.state.nets["d"]
    d_phase, g_phase = stage.phases
    assert d_phase.weights["d/head_nce"] == g_phase.weights["g/head_nce"] == 0.5
    d_losses = d_phase.loss_fn(stage.state, stage.data.next())
    d_losses["d/head_nce"].backward()  # real images: the head's V and the backbone
    assert all(p.grad is None for p in g.parameters())
    embed = d.head.head.embed
    assert next(p for n, p in embed.named_parameters() if "weight" in n).grad.abs().sum() > 0
    d.zero_grad(set_to_none=True)
    g_losses = g_phase.loss_fn(stage.state, stage.data.next())
    g_losses["g/head_nce"].backward()
    assert all(p.grad is None for p in d.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    combined = load_config(t2i.StackGANConfig, TINY, ["model.d_head=combined", "loss.head_nce=1"])
    with pytest.raises(ValueError, match="projection head's matching term"):
        t2i.build_phases(combined, None, torch.device("cpu"))
