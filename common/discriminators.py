"""Conditional discriminator = backbone + condition head.

A *backbone* (track-specific) maps x to features Tensor[B, C, h, w] (or Tensor[B, C], read as
[B, C, 1, 1]). A *head* (written once, here) turns (features, cond) into logits. The
condition ``cond`` is one of:

- ``None``                   unconditional (e.g. CycleGAN's per-domain critics);
- ``Tensor[B, E]``           a vector (sentence embedding, speaker embedding, one-hot class),
                             tiled over the h×w feature grid;
- ``Tensor[B, E, H, W]``     an aligned map (noisy spectrogram, pix2pix input), resized to h×w.

Map resizing rule: ``area`` (average pooling) when the map shrinks in both directions, since
it keeps every input value's contribution; ``nearest`` otherwise, since upsampling a
condition should not invent interpolated values. A map with the same size is passed as is.

Every head returns :class:`DOut`; which fields are filled tells the losses which terms apply.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from einops.layers.torch import Rearrange
from torch import Tensor, nn

from common.nn.blocks import maybe_spectral_norm
from common.nn.standardize import Standardize

HEAD_KINDS = ("combined", "split", "projection", "none")


@dataclass
class DOut:
    """Discriminator output. Each field is Tensor[B, P] logits or None (P = patches, 1 = global).

    realism: "is it real", from image features alone (split head, unconditional head)
    match:   "does it match the condition" (split head)
    joint:   "real AND matching" (combined head, projection head)
    """

    realism: Tensor | None = None
    match: Tensor | None = None
    joint: Tensor | None = None


def _as_map(features: Tensor) -> Tensor:
    """Tensor[B, C] or Tensor[B, C, h, w] → Tensor[B, C, h, w]."""
    if features.dim() == 2:
        return rearrange(features, "b c -> b c 1 1")
    if features.dim() != 4:
        raise ValueError(f"features must be [B, C] or [B, C, h, w], got {tuple(features.shape)}")
    return features


def condition_map(cond: Tensor, size: tuple[int, int]) -> Tensor:
    """Bring a condition to the feature grid: Tensor[B, E] or Tensor[B, E, H, W] → [B, E, h, w].

    Vectors are tiled; maps are resized (``area`` when shrinking in both directions,
    ``nearest`` otherwise — see the module docstring).
    """
    h, w = size
    if cond.dim() == 2:
        return repeat(cond, "b e -> b e h w", h=h, w=w)
    if cond.dim() != 4:
        raise ValueError(f"cond must be [B, E] or [B, E, H, W], got {tuple(cond.shape)}")
    H, W = cond.shape[-2:]
    if (H, W) == (h, w):
        return cond
    mode = "area" if (h <= H and w <= W) else "nearest"
    return F.interpolate(cond, size=(h, w), mode=mode)


class _Head(nn.Module):
    """Shared plumbing: the final scoring conv and condition compression.

    Args (common to all heads):
        feat_ch:  C, channels of the backbone features.
        cond_dim: E, width of the condition (0 → unconditional).
        cond_ch:  width of the compressed condition code (StackGAN uses 128).
        hidden:   width of the fused hidden layer (combined / split).
        patch:    True → one logit per feature position via 1x1 convs, P = h·w;
                  False → one global logit via a conv whose kernel covers the whole
                  feature map (like StackGAN's final 4x4 conv), P = 1.
        spatial:  (h, w) of the features; required to build the global conv when patch=False.
        spectral: spectral norm on every conv / linear of the head (Miyato et al. 2018).
    """

    needs_cond = True  # conditional heads refuse cond_dim=0 and cond=None
    fixed_spatial = True  # the global score conv has a kernel of size ``spatial``

    def __init__(
        self,
        feat_ch: int,
        cond_dim: int = 0,
        *,
        cond_ch: int = 128,
        hidden: int = 256,
        patch: bool = False,
        spatial: tuple[int, int] = (1, 1),
        spectral: bool = False,
    ) -> None:
        super().__init__()
        if self.needs_cond and cond_dim <= 0:
            raise ValueError(
                f"{type(self).__name__} scores the condition and needs cond_dim > 0, "
                f"got cond_dim={cond_dim}; use UnconditionalHead (kind 'none') without a condition"
            )
        self.feat_ch = feat_ch
        self.cond_dim = cond_dim
        self.cond_ch = cond_ch
        self.hidden = hidden
        self.patch = patch
        self.spatial = tuple(spatial)
        self.spectral = spectral

    def _score(self, in_ch: int) -> nn.Module:
        """Final layer to one logit: per position (patch) or over the whole map (global).

        Written as Linear layers on channel-last tensors: a 1x1 conv is a Linear over
        channels and StackGAN's full-map final conv is a Linear over (h w c). Same maths,
        several times faster on CPU, especially under the double backward of a gradient
        penalty.
        """
        if self.patch:
            return maybe_spectral_norm(nn.Linear(in_ch, 1), self.spectral)
        h, w = self.spatial
        return nn.Sequential(
            Rearrange("b h w c -> b 1 1 (h w c)"),
            maybe_spectral_norm(nn.Linear(h * w * in_ch, 1), self.spectral),
        )

    def _compressor(self) -> nn.Module:
        """Linear E → cond_ch, applied per position (a 1x1 conv on maps)."""
        return maybe_spectral_norm(nn.Linear(self.cond_dim, self.cond_ch), self.spectral)

    def _check(self, features: Tensor, cond: Tensor | None) -> Tensor:
        f = _as_map(features)
        if f.shape[1] != self.feat_ch:
            raise ValueError(f"expected {self.feat_ch} feature channels, got {tuple(f.shape)}")
        if self.fixed_spatial and not self.patch and tuple(f.shape[-2:]) != self.spatial:
            raise ValueError(
                f"global head was built for features of spatial size {self.spatial}, got "
                f"{tuple(f.shape[-2:])}; pass spatial=<backbone output size> or patch=True"
            )
        if self.needs_cond:
            if cond is None:
                raise ValueError(f"{type(self).__name__} needs a condition, got cond=None")
            if cond.shape[0] != f.shape[0] or cond.shape[1] != self.cond_dim:
                expected = f"[B={f.shape[0]}, E={self.cond_dim}, ...]"
                raise ValueError(f"cond must be {expected}, got {tuple(cond.shape)}")
        return f

    def _code(self, compress: nn.Module, cond: Tensor, size: tuple[int, int]) -> Tensor:
        """cond → Tensor[B, h, w, cond_ch] (channel-last): resize / tile, Linear + LeakyReLU."""
        c = rearrange(condition_map(cond, size), "b e h w -> b h w e")
        return F.leaky_relu(compress(c), 0.2)

    @staticmethod
    def _flat(logits: Tensor) -> Tensor:
        return rearrange(logits, "b h w 1 -> b (h w)")  # (B, P)


class _ChannelLastBN(nn.BatchNorm1d):
    """BatchNorm over the last (channel) axis of Tensor[B, h, w, C] (= BatchNorm2d)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view_as(x)


def _fuse(in_ch: int, hidden: int, norm: str | None, spectral: bool) -> nn.Sequential:
    """1x1 conv (a per-position Linear) → optional batch norm → LeakyReLU(0.2): where image
    and condition interact. Works on channel-last Tensor[B, h, w, C]."""
    if norm not in (None, "bn"):
        raise ValueError(f"head norm must be None or 'bn', got {norm!r}")
    linear = maybe_spectral_norm(nn.Linear(in_ch, hidden, bias=norm is None), spectral)
    bn = _ChannelLastBN(hidden) if norm == "bn" else nn.Identity()
    return nn.Sequential(linear, bn, nn.LeakyReLU(0.2))


def _channel_last(f: Tensor) -> Tensor:
    return rearrange(f, "b c h w -> b h w c")


class UnconditionalHead(_Head):
    """realism = score(features). ``cond`` is accepted and ignored, so a conditional track can
    ablate the "none" head with the same call ``D(x, cond)``. cond_ch / hidden are unused."""

    needs_cond = False

    def __init__(self, feat_ch: int, cond_dim: int = 0, **kwargs) -> None:
        super().__init__(feat_ch, cond_dim, **kwargs)
        self.score = self._score(feat_ch)

    def forward(self, features: Tensor, cond: Tensor | None = None) -> DOut:
        """features: Tensor[B, C, h, w] → DOut(realism=Tensor[B, P])."""
        f = _channel_last(self._check(features, None))
        return DOut(realism=self._flat(self.score(f)))


class CombinedHead(_Head):
    """One "real AND matching" score (Reed et al. 2016 GAN-CLS; StackGAN's D).

    joint = score(fuse(concat(features, code(cond)))), where code is Linear → LeakyReLU of
    the tiled / resized condition and fuse is 1x1 conv → [BN] → LeakyReLU to ``hidden``.
    """

    def __init__(self, feat_ch: int, cond_dim: int, *, norm: str | None = None, **kwargs) -> None:
        super().__init__(feat_ch, cond_dim, **kwargs)
        self.compress = self._compressor()
        self.fuse = _fuse(feat_ch + self.cond_ch, self.hidden, norm, self.spectral)
        self.score = self._score(self.hidden)

    def forward(self, features: Tensor, cond: Tensor) -> DOut:
        """features: Tensor[B, C, h, w]; cond: Tensor[B, E] or [B, E, H, W] → DOut(joint=[B, P])."""
        f = self._check(features, cond)
        code = self._code(self.compress, cond, f.shape[-2:])  # (B, h, w, cond_ch)
        joint = self.score(self.fuse(torch.cat([_channel_last(f), code], dim=-1)))
        return DOut(joint=self._flat(joint))


class SplitHead(_Head):
    """Separate realism and match scores from one backbone (the lecture notes' design (b);
    cf. StackGAN++ conditional + unconditional losses, Zhang et al. 2018, §3.2).

    realism = score_r(features)                       — never sees the condition
    code    = LeakyReLU(1x1 conv(features)) → hidden  — what the image "says"
    match   = score_m(fuse(concat(code, code(cond))))

    The fuse layer (1x1 conv → [BN] → LeakyReLU) is needed: a single linear score of a
    concatenation is a sum of an image term and a condition term, which cannot tell
    whether the two agree.
    """

    def __init__(self, feat_ch: int, cond_dim: int, *, norm: str | None = None, **kwargs) -> None:
        super().__init__(feat_ch, cond_dim, **kwargs)
        self.score_realism = self._score(feat_ch)
        linear = maybe_spectral_norm(nn.Linear(feat_ch, self.hidden), self.spectral)
        self.image_code = nn.Sequential(linear, nn.LeakyReLU(0.2))  # a 1x1 conv, channel-last
        self.compress = self._compressor()
        self.fuse = _fuse(self.hidden + self.cond_ch, self.hidden, norm, self.spectral)
        self.score_match = self._score(self.hidden)

    def forward(self, features: Tensor, cond: Tensor) -> DOut:
        """features: Tensor[B, C, h, w]; cond: Tensor[B, E] or [B, E, H, W]
        → DOut(realism=[B, P], match=[B, P])."""
        f = self._check(features, cond)
        code = self._code(self.compress, cond, f.shape[-2:])  # (B, h, w, cond_ch)
        f = _channel_last(f)
        realism = self.score_realism(f)
        match = self.score_match(self.fuse(torch.cat([self.image_code(f), code], dim=-1)))
        return DOut(realism=self._flat(realism), match=self._flat(match))


class ProjectionHead(_Head):
    """Projection discriminator (Miyato & Koyama 2018, eq. 3): joint = ψ(φ(x)) + ⟨V y, φ(x)⟩.

    φ(x) are the backbone features (the backbone should end in its activation, as in the
    paper's ReLU before pooling). V = Linear(E → C, no bias), the paper's embedding matrix
    when y is one-hot, and a linear projection for continuous conditions.

    - global (patch=False): φ = Σ over positions (sum pooling, as in the paper); a map
      condition is projected per position and summed: Σ_p ⟨V y_p, φ_p⟩. ``spatial`` is
      ignored, since sum pooling works for any feature size.
    - patch: per position, ψ(φ_p) + ⟨V y_p, φ_p⟩.

    cond_ch / hidden are unused.
    """

    fixed_spatial = False

    def __init__(self, feat_ch: int, cond_dim: int, **kwargs) -> None:
        super().__init__(feat_ch, cond_dim, **kwargs)
        self.psi = maybe_spectral_norm(nn.Linear(feat_ch, 1), self.spectral)
        self.embed = maybe_spectral_norm(nn.Linear(cond_dim, feat_ch, bias=False), self.spectral)

    def forward(self, features: Tensor, cond: Tensor) -> DOut:
        """features: Tensor[B, C, h, w]; cond: Tensor[B, E] or [B, E, H, W] → DOut(joint=[B, P])."""
        f = self._check(features, cond)
        phi = rearrange(f, "b c h w -> b (h w) c")
        y = rearrange(condition_map(cond, f.shape[-2:]), "b e h w -> b (h w) e")
        proj = (self.embed(y) * phi).sum(dim=-1)  # (B, h*w): ⟨V y_p, φ_p⟩
        if self.patch:
            joint = self.psi(phi).squeeze(-1) + proj  # (B, h*w)
        else:
            joint = self.psi(phi.sum(dim=1)) + proj.sum(dim=1, keepdim=True)  # (B, 1)
        return DOut(joint=joint)

    def pairwise(self, features: Tensor, cond: Tensor) -> Tensor:
        """The projection term for every (image i, condition j) of a batch: Tensor[B, B] of
        ⟨V y_j, Σ_p φ_ip⟩ (the global joint logit of pair (i, j) minus ψ(φ_i), which is the
        same along row i). A softmax over j of these scores is a contrastive loss on the
        head's own matching term (ContraGAN's conditional contrastive idea, Kang & Park
        2020, with XMC-GAN's image–text InfoNCE, Zhang et al. 2021 eq. 2); in patch mode
        it is the sum of the per-position terms. cond: Tensor[B, E] (vector conditions)."""
        f = self._check(features, cond)
        if cond.dim() != 2:
            raise ValueError("pairwise scores need vector conditions [B, E], got "
                             f"{tuple(cond.shape)}")
        pooled = f.sum(dim=(2, 3))  # (B, C)
        return pooled @ self.embed(cond).t()


def make_head(
    kind: str,
    feat_ch: int,
    cond_dim: int,
    *,
    cond_ch: int = 128,
    hidden: int = 256,
    patch: bool = False,
    spatial: tuple[int, int] = (1, 1),
    spectral: bool = False,
    norm: str | None = None,
) -> nn.Module:
    """Build a head by name: ``kind`` in ("combined", "split", "projection", "none").

    ``norm`` (None | "bn") applies to the fuse layer of combined / split heads only; setting
    it for another kind raises rather than being silently ignored.
    """
    shared = dict(cond_ch=cond_ch, hidden=hidden, patch=patch, spatial=spatial, spectral=spectral)
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {kind!r}; valid kinds: {', '.join(HEAD_KINDS)}")
    if kind != "none" and cond_dim <= 0:
        raise ValueError(
            f"head kind {kind!r} is conditional and needs cond_dim > 0, got cond_dim={cond_dim}; "
            "use kind='none' for an unconditional discriminator"
        )
    if norm is not None and kind not in ("combined", "split"):
        raise ValueError(
            f"norm={norm!r} applies to 'combined' and 'split' heads only, not {kind!r}"
        )
    if kind == "combined":
        return CombinedHead(feat_ch, cond_dim, norm=norm, **shared)
    if kind == "split":
        return SplitHead(feat_ch, cond_dim, norm=norm, **shared)
    if kind == "projection":
        return ProjectionHead(feat_ch, cond_dim, **shared)
    return UnconditionalHead(feat_ch, cond_dim, **shared)


class StandardizedHead(nn.Module):
    """``head(features, Standardize(cond))``: any head behind a fixed condition
    standardisation (:mod:`common.nn.standardize`; statistics set by ``fit_standardizers``).
    Same call and output as the wrapped head."""

    def __init__(self, head: nn.Module, cond_dim: int) -> None:
        super().__init__()
        self.head = head
        self.norm = Standardize(cond_dim)

    def forward(self, features: Tensor, cond: Tensor | None = None) -> DOut:
        return self.head(features, None if cond is None else self.norm(cond))

    def pairwise(self, features: Tensor, cond: Tensor) -> Tensor:
        """The wrapped head's pairwise scores (:meth:`ProjectionHead.pairwise`)."""
        if not hasattr(self.head, "pairwise"):
            raise ValueError(f"{type(self.head).__name__} has no pairwise scores (projection only)")
        return self.head.pairwise(features, self.norm(cond))


class ConditionalDiscriminator(nn.Module):
    """D(x, cond) = head(backbone(x), cond) → DOut.

    backbone: Tensor[B, ...] → Tensor[B, C, h, w] or Tensor[B, C].
    head:     any head from this module (or one with the same (features, cond) → DOut call).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor, cond: Tensor | None = None) -> DOut:
        """x: Tensor[B, ...]; cond: None, Tensor[B, E] or Tensor[B, E, H, W] → DOut of [B, P]."""
        if cond is not None and cond.shape[0] != x.shape[0]:
            raise ValueError(
                f"batch size of cond ({cond.shape[0]}) differs from x ({x.shape[0]}): "
                f"x {tuple(x.shape)}, cond {tuple(cond.shape)}"
            )
        return self.head(self.backbone(x), cond)
