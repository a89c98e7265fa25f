"""The typed config of the voice-conversion GANs (bound in the entry points only).

Presets: ``configs/speech/vc/{tiny,cyclegan-cpu,stargan-cpu}.yaml``. ``model.kind`` picks
CycleGAN-VC2 (Kaneko et al. 2019) or StarGAN-VC (Kameoka et al. 2018). Loss weights live in
one dict keyed by the logged names (``g/cycle``, ``g/id``, ``g/adv``, ``g/adv2``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from common.config import RunConfig, RuntimeConfig

__all__ = ["DEFAULT_WEIGHTS", "DataConfig", "EvalConfig", "FeatureConfig", "LossConfig",
           "ModelConfig", "OptimConfig", "TrainConfig", "VCConfig"]

# λ_cyc = 10 and λ_id = 5 are CycleGAN-VC's (Kaneko & Kameoka 2018 §4.1, kept in
# CycleGAN-VC2, Kaneko et al. 2019 §4.1); StarGAN-VC's cycle and identity terms
# (Kameoka et al. 2018 §3) take the same values here. g/adv2 is CycleGAN-VC2's second
# adversarial step (two-step adversarial loss, §3.1), weighted like the first.
DEFAULT_WEIGHTS: dict[str, float] = {"g/adv": 1.0, "g/adv2": 1.0, "g/match": 1.0,
                                     "g/cycle": 10.0, "g/id": 5.0}


@dataclass
class DataConfig:
    corpus: Literal["synthvoices"] = "synthvoices"
    preset: str = "default"  # SynthVoices preset (built on first use, then cached)
    preset_overrides: list[str] = field(default_factory=list)  # e.g. ["speakers=[kal,slt,f3]"]
    root: str | None = None  # folder corpora are built under (None: the cache)
    # cyclegan: exactly [source, target] (both directions are trained);
    # stargan: every speaker G can convert from and to (>= 2; the presets use 4-5).
    speakers: list[str] = field(default_factory=lambda: ["kal", "slt"])
    # training utterances per speaker (None: all); analysis is cached, but the first run
    # pays WORLD's cost (DIO ≈ 0.1 x real time here, Harvest ≈ 0.4 x).
    max_utterances: int | None = None
    frames: int = 128  # feature frames per training crop (128 · 5 ms = 0.64 s, CycleGAN-VC2)
    batch_size: int = 1  # CycleGAN-VC2 trains with batch 1 (§4.1)


@dataclass
class FeatureConfig:
    sr: int = 16000
    frame_period: float = 5.0  # ms
    f0_method: Literal["harvest", "dio"] = "harvest"  # the extractor for training features
    sp_dim: int = 36  # WORLD coded spectral envelope (CycleGAN-VC2 §4.1 uses 35 MCEPs + c0)
    f0_floor: float = 71.0
    f0_ceil: float = 800.0
    # Conversion-time analysis: D4C aperiodicity on every ap_stride-th frame, interpolated
    # between (speech.features.d4c_strided). Aperiodicity is copied from the source, never
    # converted; at 4 (20 ms) the WORLD round trip of 12 SynthVoices test utterances keeps
    # its MCD (3.113 -> 3.123 dB) and loses 0.04 PESQ, and conversion runs ~1.5x faster.
    ap_stride: int = 4


@dataclass
class ModelConfig:
    kind: Literal["cyclegan", "stargan"] = "cyclegan"
    # stargan: the shared condition head of D (speaker one-hot, tiled); cyclegan's per-domain
    # critics are unconditional (c = None), so it must stay "none" there.
    d_head: Literal["none", "combined", "split", "projection"] = "none"
    g_base: int = 128  # 2-1-2D G: 2-D down widths (g_base, 2·g_base), 1-D residual width g_res
    g_res: int = 256
    g_blocks: int = 6  # 1-D residual gated blocks (CycleGAN-VC2 §3.2: 6)
    d_base: int = 128  # PatchGAN widths: d_base · 2^i, i < d_depth
    d_depth: int = 4
    d_spectral: bool = False
    cond_ch: int = 32  # head's compressed condition width (combined / split)
    head_hidden: int = 64


@dataclass
class LossConfig:
    # CycleGAN-VC2 and StarGAN-VC both use the least-squares GAN loss (Mao et al. 2017;
    # Kaneko et al. 2019 §4.1; Kameoka et al. 2018 §5).
    kind: Literal["bce", "hinge", "lsgan"] = "lsgan"
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    # L_id is used only for the first identity_steps steps (CycleGAN-VC §4.1: 10^4 iterations),
    # to keep linguistic content at the start; then switched off. None: always on.
    identity_steps: int | None = 10000
    two_step: bool = True  # cyclegan: CycleGAN-VC2's two-step adversarial loss (§3.1)


@dataclass
class OptimConfig:
    # CycleGAN-VC2 §4.1: Adam, lr 2e-4 (G) / 1e-4 (D), β1 = 0.5.
    lr_g: float = 2e-4
    lr_d: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    clip_grad: float | None = 10.0


@dataclass
class TrainConfig:
    steps: int = 2000
    ema_decay: float = 0.999
    probes: int = 1  # fixed test sentences converted and logged at sample_every


@dataclass
class EvalConfig:
    # "src:tgt" directions scored on the parallel test set (None: cyclegan both directions,
    # stargan every ordered pair of data.speakers).
    pairs: list[str] | None = None
    limit: int | None = None  # first N test sentences per direction
    listen: int = 2  # sentences per direction on the listening page / W&B table
    metric_f0: Literal["harvest", "dio"] = "harvest"  # F0 extractor of the metrics
    embed_utterances: int = 10  # training utterances per speaker for the mean embedding
    speaker_similarity: bool = True


@dataclass
class VCConfig:
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
