"""A frozen image–caption matcher that G learns to satisfy (AttnGAN's DAMSM idea).

AttnGAN (Xu et al. 2018, §3.3) pre-trains an image encoder and a text encoder so that each
image scores its own caption above the other captions of a batch (the sentence-level DAMSM
terms, eqs. 10–13), freezes them, and adds their loss on G's images to G's objective with a
weight λ (eq. 3, λ = 5 on CUB). Unlike D and D's contrastive critics, the matcher does not
co-adapt with G: it is trained once, to convergence, on real (image, caption) pairs only,
so what it checks — here every colour the captions name — is learnt from real birds, not
from what G draws so far.

Here the text side is the same frozen sentence embedding the GAN is conditioned on; the
matcher learns a small image CNN plus a projection of that embedding (the score is
:class:`common.nn.ContrastiveCritic`'s cosine / τ over avg+max pooled CNN features) with the
symmetric in-batch InfoNCE (DAMSM's L_1^s + L_2^s). It sees every stage resolution (each
training batch mixes them in equal parts, resized to one input size), so one matcher
serves both stages. No attribute labels are used: only images and their captions.

    python -m text2img.matcher --config configs/text2img/cpu.yaml   # train or load; AUC table

Trained matchers are cached under ``$CGAN_CACHE/matcher/<key>/``; the key hashes the
training corpus (its images and embedded captions: ``Corpus.key``), the resolutions and
the matcher config. Training takes a few minutes on one core and happens on first use.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.config import to_dict
from common.io import atomic_path, atomic_write_json
from common.nn import ContrastiveCritic, contrastive_loss, down_block, fit_standardizers
from common.paths import cache_dir, short_hash
from common.training import warmup_cosine

__all__ = ["ImageTextMatcher", "MatcherConfig", "attribute_auc", "load_or_train_matcher",
           "main", "matcher_key", "retrieval_accuracy", "stage_matchers", "symmetric_nce",
           "train_matcher"]

MATCHER_VERSION = 1  # bump when the network or the training recipe changes
_LATER_OPTIONS = ("swap_negatives",)  # MatcherConfig fields newer than version 1, default off

# () → (float Tensor[N, C, E], bool Tensor[N, C]): the corpus's colour-swapped captions
# embedded, and which captions have one (text2img.negatives.swapped_embeddings); called
# only when a matcher with swap_negatives has to be trained
Negatives = Callable[[], tuple[Tensor, Tensor]]


@dataclass
class MatcherConfig:
    widths: list[int] = field(default_factory=lambda: [32, 64, 128, 192])  # stride-2 stages
    dim: int = 128  # joint embedding size
    tau: float = 0.1  # DAMSM's γ3 = 10
    size: int = 64  # every image is resized to this before the CNN
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    noise: float = 0.05  # max std of additive pixel noise (robustness to generated images)
    holdout: int = 256  # training images kept out to report retrieval accuracy
    seed: int = 0
    # false: one matcher for both stages, trained on their resolutions mixed; true: each
    # stage its own, trained on its resolution only. Mixed with 32-px copies, where the wing
    # pattern is invisible, the matcher does not learn the pattern (AUC 0.51 at 64 px); on
    # 64 px alone it does (0.83).
    per_stage: bool = False
    # the stages whose G is scored by the matcher (loss.matcher); the others train without it
    stages: list[int] = field(default_factory=lambda: [1, 2])
    # > 0: G's images larger than this are area-downsampled to it before the matcher scores
    # them (g/matcher only; 0: as generated). 32 at the cpu preset's Stage II hides the wing
    # pattern from the matcher; it did not steady the Stage-II pattern (text2img/README)
    view: int = 0
    # true: every caption's colour swap (text2img/negatives.py) is an extra negative of the
    # image → caption term (NegCLIP, Yuksekgonul et al. 2023, §4), so the matcher learns
    # which part each colour is on, not only which colours are in the picture
    swap_negatives: bool = False


class ImageTextMatcher(nn.Module):
    """(images Tensor[B, 3, R, R] in [-1, 1], cond Tensor[B, E]) → logits Tensor[B, B]
    (cosine of image i and caption j over τ)."""

    def __init__(self, cfg: MatcherConfig, embed_dim: int) -> None:
        super().__init__()
        chans = [3, *cfg.widths]
        self.size = cfg.size
        self.cnn = nn.Sequential(*[down_block(a, b, norm="bn")
                                   for a, b in zip(chans[:-1], chans[1:], strict=True)])
        # avg + max pooling: max keeps small parts (beak, crown) a mean over the map dilutes
        self.critic = ContrastiveCritic(2 * cfg.widths[-1], embed_dim, cfg.dim, cfg.tau)

    def image_features(self, images: Tensor) -> Tensor:
        x = images.float()
        if x.shape[-1] < self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        elif x.shape[-1] > self.size:
            x = F.interpolate(x, size=self.size, mode="area")
        h = self.cnn(x)
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, images: Tensor, cond: Tensor) -> Tensor:
        return self.critic(self.image_features(images), cond)


def symmetric_nce(logits: Tensor, cond: Tensor, swap_logits: Tensor | None = None,
                  swap_cond: Tensor | None = None, swap_ok: Tensor | None = None) -> Tensor:
    """DAMSM's sentence loss L_1^s + L_2^s (eqs. 12–13), halved: images pick their caption
    among the batch's and captions their image; duplicate captions are not negatives.

    With ``swap_logits`` (Tensor[B, B]: image i against caption j's colour swap
    ``swap_cond[j]``, which exists where ``swap_ok[j]``) the swaps are extra negatives of
    the image → caption term (NegCLIP, Yuksekgonul et al. 2023, §4); a swap identical to
    image i's own caption is not one."""
    extra = None
    if swap_logits is not None:
        if swap_cond is None or swap_ok is None:
            raise ValueError("swap_logits needs swap_cond and swap_ok")
        extra = (swap_logits, swap_cond, swap_ok)
    return 0.5 * (contrastive_loss(logits, cond, extra) + contrastive_loss(logits.t(), cond))


def matcher_key(cfg: MatcherConfig, corpus_key: str, sizes: list[int]) -> str:
    """Cache key: the corpus, the resolutions trained on and what shapes the weights.

    Options added after version 1 enter the key only when switched on, so matchers cached
    before they existed keep their keys."""
    shaping = {k: v for k, v in to_dict(cfg).items() if k not in ("per_stage", "stages", "view")}
    for key in _LATER_OPTIONS:
        if not shaping[key]:
            del shaping[key]
    return short_hash({"version": MATCHER_VERSION, "corpus": corpus_key, "sizes": sorted(sizes),
                       "config": shaping})


def stage_matchers(cfg: MatcherConfig, images: dict[int, Tensor], emb: Tensor,
                   corpus_key: str, progress: bool = True,
                   scored: list[int] | None = None, negatives: Negatives | None = None,
                   ) -> dict[int, ImageTextMatcher]:
    """Resolution → the matcher that scores it, for the resolutions in ``scored`` (default:
    all of ``images``): one for all (``cfg.per_stage`` false, trained on every resolution
    of ``images``) or one per resolution, each loaded or trained by
    :func:`load_or_train_matcher` (``negatives`` as there)."""
    scored = sorted(images) if scored is None else sorted(scored)
    groups = [[r] for r in scored] if cfg.per_stage else [sorted(images)]
    out = {}
    for group in groups:
        matcher = load_or_train_matcher(cfg, {r: images[r] for r in group}, emb, corpus_key,
                                        progress=progress, negatives=negatives)
        out.update({r: matcher for r in group if r in scored})
    return out


def _batch(images: dict[int, Tensor], emb: Tensor, idx: Tensor, sizes: list[int],
           cfg: MatcherConfig, gen: torch.Generator) -> tuple[list[Tensor], Tensor]:
    """A training batch: equal parts at each resolution, random flips; and which caption of
    each image (Tensor[B] of caption indices)."""
    parts = []
    for r, chunk in zip(sizes, idx.tensor_split(len(sizes)), strict=True):
        x = images[r][chunk].float().div_(127.5).sub_(1.0)
        flip = torch.rand(len(x), generator=gen) < 0.5
        x[flip] = x[flip].flip(-1)
        if cfg.noise > 0:
            sigma = torch.rand(len(x), 1, 1, 1, generator=gen) * cfg.noise
            x = x + sigma * torch.randn(x.shape, generator=gen)
        parts.append(x)
    return parts, torch.randint(emb.shape[1], (len(idx),), generator=gen)


@torch.no_grad()
def retrieval_accuracy(matcher: ImageTextMatcher, images: Tensor, emb: Tensor,
                       batch: int = 64) -> float:
    """Share of images whose own (first) caption scores highest among ``batch`` captions."""
    matcher.eval()
    hits, total = 0, 0
    for s in range(0, len(images) - batch + 1, batch):
        x = images[s:s + batch].float().div(127.5).sub(1.0)
        cond = emb[s:s + batch, 0]
        logits = matcher(x, cond)
        hits += int((logits.argmax(1) == torch.arange(len(x))).sum())
        total += len(x)
    return hits / max(total, 1)


def train_matcher(cfg: MatcherConfig, images: dict[int, Tensor], emb: Tensor,
                  progress: bool = True, negatives: tuple[Tensor, Tensor] | None = None,
                  ) -> tuple[ImageTextMatcher, dict[str, Any]]:
    """Train on ``images`` (resolution → uint8 Tensor[N, 3, R, R]) and their captions'
    embeddings ``emb`` (Tensor[N, C, E]); the last ``cfg.holdout`` images are kept out and
    scored (image → caption retrieval among 64) at every resolution. ``cfg.swap_negatives``
    needs ``negatives``: the captions' colour swaps embedded (Tensor[N, C, E]) and which
    captions have one (bool Tensor[N, C]); they are then also scored on the held-out images
    (how often an image prefers its caption to the swap)."""
    n = len(emb)
    if cfg.holdout >= n - cfg.batch_size:
        raise ValueError(f"matcher: {n} images leave too few for training after holding out "
                         f"{cfg.holdout} (batch {cfg.batch_size})")
    if cfg.swap_negatives and negatives is None:
        raise ValueError("matcher.swap_negatives needs the captions' colour swaps (negatives)")
    if negatives is not None and (negatives[0].shape != emb.shape
                                  or negatives[1].shape != emb.shape[:2]):
        raise ValueError(f"negatives must be Tensor{list(emb.shape)} and bool "
                         f"Tensor{list(emb.shape[:2])}, got {list(negatives[0].shape)} and "
                         f"{list(negatives[1].shape)}")
    sizes = sorted(images)
    torch.manual_seed(cfg.seed)
    matcher = ImageTextMatcher(cfg, emb.shape[-1])
    train_n = n - cfg.holdout
    fit_standardizers(matcher, emb[:train_n].flatten(0, 1).float())
    opt = torch.optim.AdamW(matcher.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, partial(warmup_cosine, steps=cfg.steps, warmup=min(100, cfg.steps // 10)))
    gen = torch.Generator().manual_seed(cfg.seed)
    from tqdm import tqdm

    matcher.train()
    bar = tqdm(range(cfg.steps), desc="matcher", unit="step", disable=not progress,
               file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    loss = torch.zeros(())
    for _ in bar:
        idx = torch.randperm(train_n, generator=gen)[:cfg.batch_size]
        parts, cap = _batch(images, emb, idx, sizes, cfg, gen)
        cond = emb[idx, cap]
        feats = torch.cat([matcher.image_features(x) for x in parts])
        if cfg.swap_negatives:
            assert negatives is not None
            swap, ok = negatives[0][idx, cap], negatives[1][idx, cap]
            loss = symmetric_nce(matcher.critic(feats, cond), cond, matcher.critic(feats, swap),
                                 swap, ok)
        else:
            loss = symmetric_nce(matcher.critic(feats, cond), cond)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    matcher.eval().requires_grad_(False)
    held = {str(r): retrieval_accuracy(matcher, images[r][train_n:], emb[train_n:])
            for r in sizes}
    stats = {"final_loss": loss.item(), "heldout_r1_of_64": held}
    if negatives is not None:
        stats["heldout_over_swap"] = {
            str(r): swap_preference(matcher, images[r][train_n:], emb[train_n:, 0],
                                    negatives[0][train_n:, 0], negatives[1][train_n:, 0])
            for r in sizes}
    return matcher, stats


@torch.no_grad()
def swap_preference(matcher: ImageTextMatcher, images: Tensor, emb: Tensor, swap: Tensor,
                    ok: Tensor) -> float:
    """Share of ``images`` (uint8 Tensor[N, 3, R, R]) that score their caption (``emb``,
    Tensor[N, E]) above its colour swap (``swap``), over those that have one (``ok``):
    0.5 = the matcher does not know which part each colour is on."""
    matcher.eval()
    keep = ok.nonzero().flatten()
    if not len(keep):
        return float("nan")
    critic, wins = matcher.critic, []
    for chunk in keep.split(256):
        img = critic.embed_image(matcher.image_features(images[chunk].float().div(127.5).sub(1.0)))
        own, swapped = (critic.embed_cond(e[chunk]) for e in (emb, swap))
        wins.append((img * own).sum(-1) > (img * swapped).sum(-1))
    return torch.cat(wins).float().mean().item()


def load_or_train_matcher(cfg: MatcherConfig, images: dict[int, Tensor], emb: Tensor,
                          corpus_key: str, progress: bool = True,
                          negatives: Negatives | None = None) -> ImageTextMatcher:
    """The cached matcher for this corpus and config, trained first if missing.

    ``corpus_key`` must identify the images and the embedded captions (``Corpus.key``);
    without one there is nothing to cache under, so it is an error. ``negatives`` gives the
    captions' colour swaps; it is called only when a ``cfg.swap_negatives`` matcher has to
    be trained.
    """
    from safetensors.torch import load_file, save_file

    if not corpus_key:
        raise ValueError("a matcher needs the corpus's key to be cached (Corpus.key is empty)")
    folder = cache_dir("matcher") / matcher_key(cfg, corpus_key, list(images))
    meta_path = folder / "matcher.json"
    if meta_path.is_file():
        matcher = ImageTextMatcher(cfg, emb.shape[-1])
        matcher.load_state_dict(load_file(str(folder / "matcher.safetensors")))
        matcher.eval().requires_grad_(False)
        matcher.meta = json.loads(meta_path.read_text())
        return matcher
    t0 = time.perf_counter()
    wanted = negatives() if cfg.swap_negatives and negatives is not None else None
    matcher, stats = train_matcher(cfg, images, emb, progress=progress, negatives=wanted)
    stats["train_seconds"] = round(time.perf_counter() - t0, 1)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "matcher.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in matcher.state_dict().items()}, str(tmp))
    meta = {"key": folder.name, "version": MATCHER_VERSION, "corpus": corpus_key,
            "sizes": sorted(images), "config": to_dict(cfg), **stats}
    atomic_write_json(meta_path, meta)  # written last: marks the folder complete
    if progress:
        print(f"matcher: held-out image→caption retrieval among 64: "
              f"{stats['heldout_r1_of_64']} ({folder})", file=sys.stderr)
    matcher.meta = meta
    return matcher



@torch.no_grad()
def attribute_auc(matcher: ImageTextMatcher, encoder: Any, images: Tensor,
                  attributes: Any) -> dict[str, float]:
    """How well the matcher tells each SynthBirds attribute: for every value's one-attribute
    caption (:data:`text2img.dprobe.PROMPTS`), the one-vs-rest ROC AUC of its cosine score
    over ``images`` (float [-1, 1], Tensor[N, 3, R, R]) against the true ``attributes``
    (int [N, 8]); mean over values. 0.5 = the matcher ignores the attribute."""
    from text2img.dprobe import prompt_aucs

    matcher.eval()
    critic = matcher.critic
    img = critic.embed_image(torch.cat([matcher.image_features(x) for x in images.split(200)]))

    def cosine(emb: Tensor) -> Tensor:  # (N, values)
        return img @ critic.embed_cond(emb).t()

    return {name: sum(per) / len(per)
            for name, per in prompt_aucs(encoder, attributes, cosine).items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train (or load) the matcher of a StackGAN config's corpus and print what it knows."""
    import numpy as np

    from common.config import parse_cli
    from text2img import train as t2i
    from text2img.encoders import get_encoder
    from text2img.negatives import swapped_embeddings

    inv = parse_cli(t2i.StackGANConfig, argv, prog="python -m text2img.matcher",
                    description=__doc__.split("\n\n")[0] + "\n\nTrains or loads the "
                    "matcher for the config's training corpus (the matcher.* keys) and "
                    "prints its held-out retrieval and, on SynthBirds, its per-attribute AUC.")
    cfg = inv.config
    torch.set_num_threads(cfg.runtime.threads or torch.get_num_threads())
    encoder = get_encoder(cfg.data.encoder)
    corpus = t2i.load_corpus(cfg, encoder)
    matchers = stage_matchers(cfg.matcher, corpus.images, corpus.embeddings, corpus.key,
                              negatives=t2i.corpus_swaps(corpus, encoder))
    result: dict[str, Any] = {"key": {r: m.meta["key"] for r, m in matchers.items()}}
    for r, m in matchers.items():
        print(f"{r} px: matcher {m.meta['key']}, held-out image→caption retrieval among 64 "
              f"{m.meta['heldout_r1_of_64']}")
    if cfg.data.dataset == "synthbirds":
        from text2img.data.synthbirds import SynthBirdsSpec, load_split

        spec = SynthBirdsSpec(cfg.data.synth_seed, cfg.data.synth_master, cfg.data.heldout_pairs)
        test = load_split(spec, "test", 2000)
        first = [caps[:1] for caps in test.captions]
        swap, ok = swapped_embeddings(first, encoder.encode)
        own = encoder.encode([c[0] for c in first])
        table = {}
        for r, matcher in sorted(matchers.items()):
            x = torch.from_numpy(np.ascontiguousarray(test.images_at(r))).permute(0, 3, 1, 2)
            table[r] = attribute_auc(matcher, encoder, x.float().div(127.5).sub(1.0),
                                     test.attributes)
            table[r]["over swap"] = swap_preference(matcher, x, own, swap[:, 0], ok[:, 0])
        names = list(next(iter(table.values())))
        print(f"\nOne-vs-rest AUC of each attribute's one-attribute captions, {len(test)} "
              "SynthBirds test renders; 'over swap': how often a render scores its first "
              f"caption above that caption's colour swap ({int(ok.sum())} of them):\n")
        mask = ok[:, 0]
        cosine = F.cosine_similarity(own[mask], swap[mask, 0], dim=-1).mean().item()
        print(f"(the encoder puts a caption and its colour swap at cosine {cosine:.3f} on "
              "average)\n")
        result["caption_swap_cosine"] = cosine
        print("| px | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for r, row in table.items():
            print(f"| {r} | " + " | ".join(f"{row[n]:.3f}" for n in names) + " |")
        result["auc"] = table
    return result


if __name__ == "__main__":
    main()
