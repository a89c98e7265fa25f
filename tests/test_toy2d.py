"""The toy 2-D experiment's data, metrics and one real training step per head and loss."""

from __future__ import annotations

import pytest
import torch

from common.config import RuntimeConfig, load_config
from common.runtime import setup_runtime
from research.toy2d import (
    MixtureSource,
    Toy2DConfig,
    build,
    data_scale,
    mode_centres,
    mode_metrics,
)


def test_mixture_geometry():
    ring, grid = mode_centres("ring8"), mode_centres("grid25")
    assert ring.shape == (8, 2) and grid.shape == (25, 2)
    torch.testing.assert_close(ring.norm(dim=1), torch.full((8,), 2.0))
    assert grid.min().item() == -4.0 and grid.max().item() == 4.0
    assert abs(data_scale(ring) - 2**0.5) < 1e-6 and abs(data_scale(grid) - 8**0.5) < 1e-6


def test_metrics_on_perfect_collapsed_and_off_mode_samples():
    centres = mode_centres("ring8")
    perfect = centres.repeat(100, 1)  # 100 samples exactly on each mode
    m = mode_metrics(perfect, centres, std=0.05, min_share=0.2)
    assert m == {"hq": 1.0, "modes": 8}
    collapsed = centres[:1].repeat(800, 1)  # everything on mode 0: mode collapse
    m = mode_metrics(collapsed, centres, std=0.05, min_share=0.2)
    assert m == {"hq": 1.0, "modes": 1}
    off = perfect + torch.tensor([0.2, 0.0])  # 0.2 > 3σ = 0.15 away from every centre
    assert mode_metrics(off, centres, std=0.05, min_share=0.2)["hq"] == 0.0


def test_label_metrics_count_samples_in_their_own_mode():
    centres = mode_centres("ring8")
    labels = torch.arange(8).repeat(10)
    right = centres[labels]
    wrong = centres[(labels + 1) % 8]
    assert mode_metrics(right, centres, 0.05, 0.2, labels)["label_acc"] == 1.0
    m = mode_metrics(wrong, centres, 0.05, 0.2, labels)
    assert m["label_acc"] == 0.0 and m["label_hq"] == 0.0 and m["hq"] == 1.0


def test_a_few_mode_share_threshold_uncovers_stray_samples():
    centres = mode_centres("ring8")
    x = torch.cat([centres[:1].repeat(790, 1), centres[1:2].repeat(10, 1)])
    # fair share is 100 per mode; 10 samples on mode 1 are below a fifth of it
    assert mode_metrics(x, centres, 0.05, min_share=0.2)["modes"] == 1
    assert mode_metrics(x, centres, 0.05, min_share=0.05)["modes"] == 2


def test_data_source_resumes_exactly():
    src = MixtureSource(mode_centres("grid25"), 0.05, 16, seed=3, device="cpu")
    src.next()
    state = src.state_dict()
    a = src.next()
    src.load_state_dict(state)
    b = src.next()
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    assert torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    "overrides",
    [
        ["loss.kind=bce", "loss.r1=1.0"],
        ["loss.kind=wgan"],
        ["loss.kind=wgan-gp"],
        ["loss.kind=hinge", "model.d_head=combined"],
        ["loss.kind=bce", "model.d_head=split"],
        ["loss.kind=lsgan", "model.d_head=projection", "data.mixture=grid25"],
    ],
)
def test_one_training_step_produces_finite_named_losses(overrides):
    cfg = load_config(Toy2DConfig, None, [*overrides, "model.hidden=16", "data.batch_size=8"])
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    centres = mode_centres(cfg.data.mixture)
    n_classes = len(centres) if cfg.model.d_head != "none" else 0
    state, phases, data = build(cfg, n_classes, centres, runtime)
    before = [p.detach().clone() for p in state.nets["g"].parameters()]
    for phase in phases:
        losses = phase.loss_fn(state, data.next())
        assert all(k.startswith(phase.name + "/") for k in losses)
        assert all(torch.isfinite(v) for v in losses.values())
        assert set(phase.weights) <= set(losses), (phase.weights, losses)
    d_losses = phases[0].loss_fn(state, data.next())
    if cfg.loss.kind == "wgan-gp":
        assert "d/gp" in d_losses
    if cfg.loss.r1 > 0:
        assert "d/r1" in d_losses
    if cfg.model.d_head == "split":
        assert {"d/match", "d/mismatch"} <= set(d_losses)
    # the G phase's loss actually moves G
    g_total = sum(phases[1].loss_fn(state, data.next()).values())
    g_total.backward()
    state.optimizers["g"].step()
    assert any(
        not torch.equal(a, b) for a, b in zip(before, state.nets["g"].parameters(), strict=True)
    )


def test_inference_artifact_round_trips(tmp_path):
    from common.checkpoint import export_weights, import_weights
    from research.toy2d import Generator

    g = Generator(4, 0, 8, 1, scale=1.0)
    export_weights(tmp_path / "g.safetensors", g, {"z_dim": 4})
    h = Generator(4, 0, 8, 1, scale=1.0)
    assert import_weights(tmp_path / "g.safetensors", h)["z_dim"] == 4
    z = torch.randn(3, 4)
    torch.testing.assert_close(g(z), h(z), rtol=0, atol=0)
