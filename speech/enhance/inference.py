"""Inference: a trained G (or a classical baseline) as ``enhance(wav) -> wav``, any length.

:class:`Enhancer` loads the small inference artifact a training run exports
(``<run>/g_ema.safetensors`` + ``.json``: EMA generator weights, model and feature config),
or, for a run still training, the EMA weights of its newest checkpoint. Signals are
processed in overlapping chunks (:func:`speech.audio.apply_chunked`, the in-memory twin of
:func:`speech.audio.process_file`), so a file of any length costs O(chunk) memory and the
evaluation runs exactly the code path of the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import yaml

from common.checkpoint import (
    CheckpointError,
    import_weights,
    load_checkpoint,
    read_artifact_meta,
    resolve_weights,
)
from common.config import from_dict, to_dict
from speech.audio import apply_chunked
from speech.enhance.config import EnhanceConfig, FeatureConfig, ModelConfig
from speech.enhance.models import Featurizer, MaskUNet, channel_table, enhance_z

__all__ = ["ARTIFACT", "Enhancer", "System", "build_generator", "featurizer", "pad_short"]

ARTIFACT = "g_ema.safetensors"


class System(Protocol):
    """Anything that enhances 16 kHz mono float32 ``[T]`` into ``[T]``."""

    name: str
    sr: int

    def enhance(self, wav: np.ndarray) -> np.ndarray: ...

    def enhance_chunk(self, wav: np.ndarray) -> np.ndarray: ...


def build_generator(cfg: ModelConfig) -> MaskUNet:
    return MaskUNet(channel_table(cfg.g_base, cfg.g_max, cfg.g_depth), mask_max=cfg.mask_max,
                    norm=cfg.g_norm, stem=cfg.g_stem)


def featurizer(cfg: FeatureConfig) -> Featurizer:
    return Featurizer(cfg.stft(), cfg.log_mean, cfg.log_std)


def pad_short(wav: np.ndarray, n_fft: int) -> tuple[np.ndarray, int]:
    """Centred STFT frames need more than n_fft/2 samples: zero-pad very short inputs."""
    n = len(wav)
    return (np.pad(wav, (0, n_fft - n)) if n < n_fft else wav), n


class Enhancer:
    """A trained mask G: ``enhance(wav: float32 [T] at 16 kHz) -> float32 [T]``."""

    def __init__(self, g: MaskUNet, feat: Featurizer, *, sr: int = 16000, name: str = "model",
                 chunk_seconds: float = 10.0, overlap_seconds: float = 0.5,
                 meta: dict[str, Any] | None = None) -> None:
        self.g = g.eval().requires_grad_(False)
        self.feat, self.sr, self.name = feat, sr, name
        self.chunk_seconds, self.overlap_seconds = chunk_seconds, overlap_seconds
        self.meta = meta or {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Enhancer:
        """From an artifact (``*.safetensors``), a run folder (its artifact, else the EMA of
        its newest checkpoint) or a checkpoint file ``<run>/checkpoints/step_*.pt``."""
        kind, file, run_dir = resolve_weights(path, ARTIFACT)
        if kind == "artifact":
            return cls._from_artifact(file, **kwargs)
        return cls._from_checkpoint(file, run_dir, **kwargs)

    @classmethod
    def _from_artifact(cls, path: Path, **kwargs: Any) -> Enhancer:
        meta_path = path.with_suffix(".json")
        meta = read_artifact_meta(path, "speech.enhance")
        model = from_dict(ModelConfig, meta["model"], str(meta_path))
        feature = from_dict(FeatureConfig, meta["feature"], str(meta_path))
        g = build_generator(model)
        import_weights(path, g)
        return cls(g, featurizer(feature), sr=feature.sr, meta=meta, **kwargs)

    @classmethod
    def _from_checkpoint(cls, path: Path, run_dir: Path, **kwargs: Any) -> Enhancer:
        config_path = run_dir / "config.yaml"
        if not config_path.is_file():
            raise CheckpointError(f"{path}: no config.yaml in {run_dir} to rebuild G from")
        cfg = from_dict(EnhanceConfig, yaml.safe_load(config_path.read_text()), str(config_path))
        payload = load_checkpoint(path)
        g = build_generator(cfg.model)
        g.load_state_dict(payload["ema"] if payload.get("ema") is not None
                          else payload["nets"]["g"])
        meta = {"step": payload["step"], "checkpoint": str(path), "d_head": cfg.model.d_head,
                "model": to_dict(cfg.model), "feature": to_dict(cfg.feature)}
        return cls(g, featurizer(cfg.feature), sr=cfg.feature.sr, meta=meta, **kwargs)

    # ------------------------------------------------------------------ enhancing

    @torch.no_grad()
    def enhance_chunk(self, wav: np.ndarray) -> np.ndarray:
        """One chunk, float32 [T] → [T]: STFT → G's mask → inverse STFT with noisy phase."""
        x, n = pad_short(np.asarray(wav, dtype=np.float32), self.feat.stft.n_fft)
        noisy_z, phase = self.feat.analyze(torch.from_numpy(np.ascontiguousarray(x))[None])
        z = enhance_z(noisy_z, self.g(noisy_z), self.feat)
        return self.feat.synthesize(z, phase, len(x))[0, :n].numpy()

    def enhance(self, wav: np.ndarray) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        chunk = int(round(self.chunk_seconds * self.sr))
        overlap = min(int(round(self.overlap_seconds * self.sr)), chunk - 1)
        return apply_chunked(wav, self.enhance_chunk, chunk, overlap)

    __call__ = enhance
