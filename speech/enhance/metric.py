"""A metric discriminator: Q(x, clean) learns to predict the PESQ of x against its clean
reference, and G is trained to make Q say "perfect" (MetricGAN).

Fu, Liao, Tsao & Lin 2019, "MetricGAN: Generative adversarial networks based black-box
metric scores optimization for speech enhancement" (ICML), eqs. 3–4: the discriminator is a
learned surrogate of a non-differentiable metric Q'(·) normalised to [0, 1],

    L_Q = (Q(y, y) − 1)² + (Q(G(x), y) − Q'(G(x), y))²
    L_G = (Q(G(x), y) − s)²,  s = 1 (the best score),

and MetricGAN+ (Fu et al. 2021, Interspeech, §2.2) adds the noisy input as a third
training pair, (Q(x, y) − Q'(x, y))², so Q also learns what the unprocessed input scores.
Here Q' is wide-band PESQ (ITU-T P.862.2) of the training crop, and the term is added to
G's L1 (and, when ``model.d_head`` is not ``none``, to the patch D's adversarial loss).

Q (MetricGAN §4.1): spectral-normalised 5×5 convs over the (judged, clean) spectrogram
pair stacked as two channels, LeakyReLU, global average pooling over time and frequency
(so any crop length works), then a small dense stack to one score. One change for the CPU:
the convs have stride 2 (MetricGAN's keep the full 257-bin resolution: 0.65 s for a forward
+ backward of four 2-s crops on one core here, fp32; strided, 0.06–0.09 s).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from common.nn.blocks import maybe_spectral_norm

__all__ = ["PESQ_RANGE", "MetricDiscriminator", "masked_mse", "normalise_pesq", "pesq_targets"]

# Wide-band PESQ (MOS-LQO, P.862.2) lies in about [1.04, 4.64]; MetricGAN maps its metric
# linearly onto [0, 1] so that s = 1 is the best score.
PESQ_RANGE = (1.04, 4.64)


def normalise_pesq(score: float) -> float:
    """WB PESQ → [0, 1] (clipped), the scale Q is trained on."""
    lo, hi = PESQ_RANGE
    return float(min(1.0, max(0.0, (score - lo) / (hi - lo))))


def pesq_targets(clean: Tensor, degraded: Tensor, sr: int = 16000) -> tuple[Tensor, Tensor]:
    """Normalised WB PESQ of each degraded crop against its clean crop.

    clean, degraded: Tensor[B, T] → (scores Tensor[B], valid Tensor[B] bool). A crop PESQ
    cannot score (a reference without detectable speech, e.g. a pause) is marked invalid
    and left out of Q's fit instead of being given a made-up score.
    """
    from speech.metrics import pesq_wb

    ref = clean.detach().float().cpu().numpy().astype(np.float64)
    deg = degraded.detach().float().cpu().numpy().astype(np.float64)
    scores = np.zeros(len(ref), dtype=np.float32)
    valid = np.zeros(len(ref), dtype=bool)
    for i in range(len(ref)):
        try:
            scores[i] = normalise_pesq(pesq_wb(ref[i], deg[i], sr))
            valid[i] = True
        except ValueError:
            pass
    return torch.from_numpy(scores).to(clean.device), torch.from_numpy(valid).to(clean.device)


class MetricDiscriminator(nn.Module):
    """Q(x, clean): two Tensor[B, 1, F, N] spectrograms (z units) → Tensor[B] scores."""

    def __init__(self, channels: int = 15, layers: int = 4, hidden: tuple[int, ...] = (50, 10),
                 *, stride: int = 2, spectral: bool = True) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        prev = 2
        for _ in range(layers):
            conv = nn.Conv2d(prev, channels, 5, stride=stride, padding=2)
            convs += [maybe_spectral_norm(conv, spectral), nn.LeakyReLU(0.3)]
            prev = channels
        self.convs = nn.Sequential(*convs)
        dense: list[nn.Module] = []
        for width in hidden:
            dense += [maybe_spectral_norm(nn.Linear(prev, width), spectral), nn.LeakyReLU(0.3)]
            prev = width
        dense.append(maybe_spectral_norm(nn.Linear(prev, 1), spectral))
        self.dense = nn.Sequential(*dense)

    def forward(self, x: Tensor, clean: Tensor) -> Tensor:
        if x.shape != clean.shape:
            raise ValueError(f"x {tuple(x.shape)} and clean {tuple(clean.shape)} must match")
        h = self.convs(torch.cat([x, clean], dim=1)).mean(dim=(2, 3))
        return self.dense(h).squeeze(1)


def masked_mse(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean of (pred − target)² over the rows marked valid (zero, still in the graph, if none)."""
    if not bool(valid.any()):
        return pred.float().sum() * 0.0
    return ((pred.float()[valid] - target[valid]) ** 2).mean()
