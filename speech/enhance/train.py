"""Train the enhancement cGAN: a mask U-Net G against a patch D with a shared condition head.

    python -m speech.enhance.train --config configs/speech/enhance/cpu.yaml
    python -m speech.enhance.train --config configs/speech/enhance/cpu.yaml model.d_head=split
    python -m speech.enhance.train --config ... --run-dir runs/enhance/x --resume
    python -m speech.enhance.train --config ... --dry-run          # print the resolved config
    python -m speech.enhance.train --config ... train.init_g=runs/enhance/l1  # fine-tune a G

The noisy spectrogram is the condition c of D(x, c) (DESIGN.md). Losses (weights in
``loss.weights``, keyed as logged):

* ``g/l1``: L1 between enhanced and clean normalised log-magnitudes — pix2pix's L1 + cGAN
  objective (Isola et al. 2017, eq. 4; λ = 100), which SEGAN also uses (Pascual et al.
  2017, "SEGAN: Speech enhancement generative adversarial network", eq. 4) and Michelsanti
  & Tan 2017 apply to spectrograms;
* ``g/adv`` (+ ``g/match`` for the split head) and the matching-aware D terms ``d/real``,
  ``d/wrong`` | ``d/match``, ``d/mismatch``, ``d/fake`` of :mod:`common.losses`; the wrong
  condition of a clean target is another utterance's noisy spectrogram (Reed et al.
  2016's GAN-CLS negatives);
* ``g/fm`` (when its weight is > 0): L1 between D's backbone features of enhanced and clean
  (Salimans et al. 2016 §3.1; per-layer L1 as in MelGAN, Kumar et al. 2019 §2.3).
* ``g/sisdr`` (when its weight is > 0): −SI-SDR in dB of the enhanced waveform (masked
  magnitude, noisy phase, inverse STFT) against the clean crop (Le Roux et al. 2019, eq. 3).
  With the noisy phase kept, a waveform error is the phase-sensitive spectrum error
  |M·|X| − |S|·cos(θ_S − θ_X)| summed over bins (Erdogan et al. 2015, eq. 9): the mask is
  asked to attenuate the bins where the noisy phase is wrong, which L1 on log-magnitudes
  never sees.

* ``g/metric`` and ``q/clean``, ``q/enhanced``, ``q/noisy`` (``model.metric_d=pesq``): a
  metric discriminator Q learns the WB PESQ of each training crop and G is pushed towards
  Q's best score (MetricGAN, Fu et al. 2019, eqs. 3–4; :mod:`speech.enhance.metric`).

``model.d_head=none`` trains G with L1 alone (no D): the regression baseline the heads are
compared with. The run ends by evaluating its EMA generator and the baselines on the test
set (``eval.json``, listening page, W&B table; see :mod:`speech.enhance.evaluate`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from common.checkpoint import CheckpointError, export_weights
from common.config import ConfigError, parse_cli, to_dict
from common.losses import (
    conditional_d_losses,
    conditional_g_losses,
    default_d_weights,
    gradient_penalty,
    l1_loss,
    mismatch_indices,
)
from common.nn import EMA
from common.rundir import RunDirError, open_run
from common.runtime import Runtime, broadcast_module
from common.training import Hook, Phase, TrainState, restore
from speech.enhance.config import DEFAULT_WEIGHTS, EnhanceConfig, ModelConfig
from speech.enhance.data import Batch, CropSource, Pair, corpus_root, load_pairs
from speech.enhance.inference import ARTIFACT, Enhancer, build_generator, featurizer
from speech.enhance.metric import MetricDiscriminator, masked_mse, pesq_targets
from speech.enhance.models import (
    Featurizer,
    MaskUNet,
    SpecDiscriminator,
    channel_table,
    enhance_z,
    pad_tf,
)

__all__ = ["Setup", "build", "build_discriminator", "build_metric_discriminator", "build_phases",
           "check_config", "linear_decay", "load_init_g", "main", "neg_si_sdr"]

G_TERMS = ("g/l1", "g/adv", "g/match", "g/fm", "g/metric", "g/sisdr")
D_TERMS = ("d/real", "d/fake", "d/wrong", "d/match", "d/mismatch", "d/match_fake", "d/gp")
Q_TERMS = ("q/clean", "q/enhanced", "q/noisy")


def check_config(cfg: EnhanceConfig) -> None:
    """Refuse what the code cannot honour, in one line naming the key."""
    unknown = [k for k in cfg.loss.weights if k not in (*G_TERMS, *D_TERMS, *Q_TERMS)]
    if unknown:
        raise ConfigError(f"loss.weights: unknown term {unknown[0]!r}; terms: "
                          f"{', '.join((*G_TERMS, *D_TERMS, *Q_TERMS))}")
    if cfg.model.metric_d == "pesq" and cfg.feature.sr != 16000:
        raise ConfigError(f"model.metric_d=pesq needs feature.sr=16000 (wide-band PESQ), "
                          f"got {cfg.feature.sr}")
    if cfg.model.d_head != "none" and cfg.data.batch_size < 2:
        raise ConfigError("data.batch_size must be >= 2: mismatched pairs need a second clip")
    if cfg.loss.smoothing and cfg.loss.kind != "bce":
        raise ConfigError("loss.smoothing applies to loss.kind=bce only")
    if len(cfg.data.remix_snr) != 2 or cfg.data.remix_snr[0] > cfg.data.remix_snr[1]:
        raise ConfigError(f"data.remix_snr must be [low, high] dB, got {cfg.data.remix_snr}")
    if not 0.0 <= cfg.data.eq <= 1.0:
        raise ConfigError(f"data.eq is a probability in [0, 1], got {cfg.data.eq}")
    if not 0.0 <= cfg.data.remix <= 1.0:
        raise ConfigError(f"data.remix is a probability in [0, 1], got {cfg.data.remix}")
    if cfg.optim.decay_from is not None and not 0.0 <= cfg.optim.decay_from < 1.0:
        raise ConfigError(f"optim.decay_from is a fraction of train.steps in [0, 1), "
                          f"got {cfg.optim.decay_from}")
    if cfg.train.freeze_g_norm and (cfg.train.init_g is None or cfg.model.g_norm != "bn"):
        raise ConfigError("train.freeze_g_norm needs train.init_g and model.g_norm=bn (a new G's "
                          "batch-norm statistics are the defaults, 0 and 1)")
    if cfg.train.q_every < 1:
        raise ConfigError(f"train.q_every must be >= 1, got {cfg.train.q_every}")
    if cfg.data.frames < 2 ** max(cfg.model.g_depth, cfg.model.d_depth):
        raise ConfigError("data.frames must be at least 2^depth of G and D")


G_FIELDS = ("g_base", "g_max", "g_depth", "g_norm", "g_stem", "mask_max")


def load_init_g(cfg: EnhanceConfig) -> dict[str, Tensor]:
    """``train.init_g``: the (EMA) G weights of a trained enhancer, for :func:`build`.

    Refused, naming the keys, when the source was trained with another G or other features
    (the same weights would then mean something else)."""
    path = cfg.train.init_g
    try:
        src = Enhancer.load(path)
    except (CheckpointError, ConfigError, FileNotFoundError) as err:
        raise ConfigError(f"train.init_g: {err}") from None
    theirs = {**{f"model.{k}": v for k, v in src.meta.get("model", {}).items()},
              **{f"feature.{k}": v for k, v in src.meta.get("feature", {}).items()}}
    ours = {**{f"model.{k}": getattr(cfg.model, k) for k in G_FIELDS},
            **{f"feature.{k}": v for k, v in to_dict(cfg.feature).items()}}
    differ = [f"{k} {theirs.get(k)!r} there, {v!r} here" for k, v in ours.items()
              if theirs.get(k) != v]
    if differ:
        raise ConfigError(f"train.init_g={path}: trained with another G or features "
                          f"({'; '.join(differ)})")
    return src.g.state_dict()


def neg_si_sdr(ref: Tensor, est: Tensor, eps: float = 1e-8) -> Tensor:
    """Mean −SI-SDR in dB over the rows of ``ref``, ``est``: Tensor[B, T] (Le Roux et al.
    2019, eq. 3, as :func:`speech.metrics.si_sdr`). Rows whose reference is silent have no
    SI-SDR and are left out; with none left the loss is 0 (and still part of the graph)."""
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    energy = ref.pow(2).sum(-1, keepdim=True)
    keep = energy.squeeze(-1) > eps * ref.shape[-1]
    if not bool(keep.any()):
        return est.sum() * 0.0
    target = (est * ref).sum(-1, keepdim=True) / energy.clamp_min(eps) * ref
    ratio = target.pow(2).sum(-1) / ((est - target).pow(2).sum(-1) + eps)
    return -(10 * torch.log10(ratio[keep] + eps)).mean()


def build_discriminator(cfg: ModelConfig) -> SpecDiscriminator | None:
    """D, or None for the L1-only baseline (``d_head=none``)."""
    if cfg.d_head == "none":
        return None
    return SpecDiscriminator(channel_table(cfg.d_base, cfg.d_max, cfg.d_depth), cfg.d_head,
                             cond_mode=cfg.d_cond, cond_ch=cfg.cond_ch, hidden=cfg.head_hidden,
                             norm=cfg.d_norm, spectral=cfg.d_spectral)


def _score(out) -> Tensor:
    return out.joint if out.joint is not None else out.realism


def build_metric_discriminator(cfg: ModelConfig) -> MetricDiscriminator | None:
    """Q, the PESQ-predicting metric discriminator, or None (``metric_d=none``)."""
    return MetricDiscriminator(cfg.q_channels) if cfg.metric_d == "pesq" else None


def _q_phase(cfg: EnhanceConfig, g: MaskUNet, q: MetricDiscriminator, feat: Featurizer,
             weights: dict[str, float]) -> Phase:
    """Q's update (MetricGAN eq. 3 + MetricGAN+'s noisy term): regress the normalised WB
    PESQ of the enhanced and the noisy crop, and 1 for the clean crop against itself."""

    def q_loss(state: TrainState, batch: Batch) -> dict[str, Tensor]:
        clean_z, _ = feat.analyze(batch.clean)
        noisy_z, phase = feat.analyze(batch.noisy)
        with torch.no_grad():
            fake = enhance_z(noisy_z, g(noisy_z), feat)
            enhanced = feat.synthesize(fake.float(), phase, batch.clean.shape[-1])
        s_fake, ok_fake = pesq_targets(batch.clean, enhanced, cfg.feature.sr)
        s_noisy, ok_noisy = pesq_targets(batch.clean, batch.noisy, cfg.feature.sr)
        ones = torch.ones_like(s_fake)
        return {"q/clean": masked_mse(q(clean_z, clean_z), ones, ok_noisy | ok_fake),
                "q/enhanced": masked_mse(q(fake, clean_z), s_fake, ok_fake),
                "q/noisy": masked_mse(q(noisy_z, clean_z), s_noisy, ok_noisy)}

    return Phase("q", "q", q_loss, weights={k: weights[k] for k in Q_TERMS},
                 every=cfg.train.q_every, clip_grad=cfg.optim.clip_grad)


def build_phases(cfg: EnhanceConfig, g: MaskUNet, d: SpecDiscriminator | None,
                 feat: Featurizer, q: MetricDiscriminator | None = None) -> list[Phase]:
    kind, weights = cfg.loss.kind, {**DEFAULT_WEIGHTS, **cfg.loss.weights}
    use_fm = d is not None and weights.get("g/fm", 0.0) > 0
    use_sisdr = weights.get("g/sisdr", 0.0) > 0

    def spectra(batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """clean z, noisy z and the noisy phase, each Tensor[B, 1, F, N]."""
        clean_z, _ = feat.analyze(batch.clean)
        noisy_z, noisy_phase = feat.analyze(batch.noisy)
        return clean_z, noisy_z, noisy_phase

    def g_loss(state: TrainState, batch: Batch) -> dict[str, Tensor]:
        clean_z, noisy_z, noisy_phase = spectra(batch)
        fake = enhance_z(noisy_z, g(noisy_z), feat)
        losses = {"g/l1": l1_loss(fake, clean_z)}
        if use_sisdr:
            enhanced = feat.synthesize(fake.float(), noisy_phase, batch.clean.shape[-1])
            losses["g/sisdr"] = neg_si_sdr(batch.clean, enhanced)
        if q is not None:  # MetricGAN eq. 4 with s = 1
            losses["g/metric"] = ((q(fake, clean_z).float() - 1.0) ** 2).mean()
        if d is None:
            return losses
        if use_fm:
            judged = d.forward_features(fake, noisy_z)
            with torch.no_grad():
                real_feats = d.net.backbone.all_features(pad_tf(clean_z, 2**d.depth))
            losses["g/fm"] = torch.stack([l1_loss(a, b) for a, b in
                                          zip(judged.features, real_feats, strict=True)]).mean()
            out = judged.out
        else:
            out = d(fake, noisy_z)
        losses.update(conditional_g_losses(out, kind))
        return losses

    g_terms = {"g/l1"} | ({"g/adv"} if d is not None else set())
    g_terms |= {"g/match"} if cfg.model.d_head == "split" else set()
    g_terms |= {"g/fm"} if use_fm else set()
    g_terms |= {"g/metric"} if q is not None else set()
    g_terms |= {"g/sisdr"} if use_sisdr else set()
    g_phase = Phase("g", "g", g_loss, weights={k: w for k, w in weights.items() if k in g_terms},
                    clip_grad=cfg.optim.clip_grad)
    q_phases = [_q_phase(cfg, g, q, feat, weights)] if q is not None else []
    if d is None:
        return [*q_phases, g_phase]

    def d_loss(state: TrainState, batch: Batch) -> dict[str, Tensor]:
        clean_z, noisy_z, _ = spectra(batch)
        with torch.no_grad():
            fake = enhance_z(noisy_z, g(noisy_z), feat)
        wrong = noisy_z[mismatch_indices(len(noisy_z)).to(noisy_z.device)]
        losses = conditional_d_losses(d(clean_z, noisy_z), d(clean_z, wrong), d(fake, noisy_z),
                                      kind,
                                      smoothing=cfg.loss.smoothing,
                                      fake_in_match=cfg.loss.fake_in_match)
        if kind == "wgan-gp":  # Gulrajani et al. 2017, eq. 3, on the joint / realism score
            losses["d/gp"] = gradient_penalty(lambda v, c: _score(d(v, c)), clean_z, fake, noisy_z)
        return losses

    d_weights = default_d_weights(cfg.model.d_head)
    if cfg.loss.fake_in_match:
        d_weights["d/match_fake"] = 1.0
    if kind == "wgan-gp":
        d_weights["d/gp"] = weights["d/gp"]
    # Config d/* weights override the head's defaults for the terms this head produces.
    d_weights.update({k: w for k, w in cfg.loss.weights.items() if k in d_weights})
    return [Phase("d", "d", d_loss, weights=d_weights, clip_grad=cfg.optim.clip_grad),
            *q_phases, g_phase]


def linear_decay(optimizers: dict[str, torch.optim.Optimizer], steps: int,
                 decay_from: float | None) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """Constant rate, then linear decay to zero over the steps after ``decay_from · steps``
    (CycleGAN, Zhu et al. 2017, §7.1); no schedulers when ``decay_from`` is None."""
    if decay_from is None:
        return {}
    start = int(decay_from * steps)

    def factor(step: int) -> float:
        return min(1.0, max(0.0, (steps - step) / max(1, steps - start)))

    return {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in optimizers.items()}


@dataclass
class Setup:
    """What one run trains: state (nets, optimisers, EMA), phases, data, features."""

    state: TrainState
    phases: list[Phase]
    data: CropSource
    feat: Featurizer


def build(cfg: EnhanceConfig, runtime: Runtime, pairs: list[Pair],
          init_g: dict[str, Tensor] | None = None) -> Setup:
    """Networks, optimisers, EMA, phases and data of one run (also used by tests).

    ``init_g``: G's starting weights when ``train.init_g`` is set (default: loaded here by
    :func:`load_init_g`)."""
    check_config(cfg)
    device = runtime.device
    feat = featurizer(cfg.feature)
    g = build_generator(cfg.model)
    if cfg.train.init_g is not None:
        g.load_state_dict(load_init_g(cfg) if init_g is None else init_g)
    if cfg.train.freeze_g_norm:  # nothing puts the training nets back in train mode
        for m in g.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    g = g.to(device)
    d = build_discriminator(cfg.model)
    nets: dict[str, torch.nn.Module] = {"g": g}
    betas = tuple(cfg.optim.betas)
    optimizers = {"g": torch.optim.Adam(g.parameters(), lr=cfg.optim.lr_g, betas=betas)}
    if d is not None:
        d = d.to(device)
        nets["d"] = d
        optimizers["d"] = torch.optim.Adam(d.parameters(), lr=cfg.optim.lr_d, betas=betas)
    q = build_metric_discriminator(cfg.model)
    if q is not None:
        q = q.to(device)
        nets["q"] = q
        optimizers["q"] = torch.optim.Adam(q.parameters(), lr=cfg.optim.lr_d, betas=betas)
    for net in nets.values():
        broadcast_module(net)  # under torchrun every rank starts from rank 0's initialisation
    state = TrainState(nets=nets, optimizers=optimizers, ema=EMA(g, cfg.train.ema_decay),
                       schedulers=linear_decay(optimizers, cfg.train.steps, cfg.optim.decay_from))
    segment = cfg.feature.hop * (cfg.data.frames - 1)  # exactly cfg.data.frames STFT frames
    data = CropSource(pairs, segment, cfg.data.batch_size, seed=cfg.seed * 1000 + runtime.rank,
                      device=device, remix=cfg.data.remix,
                      remix_snr=(cfg.data.remix_snr[0], cfg.data.remix_snr[1]),
                      eq=cfg.data.eq)
    return Setup(state, build_phases(cfg, g, d, feat, q), data, feat)


# ----------------------------------------------------------------------------- probes


def spectrogram_png(panels: list[tuple[np.ndarray, str]], feat: Featurizer,
                    sr: int = 16000) -> np.ndarray:
    """Side-by-side log-magnitude images of waveforms (one per (wav, title)) → uint8 RGB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.6), dpi=100,
                             squeeze=False)
    lo = np.log(feat.stft.eps)
    for ax, (wav, title) in zip(axes[0], panels, strict=True):
        z, _ = feat.analyze(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None])
        logmag = z[0, 0].numpy() * feat.std + feat.mean
        ax.imshow(np.maximum(logmag, lo), origin="lower", aspect="auto", cmap="magma",
                  vmin=-9.0, vmax=2.0,
                  extent=(0, len(wav) / sr, 0, sr / 2000))
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("s", fontsize=7)
        ax.set_ylabel("kHz", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def main(argv: list[str] | None = None) -> dict[str, float]:
    inv = parse_cli(EnhanceConfig, argv, prog="python -m speech.enhance.train",
                    description=__doc__.split("\n\n")[0])
    cfg: EnhanceConfig = inv.config
    try:
        check_config(cfg)
        # loaded (or refused) before the run folder exists
        init_g = load_init_g(cfg) if cfg.train.init_g is not None else None
        root = corpus_root(cfg.data.corpus, cfg.data.preset, cfg.data.root, cfg.feature.sr)
        train_pairs = load_pairs(root, "train", cfg.feature.sr)
        test_pairs = load_pairs(root, "test", cfg.feature.sr)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        run = open_run(cfg, inv, kind="enhance")
    except (RunDirError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    from speech.audio import read_audio
    from speech.enhance.evaluate import evaluate_systems, make_baselines
    from speech.metrics import si_sdr

    setup = build(cfg, run.runtime, train_pairs, init_g=init_g)
    state, feat = setup.state, setup.feat
    if inv.resume:
        if run.checkpointer.latest() is not None:
            try:
                restore(state, setup.data, run.checkpointer)
            except CheckpointError as err:
                print(f"error: {err}", file=sys.stderr)
                run.close()
                raise SystemExit(2) from None
        run.tracker.truncate_after(state.step)

    # Fixed probes (STYLE.md item 8): the first test clips, references logged once at step 0.
    probes = [(p.id, read_audio(p.noisy, cfg.feature.sr).samples,
               read_audio(p.clean, cfg.feature.sr).samples)
              for p in test_pairs[: cfg.train.probes]]
    if state.step == 0:
        for uid, noisy, clean in probes:
            run.tracker.log_audio(f"probe/{uid}/source", noisy, cfg.feature.sr, step=0,
                                  caption=f"{uid} noisy")
            run.tracker.log_audio(f"probe/{uid}/target", clean, cfg.feature.sr, step=0,
                                  caption=f"{uid} clean")

    def snapshot(st: TrainState) -> None:
        enhancer = Enhancer(st.ema.module, feat, sr=cfg.feature.sr,
                            chunk_seconds=cfg.eval.chunk_seconds,
                            overlap_seconds=cfg.eval.overlap_seconds)
        sdr = []
        for uid, noisy, clean in probes:
            out = enhancer.enhance(noisy)
            sdr.append(si_sdr(clean, out))
            run.tracker.log_audio(f"probe/{uid}/output", out, cfg.feature.sr, step=st.step,
                                  caption=f"{uid} enhanced, step {st.step}")
            run.tracker.log_image(
                f"samples/spec_{uid}",
                spectrogram_png([(noisy, "noisy"), (out, f"enhanced (step {st.step})"),
                                 (clean, "clean")], feat, cfg.feature.sr),
                step=st.step, caption=uid)
        if sdr:
            run.tracker.log({"val/probe_si_sdr": float(np.mean(sdr))}, step=st.step)

    run.train(state, setup.phases, setup.data, steps=cfg.train.steps, every=cfg.run,
              hooks=[Hook(cfg.run.sample_every, snapshot)] if run.runtime.is_main else [])

    results: dict[str, float] = {}
    if run.runtime.is_main:
        # The small inference artifact (STYLE.md item 7): EMA G + what rebuilds it.
        export_weights(run.dir / ARTIFACT, state.ema.module,
                       {"entry": "speech.enhance", "model": to_dict(cfg.model),
                        "feature": to_dict(cfg.feature), "d_head": cfg.model.d_head,
                        "step": state.step, "config_hash": run.config_hash})
        model = Enhancer(state.ema.module, feat, sr=cfg.feature.sr,
                         name="model", chunk_seconds=cfg.eval.chunk_seconds,
                         overlap_seconds=cfg.eval.overlap_seconds)
        systems = [*make_baselines(cfg.eval.baselines, cfg.feature, cfg.eval), model]
        pairs = test_pairs if cfg.eval.limit is None else test_pairs[: cfg.eval.limit]
        results = evaluate_systems(systems, pairs, out_dir=run.dir, tracker=run.tracker,
                                   step=state.step, listen=cfg.eval.listen, feature=cfg.feature,
                                   info={"d_head": cfg.model.d_head, "step": state.step,
                                         "test_root": str(root)})
    run.close()
    return results


if __name__ == "__main__":
    main()
