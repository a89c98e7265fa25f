"""Train non-parallel voice conversion: CycleGAN-VC2 (one-to-one) or StarGAN-VC (many-to-many).

    python -m speech.vc.train --config configs/speech/vc/cyclegan-cpu.yaml
    python -m speech.vc.train --config configs/speech/vc/stargan-cpu.yaml model.d_head=split
    python -m speech.vc.train --config ... --run-dir runs/vc/x --resume
    python -m speech.vc.train --config ... --dry-run          # print the resolved config

Losses (weights in ``loss.weights``, keyed as logged; x, y: normalised coded envelopes):

CycleGAN-VC2 (Kaneko et al. 2019, ICASSP), ``data.speakers = [X, Y]``, both directions in
one model, per-domain unconditional critics D_X, D_Y (``c = None``):

* ``g/adv``, ``d/real``, ``d/fake``: L_adv (§2, eq. 1) for G_X→Y against D_Y and G_Y→X against
  D_X, in the least-squares form (Mao et al. 2017);
* ``g/adv2``, ``d/real2``, ``d/fake2``: the two-step adversarial loss L_adv2 (§3.1): extra
  critics D'_X, D'_Y judge the *cycle-converted* features G_Y→X(G_X→Y(x)), which counters
  the over-smoothing the L1 cycle loss causes (§3.1);
* ``g/cycle``: L_cyc (eq. 2), ‖G_Y→X(G_X→Y(x)) − x‖₁ + ‖G_X→Y(G_Y→X(y)) − y‖₁, λ_cyc = 10;
* ``g/id``: L_id (eq. 3), ‖G_X→Y(y) − y‖₁ + ‖G_Y→X(x) − x‖₁, λ_id = 5, used only for the
  first ``loss.identity_steps`` steps (CycleGAN-VC §4.1 uses it for 10⁴ iterations).

StarGAN-VC (Kameoka et al. 2018, SLT), one G(x, c) and one D(x, c) conditioned on the speaker
one-hot through the shared head (``model.d_head``: combined | split | projection):

* ``d/*`` and ``g/adv`` (+ ``g/match``): the adversarial loss (§3) in the matching-aware
  form of :func:`common.losses.conditional_d_losses`: (real x, its speaker) → real; (real x,
  another speaker) → fake (GAN-CLS negatives, Reed et al. 2016); (G(x, c_t), c_t) → fake;
* ``g/cycle``: ‖G(G(x, c_t), c_s) − x‖₁ (cycle-consistency loss, §3), λ = 10; ``g/id``:
  ‖G(x, c_s) − x‖₁ (identity-mapping loss, §3), λ = 5, switched off after
  ``loss.identity_steps`` like CycleGAN-VC2's.
* No domain classifier C (the paper's domain classification loss, §3): its job, telling
  whether x sounds like speaker c, is what the conditional head's match / joint score does;
  a separate classifier would add a second speaker critic and confound the head ablation
  (stargan-heads).

The run ends by exporting the EMA generator and evaluating it on the parallel test set
(``eval.json``, listening page, W&B table; see :mod:`speech.vc.evaluate`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from common.checkpoint import CheckpointError, export_weights
from common.config import ConfigError, parse_cli, to_dict
from common.io import atomic_write_json
from common.losses import (
    conditional_d_losses,
    conditional_g_losses,
    d_fake_loss,
    d_real_loss,
    default_d_weights,
    g_adv_loss,
    l1_loss,
)
from common.nn import EMA
from common.rundir import RunDirError, open_run
from common.runtime import Runtime, broadcast_module
from common.training import Hook, Phase, TrainState, restore
from speech.vc.config import DEFAULT_WEIGHTS, VCConfig
from speech.vc.data import CropSource, VCBatch
from speech.vc.features import SpeakerStats, analyze_file, speaker_stats
from speech.vc.inference import ARTIFACT, STATS, Converter, build_generator
from speech.vc.models import VCDiscriminator

__all__ = ["Setup", "build", "build_discriminators", "build_phases", "check_config",
           "load_corpus", "main", "prepare_features"]

G_TERMS = ("g/adv", "g/adv2", "g/match", "g/cycle", "g/id")
D_TERMS = ("d/real", "d/fake", "d/real2", "d/fake2", "d/wrong", "d/match", "d/mismatch")


def check_config(cfg: VCConfig) -> None:
    """Refuse what the code cannot honour, in one line naming the key."""
    unknown = [k for k in cfg.loss.weights if k not in (*G_TERMS, *D_TERMS)]
    if unknown:
        raise ConfigError(f"loss.weights: unknown term {unknown[0]!r}; terms: "
                          f"{', '.join((*G_TERMS, *D_TERMS))}")
    m = cfg.model
    if m.kind == "cyclegan":
        if len(cfg.data.speakers) != 2:
            raise ConfigError("data.speakers: CycleGAN-VC2 needs exactly [source, target]")
        if m.d_head != "none":
            raise ConfigError("model.d_head: CycleGAN-VC2's per-domain critics are "
                              "unconditional; use none (heads are for model.kind=stargan)")
    elif len(cfg.data.speakers) < 2:
        raise ConfigError("data.speakers: StarGAN-VC needs at least 2 speakers")
    if len(set(cfg.data.speakers)) != len(cfg.data.speakers):
        raise ConfigError("data.speakers: a speaker is listed twice")
    if cfg.feature.sp_dim % 4:
        raise ConfigError("feature.sp_dim must be divisible by 4 (G downsamples twice)")
    if cfg.data.frames < 4 or cfg.data.frames % 4:
        raise ConfigError("data.frames must be a positive multiple of 4")


def build_discriminators(cfg: VCConfig) -> nn.Module:
    """cyclegan: ModuleDict(x, y[, x2, y2]) of unconditional critics; stargan: one D(x, c)."""
    m = cfg.model
    channels = [m.d_base * 2**i for i in range(m.d_depth)]

    def one(head: str) -> VCDiscriminator:
        return VCDiscriminator(channels, head, len(cfg.data.speakers), cond_ch=m.cond_ch,
                               hidden=m.head_hidden, spectral=m.d_spectral)

    if m.kind == "cyclegan":
        names = ["x", "y", *(["x2", "y2"] if cfg.loss.two_step else [])]
        return nn.ModuleDict({k: one("none") for k in names})
    return one(m.d_head)


def _onehot(idx: Tensor, n: int) -> Tensor:
    return torch.nn.functional.one_hot(idx, n).float()


def _identity_gate(cfg: VCConfig, weights: dict[str, float]):
    """Drop g/id from the G phase's weights once the identity phase is over.

    The Phase holds this very dict, so removing the key switches the term off (and the
    loss function stops computing it: nothing is logged as 0.0 afterwards, STYLE.md 9).
    """
    def active(step: int) -> bool:
        on = cfg.loss.identity_steps is None or step < cfg.loss.identity_steps
        if not on:
            weights.pop("g/id", None)
        return on and "g/id" in weights
    return active


def build_phases(cfg: VCConfig, g: nn.Module, d: nn.Module) -> list[Phase]:
    kind = cfg.loss.kind
    weights = {**DEFAULT_WEIGHTS, **cfg.loss.weights}
    clip = cfg.optim.clip_grad
    if cfg.model.kind == "cyclegan":
        two = cfg.loss.two_step
        g_w = {k: weights[k] for k in ("g/adv", "g/cycle", "g/id", *(["g/adv2"] if two else []))}
        identity = _identity_gate(cfg, g_w)

        def g_loss(state: TrainState, b: VCBatch) -> dict[str, Tensor]:
            x, y = b.x, b.y
            fake_y, fake_x = g["xy"](x), g["yx"](y)
            cyc_x, cyc_y = g["yx"](fake_y), g["xy"](fake_x)
            losses = {
                "g/adv": g_adv_loss(kind, d["y"](fake_y).realism)
                + g_adv_loss(kind, d["x"](fake_x).realism),
                "g/cycle": l1_loss(cyc_x, x) + l1_loss(cyc_y, y),
            }
            if two:  # §3.1 two-step: the second critics see the cycle-converted features
                losses["g/adv2"] = (g_adv_loss(kind, d["x2"](cyc_x).realism)
                                    + g_adv_loss(kind, d["y2"](cyc_y).realism))
            if identity(state.step):
                losses["g/id"] = l1_loss(g["xy"](y), y) + l1_loss(g["yx"](x), x)
            return losses

        def d_loss(state: TrainState, b: VCBatch) -> dict[str, Tensor]:
            x, y = b.x, b.y
            with torch.no_grad():
                fake_y, fake_x = g["xy"](x), g["yx"](y)
                cyc_x, cyc_y = g["yx"](fake_y), g["xy"](fake_x)
            losses = {
                "d/real": d_real_loss(kind, d["x"](x).realism)
                + d_real_loss(kind, d["y"](y).realism),
                "d/fake": d_fake_loss(kind, d["x"](fake_x).realism)
                + d_fake_loss(kind, d["y"](fake_y).realism),
            }
            if two:
                losses["d/real2"] = (d_real_loss(kind, d["x2"](x).realism)
                                     + d_real_loss(kind, d["y2"](y).realism))
                losses["d/fake2"] = (d_fake_loss(kind, d["x2"](cyc_x).realism)
                                     + d_fake_loss(kind, d["y2"](cyc_y).realism))
            return losses

        d_terms = ("d/real", "d/fake", *(["d/real2", "d/fake2"] if two else []))
        d_w = {k: weights.get(k, 1.0) for k in d_terms}
        return [Phase("d", "d", d_loss, weights=d_w, clip_grad=clip),
                Phase("g", "g", g_loss, weights=g_w, clip_grad=clip)]

    n = len(cfg.data.speakers)
    head = cfg.model.d_head
    g_terms = ["g/adv", "g/cycle", "g/id", *(["g/match"] if head == "split" else [])]
    g_w = {k: weights[k] for k in g_terms}
    identity = _identity_gate(cfg, g_w)

    def g_loss(state: TrainState, b: VCBatch) -> dict[str, Tensor]:
        c_s, c_t = _onehot(b.source, n), _onehot(b.target, n)
        fake = g(b.x, c_t)
        losses = conditional_g_losses(d(fake, c_t), kind)
        losses["g/cycle"] = l1_loss(g(fake, c_s), b.x)  # cycle-consistency (StarGAN-VC §3)
        if identity(state.step):
            losses["g/id"] = l1_loss(g(b.x, c_s), b.x)  # identity mapping (StarGAN-VC §3)
        return losses

    def d_loss(state: TrainState, b: VCBatch) -> dict[str, Tensor]:
        c_s, c_t = _onehot(b.source, n), _onehot(b.target, n)
        with torch.no_grad():
            fake = g(b.x, c_t)
        # (real, own speaker), (real, another speaker), (converted, target speaker)
        return conditional_d_losses(d(b.x, c_s), d(b.x, c_t), d(fake, c_t), kind)

    d_w = default_d_weights(head)
    d_w.update({k: w for k, w in cfg.loss.weights.items() if k in d_w})
    return [Phase("d", "d", d_loss, weights=d_w, clip_grad=clip),
            Phase("g", "g", g_loss, weights=g_w, clip_grad=clip)]


@dataclass
class Setup:
    state: TrainState
    phases: list[Phase]
    data: CropSource


def build(cfg: VCConfig, runtime: Runtime, feats: list[list[np.ndarray]]) -> Setup:
    """Networks, optimisers, EMA, phases and data of one run. ``feats[speaker][utt]``:
    normalised coded envelopes ``[D, N]`` in ``data.speakers`` order (also used by tests)."""
    check_config(cfg)
    device = runtime.device
    g = build_generator(cfg.model, cfg.feature, len(cfg.data.speakers)).to(device)
    d = build_discriminators(cfg).to(device)
    for net in (g, d):
        broadcast_module(net)
    betas = tuple(cfg.optim.betas)
    state = TrainState(
        nets={"g": g, "d": d},
        optimizers={"g": torch.optim.Adam(g.parameters(), lr=cfg.optim.lr_g, betas=betas),
                    "d": torch.optim.Adam(d.parameters(), lr=cfg.optim.lr_d, betas=betas)},
        ema=EMA(g, cfg.train.ema_decay))
    mode = "pair" if cfg.model.kind == "cyclegan" else "multi"
    data = CropSource(feats, cfg.data.frames, cfg.data.batch_size,
                      seed=cfg.seed * 1000 + runtime.rank, mode=mode, device=device)
    return Setup(state, build_phases(cfg, g, d), data)


# ----------------------------------------------------------------------------- data


def load_corpus(cfg: VCConfig):
    """The SynthVoices corpus of ``cfg.data`` (built on first use)."""
    from speech.data.synthvoices import build as build_corpus
    from speech.data.synthvoices import load_preset

    corpus = build_corpus(load_preset(cfg.data.preset, cfg.data.preset_overrides),
                          root=cfg.data.root, progress=sys.stderr.isatty())
    missing = [s for s in cfg.data.speakers if s not in corpus.speakers]
    if missing:
        raise ValueError(f"data.speakers: {missing} not in the {cfg.data.preset!r} corpus "
                         f"(speakers: {corpus.speakers})")
    return corpus


def prepare_features(cfg: VCConfig, corpus) -> tuple[list[list[np.ndarray]],
                                                     dict[str, SpeakerStats]]:
    """Analyse (cached) every training utterance; per-speaker statistics; normalised
    ``[D, N]`` envelopes in ``data.speakers`` order."""
    feats, stats = [], {}
    for spk in cfg.data.speakers:
        paths = corpus.vc_train(spk)[: cfg.data.max_utterances]
        utts = [analyze_file(p, cfg.feature) for p in paths]
        stats[spk] = speaker_stats(utts)
        feats.append([stats[spk].sp.normalize(u.coded).T.astype(np.float32) for u in utts])
    return feats, stats


def main(argv: list[str] | None = None) -> dict[str, float]:
    inv = parse_cli(VCConfig, argv, prog="python -m speech.vc.train",
                    description=__doc__.split("\n\n")[0])
    cfg: VCConfig = inv.config
    try:
        check_config(cfg)
        corpus = load_corpus(cfg)
    except (ConfigError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        run = open_run(cfg, inv, kind="vc")
    except (RunDirError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    from speech.audio import read_audio
    from speech.vc.evaluate import evaluate_converter, spectrogram_png

    feats, stats = prepare_features(cfg, corpus)
    if run.runtime.is_main:
        atomic_write_json(run.dir / STATS, {k: v.to_dict() for k, v in stats.items()})
    setup = build(cfg, run.runtime, feats)
    state = setup.state
    if inv.resume:
        if run.checkpointer.latest() is not None:
            try:
                restore(state, setup.data, run.checkpointer)
            except CheckpointError as err:
                print(f"error: {err}", file=sys.stderr)
                run.close()
                raise SystemExit(2) from None
        run.tracker.truncate_after(state.step)

    # Fixed probes (STYLE.md 8): the first test sentences of speaker 0 → speaker 1.
    src_spk, tgt_spk = cfg.data.speakers[0], cfg.data.speakers[1]
    sr = cfg.feature.sr
    test = corpus.parallel_pairs(src_spk, tgt_spk)[: cfg.train.probes]
    probes = [(f"{src_spk}_{tgt_spk}_{i}", read_audio(a, sr).samples, read_audio(b, sr).samples)
              for i, (a, b) in enumerate(test)]
    if state.step == 0:
        for uid, src, tgt in probes:
            run.tracker.log_audio(f"probe/{uid}/source", src, sr, step=0, caption=f"{uid} source")
            run.tracker.log_audio(f"probe/{uid}/target", tgt, sr, step=0, caption=f"{uid} target")

    def snapshot(st: TrainState) -> None:
        conv = Converter(st.ema.module, cfg.model.kind, cfg.data.speakers, stats, cfg.feature)
        for uid, src, tgt in probes:
            out = conv.convert(src, src_spk, tgt_spk)
            run.tracker.log_audio(f"probe/{uid}/output", out, sr, step=st.step,
                                  caption=f"{uid} converted, step {st.step}")
            run.tracker.log_image(f"samples/spec_{uid}", spectrogram_png(
                [(src, "source"), (out, f"converted (step {st.step})"), (tgt, "target")], sr),
                step=st.step, caption=uid)

    run.train(state, setup.phases, setup.data, steps=cfg.train.steps, every=cfg.run,
              hooks=[Hook(cfg.run.sample_every, snapshot)] if run.runtime.is_main else [])

    results: dict[str, float] = {}
    if run.runtime.is_main:
        export_weights(run.dir / ARTIFACT, state.ema.module,
                       {"entry": "speech.vc", "model": to_dict(cfg.model),
                        "feature": to_dict(cfg.feature), "speakers": list(cfg.data.speakers),
                        "stats": {k: v.to_dict() for k, v in stats.items()},
                        "step": state.step, "config_hash": run.config_hash})
        conv = Converter(state.ema.module, cfg.model.kind, cfg.data.speakers, stats, cfg.feature)
        results = evaluate_converter(conv, corpus, cfg.eval, out_dir=run.dir,
                                     tracker=run.tracker, step=state.step,
                                     info={"kind": cfg.model.kind, "d_head": cfg.model.d_head,
                                           "step": state.step})
    run.close()
    return results


if __name__ == "__main__":
    main()
