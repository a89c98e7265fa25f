"""Image–condition contrastive critic (XMC-GAN, Zhang et al. 2021, "Cross-Modal Contrastive
Learning for Text-to-Image Generation", §3.2 eq. 2 and §3.3 eqs. 5–6).

A matching-aware GAN loss (Reed et al. 2016) tells D one wrong condition per image; an
InfoNCE loss over the batch tells it B − 1 at once: for image i, its own condition c_i must
score higher than every other condition c_j of the batch,

    L(x, c) = −1/B Σ_i log softmax_j( cos(f(x_i), g(c_j)) / τ )_i        (eq. 2)

with f a projection of D's pooled image features and g a projection of the condition.
D minimises it on real images (its encoders learn what "matching" means); G minimises it on
its fakes through D's frozen encoders (eq. 6: the fakes must be recognisable as *their*
caption among the batch's). τ = 0.1 as in the paper.

Rows with an identical condition (the same caption drawn twice in a batch) are not counted
as negatives of each other.

:class:`WordRegionCritic` is the word-level version (XMC-GAN §3.2, "region-word"; the
attention and its aggregation are AttnGAN's DAMSM, Xu et al. 2018, §3.3 eqs. 9–11): every
word of caption j attends over the regions of image i, and the pair's score says how well
the attended regions match the words — so "red" next to "crown" can be checked where the
crown is, which a pooled image vector cannot do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.nn.blocks import mlp
from common.nn.standardize import Standardize

__all__ = ["ContrastiveCritic", "WordRegionCritic", "contrastive_loss"]


class ContrastiveCritic(nn.Module):
    """(features Tensor[B, C, h, w] or [B, C], cond Tensor[B, E]) → logits Tensor[B, B].

    logits[i, j] = cos(W_x mean_hw(features_i), W_c s(cond_j)) / τ, with s a fixed
    standardisation of the condition (identity until fitted, :mod:`common.nn.standardize`).
    """

    def __init__(self, feat_ch: int, cond_dim: int, dim: int = 128, tau: float = 0.1) -> None:
        super().__init__()
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.tau = tau
        self.norm = Standardize(cond_dim)
        self.image = nn.Linear(feat_ch, dim)
        self.cond = mlp(cond_dim, dim, dim, depth=1, act="lrelu")

    def forward(self, features: Tensor, cond: Tensor) -> Tensor:
        features = features.float()  # autocast may hand over bf16 features
        if features.dim() == 4:
            features = features.mean(dim=(2, 3))
        if features.dim() != 2 or cond.dim() != 2 or len(features) != len(cond):
            raise ValueError(
                "ContrastiveCritic needs features [B, C, h, w] or [B, C] and cond [B, E] with "
                f"the same B; got {tuple(features.shape)} and {tuple(cond.shape)}"
            )
        return self.embed_image(features) @ self.embed_cond(cond).t() / self.tau

    def embed_image(self, features: Tensor) -> Tensor:
        """Unit vectors Tensor[B, dim] of pooled features Tensor[B, C] (the logits' rows)."""
        return F.normalize(self.image(features.float()), dim=-1)

    def embed_cond(self, cond: Tensor) -> Tensor:
        """Unit vectors Tensor[B, dim] of conditions Tensor[B, E] (the logits' columns)."""
        return F.normalize(self.cond(self.norm(cond.float())), dim=-1)


class WordRegionCritic(nn.Module):
    """(features Tensor[B, C, h, w], words Tensor[B, T, E], mask Tensor[B, T]) → logits [B, B].

    Regions r = W_r features (the h·w positions), words w = g(LN(words)); for image i and
    caption j, word t's region context is c_ijt = Σ_r softmax_r(ρ1 cos(w_jt, r_ir)) r_ir
    (DAMSM eq. 9) and the pair scores S_ij = log(Σ_t exp(ρ2 cos(c_ijt, w_jt)))^(1/ρ2) over
    caption j's real words (eq. 11); logits[i, j] = S_ij / τ for :func:`contrastive_loss`.
    ``mask`` marks real words (padding False); a caption needs at least one.
    """

    def __init__(self, feat_ch: int, word_dim: int, dim: int = 128, tau: float = 0.1,
                 sharpness: float = 4.0, aggregation: float = 5.0) -> None:
        super().__init__()
        if tau <= 0 or sharpness <= 0 or aggregation <= 0:
            raise ValueError(f"tau, sharpness and aggregation must be > 0, got {tau}, "
                             f"{sharpness}, {aggregation}")
        self.tau, self.sharpness, self.aggregation = tau, sharpness, aggregation
        self.region = nn.Conv2d(feat_ch, dim, 1)
        self.norm = nn.LayerNorm(word_dim, elementwise_affine=False)
        self.word = mlp(word_dim, dim, dim, depth=1, act="lrelu")

    def forward(self, features: Tensor, words: Tensor, mask: Tensor) -> Tensor:
        if features.dim() != 4 or words.dim() != 3 or mask.shape != words.shape[:2] \
                or len(features) != len(words):
            raise ValueError(
                "WordRegionCritic needs features [B, C, h, w], words [B, T, E] and mask "
                f"[B, T] with the same B; got {tuple(features.shape)}, {tuple(words.shape)} "
                f"and {tuple(mask.shape)}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("WordRegionCritic: a caption has no real word (mask all False)")
        regions = F.normalize(self.region(features.float()).flatten(2), dim=1)  # (B, d, R)
        w = F.normalize(self.word(self.norm(words.float())), dim=-1)  # (B, T, d)
        sim = torch.einsum("jtd,idr->ijtr", w, regions)  # (image i, caption j, word t, region r)
        attn = torch.softmax(self.sharpness * sim, dim=-1)
        context = F.normalize(torch.einsum("ijtr,idr->ijtd", attn, regions), dim=-1)
        match = (context * w[None]).sum(-1)  # cos(c_ijt, w_jt): (B, B, T)
        match = match.masked_fill(~mask[None], float("-inf"))
        score = torch.logsumexp(self.aggregation * match, dim=-1) / self.aggregation
        return score / self.tau


def contrastive_loss(logits: Tensor, cond: Tensor | None = None,
                     extra: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """InfoNCE of image i against the batch's conditions (eq. 2): cross-entropy with target i.

    logits: Tensor[B, B] from :class:`ContrastiveCritic`; cond: the Tensor[B, E] conditions,
    given to drop duplicates (j ≠ i with cond_j == cond_i) from the negatives.

    extra: more negatives for every image, ``(logits Tensor[B, K], conditions Tensor[K, E],
    valid bool Tensor[K])`` — e.g. each caption's colour swap (NegCLIP's hard negatives,
    Yuksekgonul et al. 2023, §4); an invalid one, or one equal to image i's own condition,
    is dropped for that image.
    """
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(f"logits must be [B, B], got {tuple(logits.shape)}")
    b = logits.shape[0]
    if cond is not None:
        same = (cond[:, None, :] == cond[None, :, :]).all(dim=-1)
        same &= ~torch.eye(b, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same, float("-inf"))
    if extra is not None:
        more, more_cond, valid = extra
        k = len(more_cond)
        if more.shape != (b, k) or valid.shape != (k,):
            raise ValueError(f"extra negatives must be logits [{b}, K], conditions [K, E] and "
                             f"valid [K], got {tuple(more.shape)}, {tuple(more_cond.shape)}, "
                             f"{tuple(valid.shape)}")
        drop = ~valid[None, :].expand(b, -1)
        if cond is not None:
            drop = drop | (cond[:, None, :] == more_cond[None, :, :]).all(dim=-1)
        logits = torch.cat([logits, more.to(logits.dtype).masked_fill(drop, float("-inf"))], 1)
    return F.cross_entropy(logits, torch.arange(b, device=logits.device))
