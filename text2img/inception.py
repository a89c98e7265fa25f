"""FID and Inception Score with Inception-v3 weights the user supplies by path.

Nothing is downloaded. The supported file is a TorchScript Inception-v3 with the calling
convention of NVIDIA's ``inception-2015-12-05.pt`` (the TensorFlow FID network of Heusel et
al. 2017 converted for StyleGAN2-ADA, Karras et al. 2020), which most recent papers use:

* ``net(images_uint8[N, 3, H, W], return_features=True)`` → pool3 features ``[N, 2048]``
  (the network resizes to 299 itself);
* ``net(images_uint8[N, 3, H, W], no_output_bias=True)`` → class probabilities
  ``[N, 1008]`` for the Inception Score (Salimans et al. 2016), 10 splits (METRICS.md).

Any TorchScript module with the same two calls works (its output for the score may be
probabilities or logits; logits are soft-maxed).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["InceptionNet", "inception_score"]


class InceptionNet:
    """A TorchScript Inception loaded from ``path`` (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"{self.path}: Inception weights not found. FID/IS need a TorchScript "
                "Inception-v3 such as inception-2015-12-05.pt (StyleGAN2-ADA's metrics "
                "network); download it on a machine with internet and pass inception=PATH"
            )
        try:
            self.net = torch.jit.load(str(self.path), map_location=device).eval()
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"{self.path}: not a TorchScript Inception network ({err})") from None
        self.device = torch.device(device)
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        self.hash = h.hexdigest()[:16]

    @staticmethod
    def _uint8(images: np.ndarray | Tensor) -> Tensor:
        if isinstance(images, np.ndarray):  # uint8 [N, H, W, 3]
            return torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2)
        if images.dtype != torch.uint8:  # float [N, 3, H, W] in [-1, 1]
            images = ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        return images

    @torch.no_grad()
    def features(self, images: np.ndarray | Tensor, batch: int = 50) -> np.ndarray:
        """pool3 features float64[N, 2048]."""
        out = [self.net(self._uint8(images[s : s + batch]).to(self.device), return_features=True)
               for s in range(0, len(images), batch)]
        return torch.cat(out).double().cpu().numpy()

    @torch.no_grad()
    def probabilities(self, images: np.ndarray | Tensor, batch: int = 50) -> np.ndarray:
        """Class probabilities float64[N, K] for the Inception Score."""
        out = []
        for s in range(0, len(images), batch):
            y = self.net(self._uint8(images[s : s + batch]).to(self.device), no_output_bias=True)
            y = y.double()
            is_prob = bool((y >= 0).all()) and torch.allclose(
                y.sum(1), torch.ones(len(y), dtype=y.dtype), atol=1e-3)
            out.append(y if is_prob else torch.softmax(y, dim=1))
        return torch.cat(out).cpu().numpy()


def inception_score(probs: np.ndarray, splits: int = 10) -> dict[str, float]:
    """IS = exp(E_x KL(p(y|x) ‖ p(y))) per split; mean and std over ``splits`` splits."""
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs)
    if n < splits:
        raise ValueError(f"Inception Score with {splits} splits needs ≥ {splits} images, got {n}")
    scores = []
    for part in np.array_split(probs, splits):
        p_y = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-12) - np.log(p_y + 1e-12))).sum(axis=1)
        scores.append(float(np.exp(kl.mean())))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores))}
