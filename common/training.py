"""The training loop: a function over a :class:`TrainState` and a list of :class:`Phase`.

Networks, losses and the loop are three separate things (STYLE.md item 1, after
StyleGAN2-ADA and Descript's DAC): a track builds its networks and optimisers into a
``TrainState``, writes each phase's loss as a function returning *named* loss terms, and
hands both to :func:`train`, which owns backward passes, gradient averaging over ranks,
clipping, the NaN/Inf guard, EMA, logging and checkpoints.

A phase is one optimiser update (``repeats`` times per step, e.g. the WGAN critic's
n_critic = 5, Arjovsky et al. 2017 Alg. 1), optionally only every ``every`` steps (lazy
regularisation, Karras et al. 2020 §4). Each phase's total is
``sum(weights[k] * losses[k])`` with the weights keyed by the logged names (STYLE.md item 5).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn

from common.checkpoint import Checkpointer
from common.losses import weighted_sum
from common.nn.ema import EMA
from common.runtime import Runtime, all_reduce_grads, all_reduce_mean, rng_state, set_rng_state

__all__ = [
    "param_digest",
    "warmup_cosine",
    "DataSource",
    "TrainState",
    "Phase",
    "Hook",
    "NonFiniteLossError",
    "train",
    "restore",
]


class DataSource(Protocol):
    """An endless batch stream whose position can be saved and restored exactly."""

    def next(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainState:
    """Everything that changes during training (and so goes into a checkpoint)."""

    nets: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any] = field(default_factory=dict)
    ema: EMA | None = None
    step: int = 0  # number of completed steps
    scaler: torch.amp.GradScaler | None = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, payload: Mapping[str, Any]) -> None:
        self.step = int(payload["step"])
        for group in ("nets", "optimizers", "schedulers"):
            mine, saved = getattr(self, group), payload[group]
            if set(mine) != set(saved):
                raise KeyError(f"checkpoint {group} {sorted(saved)} != this run's {sorted(mine)}")
            for name, obj in mine.items():
                obj.load_state_dict(saved[name])
        if self.ema is not None:
            self.ema.load_state_dict(payload["ema"])
        if self.scaler is not None and payload.get("scaler") is not None:
            self.scaler.load_state_dict(payload["scaler"])


LossFn = Callable[[TrainState, Any], dict[str, Tensor]]


@dataclass
class Phase:
    """One optimiser update: ``loss_fn(state, batch)`` returns named loss terms."""

    name: str  # log namespace, e.g. "d" or "g"
    optimizer: str  # key into TrainState.optimizers
    loss_fn: LossFn
    weights: dict[str, float] = field(default_factory=dict)  # missing names weigh 1.0
    repeats: int = 1  # updates per step (n_critic)
    every: int = 1  # run on steps where step % every == 0
    clip_grad: float | None = None  # max gradient norm
    after_update: Callable[[TrainState], None] | None = None  # e.g. WGAN weight clipping


@dataclass
class Hook:
    """``fn(state)`` after every ``every`` steps and after the last step."""

    every: int
    fn: Callable[[TrainState], None]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/Inf; the message names the step, the phase and the loss."""


def _params(optimizer: torch.optim.Optimizer) -> list[Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _check_finite(
    step: int,
    phase: Phase,
    losses: dict[str, Tensor],
    total: Tensor,
    runtime: Runtime,
    checkpointer: Checkpointer | None,
) -> None:
    bad = [k for k, v in losses.items() if not torch.isfinite(v.detach()).all()]
    if not torch.isfinite(total.detach()):
        bad = bad or ["total"]
    flag = torch.tensor(float(bool(bad)), device=total.device)
    if runtime.distributed:  # every rank must stop together, or the others deadlock
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() == 0:
        return
    last = checkpointer.latest() if checkpointer is not None else None
    where = (
        f"the last good checkpoint is {last} (continue with --resume)"
        if last
        else ("no checkpoint was written yet")
    )
    what = (
        f"loss '{bad[0]}' is {losses.get(bad[0], total).item()}"
        if bad
        else "a loss on another rank is not finite"
    )
    raise NonFiniteLossError(f"step {step + 1}, phase '{phase.name}': {what}; stopped, {where}")


def param_digest(nets: Mapping[str, nn.Module]) -> str:
    """sha256 of every parameter and buffer: equal digests mean bitwise-equal networks."""
    h = hashlib.sha256()
    for name in sorted(nets):
        for key, tensor in nets[name].state_dict().items():
            h.update(key.encode())
            h.update(
                tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            )
    return h.hexdigest()


def _save(
    state: TrainState, data: DataSource, checkpointer: Checkpointer, runtime: Runtime
) -> None:
    # Each rank records its own RNG, data position and a digest of its weights, so a
    # torchrun job can be checked for ranks drifting apart (they must stay identical).
    per_rank = {
        "rng": rng_state(),
        "data": data.state_dict(),
        "param_digest": param_digest(state.nets),
    }
    if runtime.distributed and runtime.rank != 0:
        checkpointer.save(state.step, {}, per_rank)
    if runtime.distributed:
        dist.barrier()  # rank files first: a main file on disk means a complete checkpoint
    if runtime.is_main:
        checkpointer.save(state.step, state.state_dict(), per_rank)
    if runtime.distributed:
        dist.barrier()


def restore(state: TrainState, data: DataSource, checkpointer: Checkpointer) -> int:
    """Load the newest checkpoint into ``state``, the data position and the RNGs."""
    payload = checkpointer.load()
    state.load_state_dict(payload)
    data.load_state_dict(payload["data"])
    set_rng_state(payload["rng"])
    return state.step


def train(
    state: TrainState,
    phases: Sequence[Phase],
    data: DataSource,
    *,
    steps: int,
    runtime: Runtime,
    tracker: Any,
    checkpointer: Checkpointer | None = None,
    checkpoint_every: int = 0,
    log_every: int = 50,
    hooks: Sequence[Hook] = (),
    ema_source: str = "g",
    ema_after: str = "g",
) -> TrainState:
    """Run phases until ``state.step == steps``; log, checkpoint and call hooks on cadence.

    ``ema_source`` names the net whose EMA ``state.ema`` tracks, updated after phase
    ``ema_after``. Logged values are means over ranks; only rank 0 writes anything. A phase
    that runs every k > 1 steps is logged with the values of its latest update.
    """
    if state.scaler is None and runtime.amp_dtype == torch.float16:
        state.scaler = torch.amp.GradScaler(runtime.device.type)
    bar = tracker.progress(steps, initial=state.step)
    # Per phase, the values of its latest update (kept across steps, see the docstring; a
    # phase's entry is replaced whole, so a term it no longer returns is not logged again).
    phase_logs: dict[int, dict[str, Tensor]] = {}
    try:
        while state.step < steps:
            for index, phase in enumerate(phases):
                if state.step % phase.every:
                    continue
                optimizer = state.optimizers[phase.optimizer]
                logs = phase_logs[index] = {}
                for _ in range(phase.repeats):
                    batch = data.next()
                    with runtime.autocast():
                        losses = phase.loss_fn(state, batch)
                    total = weighted_sum(losses, phase.weights)
                    _check_finite(state.step, phase, losses, total, runtime, checkpointer)
                    optimizer.zero_grad(set_to_none=True)
                    scaled = state.scaler.scale(total) if state.scaler is not None else total
                    scaled.backward()
                    params = _params(optimizer)
                    all_reduce_grads(params)
                    if state.scaler is not None:
                        state.scaler.unscale_(optimizer)
                    if phase.clip_grad is not None:
                        logs[f"train/{phase.name}/grad_norm"] = nn.utils.clip_grad_norm_(
                            params, phase.clip_grad
                        )
                    if state.scaler is not None:
                        state.scaler.step(optimizer)
                        state.scaler.update()
                    else:
                        optimizer.step()
                    if phase.after_update is not None:
                        phase.after_update(state)
                logs.update({f"train/{k}": v.detach() for k, v in losses.items()})
                logs[f"train/{phase.name}/total"] = total.detach()
                if phase.name == ema_after and state.ema is not None:
                    state.ema.update(state.nets[ema_source])
            for scheduler in state.schedulers.values():
                scheduler.step()
            state.step += 1
            last = state.step == steps
            shown = None
            if state.step % log_every == 0 or last:
                values = {k: float(all_reduce_mean(v.float()))
                          for logs in phase_logs.values() for k, v in logs.items()}
                for name, opt in state.optimizers.items():
                    values[f"train/lr/{name}"] = opt.param_groups[0]["lr"]
                tracker.log(values, step=state.step)
                shown = {
                    k.removeprefix("train/"): v for k, v in values.items() if k.endswith("/total")
                }
            bar.update(1, shown)
            if (
                checkpointer is not None
                and checkpoint_every > 0
                and (state.step % checkpoint_every == 0 or last)
            ):
                _save(state, data, checkpointer, runtime)
            for hook in hooks:
                if state.step % hook.every == 0 or last:
                    hook.fn(state)
    finally:
        bar.close()
    return state


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """Learning-rate factor for ``LambdaLR``: linear warm-up over ``warmup`` steps, then a
    cosine decay to zero at ``steps`` (Loshchilov & Hutter 2017, SGDR without restarts)."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(steps - warmup, 1)
    return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
