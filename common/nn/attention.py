"""Word attention for a generator (AttnGAN, Xu et al. 2018, "AttnGAN: Fine-Grained Text to
Image Generation with Attentional Generative Adversarial Networks", §3.1 eq. 2).

A sentence vector says which colours a caption names but not well *where* they go ("a red
bird with blue wings" and "a blue bird with red wings" are close in its space). AttnGAN lets
every sub-region of G's hidden map pick the words it needs: the words e (the encoder's
token states) are mapped into the image feature space, e' = U e, and region j gets the
word-context vector

    c_j = Σ_i β_{j,i} e'_i,   β_{j,i} = softmax_i(h_j^T e'_i)                       (eq. 2)

which the next layers see next to h_j. Padding tokens get no weight. The scores are scaled
by 1/√C as in scaled dot-product attention (Vaswani et al. 2017, eq. 1) so their size does
not grow with the channel count, and the token states are layer-normalised first (the
encoder's hidden states carry a few very large dimensions).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["WordAttention"]


class WordAttention(nn.Module):
    """(h Tensor[B, C, H, W], words Tensor[B, T, E], mask bool Tensor[B, T]) → c Tensor[B, C, H, W].

    ``mask`` marks real words (padding False); every caption needs at least one. The output
    has ``h``'s dtype and memory format.
    """

    def __init__(self, feat_ch: int, word_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(word_dim, elementwise_affine=False)
        self.project = nn.Linear(word_dim, feat_ch, bias=False)  # U of eq. 2
        self.scale = 1.0 / math.sqrt(feat_ch)

    def forward(self, h: Tensor, words: Tensor, mask: Tensor) -> Tensor:
        beta, e = self._weights(h, words, mask)
        context = torch.einsum("bhwt,btc->bchw", beta, e)  # c_j = Σ_i β_{j,i} e'_i
        return context.contiguous(memory_format=_format_of(h))

    def weights(self, h: Tensor, words: Tensor, mask: Tensor) -> Tensor:
        """β: Tensor[B, H, W, T], how much each cell of ``h`` takes from each word (rows
        sum to 1 over the real words) — what :mod:`text2img.attention` draws."""
        return self._weights(h, words, mask)[0]

    def _weights(self, h: Tensor, words: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if h.dim() != 4 or words.dim() != 3 or mask.shape != words.shape[:2] \
                or len(h) != len(words) or h.shape[1] != self.project.out_features:
            raise ValueError(
                f"WordAttention needs h [B, {self.project.out_features}, H, W], words [B, T, E] "
                f"and mask [B, T] with the same B; got {tuple(h.shape)}, {tuple(words.shape)} "
                f"and {tuple(mask.shape)}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("WordAttention: a caption has no real word (mask all False)")
        e = self.project(self.norm(words.to(self.project.weight.dtype)))  # e' = U e: (B, T, C)
        e = e.to(h.dtype)
        scores = torch.einsum("bchw,btc->bhwt", h, e) * self.scale  # h_j^T e'_i
        scores = scores.float().masked_fill(~mask[:, None, None, :], float("-inf"))
        beta = torch.softmax(scores, dim=-1).to(h.dtype)  # over the words
        return beta, e


def _format_of(x: Tensor) -> torch.memory_format:
    """channels_last when ``x`` is stored that way (and is not trivially both)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
