"""speech.enhance: shapes, one real training step per head, the classical baselines, and an
end-to-end smoke test on the tiny SynthVoices corpus (train → CLI → evaluate → resume)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from common.config import ConfigError, RuntimeConfig, load_config
from common.losses import weighted_sum
from common.runtime import setup_runtime
from speech.enhance.classical import ClassicalConfig, ClassicalEnhancer
from speech.enhance.config import EnhanceConfig
from speech.enhance.data import CropSource, Pair, read_conditions
from speech.enhance.inference import Enhancer, build_generator, featurizer
from speech.enhance.metric import MetricDiscriminator, normalise_pesq, pesq_targets
from speech.enhance.models import MaskUNet, SpecDiscriminator, channel_table, enhance_z
from speech.enhance.train import build, check_config, linear_decay, neg_si_sdr
from speech.features import synthetic_voice
from speech.metrics import pesq_wb, si_sdr

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "speech" / "enhance" / "tiny.yaml"
# The tiny preset's widths, for unit tests that do not need its corpus.
TINY_WIDTHS = ["model.g_base=4", "model.g_max=8", "model.g_depth=3", "model.d_base=4",
               "model.d_max=8", "model.d_depth=2", "model.cond_ch=8", "model.head_hidden=8",
               "data.frames=32", "data.batch_size=4"]


def _voice_and_noise(seconds: float, snr_db: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    clean = synthetic_voice(16000, seconds, seed=seed)["wav"].astype(np.float32)
    rng = np.random.default_rng(seed + 1)
    noise = rng.standard_normal(len(clean)).astype(np.float32)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) / 10 ** (snr_db / 20)
    return clean, (clean + noise).astype(np.float32)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> list[Pair]:
    """Two synthetic (clean, noisy) pairs on disk: enough for the data source and one step."""
    root = tmp_path_factory.mktemp("enhance-pairs")
    out = []
    for i in range(2):
        clean, noisy = _voice_and_noise(1.0 + 0.5 * i, 5.0, seed=i)
        sf.write(root / f"c{i}.wav", clean, 16000, subtype="PCM_16")
        sf.write(root / f"n{i}.wav", noisy, 16000, subtype="PCM_16")
        out.append(Pair(f"u{i}", root / f"c{i}.wav", root / f"n{i}.wav"))
    return out


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("stem", [0, 4])
@pytest.mark.parametrize("frames", [1, 7, 64, 129])
def test_generator_mask_is_bounded_and_keeps_the_shape(frames, stem):
    g = MaskUNet(channel_table(4, 8, 3), mask_max=2.0, norm="bn", stem=stem).eval()
    z = torch.randn(2, 1, 257, frames)
    log_mask = g(z)
    assert log_mask.shape == z.shape
    assert torch.isfinite(log_mask).all()
    assert log_mask.max().item() <= math.log(2.0) + 1e-6
    # the Nyquist bin copies its neighbour's mask
    torch.testing.assert_close(log_mask[:, :, -1], log_mask[:, :, -2])


def test_generator_stem_feeds_the_encoder_and_the_mask_layer():
    g = MaskUNet(channel_table(4, 8, 3), stem=6)
    assert g.down[0][0].in_channels == 6 and g.out.in_channels == 4 + 6 + 1
    g(torch.randn(2, 1, 257, 16)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.stem.parameters())
    with pytest.raises(ValueError, match="stem"):
        MaskUNet(channel_table(4, 8, 3), stem=-1)


def test_channel_table():
    assert channel_table(8, 64, 5) == [8, 16, 32, 64, 64]
    with pytest.raises(ValueError):
        channel_table(0, 8, 2)


@pytest.mark.parametrize("cond_mode", ["fold", "resize"])
@pytest.mark.parametrize("head", ["none", "combined", "split", "projection"])
def test_discriminator_heads_give_patch_logits(head, cond_mode):
    d = SpecDiscriminator([4, 8], head, cond_mode=cond_mode, cond_ch=8, hidden=8)
    x, c = torch.randn(3, 1, 257, 30), torch.randn(3, 1, 257, 30)
    out = d(x, c)
    patches = (256 // 4) * (32 // 4)  # Nyquist bin dropped, 30 frames padded to 32
    filled = {k: v for k, v in vars(out).items() if v is not None}
    expected = {"none": {"realism"}, "combined": {"joint"}, "split": {"realism", "match"},
                "projection": {"joint"}}[head]
    assert set(filled) == expected
    assert all(v.shape == (3, patches) for v in filled.values())
    if head != "none":  # the condition matters
        other = d(x, torch.randn(3, 1, 257, 30))
        key = "joint" if "joint" in filled else "match"
        assert not torch.equal(getattr(out, key), getattr(other, key))
    with pytest.raises(ValueError, match="must match"):
        d(x, c[..., :20])


def test_featurizer_round_trip_and_identity_mask():
    feat = featurizer(EnhanceConfig().feature)
    wav = torch.from_numpy(_voice_and_noise(0.5, 10.0)[1])[None]
    z, phase = feat.analyze(wav)
    assert z.shape == (1, 1, 257, 1 + wav.shape[1] // 128)
    back = feat.synthesize(enhance_z(z, torch.zeros_like(z), feat), phase, wav.shape[1])
    torch.testing.assert_close(back, wav, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- training


def test_neg_si_sdr_is_the_metric_per_row_and_skips_silent_references():
    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(3, 4000, generator=gen)
    est = 0.5 * ref + 0.3 * torch.randn(3, 4000, generator=gen)
    ref[2] = 0.0  # a silent crop has no SI-SDR
    want = np.mean([si_sdr(ref[i].numpy(), est[i].numpy()) for i in range(2)])
    torch.testing.assert_close(neg_si_sdr(ref, est), torch.tensor(-want, dtype=torch.float32),
                               rtol=1e-4, atol=1e-3)
    est.requires_grad_(True)
    loss = neg_si_sdr(ref[2:], est[2:])
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert est.grad is not None and float(est.grad.abs().sum()) == 0.0
    # Scale-invariant: rescaling the estimate leaves the loss unchanged.
    torch.testing.assert_close(neg_si_sdr(ref[:2], 3.0 * est[:2].detach()),
                               neg_si_sdr(ref[:2], est[:2].detach()))


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.d_head=none"],
        ["model.d_head=combined"],
        ["model.d_head=split", "loss.fake_in_match=true"],
        ["model.d_head=projection", "model.d_cond=resize"],
        ["model.d_head=combined", "loss.weights={g/fm: 1.0}", "loss.kind=hinge"],
        ["model.d_head=split", "loss.kind=wgan-gp"],
        ["model.d_head=none", "loss.weights={g/sisdr: 1.0}"],
        # PESQ needs 0.25 s: 40 frames of hop 128 are 0.31 s.
        ["model.d_head=none", "model.metric_d=pesq", "data.frames=40"],
        ["model.d_head=projection", "model.metric_d=pesq", "data.frames=40"],
    ],
)
def test_one_training_step_per_head(pairs, overrides):
    cfg = load_config(EnhanceConfig, None, [*TINY_WIDTHS, *overrides])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    setup = build(cfg, runtime, pairs)
    state = setup.state
    head, metric = cfg.model.d_head, cfg.model.metric_d == "pesq"
    expected = ([] if head == "none" else ["d"]) + (["q"] if metric else []) + ["g"]
    assert set(state.nets) == set(expected)
    assert [p.name for p in setup.phases] == expected
    before = [p.detach().clone() for p in state.nets["g"].parameters()]
    for phase in setup.phases:
        batch = setup.data.next()
        assert batch.clean.shape == batch.noisy.shape == (4, 128 * (cfg.data.frames - 1))
        losses = phase.loss_fn(state, batch)
        assert all(k.startswith(phase.name + "/") for k in losses)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        assert set(phase.weights) <= set(losses), (phase.weights, losses)
        opt = state.optimizers[phase.optimizer]
        opt.zero_grad()
        weighted_sum(losses, phase.weights).backward()
        opt.step()
        if phase.name == "g":
            assert ("g/fm" in losses) == ("loss.weights={g/fm: 1.0}" in overrides)
            assert phase.weights["g/l1"] == 100.0  # merged over the defaults
            assert ("g/match" in losses) == (head == "split")
            assert ("g/adv" in losses) == (head != "none")
            assert ("g/metric" in losses) == metric
            assert ("g/sisdr" in losses) == ("loss.weights={g/sisdr: 1.0}" in overrides)
        elif phase.name == "q":
            assert set(losses) == {"q/clean", "q/enhanced", "q/noisy"}
            # Before any training Q scores everything about alike, so the fits are non-zero.
            assert all(float(v.detach()) > 0 for v in losses.values()), losses
        else:
            if "loss.kind=wgan-gp" in overrides:
                assert "d/gp" in losses
            if "loss.fake_in_match=true" in overrides:
                assert "d/match_fake" in losses
    assert any(not torch.equal(a, b)
               for a, b in zip(before, state.nets["g"].parameters(), strict=True))


def test_config_refusals():
    with pytest.raises(ConfigError, match="g/l2"):
        check_config(load_config(EnhanceConfig, None, ["loss.weights={g/l2: 1.0}"]))
    with pytest.raises(ConfigError, match="batch_size"):
        check_config(load_config(EnhanceConfig, None, ["data.batch_size=1"]))
    check_config(load_config(EnhanceConfig, None, ["data.batch_size=1", "model.d_head=none"]))
    with pytest.raises(ConfigError, match="remix_snr"):
        check_config(load_config(EnhanceConfig, None, ["data.remix_snr=[10.0, 0.0]"]))
    with pytest.raises(ConfigError, match="data.remix"):
        check_config(load_config(EnhanceConfig, None, ["data.remix=1.5"]))
    with pytest.raises(ConfigError, match="data.eq"):
        check_config(load_config(EnhanceConfig, None, ["data.eq=-0.1"]))
    with pytest.raises(ConfigError, match="train.freeze_g_norm needs train.init_g"):
        check_config(load_config(EnhanceConfig, None, ["train.freeze_g_norm=true"]))
    with pytest.raises(ConfigError, match="train.freeze_g_norm needs"):
        check_config(load_config(EnhanceConfig, None, ["train.freeze_g_norm=true",
                                                       "train.init_g=x", "model.g_norm=in"]))
    with pytest.raises(ConfigError, match="optim.decay_from"):
        check_config(load_config(EnhanceConfig, None, ["optim.decay_from=1.0"]))


def test_init_g_starts_g_and_its_ema_from_a_trained_enhancer(pairs, tmp_path):
    from common.checkpoint import export_weights
    from common.config import to_dict

    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    src_cfg = load_config(EnhanceConfig, None, [*TINY_WIDTHS, "model.d_head=none"])
    src = build_generator(src_cfg.model)
    with torch.no_grad():
        for i, p in enumerate(src.parameters()):
            p.fill_(0.01 * (i + 1))  # unlike any initialisation
    artifact = export_weights(tmp_path / "g_ema.safetensors", src,
                              {"entry": "speech.enhance", "model": to_dict(src_cfg.model),
                               "feature": to_dict(src_cfg.feature)})
    cfg = load_config(EnhanceConfig, None, [*TINY_WIDTHS, "model.d_head=projection",
                                            f"train.init_g={artifact}"])
    setup = build(cfg, runtime, pairs)
    for net in (setup.state.nets["g"], setup.state.ema.module):
        for a, b in zip(src.state_dict().values(), net.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b)
    assert "d" in setup.state.nets  # the adversary itself starts fresh
    # train.freeze_g_norm: a training step leaves G's batch-norm statistics as loaded
    frozen = build(load_config(EnhanceConfig, None, [
        *TINY_WIDTHS, "model.d_head=none", f"train.init_g={artifact}",
        "train.freeze_g_norm=true"]), runtime, pairs)
    g = frozen.state.nets["g"]
    stats = {k: v.clone() for k, v in g.state_dict().items() if "running" in k}
    assert stats
    phase = frozen.phases[-1]
    loss = weighted_sum(phase.loss_fn(frozen.state, frozen.data.next()), phase.weights)
    loss.backward()
    frozen.state.optimizers["g"].step()
    for k, v in stats.items():
        torch.testing.assert_close(g.state_dict()[k], v)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    # without the flag the same step moves them
    moving = build(load_config(EnhanceConfig, None, [
        *TINY_WIDTHS, "model.d_head=none", f"train.init_g={artifact}"]), runtime, pairs)
    phase = moving.phases[-1]
    phase.loss_fn(moving.state, moving.data.next())
    assert any(not torch.equal(moving.state.nets["g"].state_dict()[k], v)
               for k, v in stats.items())
    # another G or other features: refused, naming what differs and the source
    with pytest.raises(ConfigError, match=r"train.init_g=.*model.g_depth 3 there, 4 here"):
        build(load_config(EnhanceConfig, None, [*TINY_WIDTHS, "model.g_depth=4",
                                                f"train.init_g={artifact}"]), runtime, pairs)
    with pytest.raises(ConfigError, match=r"feature.hop 128 there, 256 here"):
        build(load_config(EnhanceConfig, None, [*TINY_WIDTHS, "feature.hop=256",
                                                f"train.init_g={artifact}"]), runtime, pairs)
    with pytest.raises(ConfigError, match=r"train.init_g: .*nowhere"):
        build(load_config(EnhanceConfig, None, [*TINY_WIDTHS,
                                                f"train.init_g={tmp_path / 'nowhere'}"]),
              runtime, pairs)
    # a missing artifact or checkpoint file is named as missing (not its metadata)
    for missing in ("gone.safetensors", "step_000000009.pt"):
        with pytest.raises(ConfigError, match=rf"train.init_g: .*{missing}: no such file"):
            build(load_config(EnhanceConfig, None, [*TINY_WIDTHS,
                                                    f"train.init_g={tmp_path / missing}"]),
                  runtime, pairs)


def test_linear_decay_holds_then_reaches_zero_at_the_last_step():
    params = [torch.nn.Parameter(torch.zeros(1))]
    opt = torch.optim.SGD(params, lr=0.4)
    sched = linear_decay({"g": opt}, steps=10, decay_from=0.6)["g"]
    rates = []
    for _ in range(10):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # steps 0-6 at the full rate (the decay starts after step 6 = 0.6 · 10), then 3/4, 2/4, 1/4
    torch.testing.assert_close(torch.tensor(rates),
                               torch.tensor([0.4] * 7 + [0.3, 0.2, 0.1]))
    torch.testing.assert_close(opt.param_groups[0]["lr"], 0.0)
    assert linear_decay({"g": opt}, steps=10, decay_from=None) == {}


def test_crop_source_resumes_exactly(pairs):
    src = CropSource(pairs, 4000, 3, seed=5)
    src.next()
    state = src.state_dict()
    a = src.next()
    src.load_state_dict(state)
    b = src.next()
    torch.testing.assert_close(a.noisy, b.noisy, rtol=0, atol=0)
    # the crops are sample-aligned: noisy − clean is the (non-zero) noise
    assert a.clean.shape == (3, 4000) and (a.noisy - a.clean).abs().sum() > 0


def test_dynamic_mixing_adds_another_pairs_noise_at_the_drawn_snr(pairs):
    src = CropSource(pairs, 4000, 64, seed=3, remix=1.0, remix_snr=(7.0, 7.0))
    batch = src.next()
    noise = (batch.noisy - batch.clean).double()
    snr = 10 * torch.log10(batch.clean.double().pow(2).mean(1) / noise.pow(2).mean(1))
    torch.testing.assert_close(snr, torch.full_like(snr, 7.0), atol=1e-3, rtol=0)
    state = src.state_dict()
    a = src.next()
    src.load_state_dict(state)
    torch.testing.assert_close(a.noisy, src.next().noisy, rtol=0, atol=0)  # still resumable
    # remix=0 reads the stored mixtures untouched (their noise is at 5 dB)
    plain = CropSource(pairs, 4000, 64, seed=3).next()
    snr0 = 10 * torch.log10(plain.clean.double().pow(2).mean(1)
                            / (plain.noisy - plain.clean).double().pow(2).mean(1))
    assert (snr0 - 7.0).abs().min() > 0.5


def test_spectral_augmentation_recolours_speech_and_noise_at_the_same_powers(pairs):
    one = pairs[:1]  # a 1-s file read whole: every batch holds the same crop
    plain = CropSource(one, 16000, 8, seed=1).next()
    src = CropSource(one, 16000, 8, seed=1, eq=1.0)
    state = src.state_dict()
    eq = src.next()

    def power(x: torch.Tensor) -> torch.Tensor:
        return x.double().pow(2).mean(1)

    for part in (lambda b: b.clean, lambda b: b.noisy - b.clean):
        torch.testing.assert_close(power(part(eq)), power(part(plain)), rtol=1e-4, atol=0)
        # every example gets its own filter: the spectra differ from the file's and each other's
        spectra = torch.fft.rfft(part(eq).double()).abs()
        ref = torch.fft.rfft(part(plain).double()).abs()
        assert ((spectra - ref).abs().mean(1) > 0.01 * ref.mean(1)).all()
        assert (spectra[1:] - spectra[:1]).abs().mean() > 0.05 * ref.mean()
    src.load_state_dict(state)
    torch.testing.assert_close(eq.noisy, src.next().noisy, rtol=0, atol=0)  # resumable
    with pytest.raises(ValueError, match="eq"):
        CropSource(one, 16000, 8, seed=1, eq=2.0)


# --------------------------------------------------------------------------- baselines


def test_pesq_targets_rank_clean_over_noisy_and_skip_unscorable_crops():
    clean, noisy = _voice_and_noise(1.0, 0.0)
    silent = np.zeros_like(clean)
    ref = torch.from_numpy(np.stack([clean, clean, silent]))
    deg = torch.from_numpy(np.stack([clean, noisy, noisy]))
    scores, valid = pesq_targets(ref, deg)
    assert valid.tolist() == [True, True, False]  # a silent reference has no speech to score
    assert abs(float(scores[0]) - normalise_pesq(pesq_wb(clean, clean))) < 1e-6
    assert float(scores[0]) > 0.9  # identical signals score near the top of the scale
    assert 0.0 < float(scores[1]) < float(scores[0]) - 0.3
    assert normalise_pesq(0.5) == 0.0 and normalise_pesq(5.0) == 1.0


def test_metric_discriminator_scores_any_crop_and_refuses_mismatched_pairs():
    q = MetricDiscriminator(channels=4)
    for frames in (3, 40):
        x = torch.randn(2, 1, 257, frames)
        assert q(x, x).shape == (2,)
    with pytest.raises(ValueError, match="must match"):
        q(torch.randn(1, 1, 257, 8), torch.randn(1, 1, 257, 9))


@pytest.mark.parametrize("method", ["wiener", "specsub"])
def test_classical_baselines_raise_si_sdr(method):
    clean, noisy = _voice_and_noise(3.0, 0.0)
    enh = ClassicalEnhancer(ClassicalConfig(method=method))
    out = enh.enhance(noisy)
    assert out.shape == noisy.shape and np.isfinite(out).all()
    assert si_sdr(clean, out) > si_sdr(clean, noisy) + 2.0
    assert enh.enhance(noisy[:100]).shape == (100,)  # shorter than one STFT window


def test_enhancer_handles_any_length():
    cfg = load_config(EnhanceConfig, None, TINY_WIDTHS)
    enh = Enhancer(build_generator(cfg.model), featurizer(cfg.feature), chunk_seconds=0.5,
                   overlap_seconds=0.1)
    for n in (50, 8000, 20000):  # shorter than a window, one chunk, several chunks
        out = enh.enhance(np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1)
        assert out.shape == (n,) and np.isfinite(out).all()


# --------------------------------------------------------------------------- smoke test


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """The tiny SynthVoices corpus and a private cache (baseline scores land there)."""
    from speech.data.synthvoices import build as build_corpus
    from speech.data.synthvoices import load_preset

    cache = tmp_path_factory.mktemp("enhance-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CGAN_CACHE", str(cache))
        mp.setenv("WANDB_MODE", "offline")
        root = cache / "datasets" / "synthvoices"
        corpus = build_corpus(load_preset("tiny"), root=root, workers=1, progress=False)
        yield {"corpus": corpus, "root": root, "cache": cache}


def _checkpoint_digest(path: Path) -> str:
    return torch.load(path, weights_only=True)["param_digest"]


def test_mixing_log_labels_pairs_and_gives_per_condition_means(tmp_path):
    from speech.enhance.evaluate import condition_means

    (tmp_path / "logfiles").mkdir()  # VoiceBank+DEMAND keeps its logs in logfiles/
    (tmp_path / "logfiles" / "log_testset.txt").write_text(
        "p232_001 bus 17.5\np232_002 living 2.5\n\np232_003 bus 2.5\n")
    assert read_conditions(tmp_path, "test") == {
        "p232_001": ("bus", 17.5), "p232_002": ("living", 2.5), "p232_003": ("bus", 2.5)}
    assert read_conditions(tmp_path, "train") == {}
    pairs = [Pair(u, Path("c"), Path("n"), *read_conditions(tmp_path, "test")[u])
             for u in ("p232_001", "p232_002", "p232_003")] + [Pair("x", Path("c"), Path("n"))]
    rows = {"model": [{"id": "p232_001", "pesq_wb": 3.0}, {"id": "p232_002", "pesq_wb": 1.0},
                      {"id": "p232_003", "pesq_wb": 2.0}, {"id": "x", "pesq_wb": 9.0}]}
    means = condition_means(pairs, rows)
    assert means["eval/model/by_noise/bus/pesq_wb"] == pytest.approx(2.5)
    assert means["eval/model/by_noise/living/pesq_wb"] == pytest.approx(1.0)
    assert means["eval/model/by_snr/2.5/pesq_wb"] == pytest.approx(1.5)
    assert list(means) == [f"eval/model/by_{k}/pesq_wb" for k in
                           ("noise/bus", "noise/living", "snr/2.5", "snr/17.5")]
    # a malformed log labels nothing, with a warning that names the file and line
    (tmp_path / "log_testset.txt").write_text("p232_001 bus loud\n")
    with pytest.warns(UserWarning, match=r"log_testset\.txt:1: expected"):
        assert read_conditions(tmp_path, "test") == {}


@pytest.mark.slow
def test_smoke_train_cli_evaluate_resume(tiny_corpus, tmp_path):
    from speech.enhance.evaluate import main as evaluate_main
    from speech.enhance.train import main as train_main

    run = tmp_path / "run"
    args = ["--config", str(TINY), "--run-dir", str(run), f"data.root={tiny_corpus['root']}"]
    results = train_main(args)

    # the run folder: config, metrics, checkpoints, probes, artifact, evaluation
    for name in ("config.yaml", "metrics.jsonl", "g_ema.safetensors", "g_ema.json",
                 "eval.json", "eval_rows.json", "listen/index.html", "summary.json"):
        assert (run / name).is_file(), name
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_000000002.pt", "step_000000004.pt"]
    evald = json.loads((run / "eval.json").read_text())
    assert evald == pytest.approx(results)
    for system in ("noisy", "wiener", "model"):
        for metric in ("pesq_wb", "stoi", "csig", "cbak", "covl", "ssnr", "si_sdr"):
            assert math.isfinite(evald[f"eval/{system}/{metric}"]), (system, metric)
    assert evald["eval/n_utterances"] == 3
    assert any(k.startswith("eval/model/by_snr/") for k in evald)  # the corpus' mixing log
    page = (run / "listen" / "index.html").read_text()
    assert page.count("<audio") == 2 * 4 and "spec/slt_0001_model.png" in page
    assert (run / "listen" / "spec" / "slt_0001_model.png").is_file()
    audio = {p.name for p in (run / "audio").iterdir()}
    assert {"probe_slt_0001_source_step000000.wav", "probe_slt_0001_target_step000000.wav",
            "probe_slt_0001_output_step000004.wav"} <= audio
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"train/g/l1", "train/g/adv", "train/d/real", "train/d/wrong"} <= set(rows[-2])
    assert list((run / "wandb").glob("offline-run-*"))
    # baseline scores were cached under the private cache
    assert len(list((tiny_corpus["cache"] / "enhance" / "scores").glob("*.json"))) == 2

    # the CLI: a stereo 22.05 kHz FLAC in, 16 kHz mono wav out, same duration
    clean, noisy = _voice_and_noise(1.3, 5.0)
    src = tmp_path / "in.flac"
    from speech.audio import resample

    stereo = resample(noisy, 16000, 22050)
    sf.write(src, np.stack([stereo, 0.5 * stereo], axis=1), 22050)
    out = tmp_path / "out.wav"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "speech.enhance", str(src), str(out),
                           "--checkpoint", str(run), "--chunk-seconds", "0.5",
                           "--overlap-seconds", "0.1"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.channels == 1
    assert abs(info.frames - len(noisy)) <= 1
    assert "resampled from 22050 Hz" in proc.stdout
    # folder mode: one good file and one broken one → the good one is written, exit 1
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "sub" / "a.wav", noisy, 16000)
    (folder / "broken.wav").write_text("not audio")
    proc = subprocess.run([sys.executable, "-m", "speech.enhance", str(folder),
                           str(tmp_path / "folder_out"), "--checkpoint",
                           str(run / "g_ema.safetensors")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "broken.wav" in proc.stderr
    assert sf.info(str(tmp_path / "folder_out" / "sub" / "a.wav")).frames == len(noisy)

    # the evaluation entry point, with the L1-style extra system and another baseline
    ev_dir = tmp_path / "eval"
    again = evaluate_main(["--run-dir", str(run), "--out", str(ev_dir), "--system",
                           f"other={run / 'g_ema.safetensors'}", "--baselines",
                           "noisy,specsub", "--limit", "2", "--listen", "1"])
    assert again["eval/n_utterances"] == 2
    assert again["eval/other/pesq_wb"] == pytest.approx(again["eval/model/pesq_wb"])
    assert "eval/specsub/stoi" in again and "eval/wiener/stoi" not in again
    assert json.loads((ev_dir / "eval.json").read_text()) == pytest.approx(again)

    # resume: drop the last checkpoint and the results, continue, land on the same weights
    digest = _checkpoint_digest(ckpts[-1])
    for path in (ckpts[-1], run / "eval.json", run / "g_ema.safetensors", run / "g_ema.json"):
        path.unlink()
    train_main([*args, "--resume"])
    assert _checkpoint_digest(ckpts[-1]) == digest
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps.count(4) == 2  # train + val lines, not duplicated
    assert (run / "eval.json").is_file()
    # a changed config is refused
    with pytest.raises(SystemExit):
        train_main([*args, "--resume", "train.steps=6"])
