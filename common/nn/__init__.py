"""Reusable network blocks, conditioning augmentation and weight averaging, contrastive critic,
word attention."""

from common.nn.attention import WordAttention
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
from common.nn.contrastive import ContrastiveCritic, WordRegionCritic, contrastive_loss
from common.nn.ema import EMA
from common.nn.standardize import Standardize, fit_standardizers

__all__ = [
    "CAOut",
    "ConditioningAugmentation",
    "ContrastiveCritic",
    "EMA",
    "GatedConv1d",
    "GatedConv2d",
    "ResBlock",
    "Standardize",
    "WordAttention",
    "WordRegionCritic",
    "contrastive_loss",
    "down_block",
    "fit_standardizers",
    "kl_divergence",
    "maybe_spectral_norm",
    "mlp",
    "up_block",
]
