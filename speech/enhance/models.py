"""Networks of the enhancement cGAN: a mask U-Net G and a patch D backbone over spectrograms.

Both work on *normalised log-magnitude* spectrograms ``z = (ln|X| − μ) / σ`` of shape
``Tensor[B, 1, F, N]`` (F = n_fft/2 + 1 bins, N frames; see :class:`Featurizer`).

- G (:class:`MaskUNet`) reads the noisy ``z`` and predicts a bounded magnitude mask
  M ∈ (0, mask_max]; the enhanced magnitude is M·|X| with the noisy phase (Michelsanti &
  Tan 2017, "Conditional generative adversarial networks for speech enhancement and
  noise-robust speaker verification", Interspeech, use pix2pix on log-power spectrograms;
  the bounded mask instead of a direct magnitude follows the ratio-mask targets of Wang,
  Narayanan & Wang 2014, "On training targets for supervised speech separation", IEEE
  TASLP 22(12)). The U-Net with skips between mirrored encoder/decoder layers is pix2pix's
  generator (Isola et al. 2017, "Image-to-image translation with conditional adversarial
  networks", §3.2.1).
- D (:class:`SpecDiscriminator`) is a PatchGAN backbone (Isola et al. 2017, §3.2.2: each
  logit judges one receptive-field patch, which models high-frequency structure while L1
  handles the low frequencies) over the spectrogram being judged, plus one of the shared
  condition heads of :mod:`common.discriminators`, which receives the noisy spectrogram as
  an aligned condition map.

Widths are a channel table ``ch(i) = min(base · 2^i, max)`` (StyleGAN's habit), so one
class serves every size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.discriminators import ConditionalDiscriminator, DOut, make_head
from common.nn.blocks import maybe_spectral_norm, up_block
from speech.features import StftConfig, istft_logmag, stft_logmag

__all__ = [
    "DFeatures",
    "Featurizer",
    "MaskUNet",
    "PatchBackbone",
    "SpecDiscriminator",
    "channel_table",
    "enhance_z",
    "pad_tf",
]


def channel_table(base: int, max_ch: int, depth: int) -> list[int]:
    """Widths of ``depth`` levels: ``[min(base · 2^i, max_ch) for i in range(depth)]``."""
    if base < 1 or max_ch < 1 or depth < 1:
        raise ValueError(f"need base, max_ch, depth >= 1, got {base}, {max_ch}, {depth}")
    return [min(base * 2**i, max_ch) for i in range(depth)]


def _norm(kind: str | None, ch: int) -> nn.Module:
    if kind in (None, "none"):
        return nn.Identity()
    if kind == "bn":
        return nn.BatchNorm2d(ch)
    if kind == "in":
        return nn.InstanceNorm2d(ch, affine=True)
    raise ValueError(f"unknown norm {kind!r}; expected 'none', 'bn' or 'in'")


def pad_tf(x: Tensor, multiple: int) -> Tensor:
    """Tensor[B, C, F, N] → Tensor[B, C, F', N']: drop the Nyquist bin when F is odd (257 →
    256, so frequency halves cleanly), replicate-pad frames up to a multiple of ``multiple``.
    """
    if x.shape[-2] % 2 == 1:
        x = x[..., :-1, :]
    if x.shape[-2] % multiple:
        raise ValueError(f"{x.shape[-2]} frequency bins are not divisible by {multiple}; "
                         "choose n_fft = 2^k with 2^depth <= n_fft/2")
    extra = -x.shape[-1] % multiple
    return F.pad(x, (0, extra, 0, 0), mode="replicate") if extra else x


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class Featurizer:
    """Waveform ↔ normalised log-magnitude. ``z = (ln max(|X|, eps) − mean) / std``.

    ``mean`` / ``std`` are two scalars (config ``feature.log_mean`` / ``log_std``), so the
    mapping is the same for every input and stored with the model.
    """

    stft: StftConfig
    mean: float
    std: float

    @property
    def z_floor(self) -> float:
        """``z`` of digital silence (``|X| = eps``): the floor of every spectrogram."""
        return (math.log(self.stft.eps) - self.mean) / self.std

    def analyze(self, wav: Tensor) -> tuple[Tensor, Tensor]:
        """Tensor[B, T] → (z Tensor[B, 1, F, N], phase Tensor[B, 1, F, N])."""
        spec = stft_logmag(wav, self.stft)
        z = (spec.logmag - self.mean) / self.std
        return z.unsqueeze(1), spec.phase.unsqueeze(1)

    def synthesize(self, z: Tensor, phase: Tensor, length: int) -> Tensor:
        """(z, phase) Tensor[B, 1, F, N] → Tensor[B, length] (inverse STFT)."""
        logmag = z.squeeze(1) * self.std + self.mean
        return istft_logmag(logmag, phase.squeeze(1), length, self.stft)


def enhance_z(noisy_z: Tensor, log_mask: Tensor, feat: Featurizer) -> Tensor:
    """Masked spectrogram in z units: ln(M·|X|) = ln|X| + ln M, floored at digital silence.

    noisy_z, log_mask: Tensor[B, 1, F, N] → Tensor[B, 1, F, N].
    """
    return (noisy_z + log_mask / feat.std).clamp_min(feat.z_floor)


# --------------------------------------------------------------------------- G


class MaskUNet(nn.Module):
    """G: noisy z Tensor[B, 1, F, N] → ln M Tensor[B, 1, F, N], M = mask_max · σ(o) ∈ (0, mask_max].

    Encoder: ``depth`` 4x4 stride-2 convs (first without norm, LeakyReLU 0.2; pix2pix's
    C64-C128-... encoder, Isola et al. 2017 §6.1.1). Decoder: nearest ×2 + 3x3 conv blocks
    (no checkerboard artefacts), each fed the mirrored encoder output (the U-Net skips,
    Isola et al. 2017 §3.2.1), then a 3x3 conv over [decoder, input] to the mask logit.
    Any N works: frames are padded to a multiple of 2^depth and cropped back. The Nyquist
    bin (dropped by :func:`pad_tf`) takes the mask of its neighbour.

    ``stem > 0`` adds two 3x3 convs of that width at full resolution before the first
    stride-2 conv, whose output also reaches the final conv: the full-resolution level of
    the original U-Net (Ronneberger et al. 2015, Fig. 1), which pix2pix's encoder skips.
    Without it, the only full-resolution input to the mask is one linear 3x3 conv over the
    noisy spectrogram, coarse next to harmonics 4–7 bins apart at n_fft 512. (Measured: not
    a gain at the ``cpu-long`` budget; speech/enhance/README.md.)

    ln M is computed as ln(mask_max) − softplus(−o), which is exact and never −inf.
    """

    def __init__(
        self,
        channels: list[int],
        *,
        mask_max: float = 1.0,
        norm: Literal["none", "bn", "in"] = "bn",
        stem: int = 0,
    ) -> None:
        super().__init__()
        if mask_max <= 0:
            raise ValueError(f"mask_max must be > 0, got {mask_max}")
        if stem < 0:
            raise ValueError(f"stem width must be >= 0, got {stem}")
        self.channels = list(channels)
        self.depth = len(channels)
        self.log_mask_max = math.log(mask_max)
        self.stem = (nn.Sequential(nn.Conv2d(1, stem, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(stem, stem, 3, padding=1), nn.LeakyReLU(0.2))
                     if stem else None)
        down: list[nn.Module] = []
        prev = stem or 1
        for i, ch in enumerate(channels):
            conv = nn.Conv2d(prev, ch, 4, stride=2, padding=1, bias=(i == 0 or norm == "none"))
            down.append(nn.Sequential(conv, _norm(None if i == 0 else norm, ch), nn.LeakyReLU(0.2)))
            prev = ch
        self.down = nn.ModuleList(down)
        up: list[nn.Module] = []
        for i in reversed(range(self.depth)):
            in_ch = channels[i] * (1 if i == self.depth - 1 else 2)  # + skip below the bottom
            out_ch = channels[i - 1] if i > 0 else channels[0]
            up.append(up_block(in_ch, out_ch, norm=None if norm == "none" else norm))
        self.up = nn.ModuleList(up)
        self.out = nn.Conv2d(channels[0] + 1 + stem, 1, 3, padding=1)

    def forward(self, noisy_z: Tensor) -> Tensor:
        """noisy_z: Tensor[B, 1, F, N] → ln M: Tensor[B, 1, F, N]."""
        if noisy_z.dim() != 4 or noisy_z.shape[1] != 1:
            raise ValueError(f"G expects Tensor[B, 1, F, N], got {tuple(noisy_z.shape)}")
        n_bins, n_frames = noisy_z.shape[-2:]
        x = pad_tf(noisy_z, 2**self.depth)  # (B, 1, F', N')
        skips = []
        h = x
        if self.stem is not None:  # the full-resolution level feeds the encoder and the mask
            h = self.stem(x)
            x = torch.cat([h, x], dim=1)
        for block in self.down:
            h = block(h)
            skips.append(h)
        for j, block in enumerate(self.up):
            i = self.depth - 1 - j
            if i < self.depth - 1:
                h = torch.cat([h, skips[i]], dim=1)
            h = block(h)
        logits = self.out(torch.cat([h, x], dim=1))[..., :n_frames]  # (B, 1, F', N)
        if logits.shape[-2] < n_bins:  # the Nyquist bin copies its neighbour's mask
            logits = torch.cat([logits, logits[..., -1:, :]], dim=-2)
        return self.log_mask_max - F.softplus(-logits)


# --------------------------------------------------------------------------- D


@dataclass
class DFeatures:
    """D's verdict and the backbone's intermediate maps (for feature matching)."""

    out: DOut
    features: list[Tensor]


class PatchBackbone(nn.Module):
    """PatchGAN trunk: Tensor[B, 1, F', N'] → Tensor[B, ch[-1], F'/2^d, N'/2^d].

    ``depth`` 4x4 stride-2 convs, LeakyReLU(0.2), norm on all but the first (Isola et al.
    2017 §6.1.2); the trunk ends in its activation, as the projection head expects.
    """

    def __init__(self, channels: list[int], *, norm: str = "none", spectral: bool = True) -> None:
        super().__init__()
        self.channels = list(channels)
        layers: list[nn.Module] = []
        prev = 1
        for i, ch in enumerate(channels):
            use_norm = norm if i > 0 else "none"
            conv = nn.Conv2d(prev, ch, 4, stride=2, padding=1, bias=use_norm == "none")
            layers.append(nn.Sequential(maybe_spectral_norm(conv, spectral),
                                        _norm(use_norm, ch), nn.LeakyReLU(0.2)))
            prev = ch
        self.layers = nn.ModuleList(layers)

    def all_features(self, x: Tensor) -> list[Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        return self.all_features(x)[-1]


class SpecDiscriminator(nn.Module):
    """D(x, noisy): a spectrogram and its noisy condition, both Tensor[B, 1, F, N] in z units.

    ``cond_mode``:

    - ``"fold"``: the noisy map is space-to-depth folded onto the feature grid
      (``pixel_unshuffle`` by 2^depth: Tensor[B, 4^depth, F'/2^d, N'/2^d]), so the head sees
      every noisy bin of the patch it scores, losslessly;
    - ``"resize"``: the 1-channel map goes to the head as is and is area-pooled there.

    ``head`` is ``combined`` | ``split`` | ``projection`` (from :mod:`common.discriminators`,
    per-patch logits) or ``none`` (unconditional patch D, for ablations).
    """

    def __init__(
        self,
        channels: list[int],
        head: str,
        *,
        cond_mode: Literal["fold", "resize"] = "fold",
        cond_ch: int = 64,
        hidden: int = 128,
        norm: str = "none",
        spectral: bool = True,
    ) -> None:
        super().__init__()
        if cond_mode not in ("fold", "resize"):
            raise ValueError(f"cond_mode must be 'fold' or 'resize', got {cond_mode!r}")
        self.depth = len(channels)
        self.cond_mode = cond_mode
        self.conditional = head != "none"
        cond_dim = (4**self.depth if cond_mode == "fold" else 1) if self.conditional else 0
        backbone = PatchBackbone(channels, norm=norm, spectral=spectral)
        head_net = make_head(head, channels[-1], cond_dim, cond_ch=cond_ch, hidden=hidden,
                             patch=True, spectral=spectral)
        self.net = ConditionalDiscriminator(backbone, head_net)

    def _cond(self, noisy: Tensor) -> Tensor | None:
        if not self.conditional:
            return None
        c = pad_tf(noisy, 2**self.depth)
        return F.pixel_unshuffle(c, 2**self.depth) if self.cond_mode == "fold" else c

    def forward_features(self, x: Tensor, noisy: Tensor) -> DFeatures:
        """x, noisy: Tensor[B, 1, F, N] → DFeatures(DOut of Tensor[B, P], feature maps)."""
        if x.shape != noisy.shape:
            raise ValueError(f"x {tuple(x.shape)} and noisy {tuple(noisy.shape)} must match")
        feats = self.net.backbone.all_features(pad_tf(x, 2**self.depth))
        return DFeatures(self.net.head(feats[-1], self._cond(noisy)), feats)

    def forward(self, x: Tensor, noisy: Tensor) -> DOut:
        return self.forward_features(x, noisy).out
