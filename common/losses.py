"""GAN losses as plain functions.

Logits are Tensor[B, P] (P = patches, 1 for a global score) or any shape; every adversarial
loss is the mean over all elements, so a patch discriminator averages over its patches.
Loss dictionaries use the names that get logged (``d/real``, ``g/adv``, ...), and
:func:`weighted_sum` combines them with a weight dict keyed by the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.discriminators import DOut
from common.nn.ca import kl_divergence  # one definition, re-exported here

__all__ = [
    "ADV_KINDS",
    "default_d_weights",
    "DEFAULT_G_WEIGHTS",
    "clip_weights",
    "conditional_d_losses",
    "conditional_g_losses",
    "d_fake_loss",
    "d_real_loss",
    "g_adv_loss",
    "gradient_penalty",
    "kl_divergence",
    "l1_loss",
    "mismatch_indices",
    "r1_penalty",
    "weighted_sum",
]

ADV_KINDS = ("bce", "minimax", "hinge", "lsgan", "wgan", "wgan-gp")

def default_d_weights(head: str) -> dict[str, float]:
    """D loss weights for a head kind, keyed by the names :func:`conditional_d_losses` logs.

    Joint heads (combined, projection) follow StackGAN's official code,
    errD = errD_real + (errD_wrong + errD_fake) * 0.5: the two "negative" pairs together
    weigh as much as the positive one. Split and unconditional heads weigh every term 1.
    """
    if head in ("combined", "projection"):
        return {"d/real": 1.0, "d/wrong": 0.5, "d/fake": 0.5}
    if head == "split":
        return {"d/real": 1.0, "d/fake": 1.0, "d/match": 1.0, "d/mismatch": 1.0}
    if head == "none":
        return {"d/real": 1.0, "d/fake": 1.0}
    raise ValueError(f"unknown head kind {head!r}; valid kinds: combined, split, projection, none")


DEFAULT_G_WEIGHTS: dict[str, float] = {"g/adv": 1.0, "g/match": 1.0}


def _check_kind(kind: str) -> None:
    if kind not in ADV_KINDS:
        valid = ", ".join(ADV_KINDS)
        raise ValueError(f"unknown adversarial loss kind {kind!r}; valid kinds: {valid}")


# --------------------------------------------------------------------------- adversarial


def d_real_loss(kind: str, logits: Tensor, smoothing: float = 0.0) -> Tensor:
    """D's loss on samples that should score "real". Returns a scalar.

    bce / minimax: BCE with target 1 − smoothing — one-sided label smoothing (Salimans et
    al. 2016, §3.4): only the real target is softened, so D is not pushed to a fixed point
    that rewards fakes. hinge: relu(1 − l) (Lim & Ye 2017). lsgan: ½(l − 1)² (Mao et al.
    2017, eq. 2 with a=0, b=c=1). wgan / wgan-gp: −l (Arjovsky et al. 2017).
    Smoothing is only defined for the BCE kinds; other kinds raise if it is non-zero.
    """
    _check_kind(kind)
    if kind in ("bce", "minimax"):
        target = torch.full_like(logits, 1.0 - smoothing)
        return F.binary_cross_entropy_with_logits(logits, target)
    if smoothing != 0.0:
        raise ValueError(f"label smoothing applies to 'bce'/'minimax' only, not {kind!r}")
    if kind == "hinge":
        return F.relu(1.0 - logits).mean()
    if kind == "lsgan":
        return 0.5 * (logits - 1.0).pow(2).mean()
    return -logits.mean()  # wgan, wgan-gp


def d_fake_loss(kind: str, logits: Tensor) -> Tensor:
    """D's loss on samples that should score "fake" (also mismatched real pairs). Scalar.

    bce / minimax: BCE with target 0 = softplus(l). hinge: relu(1 + l). lsgan: ½ l².
    wgan / wgan-gp: +l.
    """
    _check_kind(kind)
    if kind in ("bce", "minimax"):
        return F.softplus(logits).mean()  # = BCE(l, 0) = −log(1 − σ(l))
    if kind == "hinge":
        return F.relu(1.0 + logits).mean()
    if kind == "lsgan":
        return 0.5 * logits.pow(2).mean()
    return logits.mean()  # wgan, wgan-gp


def g_adv_loss(kind: str, logits: Tensor) -> Tensor:
    """G's adversarial loss on D's logits for generated samples. Scalar.

    bce: non-saturating −log σ(l) (Goodfellow et al. 2014, §3: strong gradients early on).
    minimax: the saturating log(1 − σ(l)) of the original objective, for the lecture demo.
    hinge, wgan, wgan-gp: −l (Miyato et al. 2018; Arjovsky et al. 2017). lsgan: ½(l − 1)².
    """
    _check_kind(kind)
    if kind == "bce":
        return F.softplus(-logits).mean()  # = −log σ(l)
    if kind == "minimax":
        return -F.softplus(logits).mean()  # = log(1 − σ(l))
    if kind == "lsgan":
        return 0.5 * (logits - 1.0).pow(2).mean()
    return -logits.mean()  # hinge, wgan, wgan-gp


@torch.no_grad()
def clip_weights(module: nn.Module, c: float) -> None:
    """Clamp every parameter of the critic to [−c, c] (Arjovsky et al. 2017, Alg. 1; the
    paper uses c = 0.01 with RMSProp). Call after each critic optimiser step."""
    for p in module.parameters():
        p.clamp_(-c, c)


# --------------------------------------------------------------------------- regularisers


def _per_sample_score(logits: Tensor) -> Tensor:
    """Tensor[B, ...] → Tensor[B]: a patch D's score for a sample is the mean of its patch
    logits, matching how the adversarial losses average."""
    return logits.flatten(1).mean(dim=1) if logits.dim() > 1 else logits


def gradient_penalty(
    d_fn: Callable[[Tensor, Tensor | None], Tensor],
    real: Tensor,
    fake: Tensor,
    cond: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty E[(‖∇D(x̂)‖₂ − 1)²] (Gulrajani et al. 2017, eq. 3). Scalar.

    x̂ = ε·real + (1 − ε)·fake with ε ~ U[0, 1] per sample (drawn from ``generator``, which
    must live on real's device, if given). real, fake: Tensor[B, ...]; cond is passed to
    ``d_fn(x, cond) -> logits`` unchanged (the pair keeps its condition). ``create_graph``
    so the penalty can be back-propagated into D.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ in shape")
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
    score = _per_sample_score(d_fn(x_hat, cond))
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    # The tiny constant keeps sqrt differentiable when a gradient is exactly zero.
    norm = torch.sqrt(grad.flatten(1).pow(2).sum(dim=1) + 1e-12)
    return (norm - 1.0).pow(2).mean()


def r1_penalty(real_logits: Tensor, real_x: Tensor) -> Tensor:
    """R1 = ½ E‖∇ₓD(x)‖² on real data (Mescheder et al. 2018, eq. 9; γ is the weight).

    real_x must have ``requires_grad=True`` before D is run on it; real_logits: Tensor[B, P].
    """
    if not real_x.requires_grad:
        raise ValueError("r1_penalty: real_x must require grad before D is applied to it")
    score = _per_sample_score(real_logits)
    (grad,) = torch.autograd.grad(score.sum(), real_x, create_graph=True)
    return 0.5 * grad.flatten(1).pow(2).sum(dim=1).mean()


def l1_loss(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error (pix2pix's L1 term, CycleGAN's cycle / identity terms). Scalar."""
    return F.l1_loss(a, b)


# --------------------------------------------------------------------------- matching-aware


def mismatch_indices(
    batch_size: int, labels: Tensor | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Indices j(i) pairing each sample with a *wrong* condition: cond[idx] is mismatched.

    Without labels: roll by one, j = (i + 1) mod B (deterministic; uses no randomness).
    With labels (Tensor[B] of ids, or Tensor[B, K] rows such as one-hot classes — two
    samples count as "same" when their rows are equal): j is drawn uniformly among samples
    whose label differs from i's, using ``generator`` (a CPU generator). A sample with no
    other-class partner in the batch (e.g. a batch of one class) falls back to the roll,
    which may then pair it with a same-label condition.

    Returns LongTensor[B] on labels' device (CPU when labels is None).
    """
    if batch_size < 2:
        raise ValueError(
            f"mismatch_indices needs batch_size >= 2 to form mismatched pairs, got {batch_size}"
        )
    roll = (torch.arange(batch_size) + 1) % batch_size
    if labels is None:
        return roll
    if labels.shape[0] != batch_size:
        raise ValueError(f"labels has {labels.shape[0]} rows, expected batch_size={batch_size}")
    lab = labels.detach().cpu()
    lab = lab.unsqueeze(1) if lab.dim() == 1 else lab.flatten(1)  # (B, K)
    same = (lab[:, None, :] == lab[None, :, :]).all(dim=-1)  # (B, B)
    # Uniform choice among allowed j: argmax of i.i.d. uniforms restricted to allowed entries.
    scores = torch.rand(batch_size, batch_size, generator=generator)
    scores = scores.masked_fill(same, -1.0)
    idx = scores.argmax(dim=1)
    has_partner = (~same).any(dim=1)
    idx = torch.where(has_partner, idx, roll)
    return idx.to(labels.device)


def _fields(out: DOut) -> tuple[str, ...]:
    return tuple(name for name in ("realism", "match", "joint") if getattr(out, name) is not None)


def conditional_d_losses(
    real_right: DOut,
    real_wrong: DOut | None,
    fake_right: DOut,
    kind: str,
    smoothing: float = 0.0,
    fake_in_match: bool = False,
) -> dict[str, Tensor]:
    """Named D loss terms over (real, right), (real, wrong), (fake, right) pairs.

    Matching-aware loss of GAN-CLS (Reed et al. 2016, Alg. 1): D must reject real images
    with the wrong condition as well as fakes. The head decides the terms (by which DOut
    fields are filled):

    - joint (combined / projection): d/real (real,right → real), d/wrong (real,wrong → fake),
      d/fake (fake,right → fake). Fakes are always in the joint loss; ``fake_in_match`` is
      a split-head switch and has no effect here.
    - split: d/real, d/fake on realism; d/match (real,right → real), d/mismatch (real,wrong →
      fake) on match, plus d/match_fake (fake,right → fake) when ``fake_in_match``. Realism
      ignores the condition, so (real, wrong) realism equals (real, right) and is not
      counted twice.
    - realism only (unconditional): d/real, d/fake; ``real_wrong`` may be None.

    ``smoothing`` softens every "real" target (d/real, d/match). Values are scalars.
    """
    fields = _fields(real_right)
    wrong_fields = None if real_wrong is None else _fields(real_wrong)
    if _fields(fake_right) != fields or wrong_fields not in (None, fields):
        raise ValueError(
            "real_right, real_wrong and fake_right must come from the same head; got fields "
            f"{fields}, {wrong_fields}, {_fields(fake_right)}"
        )
    if fields == ("realism",):
        return {
            "d/real": d_real_loss(kind, real_right.realism, smoothing),
            "d/fake": d_fake_loss(kind, fake_right.realism),
        }
    if real_wrong is None:
        raise ValueError(f"a conditional head (fields {fields}) needs real_wrong, got None")
    if fields == ("joint",):
        return {
            "d/real": d_real_loss(kind, real_right.joint, smoothing),
            "d/wrong": d_fake_loss(kind, real_wrong.joint),
            "d/fake": d_fake_loss(kind, fake_right.joint),
        }
    if fields == ("realism", "match"):
        losses = {
            "d/real": d_real_loss(kind, real_right.realism, smoothing),
            "d/fake": d_fake_loss(kind, fake_right.realism),
            "d/match": d_real_loss(kind, real_right.match, smoothing),
            "d/mismatch": d_fake_loss(kind, real_wrong.match),
        }
        if fake_in_match:
            losses["d/match_fake"] = d_fake_loss(kind, fake_right.match)
        return losses
    raise ValueError(f"unsupported DOut field combination {fields}")


def conditional_g_losses(fake_right: DOut, kind: str) -> dict[str, Tensor]:
    """Named G loss terms on D(G(z, c), c).

    g/adv from joint (combined / projection) or realism (split / unconditional); split heads
    add g/match: G also wants its samples judged as matching their condition.
    """
    fields = _fields(fake_right)
    if fields == ("joint",):
        return {"g/adv": g_adv_loss(kind, fake_right.joint)}
    if fields == ("realism",):
        return {"g/adv": g_adv_loss(kind, fake_right.realism)}
    if fields == ("realism", "match"):
        return {
            "g/adv": g_adv_loss(kind, fake_right.realism),
            "g/match": g_adv_loss(kind, fake_right.match),
        }
    raise ValueError(f"unsupported DOut field combination {fields}")


def weighted_sum(
    losses: Mapping[str, Tensor], weights: Mapping[str, float], default: float = 1.0
) -> Tensor:
    """total = Σ_k w_k · losses[k], with w_k = weights.get(k, default).

    Every loss term is counted; ``default`` (1.0 unless given) is the weight of terms that
    ``weights`` does not name. A weight whose key is not among the losses raises, so a typo
    cannot silently drop a term; to apply a table shared across heads (e.g.
    DEFAULT_D_WEIGHTS), pass ``{k: table[k] for k in losses}``.
    """
    unknown = [k for k in weights if k not in losses]
    if unknown:
        raise KeyError(
            f"weights for unknown loss terms {unknown}; available terms: {sorted(losses)}"
        )
    if not losses:
        raise ValueError("weighted_sum needs at least one loss term")
    terms = [weights.get(k, default) * v for k, v in losses.items()]
    return torch.stack(terms).sum()
