"""Exponential moving average of generator weights.

Sampling from a running average of G's weights gives markedly better and more stable
samples than the raw iterate (Karras et al. 2018, progressive GAN §A.1; analysed by
Yazıcı et al. 2019, "The unusual effectiveness of averaging in GAN training").
Evaluation and sample grids should use ``EMA.module``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn


class EMA:
    """Holds an averaged copy of a module: θ_ema ← decay·θ_ema + (1 − decay)·θ.

    The copy is in eval mode with ``requires_grad=False``. Buffers (e.g. batch-norm running
    statistics) are copied, not averaged. The copy starts on the source module's device;
    ``update`` moves incoming values to the copy's device and dtype, so nothing here is tied
    to a particular device. Pass the bare module, not a DDP wrapper (names must match).
    """

    def __init__(self, module: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self._module = copy.deepcopy(module).eval().requires_grad_(False)

    @property
    def module(self) -> nn.Module:
        """The averaged module (eval mode, no gradients)."""
        return self._module

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average one step towards ``module``'s current weights."""
        src_params = dict(module.named_parameters())
        ema_params = dict(self._module.named_parameters())
        if src_params.keys() != ema_params.keys():
            differ = sorted(set(ema_params) ^ set(src_params))
            raise ValueError(
                f"EMA.update: parameter names differ from the tracked module: {differ}"
            )
        for name, ema_p in ema_params.items():
            src = src_params[name].detach().to(device=ema_p.device, dtype=ema_p.dtype)
            # lerp_(end, w) = self + w·(end − self); w = 1 − decay gives the EMA update and
            # is exact at the end points (decay 0 copies, decay 1 keeps).
            ema_p.lerp_(src, 1.0 - self.decay)
        src_buffers = dict(module.named_buffers())
        for name, ema_b in self._module.named_buffers():
            ema_b.copy_(src_buffers[name])

    def to(self, *args, **kwargs) -> EMA:
        """Move the averaged copy (same arguments as ``nn.Module.to``)."""
        self._module.to(*args, **kwargs)
        return self

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged module's flat state dict (tensors only, so safetensors can store it)."""
        return self._module.state_dict()

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load a state dict produced by :meth:`state_dict` (strict)."""
        self._module.load_state_dict(state)
