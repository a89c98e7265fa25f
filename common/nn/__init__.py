"""Reusable network blocks, conditioning augmentation and weight averaging."""

from common.nn.blocks import (
    GatedConv1d,
    GatedConv2d,
    ResBlock,
    down_block,
    maybe_spectral_norm,
    mlp,
    up_block,
)
from common.nn.ca import CAOut, ConditioningAugmentation, kl_divergence
from common.nn.ema import EMA

__all__ = [
    "CAOut",
    "ConditioningAugmentation",
    "EMA",
    "GatedConv1d",
    "GatedConv2d",
    "ResBlock",
    "down_block",
    "kl_divergence",
    "maybe_spectral_norm",
    "mlp",
    "up_block",
]
