"""Networks of the voice-conversion GANs over normalised WORLD coded spectral envelopes.

Features are ``Tensor[B, 1, D, N]``: D = ``feature.sp_dim`` coded-envelope dimensions
(normalised per speaker, see :mod:`speech.vc.features`) by N frames of 5 ms.

- :class:`Generator212` is CycleGAN-VC2's 2-1-2D gated CNN (Kaneko, Kameoka, Tanaka &
  Hojo 2019, "CycleGAN-VC2: improved CycleGAN-based non-parallel voice conversion",
  ICASSP, §3.2, Fig. 3): 2-D gated downsampling keeps the time-frequency structure, 1-D
  gated residual blocks do the conversion over time, 2-D pixel-shuffle upsampling brings
  the envelope back. Every gated unit is a GLU (Dauphin et al. 2017, eq. 1; CycleGAN-VC
  §3.1). With ``cond_dim > 0`` it is StarGAN-VC's G(x, c) (Kameoka, Kaneko, Tanaka & Hojo
  2018, "StarGAN-VC: non-parallel many-to-many voice conversion using star generative
  adversarial networks", SLT, §3 and Fig. 1): the target speaker's one-hot c is tiled
  and concatenated to the input of every decoder-side layer (the residual blocks and the
  upsampling layers), so one class serves both (``c_dim = 0`` is unconditional, STYLE.md 2).
- :class:`PatchBackbone` is CycleGAN-VC2's PatchGAN D trunk (§3.3, Fig. 4: gated 2-D
  convs, stride 2); the last layer is a ``common.discriminators`` head, unconditional
  (``c = None``) for CycleGAN-VC2's per-domain critics and speaker-conditioned
  (combined | split | projection, the one-hot tiled over the patch grid) for StarGAN-VC.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from common.discriminators import ConditionalDiscriminator, DOut, make_head
from common.nn.blocks import GatedConv1d, GatedConv2d

__all__ = ["Generator212", "PatchBackbone", "VCDiscriminator", "pad_frames"]


def pad_frames(x: Tensor, multiple: int, minimum: int = 0) -> Tensor:
    """Tensor[..., N] → Tensor[..., N'] replicate-padded to a multiple of ``multiple``
    (and at least ``minimum`` frames)."""
    extra = max(-x.shape[-1] % multiple, minimum - x.shape[-1])
    if not extra:
        return x
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    return F.pad(flat, (0, extra), mode="replicate").reshape(*shape[:-1], shape[-1] + extra)


def _tile(c: Tensor | None, like: Tensor) -> list[Tensor]:
    """[c tiled to like's trailing spatial shape] or [] (no condition)."""
    if c is None:
        return []
    if like.dim() == 3:
        return [repeat(c, "b e -> b e n", n=like.shape[-1])]
    return [repeat(c, "b e -> b e h w", h=like.shape[-2], w=like.shape[-1])]


class _ResBlock1d(nn.Module):
    """x + IN(conv(GLU(IN(conv(x))))) over time (CycleGAN-VC §3.1, Fig. 2's residual block)."""

    def __init__(self, ch: int, cond_dim: int) -> None:
        super().__init__()
        self.gated = GatedConv1d(ch + cond_dim, ch, 3, norm="in")
        self.out = nn.Sequential(nn.Conv1d(ch, ch, 3, padding=1, bias=False),
                                 nn.InstanceNorm1d(ch, affine=True))

    def forward(self, x: Tensor, c: Tensor | None) -> Tensor:
        return x + self.out(self.gated(torch.cat([x, *_tile(c, x)], dim=1)))


class _Up2d(nn.Module):
    """Conv → pixel shuffle ×2 → IN → GLU (CycleGAN-VC2 Fig. 3's upsampling block)."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch + cond_dim, 2 * out_ch * 4, 5, padding=2, bias=False)
        self.norm = nn.InstanceNorm2d(2 * out_ch, affine=True)

    def forward(self, x: Tensor, c: Tensor | None) -> Tensor:
        h = F.pixel_shuffle(self.conv(torch.cat([x, *_tile(c, x)], dim=1)), 2)
        return F.glu(self.norm(h), dim=1)


class Generator212(nn.Module):
    """G: Tensor[B, 1, D, N] (+ c Tensor[B, cond_dim]) → Tensor[B, 1, D, N].

    Widths: 2-D ``base`` → ``2·base`` (two stride-2 gated convs), 1-D bottleneck ``res``
    with ``blocks`` residual blocks; D must be divisible by 4, N is padded to a multiple of
    4 and cropped back, so any length works (CycleGAN-VC2 §4.1: 128-frame crops in
    training, whole utterances at test time).
    """

    def __init__(self, dim: int, *, base: int = 128, res: int = 256, blocks: int = 6,
                 cond_dim: int = 0) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"feature dim {dim} must be divisible by 4 (two 2x downsamplings)")
        self.dim, self.cond_dim = dim, cond_dim
        c1, c2 = base, 2 * base
        self.inp = GatedConv2d(1, c1, (5, 15), norm=None)  # (B, c1, D, N)
        self.down = nn.Sequential(GatedConv2d(c1, c2, 5, stride=2, norm="in"),
                                  GatedConv2d(c2, c2, 5, stride=2, norm="in"))  # (B, c2, D/4, N/4)
        flat = c2 * (dim // 4)
        # 2-D → 1-D: the frequency axis folds into channels, then a 1x1 conv (Fig. 3).
        self.to1d = nn.Sequential(nn.Conv1d(flat, res, 1, bias=False),
                                  nn.InstanceNorm1d(res, affine=True))
        self.blocks = nn.ModuleList([_ResBlock1d(res, cond_dim) for _ in range(blocks)])
        self.to2d = nn.Sequential(nn.Conv1d(res, flat, 1, bias=False),
                                  nn.InstanceNorm1d(flat, affine=True))
        self.up = nn.ModuleList([_Up2d(c2, c2, cond_dim), _Up2d(c2, c1, cond_dim)])
        self.out = nn.Conv2d(c1, 1, (5, 15), padding=(2, 7))

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.dim:
            raise ValueError(f"G expects Tensor[B, 1, {self.dim}, N], got {tuple(x.shape)}")
        if (c is None) != (self.cond_dim == 0) or (
                c is not None and c.shape != (len(x), self.cond_dim)):
            raise ValueError(f"G built with cond_dim={self.cond_dim} got c "
                             f"{None if c is None else tuple(c.shape)}")
        n = x.shape[-1]
        # >= 8 frames: instance norm needs more than one bottleneck frame
        h = self.down(self.inp(pad_frames(x, 4, minimum=8)))  # (B, c2, D/4, N'/4)
        q = h.shape[2]
        h = self.to1d(rearrange(h, "b c q n -> b (c q) n"))  # (B, res, N'/4)
        for block in self.blocks:
            h = block(h, c)
        h = rearrange(self.to2d(h), "b (c q) n -> b c q n", q=q)  # (B, c2, D/4, N'/4)
        for up in self.up:
            h = up(h, c)
        return self.out(h)[..., :n]  # (B, 1, D, N)


class PatchBackbone(nn.Module):
    """CycleGAN-VC2's D trunk: Tensor[B, 1, D, N] → Tensor[B, ch[-1], D/2^(k-1), N/2^(k-1)].

    A gated 3x3 input conv, then gated 3x3 stride-2 convs with instance norm (Fig. 4;
    widths 128-256-512-1024 at base 128). It ends in a GLU, whose output the projection head
    reads as φ(x).
    """

    def __init__(self, channels: list[int], spectral: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [GatedConv2d(1, channels[0], 3, norm=None, spectral=spectral)]
        for prev, ch in zip(channels[:-1], channels[1:], strict=True):
            layers.append(GatedConv2d(prev, ch, 3, stride=2, norm="in", spectral=spectral))
        self.net = nn.Sequential(*layers)
        self.depth = len(channels) - 1

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class VCDiscriminator(nn.Module):
    """D(x, c): Tensor[B, 1, D, N], c None or a speaker one-hot Tensor[B, S] → DOut of [B, P].

    ``head``: ``none`` (CycleGAN-VC2, c must be None) or a conditional head of
    :mod:`common.discriminators` (StarGAN-VC), per-patch logits. CycleGAN-VC2's final
    1x3 conv becomes the head's per-position score.
    """

    def __init__(self, channels: list[int], head: str, n_speakers: int = 0, *,
                 cond_ch: int = 32, hidden: int = 64, spectral: bool = False) -> None:
        super().__init__()
        self.conditional = head != "none"
        backbone = PatchBackbone(channels, spectral)
        head_net = make_head(head, channels[-1], n_speakers if self.conditional else 0,
                             cond_ch=cond_ch, hidden=hidden, patch=True, spectral=spectral)
        self.net = ConditionalDiscriminator(backbone, head_net)
        self.multiple = 2 ** backbone.depth

    def forward(self, x: Tensor, c: Tensor | None = None) -> DOut:
        if self.conditional and c is None:
            raise ValueError("this D is speaker-conditioned: pass the one-hot c")
        x = pad_frames(x, self.multiple, minimum=2 * self.multiple)  # IN needs > 1 position
        return self.net(x, c if self.conditional else None)

