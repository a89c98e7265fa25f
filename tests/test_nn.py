"""Unit tests for common.nn: blocks, conditioning augmentation, EMA."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.nn import (
    EMA,
    ConditioningAugmentation,
    ContrastiveCritic,
    GatedConv1d,
    GatedConv2d,
    ResBlock,
    Standardize,
    WordAttention,
    WordRegionCritic,
    contrastive_loss,
    down_block,
    fit_standardizers,
    kl_divergence,
    maybe_spectral_norm,
    mlp,
    up_block,
)

# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("norm", [None, "bn", "ln"])
@pytest.mark.parametrize("act", ["relu", "lrelu"])
def test_mlp_maps_in_dim_to_out_dim(norm, act):
    net = mlp(5, 8, 3, depth=2, act=act, norm=norm, spectral=True)
    assert net(torch.randn(4, 5)).shape == (4, 3)
    assert sum(isinstance(m, nn.Linear) for m in net) == 3


def test_mlp_depth_zero_is_single_linear():
    net = mlp(5, 8, 3, depth=0)
    assert len(net) == 1 and isinstance(net[0], nn.Linear)


def test_mlp_rejects_unknown_norm_and_activation():
    with pytest.raises(ValueError, match="norm"):
        mlp(2, 2, 2, depth=1, norm="gn")
    with pytest.raises(ValueError, match="activation"):
        mlp(2, 2, 2, depth=0, act="tanh")


@pytest.mark.parametrize("norm", [None, "bn", "in"])
def test_down_block_halves_spatial_size(norm):
    block = down_block(3, 6, norm=norm, spectral=True)
    assert block(torch.randn(2, 3, 8, 12)).shape == (2, 6, 4, 6)


@pytest.mark.parametrize("mode", ["nearest", "transposed"])
def test_up_block_doubles_spatial_size(mode):
    block = up_block(6, 3, norm="bn", mode=mode)
    y = block(torch.randn(2, 6, 4, 5))
    assert y.shape == (2, 3, 8, 10)
    assert (y >= 0).all()  # ends in ReLU


def test_up_block_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        up_block(2, 2, mode="bilinear")


def test_resblock_keeps_shape_and_is_residual():
    block = ResBlock(4, norm=None)
    for p in block.body.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 4, 5, 5)
    # With a zero body, y = ReLU(x + 0).
    assert_close(block(x), torch.relu(x))


def test_gated_conv1d_shape_and_glu():
    conv = GatedConv1d(3, 4, kernel_size=5, stride=2, norm=None)
    assert conv(torch.randn(2, 3, 16)).shape == (2, 4, 8)
    x = torch.randn(2, 3, 7)
    pre = conv.conv(x)
    assert_close(conv(x), pre[:, :4] * torch.sigmoid(pre[:, 4:]))


@pytest.mark.parametrize("norm", [None, "in", "bn"])
def test_gated_conv2d_shape(norm):
    conv = GatedConv2d(1, 4, kernel_size=(5, 15), stride=(1, 2), norm=norm)
    assert conv(torch.randn(2, 1, 8, 16)).shape == (2, 4, 8, 8)


def test_maybe_spectral_norm_toggles():
    plain = maybe_spectral_norm(nn.Linear(3, 3), False)
    assert not hasattr(plain, "parametrizations")
    sn = maybe_spectral_norm(nn.Linear(3, 3), True)
    for _ in range(20):  # power iterations converge in training mode
        sn(torch.randn(1, 3))
    sigma_max = torch.linalg.matrix_norm(sn.weight.detach(), ord=2)
    assert abs(sigma_max.item() - 1.0) < 1e-3


# --------------------------------------------------------------------------- CA


def _ca_with(mu: torch.Tensor, logvar: torch.Tensor) -> ConditioningAugmentation:
    """A CA whose output is (mu, logvar) regardless of input: zero weights, bias = targets."""
    ca = ConditioningAugmentation(embed_dim=3, cond_dim=mu.numel())
    with torch.no_grad():
        ca.fc.weight.zero_()
        ca.fc.bias.copy_(torch.cat([mu, logvar]))
    return ca


def test_ca_reparameterisation_with_fixed_generator():
    ca = ConditioningAugmentation(embed_dim=6, cond_dim=4)
    e = torch.randn(3, 6)
    out = ca(e, generator=torch.Generator().manual_seed(7))
    eps = torch.randn(3, 4, generator=torch.Generator().manual_seed(7))
    assert_close(out.c, out.mu + torch.exp(0.5 * out.logvar) * eps)
    assert out.c.shape == out.mu.shape == out.logvar.shape == (3, 4)


def test_ca_eval_without_sampling_returns_mu():
    ca = ConditioningAugmentation(embed_dim=6, cond_dim=4)
    out = ca(torch.randn(3, 6), sample=False)
    assert torch.equal(out.c, out.mu)


def test_ca_logvar_not_clamped_so_sigma_can_be_below_one():
    mu = torch.zeros(2)
    logvar = torch.tensor([-4.0, -2.0])
    ca = _ca_with(mu, logvar)
    out = ca(torch.randn(500, 3), generator=torch.Generator().manual_seed(0))
    assert_close(out.logvar[0], logvar)  # negative log-variance survives
    sigma = torch.exp(0.5 * out.logvar)
    assert (sigma < 1).all()
    # The samples really are that narrow: empirical std ≈ exp(-2) = 0.135 and exp(-1) = 0.368.
    assert_close(out.c.std(dim=0), torch.exp(0.5 * logvar), atol=0.04, rtol=0.0)


def test_ca_without_augmentation_is_a_deterministic_linear_code():
    ca = ConditioningAugmentation(embed_dim=6, cond_dim=4, augment=False)
    e = torch.randn(3, 6)
    a, b = ca(e), ca(e)
    assert a.logvar is None and ca.fc.out_features == 4
    assert torch.equal(a.c, b.c) and torch.equal(a.c, a.mu)
    assert_close(a.c, e @ ca.fc.weight.T + ca.fc.bias)


def test_ca_standardizes_its_input_once_fitted():
    torch.manual_seed(0)
    data = 0.03 * torch.randn(400, 6) + torch.linspace(-1, 1, 6)  # small spread, big offset
    ca = ConditioningAugmentation(embed_dim=6, cond_dim=4, standardize=True)
    assert fit_standardizers(ca, data) == 1
    z = ca.norm(data)
    assert_close(z.mean(0), torch.zeros(6), atol=1e-5, rtol=0)
    # std 1 up to the floor: scale = std + 0.05 · mean(std)
    assert_close(z.std(0), torch.full((6,), 1 / 1.05), atol=0.02, rtol=0)
    out = ca(data[:3], sample=False)
    assert_close(out.mu, (z[:3] @ ca.fc.weight.T + ca.fc.bias)[:, :4])


def test_standardize_round_trips_through_state_dict_and_handles_maps():
    s = Standardize(3).fit(torch.tensor([[0.0, 1.0, 2.0], [2.0, 3.0, 6.0]]))
    t = Standardize(3)
    t.load_state_dict(s.state_dict())
    x = torch.tensor([[1.0, 2.0, 4.0]])
    assert_close(t(x), torch.zeros(1, 3))
    maps = x[:, :, None, None].expand(1, 3, 2, 5)
    assert_close(t(maps), torch.zeros(1, 3, 2, 5))
    with pytest.raises(ValueError, match="Tensor\\[N >= 2, 3\\]"):
        Standardize(3).fit(torch.zeros(1, 3))


def test_kl_closed_form():
    mu = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    logvar = torch.tensor([[0.0, 1.0], [-1.0, 2.0]])
    e = torch.e
    row0 = 0.5 * ((1 + 1 - 1 - 0) + (4 + e - 1 - 1))
    row1 = 0.5 * ((0.25 + 1 / e - 1 + 1) + (0 + e**2 - 1 - 2))
    assert_close(kl_divergence(mu, logvar), torch.tensor((row0 + row1) / 2))


def test_kl_is_zero_for_standard_normal():
    assert_close(kl_divergence(torch.zeros(3, 5), torch.zeros(3, 5)), torch.tensor(0.0))


# --------------------------------------------------------------------------- EMA


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def _perturb(net: nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net[1].running_mean.add_(1.0)


def test_ema_copy_is_frozen_eval_copy():
    net = _net()
    ema = EMA(net)
    assert ema.module is not net
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())


def test_ema_decay_zero_copies():
    net = _net()
    ema = EMA(net, decay=0.0)
    _perturb(net)
    ema.update(net)
    assert_close(ema.module.state_dict(), net.state_dict())


def test_ema_decay_one_keeps():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ema = EMA(net, decay=1.0)
    _perturb(net)
    ema.update(net)
    for name, p in ema.module.named_parameters():
        assert_close(p, before[name])
    # Buffers are copied, not averaged.
    assert_close(ema.module[1].running_mean, net[1].running_mean)


def test_ema_exact_lerp():
    net = nn.Linear(1, 1)
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.bias.fill_(-1.0)
    ema = EMA(net, decay=0.75)
    with torch.no_grad():
        net.weight.fill_(6.0)
        net.bias.fill_(3.0)
    ema.update(net)
    assert_close(ema.module.weight, torch.tensor([[3.0]]))  # 0.75·2 + 0.25·6
    assert_close(ema.module.bias, torch.tensor([0.0]))  # 0.75·(−1) + 0.25·3


def test_ema_state_dict_round_trip():
    net = _net()
    ema = EMA(net, decay=0.5)
    _perturb(net)
    ema.update(net)
    other = EMA(_net(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert_close(other.module.state_dict(), ema.module.state_dict())


def test_ema_update_rejects_a_different_module():
    ema = EMA(_net())
    with pytest.raises(ValueError, match="parameter names"):
        ema.update(nn.Linear(3, 4))


def test_ema_rejects_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        EMA(_net(), decay=1.5)


# --------------------------------------------------------------------------- contrastive


def test_contrastive_loss_is_log_batch_for_uninformative_logits_and_skips_duplicates():
    logits = torch.zeros(6, 6)
    assert_close(contrastive_loss(logits), torch.tensor(6.0).log())
    cond = torch.randn(6, 4)
    cond[1] = cond[0]  # the same caption twice: not each other's negative
    loss = contrastive_loss(logits, cond)
    expected = (2 * torch.tensor(5.0).log() + 4 * torch.tensor(6.0).log()) / 6
    assert_close(loss, expected)
    with pytest.raises(ValueError, match="B, B"):
        contrastive_loss(torch.zeros(3, 4))


def test_contrastive_critic_learns_which_condition_belongs_to_which_image():
    torch.manual_seed(0)
    mix = torch.randn(8, 16)
    critic = ContrastiveCritic(16, 8, dim=16, tau=0.1)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(150):
        cond = torch.randn(32, 8)
        feats = (cond @ mix).view(32, 16, 1, 1).expand(32, 16, 2, 2)  # features carry the cond
        loss = contrastive_loss(critic(feats, cond), cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
    cond = torch.randn(32, 8)
    logits = critic(cond @ mix, cond)
    assert contrastive_loss(logits).item() < 0.2 * torch.tensor(32.0).log().item()
    assert (logits.argmax(dim=1) == torch.arange(32)).float().mean().item() > 0.9
    with pytest.raises(ValueError, match="tau"):
        ContrastiveCritic(4, 4, tau=0.0)


def test_word_region_critic_ignores_padding_and_where_the_regions_sit():
    torch.manual_seed(0)
    critic = WordRegionCritic(6, 5, dim=8)
    feats, words = torch.randn(3, 6, 4, 4), torch.randn(3, 7, 5)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False
    logits = critic(feats, words, mask)
    assert logits.shape == (3, 3)
    padded = words.clone()
    padded[1, 4:] = 50.0  # padding values must not matter
    assert_close(critic(feats, padded, mask), logits)
    perm = torch.randperm(16)  # attention over a set of regions: their order is irrelevant
    shuffled = feats.flatten(2)[:, :, perm].view_as(feats)
    assert_close(critic(shuffled, words, mask), logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no real word"):
        critic(feats, words, torch.zeros(3, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="same B"):
        critic(feats, words[:2], mask[:2])


def test_word_region_critic_learns_which_region_has_which_colour():
    # Image i has colour a_i in region 0 and colour b_i in region 1; its caption says
    # "(a_i, top) (b_i, bottom)" as two words. Swapped captions ("(b_i, top) (a_i, bottom)")
    # hold the same words' colours, so only word–region binding tells them apart.
    torch.manual_seed(0)
    colours, n = 6, 64
    critic = WordRegionCritic(colours + 2, colours + 2, dim=16, tau=0.1)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    eye = torch.eye(colours + 2)

    def batch(a, b):
        feats = torch.zeros(len(a), colours + 2, 1, 2)
        feats[:, :, 0, 0] = eye[a] + eye[colours]  # colour + "top" marker
        feats[:, :, 0, 1] = eye[b] + eye[colours + 1]  # colour + "bottom" marker
        words = torch.stack([eye[a] + eye[colours], eye[b] + eye[colours + 1]], dim=1)
        return feats, words

    mask = torch.ones(n, 2, dtype=torch.bool)
    for _ in range(300):
        a, b = torch.randint(colours, (2, n))
        feats, words = batch(a, b)
        loss = contrastive_loss(critic(feats, words, mask), words.flatten(1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    a = torch.randint(colours, (n,))
    b = (a + torch.randint(1, colours, (n,))) % colours  # a != b
    feats, words = batch(a, b)
    _, swapped = batch(b, a)
    right = torch.diagonal(critic(feats, words, mask))
    wrong = torch.diagonal(critic(feats, swapped, mask))
    assert (right > wrong).float().mean().item() > 0.95


# --------------------------------------------------------------------------- word attention


def test_word_attention_is_attngan_eq2_over_the_real_words_only():
    torch.manual_seed(0)
    attn = WordAttention(6, 5)
    h, words = torch.randn(2, 6, 3, 4), torch.randn(2, 7, 5)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 3:] = False
    out = attn(h, words, mask)
    assert out.shape == h.shape
    # Eq. 2 written out for every region j: e' = U LN(e), β_j = softmax_i(h_j·e'_i / √C).
    e = attn.project(torch.nn.functional.layer_norm(words, (5,)))
    for b in range(2):
        real = e[b, mask[b]]  # (T_b, C)
        for y in range(3):
            for x in range(4):
                beta = torch.softmax(real @ h[b, :, y, x] / 6 ** 0.5, dim=0)
                assert_close(out[b, :, y, x], beta @ real, atol=1e-5, rtol=1e-5)
    padded = words.clone()
    padded[1, 3:] = 50.0  # padding values must not matter
    assert_close(attn(h, padded, mask), out)
    cl = h.contiguous(memory_format=torch.channels_last)
    assert attn(cl, words, mask).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="no real word"):
        attn(h, words, torch.zeros(2, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="same B"):
        attn(h, words[:1], mask[:1])


def test_word_attention_gives_each_region_the_word_its_features_point_at():
    # Two words mapped to orthogonal directions; region (0, 0) points at word 0, region
    # (0, 1) at word 1: each region's context is (almost) its own word's vector.
    attn = WordAttention(2, 2)
    with torch.no_grad():
        attn.project.weight.copy_(torch.eye(2) * 0.5)
    words = torch.tensor([[[3.0, -3.0], [-3.0, 3.0]]])  # LN → (1, -1) and (-1, 1)
    mask = torch.ones(1, 2, dtype=torch.bool)
    h = torch.tensor([[[[20.0, -20.0]], [[-20.0, 20.0]]]])  # (1, 2, 1, 2)
    out = attn(h, words, mask)
    assert_close(out[0, :, 0, 0], torch.tensor([0.5, -0.5]), atol=1e-4, rtol=0)
    assert_close(out[0, :, 0, 1], torch.tensor([-0.5, 0.5]), atol=1e-4, rtol=0)
