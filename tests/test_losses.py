"""Tests for common.losses against hand-written formulas."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.discriminators import DOut
from common.losses import (
    ADV_KINDS,
    clip_weights,
    conditional_d_losses,
    conditional_g_losses,
    d_fake_loss,
    d_real_loss,
    default_d_weights,
    g_adv_loss,
    gradient_penalty,
    kl_divergence,
    l1_loss,
    mismatch_indices,
    r1_penalty,
    weighted_sum,
)
from common.nn.ca import kl_divergence as ca_kl

REAL = torch.tensor([[2.0], [-1.0], [0.5]])
FAKE = torch.tensor([[-3.0], [0.0], [1.5]])


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _mean(f, logits: torch.Tensor) -> torch.Tensor:
    return torch.tensor(sum(f(v) for v in logits.flatten().tolist()) / logits.numel())


# --------------------------------------------------------------------------- adversarial


def test_bce_matches_hand_formula_and_smoothing_only_softens_real():
    s = 0.1

    def bce_smoothed(x):
        return -((1 - s) * math.log(_sig(x)) + s * math.log(1 - _sig(x)))

    expected_real = _mean(bce_smoothed, REAL)
    assert_close(d_real_loss("bce", REAL, smoothing=s), expected_real)
    assert_close(d_real_loss("bce", REAL), _mean(lambda x: -math.log(_sig(x)), REAL))
    # Fake target stays 0: d_fake_loss has no smoothing argument and is −log(1 − σ).
    assert_close(d_fake_loss("bce", FAKE), _mean(lambda x: -math.log(1 - _sig(x)), FAKE))
    assert_close(g_adv_loss("bce", FAKE), _mean(lambda x: -math.log(_sig(x)), FAKE))


def test_minimax_generator_is_saturating_and_d_is_bce():
    assert_close(g_adv_loss("minimax", FAKE), _mean(lambda x: math.log(1 - _sig(x)), FAKE))
    assert_close(d_real_loss("minimax", REAL), d_real_loss("bce", REAL))
    assert_close(d_fake_loss("minimax", FAKE), d_fake_loss("bce", FAKE))


def test_hinge_matches_hand_formula():
    assert_close(d_real_loss("hinge", REAL), _mean(lambda x: max(0.0, 1 - x), REAL))
    assert_close(d_fake_loss("hinge", FAKE), _mean(lambda x: max(0.0, 1 + x), FAKE))
    assert_close(g_adv_loss("hinge", FAKE), _mean(lambda x: -x, FAKE))


def test_lsgan_matches_hand_formula():
    assert_close(d_real_loss("lsgan", REAL), _mean(lambda x: 0.5 * (x - 1) ** 2, REAL))
    assert_close(d_fake_loss("lsgan", FAKE), _mean(lambda x: 0.5 * x**2, FAKE))
    assert_close(g_adv_loss("lsgan", FAKE), _mean(lambda x: 0.5 * (x - 1) ** 2, FAKE))


@pytest.mark.parametrize("kind", ["wgan", "wgan-gp"])
def test_wgan_signs(kind):
    # D minimises fake − real; G minimises −fake.
    total = d_real_loss(kind, REAL) + d_fake_loss(kind, FAKE)
    assert_close(total, FAKE.mean() - REAL.mean())
    assert_close(g_adv_loss(kind, FAKE), -FAKE.mean())


def test_hinge_and_wgan_d_loss_fall_as_real_rises_and_fake_falls():
    for kind in ("hinge", "wgan"):
        assert d_real_loss(kind, REAL + 0.5) < d_real_loss(kind, REAL)
        assert d_fake_loss(kind, FAKE - 0.5) < d_fake_loss(kind, FAKE)


@pytest.mark.parametrize("kind", ADV_KINDS)
def test_g_loss_decreases_when_fake_logits_increase(kind):
    low = torch.tensor([[-2.0], [-0.5]])  # below 1 so lsgan's target is still ahead
    assert g_adv_loss(kind, low + 0.5) < g_adv_loss(kind, low)


def test_smoothing_rejected_for_non_bce_kinds():
    with pytest.raises(ValueError, match="smoothing"):
        d_real_loss("hinge", REAL, smoothing=0.1)


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="wgan-gp"):
        g_adv_loss("relativistic", FAKE)


def test_patch_logits_are_averaged():
    logits = torch.tensor([[1.0, 3.0], [-1.0, 5.0]])  # (B=2, P=2)
    assert_close(g_adv_loss("wgan", logits), torch.tensor(-2.0))


def test_clip_weights_clamps_parameters():
    net = nn.Linear(4, 4)
    with torch.no_grad():
        net.weight.mul_(100)
    clip_weights(net, 0.01)
    assert all(p.abs().max() <= 0.01 for p in net.parameters())


# --------------------------------------------------------------------------- regularisers


def _linear_critic(w: torch.Tensor):
    """d_fn for D(x) = ⟨w, x⟩ + 1, so ∇D = w everywhere."""

    def d_fn(x, cond):
        return (x.flatten(1) @ w).unsqueeze(1) + 1.0  # (B, 1)

    return d_fn


def test_gradient_penalty_zero_for_unit_gradient():
    w = torch.tensor([0.6, 0.0, -0.8, 0.0])  # ‖w‖ = 1
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    gp = gradient_penalty(_linear_critic(w), real, fake, generator=torch.Generator().manual_seed(0))
    assert_close(gp, torch.tensor(0.0), atol=1e-6, rtol=0)


def test_gradient_penalty_closed_form_for_linear_critic():
    w = torch.tensor([1.0, 2.0, 2.0, 0.0])  # ‖w‖ = 3 → (3 − 1)² = 4
    real, fake = torch.randn(5, 4), torch.randn(5, 4)
    gp = gradient_penalty(_linear_critic(w), real, fake, cond=torch.zeros(5, 2))
    assert_close(gp, torch.tensor(4.0))


def test_gradient_penalty_is_differentiable_into_critic():
    net = nn.Linear(3, 1)
    gp = gradient_penalty(lambda x, c: net(x), torch.randn(4, 3), torch.randn(4, 3))
    gp.backward()
    assert net.weight.grad is not None and net.weight.grad.abs().sum() > 0


def test_gradient_penalty_interpolation_is_seeded():
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
    real, fake = torch.randn(4, 3), torch.randn(4, 3)

    def gp(seed):
        gen = torch.Generator().manual_seed(seed)
        return gradient_penalty(lambda x, c: net(x), real, fake, generator=gen)

    a, b = gp(5), gp(5)
    assert torch.equal(a, b)


def test_r1_closed_form_for_linear_d():
    w = torch.tensor([1.0, -2.0, 0.5])
    x = torch.randn(6, 3, requires_grad=True)
    logits = (x @ w).unsqueeze(1)
    assert_close(r1_penalty(logits, x), 0.5 * w.pow(2).sum())


def test_r1_requires_grad_on_input():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="requires? grad"):
        r1_penalty(x.sum(1, keepdim=True), x)


def test_kl_is_reexported_not_redefined():
    assert kl_divergence is ca_kl


def test_l1_loss():
    assert_close(l1_loss(torch.tensor([1.0, -2.0]), torch.tensor([0.0, 0.0])), torch.tensor(1.5))


# --------------------------------------------------------------------------- mismatch


def test_mismatch_indices_roll_by_default():
    assert torch.equal(mismatch_indices(4), torch.tensor([1, 2, 3, 0]))


def test_mismatch_indices_class_aware_never_pairs_same_label():
    labels = torch.tensor([0, 0, 1, 1, 2, 0, 2, 1])
    for seed in range(20):
        idx = mismatch_indices(8, labels, torch.Generator().manual_seed(seed))
        assert (labels[idx] != labels).all()


def test_mismatch_indices_class_aware_with_one_hot_rows():
    labels = torch.eye(3)[torch.tensor([0, 1, 1, 2])]
    idx = mismatch_indices(4, labels, torch.Generator().manual_seed(0))
    assert (labels[idx] != labels).any(dim=1).all()


def test_mismatch_indices_deterministic_with_seeded_generator():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    a = mismatch_indices(8, labels, torch.Generator().manual_seed(11))
    b = mismatch_indices(8, labels, torch.Generator().manual_seed(11))
    assert torch.equal(a, b)


def test_mismatch_indices_class_aware_is_not_always_the_same_partner():
    labels = torch.tensor([0, 1, 1, 1, 1, 1])
    draws = [mismatch_indices(6, labels, torch.Generator().manual_seed(s)) for s in range(30)]
    assert {int(idx[1]) for idx in draws} == {0}  # sample 1's only other-class partner is 0
    assert {int(idx[0]) for idx in draws} == {1, 2, 3, 4, 5}  # drawn over all partners


def test_mismatch_indices_falls_back_to_roll_without_partner():
    labels = torch.tensor([3, 3, 3])
    assert torch.equal(mismatch_indices(3, labels), torch.tensor([1, 2, 0]))


def test_mismatch_indices_batch_of_one_raises():
    with pytest.raises(ValueError, match="batch_size >= 2"):
        mismatch_indices(1)


# --------------------------------------------------------------------------- conditional


def _logits(seed: int) -> torch.Tensor:
    return torch.randn(4, 3, generator=torch.Generator().manual_seed(seed))


def test_conditional_d_losses_joint_head():
    rr, rw, fr = DOut(joint=_logits(0)), DOut(joint=_logits(1)), DOut(joint=_logits(2))
    losses = conditional_d_losses(rr, rw, fr, "bce", smoothing=0.1, fake_in_match=True)
    assert set(losses) == {"d/real", "d/wrong", "d/fake"}
    assert_close(losses["d/real"], d_real_loss("bce", rr.joint, 0.1))
    assert_close(losses["d/wrong"], d_fake_loss("bce", rw.joint))
    assert_close(losses["d/fake"], d_fake_loss("bce", fr.joint))


@pytest.mark.parametrize("fake_in_match", [False, True])
def test_conditional_d_losses_split_head(fake_in_match):
    rr = DOut(realism=_logits(0), match=_logits(1))
    rw = DOut(realism=_logits(0), match=_logits(2))
    fr = DOut(realism=_logits(3), match=_logits(4))
    losses = conditional_d_losses(rr, rw, fr, "hinge", fake_in_match=fake_in_match)
    expected = {"d/real", "d/fake", "d/match", "d/mismatch"}
    assert set(losses) == (expected | {"d/match_fake"} if fake_in_match else expected)
    assert_close(losses["d/real"], d_real_loss("hinge", rr.realism))
    assert_close(losses["d/fake"], d_fake_loss("hinge", fr.realism))
    assert_close(losses["d/match"], d_real_loss("hinge", rr.match))
    assert_close(losses["d/mismatch"], d_fake_loss("hinge", rw.match))
    if fake_in_match:
        assert_close(losses["d/match_fake"], d_fake_loss("hinge", fr.match))


def test_conditional_d_losses_unconditional():
    rr, fr = DOut(realism=_logits(0)), DOut(realism=_logits(1))
    losses = conditional_d_losses(rr, None, fr, "lsgan")
    assert set(losses) == {"d/real", "d/fake"}
    assert_close(losses["d/real"], d_real_loss("lsgan", rr.realism))
    assert_close(losses["d/fake"], d_fake_loss("lsgan", fr.realism))


def test_conditional_d_losses_rejects_mixed_heads():
    with pytest.raises(ValueError, match="same head"):
        conditional_d_losses(
            DOut(joint=_logits(0)), DOut(joint=_logits(1)), DOut(realism=_logits(2)), "bce"
        )


def test_conditional_d_losses_conditional_needs_wrong_pairs():
    with pytest.raises(ValueError, match="real_wrong"):
        conditional_d_losses(DOut(joint=_logits(0)), None, DOut(joint=_logits(1)), "bce")


def test_conditional_g_losses_keys_and_values():
    joint = conditional_g_losses(DOut(joint=_logits(0)), "bce")
    assert set(joint) == {"g/adv"}
    assert_close(joint["g/adv"], g_adv_loss("bce", _logits(0)))
    split = conditional_g_losses(DOut(realism=_logits(1), match=_logits(2)), "hinge")
    assert set(split) == {"g/adv", "g/match"}
    assert_close(split["g/adv"], g_adv_loss("hinge", _logits(1)))
    assert_close(split["g/match"], g_adv_loss("hinge", _logits(2)))
    assert set(conditional_g_losses(DOut(realism=_logits(3)), "wgan")) == {"g/adv"}


# --------------------------------------------------------------------------- weighted sum


def test_weighted_sum_uses_weights_and_documented_default():
    losses = {"d/real": torch.tensor(2.0), "d/wrong": torch.tensor(3.0)}
    losses["d/fake"] = torch.tensor(5.0)
    weights = default_d_weights("combined")  # StackGAN: real 1, wrong ½, fake ½
    assert_close(weighted_sum(losses, weights), torch.tensor(2.0 + 1.5 + 2.5))
    assert_close(weighted_sum(losses, {"d/real": 0.0}, default=2.0), torch.tensor(16.0))


def test_weighted_sum_unknown_key_names_it():
    losses = {"d/real": torch.tensor(1.0)}
    with pytest.raises(KeyError, match="d/rael") as info:
        weighted_sum(losses, {"d/rael": 1.0})
    assert "d/real" in str(info.value)  # lists the available terms


def test_weighted_sum_keeps_gradients():
    x = torch.tensor(2.0, requires_grad=True)
    weighted_sum({"g/adv": x * x}, {"g/adv": 0.5}).backward()
    assert_close(x.grad, torch.tensor(2.0))


def test_default_d_weights_cover_exactly_the_terms_each_head_produces():
    from common.discriminators import DOut

    logits = torch.zeros(4, 1)
    joint, split = DOut(joint=logits), DOut(realism=logits, match=logits)
    for head, out in (("combined", joint), ("projection", joint), ("split", split)):
        terms = conditional_d_losses(out, out, out, "bce")
        assert set(default_d_weights(head)) == set(terms)
    plain = DOut(realism=logits)
    assert set(default_d_weights("none")) == set(conditional_d_losses(plain, None, plain, "bce"))
    with pytest.raises(ValueError, match="unknown head kind"):
        default_d_weights("joint")
