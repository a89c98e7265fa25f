"""Opening a run: its folder, resolved config, runtime, tracker and checkpointer.

Every entry point does the same five things before training, so they live here once:

1. resolve the run folder (``run.dir`` or ``runs/<kind>/<name>``);
2. refuse to overwrite an existing run unless ``--resume``, and refuse ``--resume`` when the
   config changed (naming the keys that differ) — nothing is ever silently overwritten;
3. write the resolved ``config.yaml`` (STYLE.md item 4);
4. set up the runtime (device, precision, seed + rank, torchrun);
5. open the tracker (W&B + metrics.jsonl) and the checkpointer.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.distributed as dist
import yaml

from common.checkpoint import Checkpointer
from common.config import Invocation, RunConfig, config_hash, to_dict, to_yaml
from common.io import atomic_write_text
from common.runtime import Runtime, setup_runtime
from common.tracking import Tracker
from common.training import Hook, NonFiniteLossError, Phase, TrainState, train

__all__ = ["RunDirError", "Run", "open_run", "config_diff"]


class RunDirError(RuntimeError):
    """The run folder cannot be used as asked; one line naming the folder and the reason."""


@dataclass
class Run:
    dir: Path
    runtime: Runtime
    tracker: Tracker
    checkpointer: Checkpointer
    config_hash: str
    resume: bool

    def close(self) -> None:
        self.tracker.finish()

    def train(self, state: TrainState, phases: Sequence[Phase], data: Any, *, steps: int,
              every: RunConfig, hooks: Sequence[Hook] = ()) -> None:
        """:func:`common.training.train` with this run's runtime, tracker and checkpoints,
        at ``every``'s log / checkpoint intervals. A non-finite loss ends the process with
        the guard's one-line message (exit 1); the last good checkpoint stays loadable."""
        try:
            train(state, phases, data, steps=steps, runtime=self.runtime, tracker=self.tracker,
                  checkpointer=self.checkpointer, checkpoint_every=every.checkpoint_every,
                  log_every=every.log_every, hooks=list(hooks))
        except NonFiniteLossError as err:
            print(f"error: {err}", file=sys.stderr)
            self.close()
            raise SystemExit(1) from None


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted ``key: old -> new`` lines for every leaf that differs."""
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return lines


def _default_dir(kind: str, name: str | None, seed: int, runtime: Runtime) -> Path:
    stamp = [time.strftime("%Y%m%d-%H%M%S")]
    if runtime.distributed:  # every rank must agree on one folder
        dist.broadcast_object_list(stamp, src=0)
    return Path("runs") / kind / (name or f"{stamp[0]}-s{seed}")


def _check_folder(run_dir: Path, cfg: Any, resume: bool) -> None:
    saved = run_dir / "config.yaml"
    if not resume:
        if saved.exists():
            raise RunDirError(
                f"{run_dir}: a run already exists here; pass --resume to continue it or choose "
                "another --run-dir (nothing was overwritten)"
            )
        return
    if not saved.exists():
        raise RunDirError(f"{run_dir}: nothing to resume (no config.yaml); drop --resume")
    old = {k: v for k, v in (yaml.safe_load(saved.read_text()) or {}).items() if k != "run"}
    new = {k: v for k, v in to_dict(cfg).items() if k != "run"}
    diff = config_diff(old, new)
    if diff:
        raise RunDirError(f"{saved}: --resume refused, the config changed: {'; '.join(diff)}")


def open_run(cfg: Any, inv: Invocation, *, kind: str) -> Run:
    """Open (or re-open with ``inv.resume``) the run described by ``cfg``.

    ``cfg`` is a root config with ``seed``, ``run`` (:class:`RunConfig`) and ``runtime``
    (:class:`RuntimeConfig`) fields. ``kind`` names the default folder under ``runs/``.
    """
    runtime = setup_runtime(cfg.runtime, cfg.seed)
    run_dir = (
        Path(cfg.run.dir) if cfg.run.dir else _default_dir(kind, cfg.run.name, cfg.seed, runtime)
    )
    _check_folder(run_dir, cfg, inv.resume)
    if runtime.distributed:
        dist.barrier()  # everyone has checked the folder before rank 0 writes into it
    if runtime.is_main and not inv.resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", to_yaml(cfg))
    digest = config_hash(cfg)
    tracker = Tracker(
        run_dir,
        to_dict(cfg),
        project=cfg.run.wandb_project,
        group=cfg.run.group,
        name=cfg.run.name or run_dir.name,
        tags=list(cfg.run.tags),
        wandb_mode=cfg.run.wandb_mode,
        is_main=runtime.is_main,
        resume_id=Tracker.stored_wandb_id(run_dir) if inv.resume else None,
        resume=inv.resume,  # the entry truncates metrics.jsonl to the restored step
    )
    checkpointer = Checkpointer(
        run_dir / "checkpoints", digest, keep=cfg.run.keep_checkpoints, rank=runtime.rank
    )
    return Run(run_dir, runtime, tracker, checkpointer, digest, inv.resume)
