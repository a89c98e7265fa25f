"""Mode collapse on 2-D Gaussian mixtures, unconditional and class-conditional.

The lecture notes' lesson (SEEDS.md items 1, 2, 18, 19): a GAN trained by alternating D
and G steps can drop whole modes of the data (mode dropping) or pile its samples onto a
few points (mode collapse). Two mixtures make that visible and countable:

* ``ring8``: 8 Gaussians on a circle of radius 2 (Metz et al. 2017, Unrolled GANs §3.1);
* ``grid25``: 25 Gaussians on a 5×5 grid over [-4, 4]² (Srivastava et al. 2017, VEEGAN §5).

Losses: BCE with one-sided label smoothing (Salimans et al. 2016), optionally with the R1
penalty (Mescheder et al. 2018), WGAN with weight clipping and RMSProp (Arjovsky et al.
2017), WGAN-GP (Gulrajani et al. 2017), hinge (Lim & Ye 2017) and LSGAN (Mao et al. 2017).
Conditional runs give G and D the mode index as a one-hot class and use one of the shared
discriminator heads (``combined`` | ``split`` | ``projection``).

Metrics (on ``train.eval_samples`` samples of the EMA generator):
* ``hq``: fraction of samples within 3σ of their nearest mode centre;
* ``modes``: modes that receive at least ``min_share`` of their fair share n/K of
  high-quality samples (a mode with a handful of stray samples is not "covered");
* conditional only, ``label_acc``: fraction of samples whose nearest mode is the label,
  and ``label_hq``: ... and within 3σ of it.

    python -m research.toy2d data.mixture=grid25 loss.kind=wgan-gp
    python -m research.toy2d model.d_head=split train.steps=3000 --run-dir runs/toy2d/split
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.checkpoint import CheckpointError, export_weights
from common.config import RunConfig, RuntimeConfig, parse_cli
from common.discriminators import ConditionalDiscriminator, DOut, make_head
from common.io import atomic_path, atomic_write_json
from common.losses import (
    clip_weights,
    conditional_d_losses,
    conditional_g_losses,
    default_d_weights,
    gradient_penalty,
    mismatch_indices,
    r1_penalty,
)
from common.nn import EMA, mlp
from common.rundir import RunDirError, open_run
from common.runtime import Runtime, broadcast_module
from common.training import Hook, Phase, TrainState, restore

# ----------------------------------------------------------------------------- config


@dataclass
class DataConfig:
    mixture: Literal["ring8", "grid25"] = "ring8"
    std: float = 0.05  # per-mode standard deviation σ
    batch_size: int = 256


@dataclass
class ModelConfig:
    z_dim: int = 16
    hidden: int = 128
    depth: int = 3
    # "none" = unconditional; otherwise the class-conditional head from common/.
    d_head: Literal["none", "combined", "split", "projection"] = "none"
    cond_ch: int = 16  # width of D's compressed condition code


@dataclass
class LossConfig:
    kind: Literal["bce", "minimax", "hinge", "lsgan", "wgan", "wgan-gp"] = "bce"
    smoothing: float = 0.1  # one-sided: real target 1 - smoothing (bce/minimax only)
    n_critic: int | None = None  # None: 5 for wgan/wgan-gp (Arjovsky et al. Alg. 1), else 1
    clip: float = 0.01  # WGAN weight clipping c
    mismatch: Literal["roll", "class"] = "class"  # how wrong conditions are drawn
    # R1 penalty weight γ (Mescheder et al. 2018, eq. 9), logged as d/r1; 0 = off. A knob of
    # its own so an experiment matrix can switch it with one key.
    r1: float = 0.0
    # Other loss weights keyed by logged name (d/gp applies to wgan-gp only).
    weights: dict[str, float] = field(default_factory=lambda: {"d/gp": 10.0})


@dataclass
class OptimConfig:
    name: Literal["auto", "adam", "rmsprop"] = "auto"  # auto: rmsprop for wgan, else adam
    # None: 5e-5 for wgan (Arjovsky et al. 2017, Alg. 1), else 1e-3 (chosen on ring8 with
    # WGAN-GP for the 3000-step budget; Gulrajani et al. use 1e-4 over 100k steps).
    lr: float | None = None
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])


@dataclass
class TrainConfig:
    steps: int = 3000
    ema_decay: float = 0.995
    eval_samples: int = 2500
    min_share: float = 0.2


@dataclass
class Toy2DConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(
        default_factory=lambda: RunConfig(sample_every=1000, log_every=100, checkpoint_every=1000)
    )
    runtime: RuntimeConfig = field(
        default_factory=lambda: RuntimeConfig(precision="fp32", threads=1)
    )


# ----------------------------------------------------------------------------- data


def mode_centres(mixture: str) -> Tensor:
    """Tensor[K, 2] of mode centres."""
    if mixture == "ring8":
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return (2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)).float()
    if mixture == "grid25":
        axis = torch.linspace(-4.0, 4.0, 5)
        return torch.cartesian_prod(axis, axis)
    raise ValueError(f"data.mixture must be ring8 or grid25, got {mixture!r}")


class MixtureSource:
    """Endless (x: Tensor[B, 2], label: Tensor[B]) batches; position = its RNG state."""

    def __init__(self, centres: Tensor, std: float, batch_size: int, seed: int, device):
        self.centres, self.std, self.batch_size, self.device = centres, std, batch_size, device
        self.gen = torch.Generator().manual_seed(seed)

    def next(self) -> tuple[Tensor, Tensor]:
        label = torch.randint(len(self.centres), (self.batch_size,), generator=self.gen)
        noise = torch.randn(self.batch_size, 2, generator=self.gen) * self.std
        return (self.centres[label] + noise).to(self.device), label.to(self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["gen"])


# ----------------------------------------------------------------------------- models


class Scale(nn.Module):
    """Multiply by a fixed factor. The networks work in normalised units (data / scale),
    as Gulrajani et al.'s toy code divides the 25-Gaussian grid by 2.828; samples, plots
    and metrics stay in data units."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return x * self.factor


def data_scale(centres: Tensor) -> float:
    """Per-coordinate RMS of the mode centres: √2 for ring8, √8 ≈ 2.83 for grid25."""
    return float(centres.pow(2).mean().sqrt())


class Generator(nn.Module):
    """G(z, y): MLP from noise (and a one-hot class) to a 2-D point (in data units)."""

    def __init__(self, z_dim: int, n_classes: int, hidden: int, depth: int, scale: float):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        self.net = nn.Sequential(mlp(z_dim + n_classes, hidden, 2, depth, act="relu"), Scale(scale))

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:  # (B, z) -> (B, 2)
        return self.net(z if y is None else torch.cat([z, y], dim=1))


def build_discriminator(cfg: ModelConfig, n_classes: int, scale: float) -> ConditionalDiscriminator:
    backbone = nn.Sequential(
        Scale(1.0 / scale),
        *mlp(2, cfg.hidden, cfg.hidden, cfg.depth, act="lrelu"),
        nn.LeakyReLU(0.2),
    )
    head = make_head(cfg.d_head, cfg.hidden, n_classes, cond_ch=cfg.cond_ch, hidden=cfg.hidden)
    return ConditionalDiscriminator(backbone, head)


# ----------------------------------------------------------------------------- metrics


def mode_metrics(
    x: Tensor, centres: Tensor, std: float, min_share: float, labels: Tensor | None = None
) -> dict[str, float]:
    """Coverage and quality of samples ``x: Tensor[N, 2]`` against mode ``centres``."""
    dist = torch.cdist(x.float(), centres)  # (N, K)
    nearest_d, nearest = dist.min(dim=1)
    hq = nearest_d < 3 * std
    counts = torch.bincount(nearest[hq], minlength=len(centres))
    fair = len(x) / len(centres)
    out = {"hq": hq.float().mean().item(), "modes": int((counts >= min_share * fair).sum().item())}
    if labels is not None:
        right = nearest == labels
        out["label_acc"] = right.float().mean().item()
        out["label_hq"] = (right & hq).float().mean().item()
    return out


@torch.no_grad()
def sample(
    g: nn.Module, n: int, n_classes: int, gen: torch.Generator, device
) -> tuple[Tensor, Tensor | None]:
    z = torch.randn(n, g.z_dim, generator=gen).to(device)
    if not n_classes:
        return g(z), None
    labels = torch.arange(n) % n_classes
    return g(z, F.one_hot(labels, n_classes).float().to(device)), labels.to(device)


def scatter_png(panels: list[tuple[Tensor, str]], centres: Tensor) -> np.ndarray:
    """Scatter plots of samples over the mode centres, one panel per (points, title).

    Returns an (H, W, 3) uint8 image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(3.0 * len(panels), 3.1), dpi=100, squeeze=False
    )
    lim = 5.0 if len(centres) > 8 else 3.0
    for ax, (points, title) in zip(axes[0], panels, strict=True):
        pts = points.float().cpu().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.4, color="#1f77b4", linewidths=0)
        ax.scatter(centres[:, 0], centres[:, 1], s=12, color="#d62728", marker="x")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


# ----------------------------------------------------------------------------- training


def build_phases(
    cfg: Toy2DConfig, g: Generator, d: ConditionalDiscriminator, n_classes: int, device
) -> list[Phase]:
    kind = cfg.loss.kind
    onehot = (lambda y: F.one_hot(y, n_classes).float()) if n_classes else (lambda y: None)

    smoothing = cfg.loss.smoothing if kind in ("bce", "minimax") else 0.0  # BCE-only trick

    def d_loss(state: TrainState, batch) -> dict[str, Tensor]:
        x, y = batch
        c = onehot(y)
        z = torch.randn(len(x), cfg.model.z_dim, device=device)
        with torch.no_grad():
            fake = g(z, c)
        use_r1 = cfg.loss.r1 > 0
        x = x.requires_grad_(use_r1)
        real_right, fake_right = d(x, c), d(fake, c)
        real_wrong: DOut | None = None
        if n_classes:
            labels = y if cfg.loss.mismatch == "class" else None
            real_wrong = d(x, c[mismatch_indices(len(x), labels)])
        losses = conditional_d_losses(real_right, real_wrong, fake_right, kind, smoothing=smoothing)
        if kind == "wgan-gp":  # Gulrajani et al. 2017 eq. 3, on the joint/realism score
            losses["d/gp"] = gradient_penalty(lambda v, cond: _score(d(v, cond)), x, fake, c)
        if use_r1:  # Mescheder et al. 2018 eq. 9: zero-centred penalty on real data
            losses["d/r1"] = r1_penalty(_score(real_right), x)
        return losses

    def g_loss(state: TrainState, batch) -> dict[str, Tensor]:
        x, y = batch
        c = onehot(y)
        z = torch.randn(len(x), cfg.model.z_dim, device=device)
        return conditional_g_losses(d(g(z, c), c), kind)

    wgan = kind in ("wgan", "wgan-gp")
    n_critic = cfg.loss.n_critic or (5 if wgan else 1)
    clip = (lambda state: clip_weights(d, cfg.loss.clip)) if kind == "wgan" else None
    # Per-head defaults (StackGAN's real 1, wrong ½, fake ½ for joint heads); config wins.
    d_weights = default_d_weights(cfg.model.d_head)
    d_weights.update({k: v for k, v in cfg.loss.weights.items() if k.startswith("d/")})
    if kind != "wgan-gp":
        d_weights.pop("d/gp", None)
    if cfg.loss.r1 > 0:
        d_weights["d/r1"] = cfg.loss.r1
    g_weights = {k: v for k, v in cfg.loss.weights.items() if k.startswith("g/")}
    return [
        Phase("d", "d", d_loss, weights=d_weights, repeats=n_critic, after_update=clip),
        Phase("g", "g", g_loss, weights=g_weights),
    ]


def _score(out: DOut) -> Tensor:
    return out.joint if out.joint is not None else out.realism


def make_optimizer(cfg: OptimConfig, kind: str, params) -> torch.optim.Optimizer:
    name = cfg.name if cfg.name != "auto" else ("rmsprop" if kind == "wgan" else "adam")
    lr = cfg.lr if cfg.lr is not None else (5e-5 if kind == "wgan" else 1e-3)
    if name == "rmsprop":  # Arjovsky et al. 2017 §3: momentum hurts with weight clipping
        return torch.optim.RMSprop(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas))


def build(
    cfg: Toy2DConfig, n_classes: int, centres: Tensor, runtime: Runtime
) -> tuple[TrainState, list[Phase], MixtureSource]:
    """Networks, optimisers, EMA, phases and data for one run (also used by the benchmark)."""
    device = runtime.device
    scale = data_scale(centres)
    g = Generator(cfg.model.z_dim, n_classes, cfg.model.hidden, cfg.model.depth, scale).to(device)
    d = build_discriminator(cfg.model, n_classes, scale).to(device)
    broadcast_module(g)  # under torchrun every rank starts from rank 0's initialisation
    broadcast_module(d)
    state = TrainState(
        nets={"g": g, "d": d},
        optimizers={
            "g": make_optimizer(cfg.optim, cfg.loss.kind, g.parameters()),
            "d": make_optimizer(cfg.optim, cfg.loss.kind, d.parameters()),
        },
        ema=EMA(g, cfg.train.ema_decay),
    )
    data = MixtureSource(
        centres.cpu(),
        cfg.data.std,
        cfg.data.batch_size,
        seed=cfg.seed * 1000 + runtime.rank,
        device=device,
    )
    return state, build_phases(cfg, g, d, n_classes, device), data


def main(argv: list[str] | None = None) -> dict[str, float]:
    inv = parse_cli(
        Toy2DConfig, argv, prog="python -m research.toy2d", description=__doc__.split("\n\n")[0]
    )
    cfg: Toy2DConfig = inv.config
    try:
        run = open_run(cfg, inv, kind="toy2d")
    except (RunDirError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    device = run.runtime.device
    centres = mode_centres(cfg.data.mixture).to(device)
    n_classes = len(centres) if cfg.model.d_head != "none" else 0

    state, phases, data = build(cfg, n_classes, centres, run.runtime)
    if inv.resume:
        if run.checkpointer.latest() is not None:
            try:
                restore(state, data, run.checkpointer)
            except CheckpointError as err:
                print(f"error: {err}", file=sys.stderr)
                run.close()
                raise SystemExit(2) from None
        run.tracker.truncate_after(state.step)  # drop log lines past the restored step

    probe = torch.Generator().manual_seed(12345)  # fixed probe latents (STYLE.md item 8)
    probe_state = probe.get_state()

    def snapshot(st: TrainState) -> None:
        probe.set_state(probe_state)
        pts, _ = sample(st.ema.module, 1000, n_classes, probe, device)
        if run.runtime.is_main:
            with atomic_path(run.dir / "samples" / f"points_step{st.step:06d}.npy") as tmp:
                np.save(tmp, pts.cpu().numpy())
        run.tracker.log_image(
            "samples/scatter",
            scatter_png([(pts, f"step {st.step}")], centres.cpu()),
            step=st.step,
        )
        if st.step == cfg.train.steps:  # the whole history in one figure, for the dashboard
            snaps = sorted((run.dir / "samples").glob("points_step*.npy"))
            keep = [snaps[round(i)] for i in np.linspace(0, len(snaps) - 1, min(6, len(snaps)))]
            panels = [(torch.from_numpy(np.load(p)), f"step {int(p.stem[11:])}") for p in keep]
            run.tracker.log_image(
                "samples/evolution", scatter_png(panels, centres.cpu()), step=st.step
            )

    (run.dir / "samples").mkdir(parents=True, exist_ok=True)
    run.train(state, phases, data, steps=cfg.train.steps, every=cfg.run,
              hooks=[Hook(cfg.run.sample_every, snapshot)])

    results = evaluate(cfg, state, centres, n_classes, device)
    run.tracker.summary({f"eval/{k}": v for k, v in results.items()})
    if run.runtime.is_main:
        # The small inference artifact (STYLE.md item 7): EMA generator weights + metadata.
        export_weights(run.dir / "g_ema.safetensors", state.ema.module,
                       {"entry": "research.toy2d", "z_dim": cfg.model.z_dim,
                        "n_classes": n_classes, "mixture": cfg.data.mixture,
                        "hidden": cfg.model.hidden, "depth": cfg.model.depth,
                        "step": state.step})
        atomic_write_json(run.dir / "eval.json", {f"eval/{k}": v for k, v in results.items()})
    run.close()
    return results


def evaluate(
    cfg: Toy2DConfig, state: TrainState, centres: Tensor, n_classes: int, device
) -> dict[str, float]:
    """Mode metrics of the EMA generator (and the raw G, for comparison)."""
    out: dict[str, float] = {}
    for prefix, net in (("", state.ema.module), ("raw/", state.nets["g"])):
        gen = torch.Generator().manual_seed(cfg.seed + 777)
        x, labels = sample(net, cfg.train.eval_samples, n_classes, gen, device)
        metrics = mode_metrics(x, centres, cfg.data.std, cfg.train.min_share, labels)
        out.update({f"{prefix}{k}": v for k, v in metrics.items()})
    return out


if __name__ == "__main__":
    main()
