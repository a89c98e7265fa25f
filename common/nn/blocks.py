"""Small reusable building blocks for generators and discriminators.

The conv blocks follow the DCGAN guidelines (Radford et al. 2016, §3): strided convolutions
instead of pooling, batch norm in both networks, ReLU in G and LeakyReLU(0.2) in D, no fully
connected hidden layers in the conv stacks. Widths and norms are parameters; nothing here
knows about a particular resolution or track.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm


def maybe_spectral_norm(module: nn.Module, on: bool) -> nn.Module:
    """Wrap ``module`` in spectral normalisation when ``on`` (Miyato et al. 2018, §2.1).

    Spectral norm divides the weight by its largest singular value (one power iteration per
    forward pass), which bounds each layer's Lipschitz constant by 1.
    """
    return spectral_norm(module) if on else module


def _norm2d(kind: str | None, ch: int) -> nn.Module:
    """Norm layer for [B, C, H, W] activations; ``None`` gives identity."""
    if kind is None:
        return nn.Identity()
    if kind == "bn":
        return nn.BatchNorm2d(ch)
    if kind == "in":
        # affine=True so instance norm can still learn a per-channel scale and shift, as in
        # the CycleGAN / pix2pix generators.
        return nn.InstanceNorm2d(ch, affine=True)
    raise ValueError(f"unknown 2-D norm {kind!r}; expected one of 'bn', 'in', None")


def _norm1d(kind: str | None, ch: int) -> nn.Module:
    """Norm layer for [B, C, T] activations; ``None`` gives identity."""
    if kind is None:
        return nn.Identity()
    if kind == "bn":
        return nn.BatchNorm1d(ch)
    if kind == "in":
        return nn.InstanceNorm1d(ch, affine=True)
    raise ValueError(f"unknown 1-D norm {kind!r}; expected one of 'bn', 'in', None")


def _activation(act: str) -> nn.Module:
    """ReLU for generators, LeakyReLU(0.2) for discriminators (DCGAN §3)."""
    if act == "relu":
        return nn.ReLU()
    if act == "lrelu":
        return nn.LeakyReLU(0.2)  # slope 0.2 as in DCGAN's discriminator (§3)
    raise ValueError(f"unknown activation {act!r}; expected 'relu' or 'lrelu'")


def mlp(
    in_dim: int,
    hidden: int,
    out_dim: int,
    depth: int,
    act: Literal["relu", "lrelu"] = "relu",
    norm: Literal["bn", "ln"] | None = None,
    spectral: bool = False,
) -> nn.Sequential:
    """Multi-layer perceptron mapping Tensor[B, in_dim] to Tensor[B, out_dim].

    ``depth`` is the number of hidden layers (Linear → norm → activation, each ``hidden``
    wide); the output Linear has no norm or activation. ``depth=0`` is a single Linear.
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if norm not in ("bn", "ln", None):
        raise ValueError(f"unknown mlp norm {norm!r}; expected 'bn', 'ln' or None")
    _activation(act)  # validate even when depth == 0
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(depth):
        layers.append(maybe_spectral_norm(nn.Linear(width, hidden, bias=norm is None), spectral))
        if norm == "bn":
            layers.append(nn.BatchNorm1d(hidden))
        elif norm == "ln":
            layers.append(nn.LayerNorm(hidden))
        layers.append(_activation(act))
        width = hidden
    layers.append(maybe_spectral_norm(nn.Linear(width, out_dim), spectral))
    return nn.Sequential(*layers)


def down_block(
    in_ch: int, out_ch: int, norm: Literal["bn", "in"] | None = "bn", spectral: bool = False
) -> nn.Sequential:
    """Discriminator downsampling: Tensor[B, in_ch, H, W] → Tensor[B, out_ch, H/2, W/2].

    4x4 stride-2 conv → norm → LeakyReLU(0.2) (DCGAN §3: strided convs replace pooling).
    The conv has no bias when a norm follows, since the norm's shift makes it redundant.
    """
    conv = nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=norm is None)
    conv = maybe_spectral_norm(conv, spectral)
    return nn.Sequential(conv, _norm2d(norm, out_ch), nn.LeakyReLU(0.2))


def up_block(
    in_ch: int,
    out_ch: int,
    norm: Literal["bn", "in"] | None = "bn",
    mode: Literal["nearest", "transposed"] = "nearest",
) -> nn.Sequential:
    """Generator upsampling: Tensor[B, in_ch, H, W] → Tensor[B, out_ch, 2H, 2W].

    ``"nearest"``: nearest-neighbour ×2 then 3x3 conv → norm → ReLU, as in StackGAN's
    ``upBlock`` (Zhang et al. 2017); it avoids the checkerboard artefacts of transposed convs.
    ``"transposed"``: 4x4 stride-2 ConvTranspose → norm → ReLU (DCGAN §3).
    """
    if mode == "nearest":
        up: list[nn.Module] = [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=norm is None),
        ]
    elif mode == "transposed":
        up = [nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1, bias=norm is None)]
    else:
        raise ValueError(f"unknown up_block mode {mode!r}; expected 'nearest' or 'transposed'")
    return nn.Sequential(*up, _norm2d(norm, out_ch), nn.ReLU())


class ResBlock(nn.Module):
    """StackGAN residual block (Zhang et al. 2017, Stage-II G): Tensor[B, C, H, W] → same.

    y = ReLU(x + norm(conv3x3(ReLU(norm(conv3x3(x)))))).
    """

    def __init__(self, ch: int, norm: Literal["bn", "in"] | None = "bn") -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1, bias=norm is None),
            _norm2d(norm, ch),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1, bias=norm is None),
            _norm2d(norm, ch),
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class _GatedConv(nn.Module):
    """Conv to 2*out_ch → norm → GLU: out = a ⊙ σ(b) (Dauphin et al. 2017, eq. 1).

    CycleGAN-VC (Kaneko & Kameoka 2018) uses these gated units throughout G and D so the
    network can select which features (e.g. phonetic structure) to pass on.
    """

    def __init__(self, conv: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.conv = conv
        self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        # The norm sees the 2*out_ch pre-activations so a and gate b are normalised alike.
        return F.glu(self.norm(self.conv(x)), dim=1)


class GatedConv1d(_GatedConv):
    """Gated 1-D conv: Tensor[B, in_ch, T] → Tensor[B, out_ch, T/stride]."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int = 1,
        norm: Literal["bn", "in"] | None = "in",
        spectral: bool = False,
    ) -> None:
        pad = kernel_size // 2
        layer = nn.Conv1d(in_ch, 2 * out_ch, kernel_size, stride, pad, bias=norm is None)
        super().__init__(maybe_spectral_norm(layer, spectral), _norm1d(norm, 2 * out_ch))


class GatedConv2d(_GatedConv):
    """Gated 2-D conv: Tensor[B, in_ch, H, W] → Tensor[B, out_ch, H/sh, W/sw].

    ``kernel_size`` and ``stride`` may be ints or (h, w) pairs; padding keeps 'same' size
    for odd kernels at stride 1.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        norm: Literal["bn", "in"] | None = "in",
        spectral: bool = False,
    ) -> None:
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        pad = (k[0] // 2, k[1] // 2)
        layer = nn.Conv2d(in_ch, 2 * out_ch, k, stride, pad, bias=norm is None)
        super().__init__(maybe_spectral_norm(layer, spectral), _norm2d(norm, 2 * out_ch))
