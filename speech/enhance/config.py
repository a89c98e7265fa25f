"""The typed config of the enhancement cGAN (bound in the entry points only).

Presets: ``configs/speech/enhance/{tiny,cpu,voicebank}.yaml``. Loss weights live in one
dict keyed by the logged names (``g/l1``, ``g/adv``, ``g/match``, ``g/fm``, ``d/real``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from common.config import RunConfig, RuntimeConfig
from speech.features import StftConfig

__all__ = [
    "DEFAULT_WEIGHTS",
    "DataConfig",
    "EnhanceConfig",
    "EvalConfig",
    "FeatureConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TrainConfig",
]

# Loss weights by logged name (see LossConfig.weights); d/gp applies to loss.kind=wgan-gp.
# g/metric and q/* apply with model.metric_d=pesq (speech/enhance/metric.py).
DEFAULT_WEIGHTS: dict[str, float] = {"g/l1": 100.0, "g/adv": 1.0, "g/match": 1.0, "g/fm": 0.0,
                                     "g/metric": 30.0, "g/sisdr": 0.0, "d/gp": 10.0,
                                     "q/clean": 1.0, "q/enhanced": 1.0, "q/noisy": 1.0}


@dataclass
class DataConfig:
    corpus: Literal["synthvoices", "voicebank"] = "synthvoices"
    preset: str = "default"  # SynthVoices preset (built on first use, then cached)
    # synthvoices: folder corpora are built under (None: the cache, common.paths);
    # voicebank: the release folder (48 kHz is resampled once to a cached 16 kHz copy).
    root: str | None = None
    frames: int = 128  # STFT frames per training crop (segment = hop · (frames − 1) samples)
    batch_size: int = 16
    # Dynamic mixing (speech/enhance/data.py): the fraction of training examples re-mixed
    # on the fly with another pair's noise at an SNR uniform in remix_snr (dB).
    remix: float = 0.0
    remix_snr: list[float] = field(default_factory=lambda: [-5.0, 20.0])
    # Spectral augmentation (speech/enhance/data.py): the fraction of training examples whose
    # speech and noise each pass through a random second-order filter (RNNoise, Valin 2018 §4).
    eq: float = 0.0


@dataclass
class FeatureConfig:
    sr: int = 16000
    n_fft: int = 512  # 32 ms Hann window
    hop: int = 128  # 8 ms
    # z = (ln|X| − log_mean) / log_std: about the pooled statistics of SynthVoices training
    # mixtures and targets (measured on the tiny preset: noisy −2.46 ± 2.25, clean
    # −4.73 ± 2.44, speech at −26 dBFS), so z is roughly zero-mean, unit-variance.
    log_mean: float = -3.5
    log_std: float = 2.5

    def stft(self) -> StftConfig:
        return StftConfig(n_fft=self.n_fft, hop=self.hop, win=self.n_fft)


@dataclass
class ModelConfig:
    # none = the L1-only baseline (no D); otherwise the shared condition head of D.
    d_head: Literal["none", "combined", "split", "projection"] = "combined"
    g_base: int = 16  # G channel table: min(g_base · 2^i, g_max), i < g_depth
    g_max: int = 128
    g_depth: int = 4
    g_norm: Literal["none", "bn", "in"] = "bn"
    # > 0: two 3x3 convs of this width at full resolution (MaskUNet). Not a gain at the
    # cpu-long budget: g_stem=16 scored PESQ 2.147 against 2.198 without (L1-only, seed 0),
    # at 0.45 instead of 0.26 s per G step.
    g_stem: int = 0
    mask_max: float = 1.0  # M ∈ (0, mask_max]: 1 = attenuate only (a bounded ratio mask)
    d_base: int = 16
    d_max: int = 128
    d_depth: int = 4
    d_norm: Literal["none", "bn", "in"] = "none"
    d_spectral: bool = True  # spectral norm in D (Miyato et al. 2018)
    d_cond: Literal["fold", "resize"] = "fold"  # how the noisy map reaches the head
    cond_ch: int = 64  # head's compressed condition width
    head_hidden: int = 128
    # pesq = add a metric discriminator Q that learns the WB PESQ of (spectrogram, clean) and
    # train G towards Q's best score (MetricGAN, Fu et al. 2019; speech/enhance/metric.py).
    # Independent of d_head: d_head=none + metric_d=pesq is MetricGAN + L1 without a patch D.
    metric_d: Literal["none", "pesq"] = "none"
    q_channels: int = 15  # Q's conv width (MetricGAN §4.1: 15 filters of 5x5)


@dataclass
class LossConfig:
    # SEGAN (Pascual et al. 2017, §3) trains with the least-squares GAN loss (Mao et al.
    # 2017), which the authors found more stable than BCE for enhancement.
    kind: Literal["bce", "hinge", "lsgan", "wgan-gp"] = "lsgan"
    smoothing: float = 0.0  # one-sided label smoothing (bce only)
    fake_in_match: bool = False  # split head: fakes also count as mismatched pairs
    # Weights keyed by logged name, merged over DEFAULT_WEIGHTS (so an override such as
    # loss.weights={g/fm: 1.0} keeps the others). λ = 100 on L1 is pix2pix's (Isola et al.
    # 2017, §4) and SEGAN's (Pascual et al. 2017, §3); g/fm > 0 switches on D feature
    # matching (Salimans et al. 2016 §3.1, in MelGAN's per-layer L1 form, Kumar et al. 2019
    # §2.3); g/sisdr > 0 adds −SI-SDR of the enhanced waveform (speech/enhance/train.py).
    # d/* keys override the per-head defaults of common.losses.default_d_weights.
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


@dataclass
class OptimConfig:
    # Adam(2e-4, β1 = 0.5) for both nets: pix2pix §4 after DCGAN (Radford et al. 2016 §4).
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    clip_grad: float | None = 10.0  # max grad norm per phase (None: off)
    # Linear decay of both rates to zero over the last part of training, from this fraction
    # of train.steps on (None: constant). CycleGAN (Zhu et al. 2017, §7.1) and the pix2pix
    # code keep the rate for the first half and decay it linearly to zero over the second.
    decay_from: float | None = None


@dataclass
class TrainConfig:
    steps: int = 2000
    ema_decay: float = 0.999
    probes: int = 2  # fixed test clips logged as audio + spectrograms (STYLE.md item 8)
    # model.metric_d=pesq: update Q every this many steps. Q's targets cost two WB PESQ
    # calls per crop (~50 ms each for a 2-s crop on one core), as much as a G+D step.
    q_every: int = 1
    # Start G and its EMA from a trained enhancer (run folder, g_ema.safetensors or
    # checkpoints/step_*.pt) with the same G and features, e.g. to fine-tune an L1-only G
    # adversarially: SRGAN (Ledig et al. 2017, §3.2) starts its GAN from the MSE-trained
    # network "to avoid undesired local optima". D, Q and the optimisers start fresh.
    init_g: str | None = None
    # Keep G's batch-norm statistics fixed (the layers normalise with their running
    # statistics; their scale and shift still train): "frozen BN", the usual way to fine-tune
    # a batch-norm network with small batches (Wu & Johnson 2021, "Rethinking 'Batch' in
    # BatchNorm", on frozen BN). Meant for train.init_g.
    freeze_g_norm: bool = False


@dataclass
class EvalConfig:
    limit: int | None = None  # first N test mixtures (None: all)
    listen: int = 4  # clips on the listening page and in the W&B table
    baselines: list[str] = field(default_factory=lambda: ["noisy", "wiener"])
    chunk_seconds: float = 10.0  # the CLI's chunking, used for every system
    overlap_seconds: float = 0.5


@dataclass
class EnhanceConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    feature: FeatureConfig = field(default_factory=FeatureConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(
        default_factory=lambda: RunConfig(sample_every=500, log_every=50, checkpoint_every=500)
    )
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(precision="fp32"))
