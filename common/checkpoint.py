"""Atomic, versioned, rotating checkpoints of the complete training state.

A checkpoint holds everything needed to continue a run exactly (STYLE.md item 7): networks,
EMA, optimisers, schedulers, grad scaler, step, every RNG state, the data position, the
config hash and a format version. It is one ``torch.save`` file of plain containers and
tensors, loaded with ``torch.load(weights_only=True)`` so a checkpoint cannot run code.
Under torchrun, rank 0 writes the shared state and every other rank writes a small
``.rankN`` file with its own RNG and data position.

A separate small inference artifact (``*.safetensors`` + ``*.json``) holds only the weights
a sampler needs (e.g. the EMA generator) and its metadata.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from common.io import atomic_path, atomic_write_json

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "Checkpointer",
    "save_checkpoint",
    "load_checkpoint",
    "export_weights",
    "import_weights",
    "read_artifact_meta",
    "resolve_weights",
]

FORMAT_VERSION = 1
_NAME = re.compile(r"step_(\d{9})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the path and the reason in one line."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (temp file + rename): a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(
    path: Path, *, config_hash: str | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Load and validate a checkpoint (format version, and config hash when given)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated, foreign or code-carrying pickles all land here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a loadable checkpoint ({first})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path}: not a cgan-lab checkpoint (no 'format_version' key)")
    version = payload["format_version"]
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: key 'format_version' is {version}, this code reads {FORMAT_VERSION}"
        )
    if config_hash is not None and payload.get("config_hash") != config_hash:
        raise CheckpointError(
            f"{path}: key 'config_hash' is {payload.get('config_hash')}, the current config "
            f"hashes to {config_hash}; the config changed since this checkpoint was written"
        )
    return payload


@dataclass
class Checkpointer:
    """Rotating checkpoints ``<dir>/step_000000123.pt`` (newest ``keep`` are kept)."""

    dir: Path
    config_hash: str
    keep: int = 3
    rank: int = 0

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)

    def path_for(self, step: int) -> Path:
        return self.dir / f"step_{step:09d}.pt"

    def _rank_path(self, step: int, rank: int) -> Path:
        return self.dir / f"step_{step:09d}.rank{rank}.pt"

    def all(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if _NAME.search(p.name))

    def latest(self) -> Path | None:
        found = self.all()
        return found[-1] if found else None

    def save(self, step: int, shared: dict[str, Any], per_rank: dict[str, Any]) -> Path | None:
        """Write step ``step``: ``shared`` from rank 0, ``per_rank`` from every rank.

        The rank files are written before rank 0's main file, so a main file on disk means
        the whole checkpoint is there (callers barrier between the two under torchrun).
        """
        header = {"format_version": FORMAT_VERSION, "config_hash": self.config_hash, "step": step}
        if self.rank != 0:
            save_checkpoint(self._rank_path(step, self.rank), {**header, **per_rank})
            return None
        path = save_checkpoint(self.path_for(step), {**header, **shared, **per_rank})
        self._rotate()
        return path

    def load(self, path: Path | None = None) -> dict[str, Any]:
        """Load ``path`` (default: the newest) merged with this rank's own part."""
        path = path or self.latest()
        if path is None:
            raise CheckpointError(f"{self.dir}: no checkpoint to resume from")
        payload = load_checkpoint(path, config_hash=self.config_hash)
        if self.rank != 0:
            mine = load_checkpoint(
                self._rank_path(payload["step"], self.rank), config_hash=self.config_hash
            )
            payload.update({k: mine[k] for k in ("rng", "data") if k in mine})
        return payload

    def _rotate(self) -> None:
        for old in self.all()[: -self.keep] if self.keep > 0 else []:
            step = int(_NAME.search(old.name).group(1))  # type: ignore[union-attr]
            for extra in self.dir.glob(f"step_{step:09d}.rank*.pt"):
                extra.unlink(missing_ok=True)
            old.unlink(missing_ok=True)


def export_weights(path: Path, module: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """Small inference artifact: ``path`` (.safetensors) + ``path`` with .json metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_json(path.with_suffix(".json"), {"format_version": FORMAT_VERSION, **meta})
    return path


def import_weights(path: Path, module: torch.nn.Module) -> dict[str, Any]:
    """Load an :func:`export_weights` artifact into ``module``; returns its metadata."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise CheckpointError(f"{path}: weights or metadata file ({meta_path.name}) missing")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: key 'format_version' is {meta.get('format_version')}, "
            f"this code reads {FORMAT_VERSION}"
        )
    module.load_state_dict(load_file(str(path)))
    return meta


def read_artifact_meta(path: Path, entry: str) -> dict[str, Any]:
    """The metadata of an :func:`export_weights` artifact, checked to come from ``entry``."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not meta_path.is_file():
        raise CheckpointError(f"{path}: metadata {meta_path.name} missing")
    meta = json.loads(meta_path.read_text())
    if meta.get("entry") != entry:
        raise CheckpointError(f"{path}: not a {entry} generator (entry {meta.get('entry')!r})")
    return meta


def resolve_weights(path: str | Path, artifact: str) -> tuple[str, Path, Path]:
    """What a user's ``--checkpoint`` names: ``(kind, file, run folder)``.

    ``kind`` is ``"artifact"`` (a ``.safetensors`` inference artifact) or ``"checkpoint"``
    (a full ``step_*.pt``, whose run folder holds the config to rebuild the nets from). A run
    folder means its artifact ``artifact`` if present, else its newest checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        if (path / artifact).is_file():
            return "artifact", path / artifact, path
        latest = Checkpointer(path / "checkpoints", "").latest()
        if latest is None:
            raise CheckpointError(f"{path}: neither {artifact} nor a checkpoint to load")
        return "checkpoint", latest, path
    if path.suffix in (".safetensors", ".pt") and not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return "artifact", path, path.parent
    if path.suffix == ".pt":
        return "checkpoint", path, path.parent.parent
    raise CheckpointError(f"{path}: expected a run folder, a .safetensors artifact or a "
                          "checkpoints/step_*.pt file")
