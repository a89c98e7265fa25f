"""StackGAN two-stage text-to-image training (Zhang et al. 2017), any discriminator head.

Stage I learns (caption embedding, z) → R1 px; Stage II then learns (Stage-I image,
caption embedding) → R2 px with Stage I frozen (§3.5). Each stage is its own run of the
shared loop (:func:`common.training.train`) with a D phase and a G phase:

* D: the matching-aware loss (Reed et al. 2016, GAN-CLS; StackGAN §3.3 and its official
  code) over (real, right caption), (real, wrong caption) and (fake, right caption), with
  the head from ``model.d_head`` (combined | split | projection, :mod:`common.discriminators`)
  deciding the terms; per-head weights from :func:`common.losses.default_d_weights`
  (StackGAN's real 1, wrong ½, fake ½ for joint heads), overridable in ``loss.weights``.
* G: the head's adversarial terms plus ``loss.kl`` · ``g/kl``, the KL(N(μ, σ²) ‖ N(0, I))
  of conditioning augmentation (StackGAN §3.2-3.4) averaged over the code's dimensions,
  as both official implementations compute it (``KL_loss``: a mean over batch AND
  dimensions; :func:`common.losses.kl_divergence` sums over dimensions, so ``g/kl`` is
  that sum / cond_dim). The weight defaults to 2.0, the official code's
  ``TRAIN.COEFF.KL``; the paper's text uses λ = 1. (Weighting the summed KL by 2.0 is
  128× stronger: in a CPU run it drove Stage II's KL to 0, i.e. a code that ignores the
  text.)
* Optional (``loss.contrastive`` > 0): an image–caption InfoNCE over the batch on D's pooled
  features (XMC-GAN, Zhang et al. 2021, eqs. 2, 5, 6; :mod:`common.nn.contrastive`), as
  ``d/contrast`` on real images and ``g/contrast`` on G's fakes, each weighted by λ.
* Optional (``loss.words`` > 0): the same InfoNCE on a word–region score (each word of the
  caption attends over D's 4×4 map; XMC-GAN §3.2, AttnGAN's DAMSM), as ``d/words`` and
  ``g/words``, over the encoder's word-level features (cached like the embeddings).
* Optional (``loss.head_nce`` > 0, projection head): the same InfoNCE on the head's own
  matching term ⟨V e_j, Σφ(x_i)⟩ for every image–caption pair of the batch
  (:meth:`common.discriminators.ProjectionHead.pairwise`), as ``d/head_nce`` and
  ``g/head_nce``: the score G is trained against sees B − 1 wrong captions per image.
* Optional (``loss.matcher`` > 0): ``g/matcher``, the symmetric InfoNCE of G's images
  against the batch's captions under a frozen image–caption matcher trained once on the
  real training pairs (:mod:`text2img.matcher`; AttnGAN's DAMSM loss, eq. 3). D is as
  above; the matcher does not adapt to G.
* Optional: each caption's colour swap ("a blue bird with red wings" for "a red bird with
  blue wings", :mod:`text2img.negatives`; NegCLIP's hard negatives, Yuksekgonul et al.
  2023, §4) as one more wrong caption per image — in the matcher's training and then in
  ``g/matcher`` (``matcher.swap_negatives``: G minimises the loss the matcher was trained
  on), or in ``d/head_nce`` and ``g/head_nce`` (``loss.head_nce_swaps``).

Captions are embedded once by the frozen text encoder (``data.encoder``, cached on disk by
:class:`text2img.encoders.EmbeddingCache`), never per step. G's exponential moving average
is what probes, evaluation and the exported ``g_ema.safetensors`` use. Probe prompts and
their noise are fixed per run (``probes.json`` / ``probes.safetensors`` in the run folder)
and logged as captioned grids. At the end, SynthBirds runs are scored with
:mod:`text2img.evaluate` (attribute accuracy, fd_judge with its floor, diversity) per stage
into ``eval.json``.

    python -m text2img.train --config configs/text2img/cpu.yaml
    python -m text2img.train --config configs/text2img/tiny.yaml model.d_head=split
    python -m text2img.train --config configs/text2img/cpu.yaml --run-dir runs/t2i/a --resume
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.checkpoint import Checkpointer, CheckpointError, export_weights
from common.config import RunConfig, RuntimeConfig, parse_cli, to_dict
from common.discriminators import DOut
from common.io import atomic_write_json, atomic_write_text
from common.losses import (
    conditional_d_losses,
    conditional_g_losses,
    default_d_weights,
    kl_divergence,
    mismatch_indices,
)
from common.nn import EMA, ContrastiveCritic, WordRegionCritic, contrastive_loss, fit_standardizers
from common.rundir import Run, RunDirError, open_run
from common.runtime import Runtime, broadcast_module
from common.tracking import make_grid
from common.training import Hook, NonFiniteLossError, Phase, TrainState, restore, train
from text2img.matcher import MatcherConfig, stage_matchers, symmetric_nce
from text2img.models import (
    StageIGenerator,
    StageIIGenerator,
    build_discriminator,
    freeze,
    to_channels_last,
)

DEFAULT_PROMPTS = [
    "a small bird with a red crown and blue striped wings",
    "this bird has a yellow belly, black wings and a short orange beak",
    "the bird is mostly green with a white head",
    "a large purple bird with spotted wings at dusk",
    "a medium bird with a long grey beak in the foliage",
    "this bird has an orange body and brown wings against the sky",
    "a white bird with a black crown on a plain background",
    "a small blue bird with plain wings",
]

# ----------------------------------------------------------------------------- config


@dataclass
class DataConfig:
    dataset: Literal["synthbirds", "cub", "flowers", "coco"] = "synthbirds"
    root: str | None = None  # folder of a real dataset in its release layout (DATASETS.md)
    encoder: str = "minilm"  # text2img.encoders.get_encoder spec
    n_train: int = 10000  # SynthBirds training renders (real datasets: the whole split)
    synth_seed: int = 0
    synth_master: int = 128  # SynthBirds master render size (256 for the paper preset)
    heldout_pairs: int = 10
    batch_size: int = 64
    flip: bool = True  # random horizontal flips (the official loaders flip)
    # Share of each batch's wrong captions (the matching-aware loss's (real, wrong) pairs)
    # drawn as the hardest negative instead of uniformly: the mismatched caption in the
    # batch whose embedding is closest (cosine) to the image's own caption — VSE++'s
    # in-batch hardest negative (Faghri et al. 2018, eq. 5). 0 = uniform (StackGAN).
    hard_wrong: float = 0.0


@dataclass
class ModelConfig:
    d_head: Literal["combined", "split", "projection"] = "combined"
    stage1_res: int = 64
    stage2_res: int = 256
    z_dim: int = 100  # Nz
    cond_dim: int = 128  # Ng, the CA code fed to G
    d_cond_ch: int = 128  # Nd, the compressed text code in D
    g_width: int = 128  # Stage-I G has 8·g_width channels at 4×4; Stage-II G's base width
    d_width: int = 64
    stage2_down: int = 2  # stride-2 convs encoding the Stage-I image (64 → 16 in the paper)
    res_blocks: int = 4  # Stage-II residual blocks (official R_NUM)
    upsample: Literal["nearest", "transposed"] = "nearest"
    fused_upsample: bool = True  # nearest ×2 + 3×3 conv as one transposed conv (exact)
    head_norm: Literal["bn", "none"] = "bn"
    d_norm: Literal["bn", "sn"] = "bn"  # D: batch norm (official) or spectral norm (SN-GAN)
    ca: bool = True  # conditioning augmentation (§3.2); false: c = μ(e), no g/kl (§4.3 ablation)
    # G's CA and D's head standardise the caption embedding with the training captions'
    # statistics (common/nn/standardize.py); the official code feeds it raw.
    cond_standardize: bool = True
    # G's up-blocks take their batch-norm scale and shift from the CA code (conditional BN,
    # text2img/models.py UpBlock); false: the official StackGAN G, c only at the input.
    g_cond_norm: bool = False
    # Stage-II G attends over the caption's word features (AttnGAN's F^attn, Xu et al. 2018
    # eq. 2; text2img/models.py StageIIGenerator): each cell of its grid picks the words it
    # needs. Needs a transformers encoder (word-level features, cached like loss.words').
    g2_words: bool = False
    g2_words_res: int = 0  # the grid it attends on: 0 = the joint's, else an up-block's px
    # Stage II's last up-block is a free transposed conv, able to draw a 2-px periodic
    # texture (the wing pattern at 64 px) that nearest ×2 + conv cannot (StageIIGenerator).
    g2_subpixel: bool = False

    def stage_res(self, index: int) -> int:
        """The image resolution of stage ``index`` (1 or 2)."""
        return self.stage1_res if index == 1 else self.stage2_res


@dataclass
class LossConfig:
    # bce as StackGAN (non-saturating G loss); hinge and lsgan need no extra regulariser.
    kind: Literal["bce", "hinge", "lsgan"] = "bce"
    kl: float = 2.0  # λ of the per-dimension CA KL (g/kl): official code 2.0, paper text 1
    smoothing: float = 0.0  # one-sided label smoothing of "real" targets (bce only)
    fake_in_match: bool = False  # split head: fakes also count as mismatched
    # λ of the image–caption contrastive terms d/contrast and g/contrast (XMC-GAN, Zhang et
    # al. 2021, eqs. 2, 5, 6; common/nn/contrastive.py): an InfoNCE over the batch's captions
    # on D's pooled features, D on real images, G on its fakes. 0 = off (StackGAN).
    contrastive: float = 0.0
    contrastive_tau: float = 0.1
    # λ of the word–region contrastive terms d/words and g/words (XMC-GAN §3.2 region-word,
    # AttnGAN's DAMSM attention; common/nn/contrastive.py WordRegionCritic): every word of a
    # caption attends over D's 4×4 feature map. Needs the encoder's word-level features
    # (cached once, ~0.8 GB for SynthBirds' 40,000 captions). 0 = off.
    words: float = 0.0
    # λ of d/head_nce and g/head_nce: the same InfoNCE over the batch's captions on the
    # projection head's own matching term ⟨V e_j, Σφ_i⟩ (ProjectionHead.pairwise), so the
    # head G is trained against sees B − 1 wrong captions per image, not one. 0 = off.
    head_nce: float = 0.0
    # λ of g/matcher: a frozen image–caption matcher, trained once on the real training
    # pairs (text2img/matcher.py; AttnGAN's DAMSM sentence loss, Xu et al. 2018 eqs. 3,
    # 10–13), scores G's images against the batch's captions. 0 = off.
    matcher: float = 0.0
    # Colour-swapped captions as hard negatives of d/head_nce (real images) and g/head_nce
    # (text2img/negatives.py; NegCLIP, Yuksekgonul et al. 2023, §4): every caption naming two
    # colours has a copy with two of them exchanged ("a blue bird with red wings" for "a red
    # bird with blue wings"), false for its image. g/matcher uses them when the matcher was
    # trained with them (matcher.swap_negatives).
    head_nce_swaps: bool = False
    # Overrides of the per-head D weights (d/real, d/wrong, d/fake, d/match, d/mismatch)
    # and G weights (g/adv, g/match), keyed by logged name.
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class StageConfig:
    steps: int = 1000
    lr_g: float = 2e-4  # official: 2e-4 for both, Adam β = (0.5, 0.999)
    lr_d: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    lr_decay_every: int = 0  # halve both rates every N steps (paper §3.5: every 100 epochs)


@dataclass
class TrainConfig:
    stage1: StageConfig = field(default_factory=StageConfig)
    stage2: StageConfig = field(default_factory=StageConfig)
    ema_decay: float = 0.999
    # The G update scores the fakes the D update just saw (one G forward a step), as the
    # official code does; false draws fresh noise for G.
    reuse_fake: bool = True


@dataclass
class ProbeConfig:
    # Empty: probe with ``from_data`` training captions instead (for encoders that only
    # know their dataset's captions, like the released char-CNN-RNN embeddings).
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    from_data: int = 8
    n_z: int = 4  # samples per prompt in a grid


@dataclass
class EvalSection:
    enabled: bool = True  # SynthBirds only (the judge knows its attributes)
    # "default" (python -m text2img.judge's cached judge), a judge folder, or a JudgeConfig
    # YAML such as configs/text2img/judge-quick.yaml; a missing judge is trained first.
    judge: str = "default"
    n: int = 1000
    n_z: int = 8
    diversity_captions: int = 50
    batch_size: int = 50


@dataclass
class StackGANConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    eval: EvalSection = field(default_factory=EvalSection)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)  # used when loss.matcher > 0
    run: RunConfig = field(
        default_factory=lambda: RunConfig(log_every=50, sample_every=500, checkpoint_every=500)
    )
    runtime: RuntimeConfig = field(default_factory=lambda: RuntimeConfig(channels_last=True))


# ----------------------------------------------------------------------------- data


@dataclass
class Corpus:
    """Training images and caption embeddings, in memory.

    images: resolution → uint8 Tensor[N, 3, R, R]; embeddings: float32 Tensor[N, C, E]
    (caption j of image i); attributes / mentions (SynthBirds) or class_ids (CUB, flowers)
    decide which captions count as mismatched.
    """

    images: dict[int, Tensor]
    embeddings: Tensor
    captions: list[list[str]] | None = None
    attributes: np.ndarray | None = None  # [N, 8]
    mentions: np.ndarray | None = None  # [N, C, 8]
    class_ids: np.ndarray | None = None  # [N]
    words: Tensor | None = None  # float16 [N, C, T, H]: word-level features (loss.words)
    word_mask: Tensor | None = None  # bool [N, C, T]: which of them are real words
    swaps: Tensor | None = None  # float32 [N, C, E]: each caption's colour swap embedded
    swap_ok: Tensor | None = None  # bool [N, C]: which captions have a swap
    key: str = ""  # identifies the images and the embedded captions (caches built on them)

    def __len__(self) -> int:
        return len(self.embeddings)


def _nchw(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def load_corpus(cfg: StackGANConfig, encoder: Any) -> Corpus:
    """The training split at both stage resolutions, with every caption embedded once."""
    from text2img.encoders import EmbeddingCache

    d = cfg.data
    sizes = sorted({cfg.model.stage1_res, cfg.model.stage2_res})
    if d.dataset == "synthbirds":
        from text2img.data.synthbirds import SynthBirdsSpec, load_split

        spec = SynthBirdsSpec(d.synth_seed, d.synth_master, d.heldout_pairs)
        if spec.resolution % sizes[-1]:
            raise ValueError(f"model.stage2_res={sizes[-1]} must divide data.synth_master="
                             f"{spec.resolution}")
        split = load_split(spec, "train", d.n_train)
        images = {r: _nchw(split.images_at(r) if r != spec.resolution else split.images)
                  for r in sizes}
        captions, name = split.captions, f"synthbirds-{split.key}"
        extra = {"attributes": split.attributes, "mentions": split.mentions}
    else:
        from text2img.data.real import load_real

        if not d.root:
            raise ValueError(f"data.root must point at the {d.dataset} folder")
        ds = load_real(d.dataset, d.root, "train")
        from tqdm import tqdm

        top = np.stack([ds.load_image(i, size=sizes[-1])
                        for i in tqdm(range(len(ds)), desc=f"loading {d.dataset}",
                                      file=sys.stderr)])
        big = _nchw(top)
        images = {r: big if r == sizes[-1] else
                  F.avg_pool2d(big.float(), sizes[-1] // r).round().to(torch.uint8)
                  for r in sizes}
        per = min(len(c) for c in ds.captions)
        captions = [c[:per] for c in ds.captions]
        name, extra = f"{ds.name}-{ds.split}-{ds.dataset_hash}", {"class_ids": ds.class_ids}
    per_image = len(captions[0])
    flat = [c for caps in captions for c in caps]
    cache, key = EmbeddingCache(), f"{name}-c{per_image}"
    emb = cache.encode(encoder, flat, dataset_hash=key)
    if cfg.loss.words > 0 or cfg.model.g2_words:
        words, mask = cache.encode_tokens(encoder, flat, dataset_hash=key)
        extra.update(words=words.view(len(captions), per_image, *words.shape[1:]),
                     word_mask=mask.view(len(captions), per_image, -1))
    if uses_swaps(cfg):
        from text2img.negatives import swapped_embeddings

        extra["swaps"], extra["swap_ok"] = swapped_embeddings(
            captions, partial(cache.encode, encoder))
    return Corpus(images, emb.view(len(captions), per_image, -1), captions,
                  key=f"{key}-{d.encoder}", **extra)


def corpus_swaps(corpus: Corpus, encoder: Any) -> Callable[[], tuple[Tensor, Tensor]]:
    """() → the corpus captions' colour swaps embedded (cached on disk) and which captions
    have one: the hard negatives of ``matcher.swap_negatives`` (text2img/negatives.py)."""
    from text2img.encoders import EmbeddingCache
    from text2img.negatives import swapped_embeddings

    def swaps() -> tuple[Tensor, Tensor]:
        if corpus.swaps is not None and corpus.swap_ok is not None:
            return corpus.swaps, corpus.swap_ok
        if corpus.captions is None:
            raise ValueError("the corpus has no caption texts to swap colours in")
        return swapped_embeddings(corpus.captions, partial(EmbeddingCache().encode, encoder))

    return swaps


@dataclass
class Batch:
    image: Tensor  # (B, 3, R, R) in [-1, 1]
    emb: Tensor  # (B, E) one caption embedding per image
    wrong: Tensor  # (B,) index of a mismatched caption within the batch
    words: Tensor | None = None  # (B, T, H) the caption's word features (loss.words)
    word_mask: Tensor | None = None  # (B, T) which are real words
    swap: Tensor | None = None  # (B, E) the caption's colour swap (loss.*_swaps)
    swap_ok: Tensor | None = None  # (B,) whether it has one

    def swaps(self) -> tuple[Tensor, Tensor]:
        """(swap, swap_ok), which the ``loss.*_swaps`` terms need."""
        if self.swap is None or self.swap_ok is None:
            raise ValueError("the batch has no colour swaps (Corpus.swaps is not loaded)")
        return self.swap, self.swap_ok


def _pick_wrong(same: Tensor, gen: torch.Generator) -> Tensor:
    """j(i) uniform among batch entries whose caption does NOT fit image i (``same[i, j]``
    False); rolls by one where every caption fits (as common.losses.mismatch_indices)."""
    b = len(same)
    scores = torch.rand(b, b, generator=gen).masked_fill(same, -1.0)
    roll = (torch.arange(b) + 1) % b
    return torch.where((~same).any(dim=1), scores.argmax(dim=1), roll)


def _nearest_wrong(emb: Tensor, same: Tensor) -> tuple[Tensor, Tensor]:
    """(j(i), found): the batch caption that does NOT fit image i (``same[i, j]`` False)
    with the highest cosine similarity to caption i, and whether row i has any."""
    e = F.normalize(emb.float(), dim=1)
    sim = (e @ e.T).masked_fill(same, float("-inf"))
    return sim.argmax(dim=1), (~same).any(dim=1)


class CaptionedImages:
    """Endless batches for one stage: epochs over a permutation, a random caption per
    image, optional flips. Its position (generator, permutation, cursor) is checkpointed."""

    def __init__(self, corpus: Corpus, resolution: int, batch_size: int, flip: bool,
                 seed: int, device: torch.device, channels_last: bool,
                 hard_wrong: float = 0.0) -> None:
        if batch_size < 2 or batch_size > len(corpus):
            raise ValueError(f"data.batch_size={batch_size} must be in [2, {len(corpus)}] "
                             "(mismatched pairs need two images a batch)")
        if not 0.0 <= hard_wrong <= 1.0:
            raise ValueError(f"data.hard_wrong={hard_wrong} must be a share in [0, 1]")
        self.hard_wrong = hard_wrong
        self.corpus, self.images = corpus, corpus.images[resolution]
        self.batch_size, self.flip, self.device = batch_size, flip, device
        self.format = torch.channels_last if channels_last else torch.contiguous_format
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(corpus), generator=self.gen)
        self.pos = 0

    def _indices(self) -> Tensor:
        if self.pos + self.batch_size > len(self.perm):  # drop the ragged end of an epoch
            self.perm, self.pos = torch.randperm(len(self.corpus), generator=self.gen), 0
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def _wrong(self, idx: Tensor, cap: Tensor, emb: Tensor | None = None) -> Tensor:
        c = self.corpus
        if c.attributes is not None:
            # A caption is wrong for an image when an attribute it mentions has another value.
            attrs = torch.from_numpy(c.attributes[idx.numpy()])  # (B, 8)
            said = torch.from_numpy(c.mentions[idx.numpy(), cap.numpy()])  # (B, 8)
            differs = attrs[:, None, :] != attrs[None, :, :]  # (image i, caption j, attr)
            same = ~(differs & said[None, :, :]).any(dim=-1)  # caption j fits image i
            wrong = _pick_wrong(same, self.gen)
        else:
            labels = None if c.class_ids is None else torch.from_numpy(c.class_ids[idx.numpy()])
            # Another class, like the official code's mismatched pairs; COCO has none: roll.
            wrong = mismatch_indices(len(idx), labels, generator=self.gen)
            # Without labels every other caption counts as mismatched.
            same = (torch.eye(len(idx), dtype=torch.bool) if labels is None
                    else labels[:, None] == labels[None, :])
        if self.hard_wrong > 0 and emb is not None:
            nearest, found = _nearest_wrong(emb, same)
            hard = (torch.rand(len(idx), generator=self.gen) < self.hard_wrong) & found
            wrong = torch.where(hard, nearest, wrong)
        return wrong

    def next(self) -> Batch:
        idx = self._indices()
        cap = torch.randint(self.corpus.embeddings.shape[1], (len(idx),), generator=self.gen)
        x = self.images[idx].float().div_(127.5).sub_(1.0)  # (B, 3, R, R)
        if self.flip:
            flip = torch.rand(len(idx), generator=self.gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        x = x.contiguous(memory_format=self.format)
        emb = self.corpus.embeddings[idx, cap]
        words = mask = None
        if self.corpus.words is not None and self.corpus.word_mask is not None:
            mask = self.corpus.word_mask[idx, cap]
            width = max(int(mask.sum(1).max()), 1)  # trim the batch's padding
            words = self.corpus.words[idx, cap, :width].float().to(self.device)
            mask = mask[:, :width].to(self.device)
        swap = ok = None
        if self.corpus.swaps is not None and self.corpus.swap_ok is not None:
            swap = self.corpus.swaps[idx, cap].to(self.device)
            ok = self.corpus.swap_ok[idx, cap].to(self.device)
        return Batch(x.to(self.device), emb.to(self.device),
                     self._wrong(idx, cap, emb).to(self.device), words, mask, swap, ok)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])


# ----------------------------------------------------------------------------- networks


@dataclass
class Stage:
    """One stage's training state, phases, data and how to draw its images."""

    index: int  # 1 or 2
    resolution: int
    state: TrainState
    phases: list[Phase]
    data: CaptionedImages
    checkpointer: Checkpointer
    steps: int
    lower: nn.Module | None = None  # Stage II: the frozen Stage-I EMA generator


def build_generator(index: int, cfg: ModelConfig, embed_dim: int, word_dim: int = 0
                    ) -> nn.Module:
    """Stage ``index``'s G; ``word_dim``: the caption word features' width, which Stage II
    attends over when ``cfg.g2_words`` is on."""
    if cfg.g2_words and index == 2 and word_dim <= 0:
        raise ValueError("model.g2_words needs the caption's word features (a transformers "
                         "encoder: minilm or hf:<model>)")
    if index == 1:
        return StageIGenerator(embed_dim, resolution=cfg.stage1_res, width=cfg.g_width,
                               cond_dim=cfg.cond_dim, z_dim=cfg.z_dim, upsample=cfg.upsample,
                               fused=cfg.fused_upsample, augment=cfg.ca,
                               standardize=cfg.cond_standardize, cond_norm=cfg.g_cond_norm)
    return StageIIGenerator(embed_dim, in_res=cfg.stage1_res, out_res=cfg.stage2_res,
                            width=cfg.g_width, cond_dim=cfg.cond_dim, n_down=cfg.stage2_down,
                            res_blocks=cfg.res_blocks, upsample=cfg.upsample,
                            fused=cfg.fused_upsample, augment=cfg.ca,
                            standardize=cfg.cond_standardize, cond_norm=cfg.g_cond_norm,
                            word_dim=word_dim if cfg.g2_words else 0,
                            words_res=cfg.g2_words_res, subpixel=cfg.g2_subpixel)


def generate(g: nn.Module, lower: nn.Module | None, emb: Tensor, z: Tensor,
             generator: torch.Generator | None = None, words: Tensor | None = None,
             word_mask: Tensor | None = None) -> dict[str, Any]:
    """Images of one stage: {"image": Tensor[B, 3, R, R], "ca": CAOut, "low": Stage-I image
    or None}. Stage II runs the frozen Stage I without a graph (its output is detached) and
    gets the caption's words (used when it attends over them, ``model.g2_words``)."""
    if lower is None:
        out = g(emb, z, generator=generator)
        return {"image": out.image, "ca": out.ca, "low": None}
    with torch.no_grad():
        low = lower(emb, z, generator=generator).image
    out = g(low, emb, words, word_mask, generator=generator)
    return {"image": out.image, "ca": out.ca, "low": low}


@contextlib.contextmanager
def no_param_grads(module: nn.Module) -> Iterator[None]:
    """Forward without recording gradients for ``module``'s weights (inputs still get
    theirs): the G phase needs ∂D/∂x, never ∂D/∂θ_D, so D's weight gradients are skipped."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def _f32(out: DOut) -> DOut:
    """Logits to fp32 before the losses (autocast may hand back bf16)."""
    cast = lambda t: None if t is None else t.float()  # noqa: E731
    return DOut(cast(out.realism), cast(out.match), cast(out.joint))


def loss_weights(cfg: StackGANConfig) -> tuple[dict[str, float], dict[str, float]]:
    """(D weights, G weights) keyed by logged name: per-head defaults < loss.weights."""
    head = cfg.model.d_head
    d_w = default_d_weights(head)
    g_w = {"g/adv": 1.0, **({"g/match": 1.0} if head == "split" else {})}
    if cfg.model.ca:
        g_w["g/kl"] = cfg.loss.kl
    if cfg.loss.contrastive > 0:
        d_w["d/contrast"] = g_w["g/contrast"] = cfg.loss.contrastive
    if cfg.loss.words > 0:
        d_w["d/words"] = g_w["g/words"] = cfg.loss.words
    if cfg.loss.head_nce > 0:
        d_w["d/head_nce"] = g_w["g/head_nce"] = cfg.loss.head_nce
    if cfg.loss.matcher > 0:
        g_w["g/matcher"] = cfg.loss.matcher
    if head == "split" and cfg.loss.fake_in_match:
        d_w["d/match_fake"] = 1.0
    for key, value in cfg.loss.weights.items():
        table = d_w if key.startswith("d/") else g_w
        if key not in table:
            raise ValueError(f"loss.weights: no loss term {key!r} for head {head!r}; terms: "
                             f"{', '.join([*d_w, *g_w])}")
        table[key] = value
    return d_w, g_w


def uses_swaps(cfg: StackGANConfig) -> bool:
    """Whether a loss term needs the captions' colour swaps (Corpus.swaps)."""
    return cfg.loss.head_nce_swaps or (cfg.loss.matcher > 0 and cfg.matcher.swap_negatives)


def build_phases(cfg: StackGANConfig, lower: nn.Module | None, device: torch.device,
                 matcher: nn.Module | None = None) -> list[Phase]:
    """The D and G phases of one stage (what each loss is: see the module docstring).
    ``matcher``: the frozen image–caption matcher, required when ``loss.matcher`` > 0."""
    kind, z_dim, smoothing = cfg.loss.kind, cfg.model.z_dim, cfg.loss.smoothing
    if smoothing and kind != "bce":
        raise ValueError(f"loss.smoothing applies to loss.kind=bce only, not {kind!r}")
    if cfg.loss.head_nce > 0 and cfg.model.d_head != "projection":
        raise ValueError("loss.head_nce scores the projection head's matching term; "
                         f"model.d_head is {cfg.model.d_head!r}")
    if cfg.loss.matcher > 0 and matcher is None:
        raise ValueError("loss.matcher > 0 needs the trained matcher (text2img.matcher)")
    for key in ("contrastive", "words", "head_nce", "matcher"):
        if getattr(cfg.loss, key) < 0:
            raise ValueError(f"loss.{key} must be >= 0 (0 = off), got {getattr(cfg.loss, key)}")
    if cfg.loss.head_nce_swaps and cfg.loss.head_nce == 0:
        raise ValueError("loss.head_nce_swaps adds negatives to the loss.head_nce terms, which "
                         "are off (loss.head_nce=0)")
    reuse: dict[str, Any] = {}  # the D phase's fakes, for the G phase (train.reuse_fake)
    contrast = cfg.loss.contrastive > 0  # D carries a ContrastiveCritic (build_stage)
    words = cfg.loss.words > 0  # D carries a WordRegionCritic (build_stage)
    head_nce = cfg.loss.head_nce > 0
    use_matcher = cfg.loss.matcher > 0  # checked above: the matcher is given
    matcher_swaps = use_matcher and cfg.matcher.swap_negatives

    def d_loss(state: TrainState, batch: Batch) -> dict[str, Tensor]:
        g, d = state.nets["g"], state.nets["d"]
        z = torch.randn(len(batch.emb), z_dim, device=device)
        with torch.set_grad_enabled(cfg.train.reuse_fake):
            fake = generate(g, lower, batch.emb, z, words=batch.words,
                            word_mask=batch.word_mask)
        if cfg.train.reuse_fake:
            reuse.update(fake=fake, emb=batch.emb, words=batch.words, mask=batch.word_mask)
        real_f = d.backbone(batch.image)  # real features once, for right and wrong captions
        fake_f = d.backbone(fake["image"].detach())
        real_right = _f32(d.head(real_f, batch.emb))
        real_wrong = _f32(d.head(real_f, batch.emb[batch.wrong]))
        fake_right = _f32(d.head(fake_f, batch.emb))
        losses = conditional_d_losses(real_right, real_wrong, fake_right, kind,
                                      smoothing=smoothing, fake_in_match=cfg.loss.fake_in_match)
        if contrast:
            losses["d/contrast"] = contrastive_loss(d.contrast(real_f, batch.emb), batch.emb)
        if words:
            logits = d.words(real_f, batch.words, batch.word_mask)
            losses["d/words"] = contrastive_loss(logits, batch.emb)
        if head_nce:
            pairs = d.head.pairwise(real_f, batch.emb).float()
            extra = None
            if cfg.loss.head_nce_swaps:  # the swaps as more wrong captions per image
                swap, ok = batch.swaps()
                extra = (d.head.pairwise(real_f, swap).float(), swap, ok)
            losses["d/head_nce"] = contrastive_loss(pairs, batch.emb, extra)
        return losses

    def g_loss(state: TrainState, batch: Batch) -> dict[str, Tensor]:
        g, d = state.nets["g"], state.nets["d"]
        if reuse:
            fake, emb = reuse.pop("fake"), reuse.pop("emb")
            word_feats, word_mask = reuse.pop("words"), reuse.pop("mask")
        else:
            emb, word_feats, word_mask = batch.emb, batch.words, batch.word_mask
            fake = generate(g, lower, emb, torch.randn(len(emb), z_dim, device=device),
                            words=word_feats, word_mask=word_mask)
        with no_param_grads(d):
            feats = d.backbone(fake["image"])
            out = _f32(d.head(feats, emb))
            losses = conditional_g_losses(out, kind)
            if contrast:
                losses["g/contrast"] = contrastive_loss(d.contrast(feats, emb), emb)
            if words:
                losses["g/words"] = contrastive_loss(d.words(feats, word_feats, word_mask), emb)
            if head_nce:
                pairs = d.head.pairwise(feats, emb).float()
                extra = None
                if cfg.loss.head_nce_swaps:
                    swap, ok = batch.swaps()
                    extra = (d.head.pairwise(feats, swap).float(), swap, ok)
                losses["g/head_nce"] = contrastive_loss(pairs, emb, extra)
        if use_matcher:  # frozen: gradients reach G only
            m_feats = matcher.image_features(matcher_view(fake["image"], cfg.matcher.view))
            logits = matcher.critic(m_feats, emb).float()
            if matcher_swaps:  # the loss the matcher was trained on (matcher.swap_negatives)
                swap, ok = batch.swaps()
                losses["g/matcher"] = symmetric_nce(
                    logits, emb, matcher.critic(m_feats, swap).float(), swap, ok)
            else:
                losses["g/matcher"] = symmetric_nce(logits, emb)
        ca = fake["ca"]
        if ca.logvar is not None:  # CA on
            # CA's KL (§3.2) per code dimension, like the official KL_loss (a mean, not a sum).
            losses["g/kl"] = kl_divergence(ca.mu.float(), ca.logvar.float()) / ca.mu.shape[1]
        return losses

    d_w, g_w = loss_weights(cfg)
    return [Phase("d", "d", d_loss, weights=d_w), Phase("g", "g", g_loss, weights=g_w)]


def matcher_view(images: Tensor, view: int) -> Tensor:
    """``images`` (Tensor[B, 3, R, R]) area-downsampled to ``view`` px when R > view > 0."""
    if 0 < view < images.shape[-1]:  # divisibility: check_matcher_stages
        return F.interpolate(images.float(), size=view, mode="area")
    return images


def _adam(params, lr: float, betas: list[float], device: torch.device) -> torch.optim.Adam:
    fused = device.type in ("cpu", "cuda")  # one kernel for the whole update; same maths
    return torch.optim.Adam(params, lr=lr, betas=(betas[0], betas[1]), fused=fused)


def build_stage(index: int, cfg: StackGANConfig, corpus: Corpus, runtime: Runtime,
                run_dir: Path, config_hash: str, lower: nn.Module | None = None,
                matcher: nn.Module | None = None) -> Stage:
    """Networks, optimisers, EMA, phases, data and checkpointer of stage ``index``
    (``matcher``: see :func:`build_phases`)."""
    device, embed_dim = runtime.device, corpus.embeddings.shape[-1]
    if uses_swaps(cfg) and corpus.swaps is None:
        raise ValueError("matcher.swap_negatives / loss.head_nce_swaps need the captions' colour "
                         "swaps in the corpus (load_corpus embeds them when either is on)")
    stage_cfg = cfg.train.stage1 if index == 1 else cfg.train.stage2
    resolution = cfg.model.stage_res(index)
    base = cfg.seed * 1000 + 10 * index
    torch.manual_seed(base)  # each stage's initialisation is its own (and the same on all ranks)
    word_dim = 0 if corpus.words is None else corpus.words.shape[-1]
    g = build_generator(index, cfg.model, embed_dim, word_dim).to(device)
    d = build_discriminator(cfg.model.d_head, resolution=resolution, width=cfg.model.d_width,
                            embed_dim=embed_dim, cond_ch=cfg.model.d_cond_ch,
                            head_norm=None if cfg.model.head_norm == "none" else "bn",
                            standardize=cfg.model.cond_standardize,
                            norm=cfg.model.d_norm)
    if cfg.loss.contrastive > 0:
        d.contrast = ContrastiveCritic(d.backbone.out_ch, embed_dim, tau=cfg.loss.contrastive_tau)
    if cfg.loss.words > 0:
        if corpus.words is None:
            raise ValueError("loss.words > 0 needs the corpus's word features (load_corpus "
                             "with the same config)")
        d.words = WordRegionCritic(d.backbone.out_ch, corpus.words.shape[-1],
                                   tau=cfg.loss.contrastive_tau)
    d = d.to(device)
    if cfg.model.cond_standardize:  # statistics of every training caption's embedding
        flat = corpus.embeddings.flatten(0, 1)  # (N·C, E)
        fit_standardizers(g, flat)
        fit_standardizers(d, flat)
    if runtime.channels_last:
        to_channels_last(g)
        to_channels_last(d)
    broadcast_module(g)
    broadcast_module(d)
    torch.manual_seed(base + 1 + runtime.rank)  # this rank's noise stream for the stage
    opt = {"g": _adam(g.parameters(), stage_cfg.lr_g, stage_cfg.betas, device),
           "d": _adam(d.parameters(), stage_cfg.lr_d, stage_cfg.betas, device)}
    sched = {}
    if stage_cfg.lr_decay_every > 0:  # lr ← lr / 2 every 100 epochs in the paper (§3.5)
        sched = {k: torch.optim.lr_scheduler.StepLR(o, stage_cfg.lr_decay_every, 0.5)
                 for k, o in opt.items()}
    state = TrainState(nets={"g": g, "d": d}, optimizers=opt, schedulers=sched,
                       ema=EMA(g, cfg.train.ema_decay))
    data = CaptionedImages(corpus, resolution, cfg.data.batch_size, cfg.data.flip,
                           seed=(cfg.seed * 1000 + index) * 100 + runtime.rank, device=device,
                           channels_last=runtime.channels_last, hard_wrong=cfg.data.hard_wrong)
    ck = Checkpointer(run_dir / "checkpoints" / f"stage{index}", config_hash,
                      keep=cfg.run.keep_checkpoints, rank=runtime.rank)
    if index not in check_matcher_stages(cfg):  # this stage's G trains without g/matcher
        cfg = replace(cfg, loss=replace(cfg.loss, matcher=0.0))
    return Stage(index, resolution, state, build_phases(cfg, lower, device, matcher), data, ck,
                 stage_cfg.steps, lower)


def check_matcher_stages(cfg: StackGANConfig) -> list[int]:
    """``matcher.stages``, checked: stage numbers 1 and 2 only."""
    stages = list(cfg.matcher.stages)
    if not stages or any(i not in (1, 2) for i in stages):
        raise ValueError(f"matcher.stages lists the stages scored by the matcher (1, 2); "
                         f"got {stages}")
    view = cfg.matcher.view
    for i in stages:
        res = cfg.model.stage_res(i)
        if view < 0 or (0 < view < res and res % view):
            raise ValueError(f"matcher.view={view} must be 0 or divide the {res} px of stage {i}")
    return stages


# ----------------------------------------------------------------------------- logging


class StageTracker:
    """The run's tracker seen from one stage: steps shifted by the earlier stages' steps
    (one monotonic W&B step axis) and ``train/…`` keys namespaced ``train/stageN/…``."""

    def __init__(self, tracker: Any, index: int, offset: int) -> None:
        self.tracker, self.prefix, self.offset = tracker, f"stage{index}", offset

    def log(self, values: dict[str, Any], step: int) -> None:
        renamed = {k.replace("train/", f"train/{self.prefix}/", 1): v for k, v in values.items()}
        self.tracker.log(renamed, step=step + self.offset)

    def log_image(self, key: str, image: Any, step: int, caption: str | None = None) -> Any:
        return self.tracker.log_image(key, image, step=step + self.offset, caption=caption)

    def progress(self, total: int, initial: int = 0) -> Any:
        return self.tracker.progress(total, initial)


@dataclass
class Probes:
    """Fixed probe prompts, their embeddings and noise (STYLE.md item 8)."""

    prompts: list[str]
    emb: Tensor  # (P, E)
    z: Tensor  # (P · n_z, z_dim)
    n_z: int
    seed: int  # seeds the CA noise of every snapshot
    words: Tensor | None = None  # (P, T, H) the prompts' word features (model.g2_words)
    word_mask: Tensor | None = None  # (P, T)

    @staticmethod
    def load_or_create(run_dir: Path, cfg: StackGANConfig, encoder: Any, corpus: Corpus,
                       write: bool = True) -> Probes:
        probes = Probes._load_or_create(run_dir, cfg, encoder, corpus, write)
        if cfg.model.g2_words:  # recomputed each time: the encoder is deterministic
            words, mask = encoder.encode_tokens(probes.prompts)
            probes.words, probes.word_mask = words.float(), mask
        return probes

    @staticmethod
    def _load_or_create(run_dir: Path, cfg: StackGANConfig, encoder: Any, corpus: Corpus,
                        write: bool) -> Probes:
        from safetensors.torch import load_file, save_file

        meta_path, tensor_path = run_dir / "probes.json", run_dir / "probes.safetensors"
        if meta_path.is_file() and tensor_path.is_file():
            meta, t = json.loads(meta_path.read_text()), load_file(str(tensor_path))
            return Probes(meta["prompts"], t["emb"], t["z"], meta["n_z"], meta["seed"])
        prompts, n_z = list(cfg.probes.prompts), cfg.probes.n_z
        if not prompts:  # evenly spaced training images, their first caption
            picks = np.linspace(0, len(corpus) - 1, min(cfg.probes.from_data, len(corpus)))
            prompts = [corpus.captions[int(i)][0] for i in picks]
        gen = torch.Generator().manual_seed(cfg.seed + 12345)
        z = torch.randn(len(prompts) * n_z, cfg.model.z_dim, generator=gen)
        probes = Probes(prompts, encoder.encode(prompts).float(), z, n_z, cfg.seed + 54321)
        if write:
            save_file({"emb": probes.emb.contiguous(), "z": z}, str(tensor_path))
            atomic_write_text(meta_path, json.dumps({"prompts": prompts, "n_z": n_z,
                                                     "seed": probes.seed}, indent=1))
        return probes

    @torch.no_grad()
    def images(self, g1: nn.Module, g2: nn.Module | None, device: torch.device) -> dict:
        """{"stage1": Tensor[P, n_z, 3, R1, R1], "stage2": … or None} from EMA nets."""
        gen = torch.Generator(device).manual_seed(self.seed)
        emb = self.emb.to(device).repeat_interleave(self.n_z, 0)
        low = g1(emb, self.z.to(device), generator=gen).image.float()
        words = mask = None
        if self.words is not None and self.word_mask is not None:
            words = self.words.to(device).repeat_interleave(self.n_z, 0)
            mask = self.word_mask.to(device).repeat_interleave(self.n_z, 0)
        high = None if g2 is None else g2(low, emb, words, mask, generator=gen).image.float()
        shape = lambda x: x.reshape(len(self.prompts), self.n_z, *x.shape[1:]).cpu()  # noqa
        return {"stage1": shape(low), "stage2": None if high is None else shape(high)}


def probe_grid(low: Tensor, high: Tensor | None) -> np.ndarray:
    """uint8 grid for one prompt: a row of Stage-I samples (nearest-upsampled to the
    Stage-II size) above the row of their Stage-II refinements."""
    if high is None:
        return make_grid(low, nrow=len(low))
    up = F.interpolate(low, size=high.shape[-2:], mode="nearest")
    return make_grid(torch.cat([up, high]), nrow=len(low))


# ----------------------------------------------------------------------------- run


def export_generators(path: Path, cfg: StackGANConfig, g1: nn.Module, g2: nn.Module | None,
                      encoder: Any, steps: dict[str, int]) -> Path:
    """The small inference artifact: EMA Stage-I (and Stage-II) weights + what rebuilds
    them (model config, embedding size, the text encoder by name and content hash)."""
    nets = nn.ModuleDict({"stage1": g1} if g2 is None else {"stage1": g1, "stage2": g2})
    meta = {"entry": "text2img.train", "model": to_dict(cfg.model), "embed_dim": encoder.dim,
            "word_dim": getattr(g2, "word_dim", 0),
            "encoder": cfg.data.encoder, "encoder_hash": encoder.content_hash(),
            "stages": len(nets), "steps": steps, "dataset": cfg.data.dataset}
    return export_weights(path, nets, meta)


def _snapshot(stage: Stage, probes: Probes, tracker: StageTracker, device: torch.device,
              g1: nn.Module | None = None):
    def hook(state: TrainState) -> None:
        ema = state.ema.module
        imgs = probes.images(ema, None, device) if stage.index == 1 else \
            probes.images(g1, ema, device)
        for p, prompt in enumerate(probes.prompts):
            grid = probe_grid(imgs["stage1"][p],
                              None if imgs["stage2"] is None else imgs["stage2"][p])
            tracker.log_image(f"samples/stage{stage.index}/p{p}", grid, step=state.step,
                              caption=prompt)
    return hook


def _resume_stage(stage: Stage, run: Run) -> None:
    if stage.checkpointer.latest() is not None:
        restore(stage.state, stage.data, stage.checkpointer)


def run_stage(stage: Stage, run: Run, tracker: StageTracker, probes: Probes,
              cfg: StackGANConfig) -> None:
    train(stage.state, stage.phases, stage.data, steps=stage.steps, runtime=run.runtime,
          tracker=tracker, checkpointer=stage.checkpointer,
          checkpoint_every=cfg.run.checkpoint_every, log_every=cfg.run.log_every,
          hooks=[Hook(cfg.run.sample_every,
                      _snapshot(stage, probes, tracker, run.runtime.device, stage.lower))])


@dataclass
class JudgeRef:
    """``eval.judge`` resolved to a judge folder: "default", a folder, or a JudgeConfig YAML.

    Parsed before training (a bad reference fails in seconds, not after the run); a judge
    that is not cached yet is trained by :meth:`ensure` after training, on rank 0 only.
    """

    folder: Path
    config: Path | None  # the JudgeConfig YAML, or None for "default" / a folder
    trainable: bool

    @staticmethod
    def parse(ref: str) -> JudgeRef:
        from common.config import load_config
        from common.paths import cache_dir
        from text2img import judge as judge_mod

        path = Path(ref)
        if ref != "default" and path.is_dir():
            if not (path / "judge.json").is_file():
                raise FileNotFoundError(f"eval.judge={ref!r}: no judge.json (not a judge folder)")
            return JudgeRef(path, None, False)
        if ref != "default" and not path.is_file():
            raise FileNotFoundError(f"eval.judge={ref!r}: neither 'default', a judge folder, "
                                    "nor a judge config file")
        jcfg = load_config(judge_mod.JudgeConfig, None if ref == "default" else path)
        return JudgeRef(cache_dir("judge") / judge_mod.judge_key(jcfg),
                        None if ref == "default" else path, True)

    def ensure(self, log_dir: Path) -> Path:
        """The judge folder, training the judge first if it is not cached (logs to log_dir)."""
        from text2img import judge as judge_mod

        if not (self.folder / "judge.json").is_file():
            where = f" --config {self.config}" if self.config else ""
            print(f"eval.judge: training the judge {self.folder.name} first "
                  f"(python -m text2img.judge{where})", file=sys.stderr)
            # W&B disabled: a second live W&B run in this process would be torn down with it.
            judge_mod.main([*(["--config", str(self.config)] if self.config else []),
                            "run.wandb_mode=disabled", "--run-dir", str(log_dir)])
        return self.folder


class _Embedded:
    """A sampler that embeds its captions itself, with the run's loaded encoder.

    :func:`text2img.evaluate.evaluate_sampler` loads the encoder a sampler names for every
    set of captions it embeds (four loads for two stages). This wrapper reports
    ``encoder=None`` and embeds through the encoder object instead, remembering each
    caption's vector (``memo``, shared by the stages' wrappers: they score the same captions).
    """

    encoder = None

    def __init__(self, sampler: Any, text_encoder: Any, memo: dict[str, Tensor]) -> None:
        self.sampler, self.text_encoder, self.memo = sampler, text_encoder, memo
        self.resolution = sampler.resolution

    def sample(self, captions, embeddings, n_z: int, generator: torch.Generator) -> Tensor:
        new = [c for c in dict.fromkeys(captions) if c not in self.memo]
        if new:
            self.memo.update(zip(new, self.text_encoder.encode(new), strict=True))
        emb = torch.stack([self.memo[c] for c in captions])  # (N, E)
        return self.sampler.sample(captions, emb, n_z, generator)


def evaluate_run(cfg: StackGANConfig, samplers: dict[str, Any], judge_dir: Path,
                 encoder: Any, device: torch.device) -> dict[str, Any]:
    """Per stage: attribute accuracy, fd_judge (+ floor), diversity of the EMA generator."""
    from text2img import evaluate as ev
    from text2img.data.synthbirds import SynthBirdsSpec
    from text2img.judge import load_judge

    judge = load_judge(judge_dir)
    data = judge.meta["config"]["data"]
    spec = SynthBirdsSpec(int(data["seed"]), int(data["resolution"]), int(data["heldout_pairs"]))
    ecfg = ev.EvalConfig(seed=cfg.seed, n=cfg.eval.n, n_z=cfg.eval.n_z,
                         diversity_captions=cfg.eval.diversity_captions,
                         batch_size=cfg.eval.batch_size)
    flat: dict[str, Any] = {}
    grids, memo = {}, {}
    for name, sampler in samplers.items():
        result = ev.evaluate_sampler(_Embedded(sampler, encoder, memo), judge, spec, ecfg,
                                     device)
        flat.update({f"metrics/{name}/{k}": v for k, v in result["metrics"].items()})
        grids[name] = result["grid"]
    return {"metrics": flat, "grids": grids, "judge": str(judge_dir)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    inv = parse_cli(StackGANConfig, argv, prog="python -m text2img.train",
                    description=__doc__.split("\n\n")[0])
    cfg: StackGANConfig = inv.config
    try:
        run = open_run(cfg, inv, kind="text2img")
    except (RunDirError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        return _main(cfg, inv, run)
    finally:
        run.close()


def _main(cfg: StackGANConfig, inv: Any, run: Run) -> dict[str, Any]:
    from common.config import ConfigError
    from text2img.data import DatasetError
    from text2img.encoders import EncoderError, get_encoder
    from text2img.sample import StackGANSampler

    device = run.runtime.device
    judge = None
    try:  # everything that can be wrong with the inputs fails here, before any training
        if cfg.eval.enabled and cfg.data.dataset == "synthbirds":
            judge = JudgeRef.parse(cfg.eval.judge)
        encoder = get_encoder(cfg.data.encoder)
        corpus = load_corpus(cfg, encoder)
        probes = Probes.load_or_create(run.dir, cfg, encoder, corpus, write=run.runtime.is_main)
        matchers = {}  # resolution → frozen matcher (loss.matcher, stages matcher.stages)
        if cfg.loss.matcher > 0:
            scored = [cfg.model.stage_res(i) for i in check_matcher_stages(cfg)]
            matchers = {r: m.to(device) for r, m in stage_matchers(
                cfg.matcher, corpus.images, corpus.embeddings, corpus.key, scored=scored,
                negatives=corpus_swaps(corpus, encoder)).items()}
        s1 = build_stage(1, cfg, corpus, run.runtime, run.dir, run.config_hash,
                         matcher=matchers.get(cfg.model.stage_res(1)))
    except (ConfigError, DatasetError, EncoderError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    steps1 = cfg.train.stage1.steps
    s2_ck = Checkpointer(run.dir / "checkpoints" / "stage2", run.config_hash)
    try:
        if inv.resume:
            _resume_stage(s1, run)
            if s2_ck.latest() is None:
                run.tracker.truncate_after(s1.state.step)
        run_stage(s1, run, StageTracker(run.tracker, 1, 0), probes, cfg)
        g1 = freeze(copy.deepcopy(s1.state.ema.module))
        stages = {"stage1": s1.state.step}
        g2 = None
        if cfg.train.stage2.steps > 0:
            s2 = build_stage(2, cfg, corpus, run.runtime, run.dir, run.config_hash, lower=g1,
                             matcher=matchers.get(cfg.model.stage_res(2)))
            if inv.resume:
                _resume_stage(s2, run)
                if s2_ck.latest() is not None:
                    run.tracker.truncate_after(steps1 + s2.state.step)
            if run.runtime.is_main:  # Stage I alone is already usable while Stage II trains
                export_generators(run.dir / "g_ema.safetensors", cfg, g1, None, encoder, stages)
            run_stage(s2, run, StageTracker(run.tracker, 2, steps1), probes, cfg)
            g2 = s2.state.ema.module
            stages["stage2"] = s2.state.step
    except (NonFiniteLossError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    last = steps1 + (cfg.train.stage2.steps if g2 is not None else 0)
    if run.runtime.is_main:
        export_generators(run.dir / "g_ema.safetensors", cfg, g1, g2, encoder, stages)

    results: dict[str, Any] = {}
    if judge is not None and run.runtime.is_main:
        judge_dir = judge.ensure(run.dir / "judge")
        samplers = {"stage1": StackGANSampler(g1, None, cfg.data.encoder, 1, device)}
        if g2 is not None:
            samplers["stage2"] = StackGANSampler(
                g1, g2, cfg.data.encoder, 2, device,
                words=encoder.encode_tokens if cfg.model.g2_words else None)
        report = evaluate_run(cfg, samplers, judge_dir, encoder, device)
        results = report["metrics"]
        run.tracker.log(results, step=last)
        for name, (images, captions) in report["grids"].items():
            grid = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
            run.tracker.log_image(f"eval/{name}/samples", grid, step=last,
                                  caption=" | ".join(captions[:4]))
        run.tracker.summary(results)
        results = {**results, "details": {"judge": report["judge"], "steps": stages,
                                          "n": cfg.eval.n, "encoder": cfg.data.encoder}}
    else:
        results = {"details": {"steps": stages, "note": "no judge metrics for this dataset "
                               "(eval.enabled is false or the data is not SynthBirds)"}}
    if run.runtime.is_main:
        atomic_write_json(run.dir / "eval.json", results)  # written last: marks the run done
    return results


if __name__ == "__main__":
    main()
