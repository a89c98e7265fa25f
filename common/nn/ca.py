"""Conditioning Augmentation (Zhang et al. 2017, StackGAN §3.1).

A fixed sentence embedding is a single point in a high-dimensional space, so with few
captions per image the conditioning manifold is sparse. CA instead samples the condition
from N(μ(e), diag σ²(e)) and regularises that Gaussian towards N(0, I) with a KL term
(StackGAN eq. 3), which smooths the manifold and adds useful randomness.

``kl_divergence`` lives here, next to the module whose output it regularises; it is
re-exported by ``common.losses`` so losses are imported from one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from common.nn.standardize import Standardize


@dataclass
class CAOut:
    """Output of :class:`ConditioningAugmentation`.

    c:      Tensor[B, cond_dim]  the condition fed to G (sampled, or μ when not sampling)
    mu:     Tensor[B, cond_dim]  mean μ(e)
    logvar: Tensor[B, cond_dim]  log σ²(e); unconstrained, so σ may be below 1.
            None when augmentation is off (c = μ, a plain linear code; no KL term)
    """

    c: Tensor
    mu: Tensor
    logvar: Tensor | None


def kl_divergence(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)), summed over dimensions, averaged over the batch.

    0.5 · Σ_d (μ² + σ² − 1 − log σ²) — StackGAN eq. 3, the VAE KL of Kingma & Welling 2014
    (appendix B). mu, logvar: Tensor[B, D]. Returns a scalar.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} differ in shape")
    per_sample = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)
    return per_sample.mean()


class ConditioningAugmentation(nn.Module):
    """Map an embedding Tensor[B, embed_dim] to a sampled condition Tensor[B, cond_dim].

    One Linear gives 2·cond_dim numbers, read DIRECTLY as (μ, log σ²). One widely used
    StackGAN PyTorch port applies a ReLU before the split; that forces log σ² ≥ 0, i.e.
    σ ≥ 1, so the KL term can never reach 0 and the noise can never shrink below unit
    scale. We deliberately do not do that.

    ``augment=False`` is the paper's "without CA" ablation (StackGAN §4.3, Fig. 7): the
    Linear gives μ only and c = μ(e), a deterministic code with no KL term
    (``CAOut.logvar`` is None).

    ``standardize=True`` puts a fixed :class:`~common.nn.standardize.Standardize` in front of
    the Linear (statistics set by ``fit_standardizers`` from the training embeddings).
    """

    def __init__(self, embed_dim: int, cond_dim: int, augment: bool = True,
                 standardize: bool = False) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.cond_dim = cond_dim
        self.augment = augment
        self.norm = Standardize(embed_dim) if standardize else nn.Identity()
        self.fc = nn.Linear(embed_dim, (2 if augment else 1) * cond_dim)

    def forward(
        self, e: Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> CAOut:
        """e: Tensor[B, embed_dim]. ``sample=False`` returns c = μ (deterministic eval).

        ``generator`` (on e's device) makes ε reproducible, e.g. for fixed sample grids.
        """
        assert e.dim() == 2 and e.shape[1] == self.embed_dim, (
            f"expected Tensor[B, {self.embed_dim}], got {tuple(e.shape)}"
        )
        h = self.fc(self.norm(e))
        if not self.augment:
            return CAOut(c=h, mu=h, logvar=None)  # (B, cond_dim)
        mu, logvar = h.chunk(2, dim=1)  # (B, cond_dim) each
        if not sample:
            return CAOut(c=mu, mu=mu, logvar=logvar)
        # Reparameterisation trick (Kingma & Welling 2014, §2.4): c = μ + σ·ε keeps c
        # differentiable in μ and σ.
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        c = mu + torch.exp(0.5 * logvar) * eps
        return CAOut(c=c, mu=mu, logvar=logvar)
