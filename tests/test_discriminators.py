"""Tests for common.discriminators: heads, make_head, ConditionalDiscriminator."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.discriminators import (
    HEAD_KINDS,
    CombinedHead,
    ConditionalDiscriminator,
    DOut,
    ProjectionHead,
    SplitHead,
    StandardizedHead,
    condition_map,
    make_head,
)

B, C, E, H, W = 3, 8, 5, 4, 4  # batch, feature channels, condition width, feature grid
FIELDS = {
    "combined": {"joint"},
    "split": {"realism", "match"},
    "projection": {"joint"},
    "none": {"realism"},
}


def _backbone() -> nn.Module:
    """Tensor[B, 1, 16, 16] → Tensor[B, C, 4, 4]."""
    return nn.Sequential(
        nn.Conv2d(1, C, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(C, C, 4, 2, 1), nn.LeakyReLU(0.2)
    )


def _present(out: DOut) -> set[str]:
    return {k for k in ("realism", "match", "joint") if getattr(out, k) is not None}


def _cond(kind: str, cond_type: str, gen: torch.Generator) -> torch.Tensor | None:
    if cond_type == "vector":
        return torch.randn(B, E, generator=gen)
    if cond_type == "map":  # larger and non-square grid than the features: resized to 4x4
        return torch.randn(B, E, 10, 7, generator=gen)
    if cond_type == "small_map":  # smaller than the features: upsampled
        return torch.randn(B, E, 2, 3, generator=gen)
    return None


def _cases():
    for kind in HEAD_KINDS:
        conds = ["none"] if kind == "none" else ["vector", "map", "small_map"]
        for cond_type in conds:
            for patch in (True, False):
                yield kind, cond_type, patch


@pytest.mark.parametrize("kind,cond_type,patch", list(_cases()))
def test_head_fields_and_shapes(kind, cond_type, patch):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    cond_dim = 0 if kind == "none" else E
    head = make_head(kind, C, cond_dim, cond_ch=6, hidden=7, patch=patch, spatial=(H, W))
    D = ConditionalDiscriminator(_backbone(), head)
    out = D(torch.randn(B, 1, 16, 16, generator=gen), _cond(kind, cond_type, gen))
    assert isinstance(out, DOut)
    assert _present(out) == FIELDS[kind]
    P = H * W if patch else 1
    for name in FIELDS[kind]:
        assert getattr(out, name).shape == (B, P)


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_vector_features_are_read_as_1x1_maps(kind):
    cond_dim = 0 if kind == "none" else E
    head = make_head(kind, C, cond_dim, cond_ch=6, hidden=7)
    cond = None if kind == "none" else torch.randn(B, E)
    out = head(torch.randn(B, C), cond)
    assert all(getattr(out, k).shape == (B, 1) for k in FIELDS[kind])


def test_condition_map_tiles_vectors_and_resizes_maps():
    v = torch.randn(2, 3)
    tiled = condition_map(v, (4, 5))
    assert tiled.shape == (2, 3, 4, 5)
    assert_close(tiled[:, :, 3, 2], v)
    m = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert_close(condition_map(m, (2, 2)), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))  # area
    up = condition_map(torch.tensor([[[[1.0, 2.0]]]]), (2, 4))  # nearest
    assert_close(up, torch.tensor([[[[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 2.0, 2.0]]]]))


# --------------------------------------------------------------------------- numerics


def _hand_set_projection(patch: bool) -> ProjectionHead:
    head = ProjectionHead(C, E, patch=patch)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        head.psi.weight.copy_(torch.randn(1, C, generator=gen))
        head.psi.bias.fill_(0.25)
        head.embed.weight.copy_(torch.randn(C, E, generator=gen))
    return head


def test_projection_head_global_matches_formula():
    head = _hand_set_projection(patch=False)
    f = torch.randn(B, C, H, W)
    y = torch.eye(E)[:B]  # one-hot classes
    phi = f.sum(dim=(2, 3))  # (B, C) sum pooling
    psi = phi @ head.psi.weight.T + head.psi.bias  # (B, 1)
    vy = y @ head.embed.weight.T  # (B, C): row of the embedding matrix for each class
    expected = psi + (vy * phi).sum(dim=1, keepdim=True)
    assert_close(head(f, y).joint, expected)


@pytest.mark.parametrize("kind", ["combined", "split", "projection"])
def test_standardized_head_scores_the_standardized_condition(kind):
    torch.manual_seed(0)
    head = make_head(kind, C, E, cond_ch=6, hidden=7, spatial=(H, W)).eval()
    wrapped = StandardizedHead(head, E)
    data = 0.05 * torch.randn(50, E) + 3.0
    wrapped.norm.fit(data)
    f, y = torch.randn(B, C, H, W), data[:B]
    z = (y - wrapped.norm.mean) / wrapped.norm.scale
    for name in FIELDS[kind]:
        assert_close(getattr(wrapped(f, y), name), getattr(head(f, z), name))


def test_projection_head_patch_and_map_condition_is_per_position():
    head = _hand_set_projection(patch=True)
    f = torch.randn(B, C, H, W)
    y = torch.randn(B, E, H, W)  # same grid, so no resizing
    w, b, V = head.psi.weight[0], head.psi.bias, head.embed.weight
    expected = torch.empty(B, H * W)
    for i in range(B):
        for r in range(H):
            for c in range(W):
                phi = f[i, :, r, c]
                expected[i, r * W + c] = phi @ w + b + (V @ y[i, :, r, c]) @ phi
    assert_close(head(f, y).joint, expected)


def test_combined_head_depends_on_condition():
    torch.manual_seed(0)
    head = CombinedHead(C, E, cond_ch=6, hidden=7, patch=True)
    f = torch.randn(B, C, H, W)
    a, b = head(f, torch.randn(B, E)), head(f, torch.randn(B, E))
    assert (a.joint - b.joint).abs().max() > 1e-4


def test_split_realism_ignores_condition_but_match_does_not():
    torch.manual_seed(0)
    head = SplitHead(C, E, cond_ch=6, hidden=7, patch=False, spatial=(H, W))
    f = torch.randn(B, C, H, W)
    a, b = head(f, torch.randn(B, E)), head(f, torch.randn(B, E))
    assert torch.equal(a.realism, b.realism)
    assert (a.match - b.match).abs().max() > 1e-4


# --------------------------------------------------------------------------- errors


def test_make_head_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="combined, split, projection, none"):
        make_head("concat", C, E)


@pytest.mark.parametrize("kind", ["combined", "split", "projection"])
def test_conditioned_head_needs_cond_dim(kind):
    with pytest.raises(ValueError, match="cond_dim"):
        make_head(kind, C, 0)


def test_norm_only_for_heads_with_a_fuse_layer():
    assert make_head("split", C, E, norm="bn") is not None
    with pytest.raises(ValueError, match="norm"):
        make_head("projection", C, E, norm="bn")


def test_batch_mismatch_raises():
    D = ConditionalDiscriminator(_backbone(), make_head("combined", C, E, spatial=(H, W)))
    with pytest.raises(ValueError, match="batch size"):
        D(torch.randn(B, 1, 16, 16), torch.randn(B + 1, E))


def test_conditioned_head_refuses_missing_condition():
    D = ConditionalDiscriminator(_backbone(), make_head("projection", C, E))
    with pytest.raises(ValueError, match="needs a condition"):
        D(torch.randn(B, 1, 16, 16))


def test_global_head_refuses_wrong_feature_size():
    head = make_head("combined", C, E, spatial=(2, 2))
    with pytest.raises(ValueError, match="spatial"):
        head(torch.randn(B, C, H, W), torch.randn(B, E))


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("kind", HEAD_KINDS)
@pytest.mark.parametrize("patch", [True, False])
def test_gradients_reach_backbone_and_head_through_every_output(kind, patch):
    torch.manual_seed(0)
    cond_dim = 0 if kind == "none" else E
    for field in FIELDS[kind]:
        head = make_head(kind, C, cond_dim, cond_ch=6, hidden=7, patch=patch, spatial=(H, W))
        D = ConditionalDiscriminator(_backbone(), head)
        cond = None if kind == "none" else torch.randn(B, E)
        getattr(D(torch.randn(B, 1, 16, 16), cond), field).square().sum().backward()
        first = D.backbone[0].weight.grad
        assert first is not None and first.abs().sum() > 0, f"{kind}.{field}: no backbone grad"
        head_grads = [p.grad for p in D.head.parameters() if p.grad is not None]
        assert head_grads and any(g.abs().sum() > 0 for g in head_grads), f"{kind}.{field}"


@pytest.mark.parametrize("patch", [False, True])
def test_projection_pairwise_scores_are_the_joint_logit_of_every_pair_up_to_its_row(patch):
    torch.manual_seed(0)
    head = StandardizedHead(ProjectionHead(C, E, patch=patch, spectral=True), E).eval()
    head.norm.fit(torch.randn(40, E) * 2 + 1)
    f, y = torch.randn(B, C, H, W), torch.randn(B, E)
    pairs = head.pairwise(f, y)
    assert pairs.shape == (B, B)
    for i in range(B):
        for j in range(B):  # joint(i, j) − joint(i, i) = pairs[i, j] − pairs[i, i]
            joint = head(f[i : i + 1], y[j : j + 1]).joint
            own = head(f[i : i + 1], y[i : i + 1]).joint
            assert_close((joint - own).sum(), pairs[i, j] - pairs[i, i], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="projection only"):
        StandardizedHead(make_head("combined", C, E, spatial=(H, W)), E).pairwise(f, y)
    with pytest.raises(ValueError, match=r"vector conditions \[B, E\]"):
        head.head.pairwise(f, torch.randn(B, E, H, W))
