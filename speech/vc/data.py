"""Training data: random crops of per-speaker normalised coded envelopes, non-parallel.

Every training utterance is analysed once (cached) and normalised with its speaker's
statistics; :class:`CropSource` then draws ``frames``-frame crops. Its position is its own
``torch.Generator`` state, so ``--resume`` continues the exact batch sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["CropSource", "VCBatch"]


@dataclass
class VCBatch:
    """``x``: Tensor[B, 1, D, frames] crops of ``source`` speakers (Tensor[B] indices);
    ``y``: crops of speaker 1 (CycleGAN pairs) or None; ``target``: Tensor[B] indices of
    another speaker (StarGAN's conversion target, also the mismatched condition) or None."""

    x: Tensor
    source: Tensor
    y: Tensor | None = None
    target: Tensor | None = None


class CropSource:
    """Endless :class:`VCBatch` stream over ``feats[speaker][utterance]`` (each ``[D, N]``).

    ``mode="pair"`` (CycleGAN-VC2): ``x`` from speaker 0, ``y`` from speaker 1, unpaired.
    ``mode="multi"`` (StarGAN-VC): source speakers uniform, targets uniform among the others.
    """

    def __init__(self, feats: list[list[np.ndarray]], frames: int, batch_size: int, seed: int,
                 mode: str = "pair", device: torch.device | str = "cpu") -> None:
        if mode not in ("pair", "multi"):
            raise ValueError(f"mode must be 'pair' or 'multi', got {mode!r}")
        if mode == "pair" and len(feats) != 2:
            raise ValueError(f"pair mode needs exactly 2 speakers, got {len(feats)}")
        if len(feats) < 2 or any(not f for f in feats):
            raise ValueError("every speaker needs at least one utterance (and >= 2 speakers)")
        self.feats = [[np.asarray(u, dtype=np.float32) for u in f] for f in feats]
        self.frames, self.batch_size, self.mode = int(frames), int(batch_size), mode
        self.device = torch.device(device)
        self.gen = torch.Generator().manual_seed(seed)

    def _crop(self, speaker: int) -> np.ndarray:
        utts = self.feats[speaker]
        u = utts[int(torch.randint(len(utts), (), generator=self.gen))]
        if u.shape[1] < self.frames:  # short utterance: repeat it (no artificial silence)
            u = np.pad(u, ((0, 0), (0, self.frames - u.shape[1])), mode="wrap")
        start = int(torch.randint(u.shape[1] - self.frames + 1, (), generator=self.gen))
        return u[:, start : start + self.frames]

    def _stack(self, speakers: list[int]) -> Tensor:
        return torch.from_numpy(np.stack([self._crop(s) for s in speakers])[:, None]).to(
            self.device)  # (B, 1, D, frames)

    def next(self) -> VCBatch:
        b = self.batch_size
        if self.mode == "pair":
            return VCBatch(x=self._stack([0] * b), source=torch.zeros(b, dtype=torch.long),
                           y=self._stack([1] * b))
        n = len(self.feats)
        src = torch.randint(n, (b,), generator=self.gen)
        tgt = (src + torch.randint(1, n, (b,), generator=self.gen)) % n  # uniform over others
        return VCBatch(x=self._stack(src.tolist()), source=src.to(self.device),
                       target=tgt.to(self.device))

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])
