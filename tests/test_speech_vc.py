"""speech.vc: shapes, one real training step for CycleGAN-VC2 and for StarGAN-VC with each
head, the converter on any length, and an end-to-end smoke test on the tiny SynthVoices
corpus (train → CLI → evaluate → resume; StarGAN-VC train → convert)."""

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
from speech.features import F0Stats, NormStats, synthetic_voice
from speech.vc.config import VCConfig
from speech.vc.data import CropSource
from speech.vc.features import SpeakerStats
from speech.vc.inference import Converter, build_generator
from speech.vc.models import Generator212, VCDiscriminator
from speech.vc.train import build, check_config

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "speech" / "vc" / "tiny.yaml"
WIDTHS = ["model.g_base=4", "model.g_res=8", "model.g_blocks=1", "model.d_base=4",
          "model.d_depth=3", "model.cond_ch=4", "model.head_hidden=4", "data.frames=32",
          "data.batch_size=2"]
STARGAN = ["model.kind=stargan", "data.speakers=[kal,ked,slt,f3]"]


def _feats(n_speakers: int, seed: int = 0) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal((36, n)).astype(np.float32) for n in (20, 50)]
            for _ in range(n_speakers)]


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("frames", [1, 7, 32, 129])
@pytest.mark.parametrize("cond_dim", [0, 3])
def test_generator_keeps_the_shape(frames, cond_dim):
    g = Generator212(36, base=4, res=8, blocks=2, cond_dim=cond_dim).eval()
    x = torch.randn(2, 1, 36, frames)
    c = torch.eye(3)[[0, 2]] if cond_dim else None
    y = g(x, c)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if cond_dim:  # the target speaker changes the output
        assert not torch.equal(y, g(x, torch.eye(3)[[1, 1]]))
    with pytest.raises(ValueError):
        g(x, None if cond_dim else torch.eye(3)[:2])
    with pytest.raises(ValueError, match="divisible by 4"):
        Generator212(34)


@pytest.mark.parametrize("head", ["none", "combined", "split", "projection"])
def test_discriminator_heads_give_patch_logits(head):
    d = VCDiscriminator([4, 8, 16], head, 4, cond_ch=4, hidden=4)
    x, c = torch.randn(3, 1, 36, 30), torch.eye(4)[[0, 1, 2]]
    out = d(x, None if head == "none" else c)
    patches = 9 * 8  # 36 x 32 (30 padded) halved twice
    filled = {k: v for k, v in vars(out).items() if v is not None}
    expected = {"none": {"realism"}, "combined": {"joint"}, "split": {"realism", "match"},
                "projection": {"joint"}}[head]
    assert set(filled) == expected
    assert all(v.shape == (3, patches) for v in filled.values())
    if head != "none":
        other = d(x, torch.eye(4)[[3, 3, 3]])
        key = "joint" if "joint" in filled else "match"
        assert not torch.equal(getattr(out, key), getattr(other, key))
        with pytest.raises(ValueError, match="one-hot"):
            d(x)


# --------------------------------------------------------------------------- training


def _one_step(cfg: VCConfig, n_speakers: int):
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    setup = build(cfg, runtime, _feats(n_speakers))
    state = setup.state
    before = [p.detach().clone() for p in state.nets["g"].parameters()]
    seen = {}
    for phase in setup.phases:
        batch = setup.data.next()
        losses = phase.loss_fn(state, batch)
        assert all(k.startswith(phase.name + "/") for k in losses)
        assert all(torch.isfinite(v) for v in losses.values()), losses
        opt = state.optimizers[phase.optimizer]
        opt.zero_grad()
        weighted_sum(losses, phase.weights).backward()
        opt.step()
        seen[phase.name] = (set(losses), dict(phase.weights))
    assert any(not torch.equal(a, b)
               for a, b in zip(before, state.nets["g"].parameters(), strict=True))
    return setup, seen


@pytest.mark.parametrize("two_step", [True, False])
def test_cyclegan_one_training_step_and_identity_switch_off(two_step):
    cfg = load_config(VCConfig, None, [*WIDTHS, f"loss.two_step={str(two_step).lower()}",
                                       "loss.identity_steps=1"])
    setup, seen = _one_step(cfg, 2)
    assert set(setup.state.nets["g"]) == {"xy", "yx"}
    assert set(setup.state.nets["d"]) == ({"x", "y", "x2", "y2"} if two_step else {"x", "y"})
    g_terms, g_weights = seen["g"]
    assert g_terms == {"g/adv", "g/cycle", "g/id", *(["g/adv2"] if two_step else [])}
    assert g_weights["g/cycle"] == 10.0 and g_weights["g/id"] == 5.0
    assert seen["d"][0] == {"d/real", "d/fake", *(["d/real2", "d/fake2"] if two_step else [])}
    # after identity_steps the identity term is neither computed nor weighted
    setup.state.step = 1
    g_phase = setup.phases[-1]
    losses = g_phase.loss_fn(setup.state, setup.data.next())
    assert "g/id" not in losses and "g/id" not in g_phase.weights
    weighted_sum(losses, g_phase.weights)  # still consistent


@pytest.mark.parametrize("head", ["combined", "split", "projection"])
def test_stargan_one_training_step_per_head(head):
    cfg = load_config(VCConfig, None, [*WIDTHS, *STARGAN, f"model.d_head={head}"])
    setup, seen = _one_step(cfg, 4)
    g_terms, _ = seen["g"]
    assert g_terms == {"g/adv", "g/cycle", "g/id", *(["g/match"] if head == "split" else [])}
    d_terms = {"combined": {"d/real", "d/wrong", "d/fake"},
               "projection": {"d/real", "d/wrong", "d/fake"},
               "split": {"d/real", "d/fake", "d/match", "d/mismatch"}}[head]
    assert seen["d"][0] == d_terms
    batch = setup.data.next()
    assert batch.x.shape == (2, 1, 36, 32) and (batch.source != batch.target).all()


def test_config_refusals():
    with pytest.raises(ConfigError, match="g/l2"):
        check_config(load_config(VCConfig, None, ["loss.weights={g/l2: 1.0}"]))
    with pytest.raises(ConfigError, match="unconditional"):
        check_config(load_config(VCConfig, None, ["model.d_head=split"]))
    with pytest.raises(ConfigError, match="exactly"):
        check_config(load_config(VCConfig, None, ["data.speakers=[kal,slt,f3]"]))
    with pytest.raises(ConfigError, match="sp_dim"):
        check_config(load_config(VCConfig, None, ["feature.sp_dim=35"]))
    check_config(load_config(VCConfig, None, [*STARGAN, "model.d_head=split"]))


def test_crop_source_resumes_exactly():
    src = CropSource(_feats(3), 32, 3, seed=5, mode="multi")
    src.next()
    state = src.state_dict()
    a = src.next()
    src.load_state_dict(state)
    b = src.next()
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    torch.testing.assert_close(a.target, b.target, rtol=0, atol=0)
    assert a.x.shape == (3, 1, 36, 32)  # the 20-frame utterance is wrapped to 32


@pytest.mark.parametrize("kind", ["cyclegan", "stargan"])
def test_converter_handles_any_length(kind):
    over = [*WIDTHS, *(STARGAN if kind == "stargan" else []), "feature.f0_method=dio"]
    cfg = load_config(VCConfig, None, over)
    stats = {s: SpeakerStats(NormStats(np.zeros(36), np.ones(36), 1),
                             F0Stats(math.log(120.0 + 20 * i), 0.2, 100))
             for i, s in enumerate(cfg.data.speakers)}
    conv = Converter(build_generator(cfg.model, cfg.feature, len(cfg.data.speakers)), kind,
                     cfg.data.speakers, stats, cfg.feature, chunk_seconds=0.5,
                     overlap_seconds=0.1)
    wav = synthetic_voice(16000, 1.5, seed=1)["wav"].astype(np.float32)
    for n in (50, 8000, len(wav)):  # shorter than a frame, one chunk, several chunks
        out = conv.convert(wav[:n], None, "slt")
        assert out.shape == (n,) and np.isfinite(out).all()
    with pytest.raises(ValueError, match="unknown target"):
        conv.convert(wav, None, "nobody")


# --------------------------------------------------------------------------- smoke test


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """The tiny SynthVoices corpus in a private cache (features are cached there too)."""
    from speech.data.synthvoices import build as build_corpus
    from speech.data.synthvoices import load_preset

    cache = tmp_path_factory.mktemp("vc-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CGAN_CACHE", str(cache))
        mp.setenv("WANDB_MODE", "offline")
        root = cache / "datasets" / "synthvoices"
        corpus = build_corpus(load_preset("tiny"), root=root, workers=1, progress=False)
        yield {"corpus": corpus, "root": root, "cache": cache}


def _digest(path: Path) -> str:
    return torch.load(path, weights_only=True)["param_digest"]


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "speech.vc.convert", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_smoke_train_cli_evaluate_resume(tiny_corpus, tmp_path):
    from speech.vc.evaluate import main as evaluate_main
    from speech.vc.train import main as train_main

    run = tmp_path / "run"
    args = ["--config", str(TINY), "--run-dir", str(run), f"data.root={tiny_corpus['root']}"]
    results = train_main(args)
    for name in ("config.yaml", "metrics.jsonl", "g_ema.safetensors", "g_ema.json",
                 "speaker_stats.json", "eval.json", "eval_rows.json", "listen/index.html"):
        assert (run / name).is_file(), name
    ckpts = sorted((run / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_000000002.pt", "step_000000004.pt"]
    evald = json.loads((run / "eval.json").read_text())
    assert evald == pytest.approx(results)
    assert evald["eval/n_utterances"] == 4  # 2 directions x 2 sentences
    for prefix in ("eval", "eval/baseline", "eval/dir/kal_slt", "eval/dir/slt_kal"):
        for m in ("mcd", "logf0_rmse_cents", "logf0_corr", "spk_sim_target", "spk_sim_source",
                  "closer_to_target"):
            assert math.isfinite(evald[f"{prefix}/{m}"]), (prefix, m)
    assert evald["eval/baseline/closer_to_target"] == 0.0  # the source sounds like itself
    page = (run / "listen" / "index.html").read_text()
    assert page.count("<audio") == 3 * 2  # source / converted / target, 1 sentence x 2 dirs
    assert (run / "listen" / "spec" / "kal_slt_p0001_converted.png").is_file()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/g/total" in r]
    assert "train/g/id" in train_rows[0] and "train/g/id" not in train_rows[-1]  # switched off
    assert {"train/g/adv", "train/g/adv2", "train/g/cycle", "train/d/real2"} <= set(train_rows[-1])
    assert list((run / "wandb").glob("offline-run-*"))
    assert list((tiny_corpus["cache"] / "features" / "vc_world_coded").glob("*.npz"))

    # the CLI: a stereo 22.05 kHz FLAC in, 16 kHz mono wav out, same duration
    from speech.audio import resample

    voice = synthetic_voice(16000, 1.3, seed=2)["wav"].astype(np.float32)
    stereo = resample(voice, 16000, 22050)
    src = tmp_path / "in.flac"
    sf.write(src, np.stack([stereo, 0.5 * stereo], axis=1), 22050)
    out = tmp_path / "out.wav"
    proc = _cli(["--checkpoint", str(run), "--target", "slt", str(src), str(out),
                 "--chunk-seconds", "0.5", "--overlap-seconds", "0.1"])
    assert proc.returncode == 0, proc.stderr
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.channels == 1
    assert abs(info.frames - len(voice)) <= 2
    assert "resampled from 22050 Hz" in proc.stdout and "kal -> slt" in proc.stdout
    # folder mode: one good file and one broken one → the good one is written, exit 1
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "sub" / "a.wav", voice, 16000)
    (folder / "broken.wav").write_text("not audio")
    proc = _cli(["--checkpoint", str(run / "g_ema.safetensors"), "--target", "kal",
                 str(folder), str(tmp_path / "folder_out")])
    assert proc.returncode == 1 and "broken.wav" in proc.stderr
    assert sf.info(str(tmp_path / "folder_out" / "sub" / "a.wav")).frames == len(voice)
    assert _cli(["--checkpoint", str(run), "--target", "nobody", str(src), str(out)]
                ).returncode == 2

    # the evaluation entry point, one direction, into another folder
    ev_dir = tmp_path / "eval"
    again = evaluate_main(["--run-dir", str(run), "--out", str(ev_dir), "--pairs", "kal:slt",
                           "--limit", "1", "--listen", "1"])
    assert again["eval/n_utterances"] == 1 and "eval/dir/slt_kal/mcd" not in again
    assert again["eval/dir/kal_slt/mcd"] == pytest.approx(again["eval/mcd"])
    assert json.loads((ev_dir / "eval.json").read_text()) == pytest.approx(again)

    # resume: drop the last checkpoint and the results, continue, land on the same weights
    digest = _digest(ckpts[-1])
    for path in (ckpts[-1], run / "eval.json", run / "g_ema.safetensors", run / "g_ema.json"):
        path.unlink()
    train_main([*args, "--resume"])
    assert _digest(ckpts[-1]) == digest
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)
    assert (run / "eval.json").is_file()
    with pytest.raises(SystemExit):
        train_main([*args, "--resume", "train.steps=6"])


@pytest.mark.slow
def test_smoke_stargan_trains_and_converts(tiny_corpus, tmp_path):
    from speech.vc.train import main as train_main

    run = tmp_path / "star"
    train_main(["--config", str(TINY), "--run-dir", str(run), f"data.root={tiny_corpus['root']}",
                "model.kind=stargan", "model.d_head=split", "train.steps=2",
                "eval.pairs=[kal:slt]", "eval.limit=1", "eval.speaker_similarity=false"])
    evald = json.loads((run / "eval.json").read_text())
    assert math.isfinite(evald["eval/mcd"]) and "eval/spk_sim_target" not in evald
    conv = Converter.load(run)
    assert conv.kind == "stargan" and conv.speakers == ["kal", "slt"]
    wav = synthetic_voice(16000, 0.6, seed=3)["wav"].astype(np.float32)
    assert conv.convert(wav, "kal", "slt").shape == wav.shape


# ----------------------------------------------------------------------------- parallel oracle


def _oracle_corpus(n: int = 8, frames: int = 150, seed: int = 0):
    """Parallel "utterances" whose target cepstra are a nonlinear map of the source's
    (a speaker change a global affine map cannot make), time-warped, with related F0."""
    from speech.metrics import VCFrames

    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(24, 24)) / np.sqrt(24)
    source, target = [], []
    for _ in range(n):
        walk = np.cumsum(rng.normal(size=(frames, 25)), axis=0) / 6.0
        cep = walk - walk.mean(0)
        lf = (5.0 + 0.15 * np.sin(np.linspace(0, rng.uniform(3, 9), frames))
              + 0.02 * rng.normal(size=frames))
        f0 = np.where(rng.uniform(size=frames) < 0.8, np.exp(lf), 0.0)
        warp = np.sort(rng.integers(0, frames, size=frames))  # target repeats / skips frames
        tcep = cep.copy()
        tcep[:, 1:] = 2.0 * np.tanh(cep[:, 1:] @ mix) + 3.0  # + an offset the affine map finds
        tlf = 5.6 + 1.5 * (lf - 5.0) + 0.1 * np.cos(np.arange(frames) / 9)
        tf0 = np.where(f0 > 0, np.exp(tlf), 0.0)
        source.append(VCFrames(mcep=cep, f0=f0, order=24, protocol="synthetic"))
        target.append(VCFrames(mcep=tcep[warp], f0=tf0[warp], order=24, protocol="synthetic"))
    return source, target


def test_parallel_oracle_learns_a_nonlinear_speaker_map_and_f0_invariance():
    from speech.vc.oracle import OracleSettings, parallel_oracle

    source, target = _oracle_corpus()
    settings = OracleSettings(steps=300, rounds=2, f0_steps=200, hidden=128, f0_width=8)
    out = parallel_oracle(source, target, settings)
    mcd, corr = out["mcd"], out["logf0_corr"]
    # A frame-wise regressor trained on other sentences beats the per-coefficient affine map,
    # which beats doing nothing; memorising the scored sentences does at least as well.
    assert mcd["global_affine"] < 0.8 * mcd["source"], mcd
    assert mcd["regressor_held_out"] < 0.7 * mcd["global_affine"], mcd
    assert mcd["regressor_fit"] <= mcd["regressor_held_out"] + 0.05
    # The log-Gaussian transform is affine in ln F0: Pearson correlation cannot change.
    torch.testing.assert_close(corr["log_gaussian"], corr["source"], rtol=0, atol=1e-9)
    assert -1.0 <= corr["regressor_held_out"] <= 1.0
    with pytest.raises(ValueError, match="too few"):
        parallel_oracle(source[:3], target[:3], settings)
