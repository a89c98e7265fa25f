"""StackGAN networks (Zhang et al. 2017, "StackGAN: Text to Photo-realistic Image Synthesis
with Stacked Generative Adversarial Networks", ICCV): Stage-I G, Stage-II G and the image
backbones of both discriminators. The discriminators' condition heads (combined | split |
projection) come from :mod:`common.discriminators`; nothing here knows which one is used.

Resolution and width are parameters. Each network computes its channel table from them
(like StyleGAN's), so the paper's 64 → 256 px networks and the CPU preset's 32 → 64 px ones
are the same classes:

=====================  =====================================================  =========
network                channels (w = width)                                    paper w
=====================  =====================================================  =========
Stage-I G              8w at 4×4, halved by every ×2 up-block to R1             128
Stage-II G             encoder w → 2w → 4w (R1 → R1/4 with 2 stride-2 convs),   128
                       joint + residual blocks at 4w,
                       then halved by every ×2 up-block to R2
image D (either stage) w → 2w → … (×2 per stride-2 conv) to 4×4, then 3×3       64
                       convs halving back to at most 8w
=====================  =====================================================  =========

The blocks follow the DCGAN rules (Radford et al. 2016, §3): no pooling (strided convs in
D, ×2 up-blocks in G), batch norm in both networks except G's output and D's input layer,
ReLU in G with a tanh output, LeakyReLU(0.2) in D, and no fully connected hidden layers
apart from G's first projection of (z, c) to the 4×4 map. G's up-blocks are StackGAN's
nearest-neighbour ×2 + 3×3 conv (``model.upsample=nearest``, the official code's
``upBlock``; §3.5), computed as one exact transposed conv where that is faster
(:class:`UpBlock`), or DCGAN's free transposed convs (``transposed``). Weights start from
N(0, 0.02) (DCGAN §4; the official StackGAN code's ``weights_init``).

Shapes: images are ``Tensor[B, 3, R, R]`` in [-1, 1]; sentence embeddings
``Tensor[B, E]``; noise ``Tensor[B, z_dim]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from common.discriminators import ConditionalDiscriminator, StandardizedHead, make_head
from common.nn import CAOut, ConditioningAugmentation, ResBlock, WordAttention, maybe_spectral_norm

__all__ = [
    "GenOut",
    "UpBlock",
    "run_up",
    "StageIGenerator",
    "StageIIGenerator",
    "ImageEncoder",
    "build_discriminator",
    "dcgan_init",
    "freeze",
    "nearest_conv_as_transposed",
    "set_fused_upsampling",
    "to_channels_last",
    "stage1_channels",
    "stage2_channels",
    "d_channels",
]

MIN_CH = 8  # no layer of a channel table gets narrower than this


def _log2(resolution: int, base: int, what: str) -> int:
    n = math.log2(resolution / base) if resolution > 0 else -1
    if n < 0 or n != int(n):
        raise ValueError(f"{what}: resolution {resolution} must be {base}·2^k (k ≥ 0)")
    return int(n)


# ----------------------------------------------------------------------------- channel tables


def stage1_channels(resolution: int, width: int) -> list[int]:
    """Stage-I G: channels at 4×4, 8×8, …, R. 8w at 4×4, halved per up-block.

    Paper (64 px, w = 128, i.e. the official code's Ng = 8·GF_DIM = 1024 at 4×4):
    [1024, 512, 256, 128, 64].
    """
    n_up = _log2(resolution, 4, "Stage-I G")
    return [max(8 * width // 2**i, MIN_CH) for i in range(n_up + 1)]


def stage2_channels(in_res: int, out_res: int, width: int, n_down: int = 2) -> dict[str, list[int]]:
    """Stage-II G: encoder channels (R1 → R1 / 2^n_down) and up-block channels (→ R2).

    Paper (64 → 256 px, w = 128): encoder [128, 256, 512] (64 → 16 px), joint and residual
    blocks at 512, up-blocks [256, 128, 64, 32] (16 → 256 px).
    """
    joint_res = in_res // 2**n_down
    if joint_res < 1 or joint_res * 2**n_down != in_res:
        raise ValueError(f"Stage-II G: input {in_res} px cannot be halved {n_down} times")
    n_up = _log2(out_res, joint_res, "Stage-II G output")
    encoder = [max(width * 2**i, MIN_CH) for i in range(n_down + 1)]
    top = encoder[-1]
    ups = [max(top // 2 ** (i + 1), MIN_CH) for i in range(n_up)]
    return {"encoder": encoder, "up": ups}


def d_channels(resolution: int, width: int, max_mult: int = 8) -> dict[str, list[int]]:
    """Image D: stride-2 conv channels (R → 4×4), then 3×3 convs back to ≤ max_mult·w.

    Paper: Stage-I D at 64 px, w = 64: down [64, 128, 256, 512], no 3×3 convs. Stage-II D
    at 256 px: down [64, …, 2048], then 3×3 convs [1024, 512] (the official code's
    ``encode_image_by_16times`` + two ``downBlock`` + two ``Block3x3_leakRelu``).
    """
    n_down = _log2(resolution, 4, "image D")
    if n_down < 1:
        raise ValueError(f"image D: resolution {resolution} must be at least 8")
    down = [max(width * 2**i, MIN_CH) for i in range(n_down)]
    squeeze, ch = [], down[-1]
    while ch > max(max_mult * width, MIN_CH):
        ch //= 2
        squeeze.append(ch)
    return {"down": down, "squeeze": squeeze}


# ----------------------------------------------------------------------------- helpers


@dataclass
class GenOut:
    """A generator's output: ``image`` Tensor[B, 3, R, R] in [-1, 1] and the conditioning
    augmentation that produced it (``ca.mu`` / ``ca.logvar`` feed the KL term)."""

    image: Tensor
    ca: CAOut


def dcgan_init(module: nn.Module) -> nn.Module:
    """DCGAN initialisation (Radford et al. 2016, §4): conv / linear weights N(0, 0.02),
    batch-norm scale N(1, 0.02) and shift 0 (the official StackGAN code's ``weights_init``)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, no gradients: how Stage-II sees Stage-I (Zhang et al. 2017, §3.5: Stage-II
    is trained with Stage-I fixed)."""
    return module.eval().requires_grad_(False)


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store conv weights NHWC and make the generators emit NHWC activations.

    oneDNN's CPU convolutions (and cuDNN's tensor-core kernels) run natively on
    channels-last tensors; NCHW inputs cost a reorder per layer. Measured in
    ``text2img.bench``.
    """
    module.to(memory_format=torch.channels_last)
    for m in module.modules():
        if hasattr(m, "memory_format"):
            m.memory_format = torch.channels_last
    return module


def _conv3(in_ch: int, out_ch: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias)


def _to_rgb(in_ch: int) -> nn.Sequential:
    # DCGAN §3: no batch norm on G's output layer, tanh output.
    return nn.Sequential(_conv3(in_ch, 3, bias=True), nn.Tanh())


def _check_image(x: Tensor, resolution: int, what: str) -> None:
    if x.dim() != 4 or tuple(x.shape[1:]) != (3, resolution, resolution):
        raise ValueError(f"{what} expects Tensor[B, 3, {resolution}, {resolution}], "
                         f"got {tuple(x.shape)}")


# ----------------------------------------------------------------------------- up-block

def _nearest_taps(w: Tensor, dim: int) -> Tensor:
    """Fold 3 taps of a kernel axis into the 4 taps of a stride-2 transposed-conv axis.

    Output row 2i of conv3x3(upsample_nearest_x2(x)) reads upsampled rows 2i-1, 2i, 2i+1,
    i.e. source rows i-1, i, i; output row 2i+1 reads source rows i, i, i+1. A transposed
    conv (stride 2, padding 1) gives output row 2i taps 3 (from row i-1) and 1 (row i), and
    row 2i+1 taps 2 (row i) and 0 (row i+1). Plain additions, so this stays in fp32 under
    autocast.
    """
    k0, k1, k2 = w.unbind(dim)
    return torch.stack([k2, k1 + k2, k0 + k1, k0], dim=dim)


def nearest_conv_as_transposed(weight: Tensor) -> Tensor:
    """3×3 conv weight [out, in, 3, 3] → the 4×4 stride-2 transposed-conv weight
    [in, out, 4, 4] computing conv3x3(upsample_nearest_x2(x)) exactly."""
    w4 = _nearest_taps(_nearest_taps(weight, 2), 3)  # (out, in, 4, 4)
    return w4.transpose(0, 1)  # (in, out, 4, 4)


# Below this input size the fused path is slower on CPU: oneDNN's transposed-conv backward
# with 4×4 or 8×8 inputs ran at half the speed of upsample + conv (bf16, channels-last,
# measured with text2img.bench), so small maps take the literal path (same result).
FUSED_MIN_INPUT = 16


class UpBlock(nn.Module):
    """×2 up-block of G: Tensor[B, in_ch, H, W] → Tensor[B, out_ch, 2H, 2W].

    ``mode="nearest"``: nearest-neighbour ×2, 3×3 conv, BN, ReLU — StackGAN's ``upBlock``,
    which avoids the checkerboard artefacts of transposed convs. With ``fused=True`` (the
    default) it is computed as ONE 4×4 stride-2 transposed conv whose kernel is summed from
    the 3×3 one (:func:`nearest_conv_as_transposed`): the same function and the same
    parameters, with 16 instead of 4·9 = 36 multiply-adds per input pixel and channel pair
    (2.25× fewer), and no upsampled copy of the input. It is used for inputs of at least
    ``FUSED_MIN_INPUT`` px; ``fused=False`` always runs the literal upsample + conv (the
    tests check the two agree).

    ``mode="transposed"``: a free 4×4 stride-2 transposed conv, BN, ReLU (DCGAN §3).
    """

    def __init__(self, in_ch: int, out_ch: int, mode: str = "nearest", fused: bool = True,
                 cond_dim: int = 0):
        super().__init__()
        if mode not in ("nearest", "transposed"):
            raise ValueError(f"up-block mode must be nearest or transposed, got {mode!r}")
        self.mode, self.fused = mode, fused
        if mode == "nearest":
            self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        else:
            self.conv = nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False)
        # cond_dim > 0: conditional batch norm, the BN's scale and shift predicted from the
        # condition code (de Vries et al. 2017, "Modulating early visual processing by
        # language", §3; BigGAN, Brock et al. 2019, §3; DF-GAN's text-conditioned affine
        # fusion, Tao et al. 2022, §3.3), so every resolution sees the caption, not only
        # the 4×4 input. The scale is 1 + γ(c): with small initial weights it starts close
        # to the plain BN.
        self.bn = nn.BatchNorm2d(out_ch, affine=cond_dim == 0)
        self.film = nn.Linear(cond_dim, 2 * out_ch) if cond_dim else None

    def forward(self, x: Tensor, c: Tensor | None = None) -> Tensor:
        """x: Tensor[B, in_ch, H, W] (+ c: Tensor[B, cond_dim] when conditional)."""
        if (self.film is None) != (c is None):
            raise ValueError("a conditional up-block needs c, a plain one takes none")
        if self.mode == "transposed":
            y = self.conv(x)
        elif self.fused and min(x.shape[-2:]) >= FUSED_MIN_INPUT:
            y = F.conv_transpose2d(x, nearest_conv_as_transposed(self.conv.weight), stride=2,
                                   padding=1)
        else:
            y = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        y = self.bn(y)
        if self.film is not None:
            gamma, beta = rearrange(self.film(c.to(y.dtype)), "b (two c) -> two b c 1 1", two=2)
            y = y * (1 + gamma) + beta
        return F.relu(y)  # (B, out_ch, 2H, 2W)


def run_up(blocks: nn.ModuleList, h: Tensor, c: Tensor) -> Tensor:
    """The up-blocks in order, each given the condition code when it is conditional."""
    for block in blocks:
        h = block(h, c if block.film is not None else None)
    return h


def set_fused_upsampling(module: nn.Module, fused: bool) -> nn.Module:
    """Switch every :class:`UpBlock` of ``module`` between the fused and literal paths."""
    for m in module.modules():
        if isinstance(m, UpBlock):
            m.fused = fused
    return module


# ----------------------------------------------------------------------------- Stage-I G


class StageIGenerator(nn.Module):
    """Stage-I G (Zhang et al. 2017, §3.3 "Stage-I GAN", Fig. 2 top): (e, z) → low-res image.

    c ~ N(μ(e), σ²(e)) by conditioning augmentation (§3.2, :mod:`common.nn.ca`); [c; z] is
    projected to a 4×4×8w map (Linear → BN → ReLU, the one fully connected layer DCGAN
    allows), then up-blocks double the size to ``resolution``; 3×3 conv + tanh to RGB.

    forward(e: Tensor[B, embed_dim], z: Tensor[B, z_dim]) → GenOut(image [B, 3, R, R]).
    """

    def __init__(self, embed_dim: int, *, resolution: int = 64, width: int = 128,
                 cond_dim: int = 128, z_dim: int = 100, upsample: str = "nearest",
                 fused: bool = True, augment: bool = True, standardize: bool = False,
                 cond_norm: bool = False) -> None:
        super().__init__()
        self.embed_dim, self.resolution, self.z_dim, self.cond_dim = (
            embed_dim, resolution, z_dim, cond_dim)
        self.channels = stage1_channels(resolution, width)
        self.memory_format = torch.contiguous_format
        self.ca = ConditioningAugmentation(embed_dim, cond_dim, augment, standardize)
        c0 = self.channels[0]
        self.fc = nn.Sequential(nn.Linear(cond_dim + z_dim, c0 * 16, bias=False),
                                nn.BatchNorm1d(c0 * 16), nn.ReLU())
        self.up = nn.ModuleList([UpBlock(a, b, upsample, fused, cond_dim if cond_norm else 0)
                                 for a, b in zip(self.channels[:-1], self.channels[1:],
                                                 strict=True)])
        self.to_rgb = _to_rgb(self.channels[-1])
        dcgan_init(self)

    def forward(self, e: Tensor, z: Tensor, *, generator: torch.Generator | None = None,
                sample: bool = True) -> GenOut:
        if z.shape != (e.shape[0], self.z_dim):
            raise ValueError(f"z must be Tensor[{e.shape[0]}, {self.z_dim}], got {tuple(z.shape)}")
        ca = self.ca(e, generator=generator, sample=sample)  # c: (B, cond_dim)
        h = self.fc(torch.cat([ca.c, z.to(ca.c.dtype)], dim=1))  # (B, 16·C0)
        h = rearrange(h, "b (c h w) -> b c h w", h=4, w=4)  # (B, C0, 4, 4)
        h = run_up(self.up, h.contiguous(memory_format=self.memory_format), ca.c)  # (B, C, R, R)
        return GenOut(self.to_rgb(h), ca)  # (B, 3, R, R)


# ----------------------------------------------------------------------------- Stage-II G


class StageIIGenerator(nn.Module):
    """Stage-II G (Zhang et al. 2017, §3.4 "Stage-II GAN", Fig. 2 bottom): (Stage-I image, e)
    → high-resolution image.

    - Conditioning augmentation again, with its own fully connected layer, so Stage-II can
      pick up what the text says and Stage-I left out (§3.4). No noise input: Stage-I's
      image already carries the randomness (§3.4).
    - The Stage-I image is encoded down by ``n_down`` stride-2 convs (64 → 16 px in the
      paper), the code c is tiled over that grid and joined to it (3×3 conv → BN → ReLU),
      then residual blocks (He et al. 2016; 4 in the official code's R_NUM) and up-blocks
      to ``out_res`` (§3.4, §3.5).
    - Stage-I is not part of this module and gets no gradient: the input is detached here,
      and the training code runs a frozen copy of Stage-I G (§3.5 trains Stage-II with
      Stage-I fixed).
    - ``word_dim`` > 0: every cell of one grid attends over the caption's word features
      (AttnGAN's F^attn, Xu et al. 2018, §3.1 eq. 2; :class:`WordAttention`) and the
      word-context map is joined to it (3×3 conv → BN → ReLU), as AttnGAN's refinement
      stages join [h, F^attn(e, h)]. The grid is the joint's (before the residual blocks,
      ``words_res`` 0) or the output of the up-block at ``words_res`` px. The sentence code
      still enters at the joint. With ``word_dim`` 0 the words are ignored.
    - ``subpixel``: the last up-block is a free 4×4 stride-2 transposed conv. Its four
      output phases have their own weights, so a uniform region of the input can come out
      as a 2-px periodic texture (SynthBirds' stripes and spots at 64 px); nearest ×2 +
      conv gives a uniform region one value (all four phases sum the same taps). This is
      the checkerboard capacity Odena et al. (2016, "Deconvolution and Checkerboard
      Artifacts") warn about, kept to the one block where the data has such a period.

    forward(low: Tensor[B, 3, in_res, in_res], e: Tensor[B, embed_dim],
            words: Tensor[B, T, word_dim] | None, word_mask: bool Tensor[B, T] | None)
        → GenOut(image [B, 3, out_res, out_res]).
    """

    def __init__(self, embed_dim: int, *, in_res: int = 64, out_res: int = 256,
                 width: int = 128, cond_dim: int = 128, n_down: int = 2, res_blocks: int = 4,
                 upsample: str = "nearest", fused: bool = True, augment: bool = True,
                 standardize: bool = False, cond_norm: bool = False, word_dim: int = 0,
                 words_res: int = 0, subpixel: bool = False) -> None:
        super().__init__()
        self.embed_dim, self.in_res, self.resolution, self.cond_dim = (
            embed_dim, in_res, out_res, cond_dim)
        self.word_dim = word_dim
        self.channels = stage2_channels(in_res, out_res, width, n_down)
        joint_res = in_res // 2**n_down
        grids = [joint_res * 2**k for k in range(len(self.channels["up"]) + 1)]
        if words_res and words_res not in grids:
            raise ValueError(f"Stage-II G: words_res={words_res} must be one of its grids "
                             f"{grids} (or 0: the joint's {joint_res} px)")
        self.words_level = grids.index(words_res or joint_res)  # 0: joint, k: after up-block k
        self.memory_format = torch.contiguous_format
        enc, ups = self.channels["encoder"], self.channels["up"]
        self.ca = ConditioningAugmentation(embed_dim, cond_dim, augment, standardize)
        # First conv has no batch norm (DCGAN §3: it sees the image directly).
        layers: list[nn.Module] = [_conv3(3, enc[0], bias=True), nn.ReLU()]
        for a, b in zip(enc[:-1], enc[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(b),
                       nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        top = enc[-1]
        self.joint = nn.Sequential(_conv3(top + cond_dim, top), nn.BatchNorm2d(top), nn.ReLU())
        self.residual = nn.Sequential(*[ResBlock(top, norm="bn") for _ in range(res_blocks)])
        chans = [top, *ups]
        self.attn = self.fuse = None
        if word_dim > 0:
            ch = chans[self.words_level]
            self.attn = WordAttention(ch, word_dim)
            self.fuse = nn.Sequential(_conv3(2 * ch, ch), nn.BatchNorm2d(ch), nn.ReLU())
        modes = [upsample] * (len(chans) - 2) + ["transposed" if subpixel else upsample]
        self.up = nn.ModuleList([UpBlock(a, b, mode, fused, cond_dim if cond_norm else 0)
                                 for a, b, mode in zip(chans[:-1], chans[1:], modes,
                                                       strict=True)])
        self.to_rgb = _to_rgb(chans[-1])
        dcgan_init(self)

    def forward(self, low: Tensor, e: Tensor, words: Tensor | None = None,
                word_mask: Tensor | None = None, *, generator: torch.Generator | None = None,
                sample: bool = True) -> GenOut:
        _check_image(low, self.in_res, "Stage-II G")
        if self.attn is not None and (words is None or word_mask is None):
            raise ValueError(f"this Stage-II G attends over the caption's words "
                             f"(word_dim={self.word_dim}): give words and word_mask")
        ca = self.ca(e, generator=generator, sample=sample)  # c: (B, cond_dim)
        x = low.detach().contiguous(memory_format=self.memory_format)
        h = self.encoder(x)  # (B, 4w, in_res / 4, in_res / 4)
        s = h.shape[-1]
        c = repeat(ca.c.to(h.dtype), "b c -> b c h w", h=s, w=s)  # tiled code (§3.4)
        h = torch.cat([h, c.contiguous(memory_format=self.memory_format)], dim=1)
        h = self.residual(self._attend(self.joint(h), 0, words, word_mask))  # (B, 4w, s, s)
        for level, block in enumerate(self.up, start=1):  # ×2 each
            h = self._attend(block(h, ca.c if block.film is not None else None), level, words,
                             word_mask)
        return GenOut(self.to_rgb(h), ca)  # (B, 3, out_res, out_res)

    def _attend(self, h: Tensor, level: int, words: Tensor | None, mask: Tensor | None
                ) -> Tensor:
        """[h, F^attn(words, h)] joined (AttnGAN eq. 2) at the attention's grid; else h."""
        if self.attn is None or level != self.words_level:
            return h
        return self.fuse(torch.cat([h, self.attn(h, words, mask)], dim=1))


# ----------------------------------------------------------------------------- D backbone


class ImageEncoder(nn.Module):
    """Image D backbone: Tensor[B, 3, R, R] → features Tensor[B, C, 4, 4] (after LeakyReLU).

    Stride-2 4×4 convs (DCGAN §3; no batch norm on the first, which sees the image), then
    3×3 convs that bring very wide maps back to ≤ 8w (the official Stage-II D). The 4×4
    (Md = 4) features go to a head from :mod:`common.discriminators`, which joins them with
    the text code replicated over the Md × Md grid (Zhang et al. 2017, §3.3).

    ``norm="bn"``: batch norm after every conv but the first (DCGAN, the official code).
    ``norm="sn"``: spectral norm on every conv and no batch norm (Miyato et al. 2018, §4:
    SN-GANs), which keeps D 1-Lipschitz per layer and lets both nets train at a higher
    learning rate; the weights then keep PyTorch's default initialisation, as in SN-GAN.
    """

    def __init__(self, resolution: int, width: int, max_mult: int = 8,
                 norm: str = "bn") -> None:
        super().__init__()
        if norm not in ("bn", "sn"):
            raise ValueError(f"image D norm must be bn or sn, got {norm!r}")
        self.resolution = resolution
        table = d_channels(resolution, width, max_mult)
        self.channels = table
        sn = norm == "sn"
        layers: list[nn.Module] = []
        prev = 3
        for i, ch in enumerate(table["down"]):
            conv = nn.Conv2d(prev, ch, 4, stride=2, padding=1, bias=i == 0 or sn)
            layers.append(maybe_spectral_norm(conv, sn))
            if i > 0 and not sn:
                layers.append(nn.BatchNorm2d(ch))
            layers.append(nn.LeakyReLU(0.2))
            prev = ch
        for ch in table["squeeze"]:
            layers.append(maybe_spectral_norm(_conv3(prev, ch, bias=sn), sn))
            layers += [nn.Identity() if sn else nn.BatchNorm2d(ch), nn.LeakyReLU(0.2)]
            prev = ch
        self.net = nn.Sequential(*layers)
        self.out_ch = prev
        if not sn:
            dcgan_init(self)

    def forward(self, x: Tensor) -> Tensor:
        _check_image(x, self.resolution, "image D")
        return self.net(x)  # (B, out_ch, 4, 4)


def build_discriminator(head: str, *, resolution: int, width: int, embed_dim: int,
                        cond_ch: int = 128, head_norm: str | None = "bn",
                        max_mult: int = 8, standardize: bool = False,
                        norm: str = "bn") -> ConditionalDiscriminator:
    """D(x, e) = head(ImageEncoder(x), e), the head chosen by name (``model.d_head``).

    The text embedding e (not G's CA code) is the condition: the head compresses it to
    ``cond_ch`` = Nd = 128 with a fully connected layer + LeakyReLU and tiles it over the
    4×4 map (§3.3). The fuse width is the feature width (the official 3×3 conv keeps 8·ndf),
    and the score is one global logit from the whole 4×4 map (the official 4×4 conv).
    ``head_norm`` (bn | None) is the fuse layer's norm for combined / split heads
    (the official D_GET_LOGITS has batch norm there); the projection head has none.
    ``standardize`` puts the head behind a fixed standardisation of e
    (:class:`common.discriminators.StandardizedHead`), as G's CA with ``standardize``.
    ``norm="sn"`` makes the backbone and the head spectrally normalised (no batch norm in
    either, ``head_norm`` ignored).
    """
    backbone = ImageEncoder(resolution, width, max_mult, norm)
    feat = backbone.out_ch
    sn = norm == "sn"
    fuse_norm = head_norm if head in ("combined", "split") and not sn else None
    d_head = make_head(head, feat, embed_dim, cond_ch=cond_ch, hidden=feat, spatial=(4, 4),
                       norm=fuse_norm, spectral=sn)
    if not sn:
        dcgan_init(d_head)
    if standardize:
        d_head = StandardizedHead(d_head, embed_dim)
    return ConditionalDiscriminator(backbone, d_head)
