"""Inference: a trained VC generator as ``convert(wav, source, target) -> wav``, any length.

:class:`Converter` loads the small artifact a training run exports (``<run>/g_ema.safetensors``
+ ``.json``: EMA generator weights, model / feature config, speakers and their statistics),
or the EMA weights of a run's newest checkpoint. Per chunk: WORLD analysis → coded envelope
normalised with the source speaker's statistics → G → de-normalised with the target's →
WORLD synthesis with log-Gaussian-converted F0 and the source's aperiodicity. Long files go
through :func:`speech.audio.process_file` in cross-faded chunks (flat memory).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from common.checkpoint import (
    CheckpointError,
    import_weights,
    load_checkpoint,
    read_artifact_meta,
    resolve_weights,
)
from common.config import from_dict
from speech.audio import apply_chunked
from speech.vc.config import FeatureConfig, ModelConfig, VCConfig
from speech.vc.features import SpeakerStats, analyze, synthesize
from speech.vc.models import Generator212

__all__ = ["ARTIFACT", "STATS", "Converter", "build_generator"]

ARTIFACT = "g_ema.safetensors"
STATS = "speaker_stats.json"  # written into the run folder before training starts


def build_generator(model: ModelConfig, feature: FeatureConfig, n_speakers: int) -> nn.Module:
    """cyclegan: ModuleDict(xy = speaker 0 → 1, yx = 1 → 0); stargan: one G(x, c)."""
    kw = {"base": model.g_base, "res": model.g_res, "blocks": model.g_blocks}
    if model.kind == "cyclegan":
        return nn.ModuleDict({"xy": Generator212(feature.sp_dim, **kw),
                              "yx": Generator212(feature.sp_dim, **kw)})
    return Generator212(feature.sp_dim, cond_dim=n_speakers, **kw)


class Converter:
    """``convert(wav float32 [T] at sr, source, target) -> float32 [T]``."""

    def __init__(self, g: nn.Module, kind: str, speakers: list[str],
                 stats: dict[str, SpeakerStats], feature: FeatureConfig, *,
                 name: str = "model", f0_method: str | None = None,
                 ap_stride: int | None = None, chunk_seconds: float = 10.0,
                 overlap_seconds: float = 0.5,
                 meta: dict[str, Any] | None = None) -> None:
        self.g = g.eval().requires_grad_(False)
        self.kind, self.speakers, self.stats, self.feature = kind, list(speakers), stats, feature
        self.sr, self.name = feature.sr, name
        self.f0_method = f0_method or feature.f0_method
        self.ap_stride = feature.ap_stride if ap_stride is None else ap_stride
        if self.ap_stride < 1:
            raise ValueError(f"ap_stride must be >= 1, got {self.ap_stride}")
        self.chunk_seconds, self.overlap_seconds = chunk_seconds, overlap_seconds
        self.meta = meta or {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> Converter:
        """From an artifact, a run folder (its artifact, else its newest checkpoint's EMA)
        or a checkpoint file ``<run>/checkpoints/step_*.pt``."""
        kind, file, run_dir = resolve_weights(path, ARTIFACT)
        if kind == "artifact":
            return cls._from_artifact(file, **kwargs)
        return cls._from_checkpoint(file, run_dir, **kwargs)

    @classmethod
    def _from_artifact(cls, path: Path, **kwargs: Any) -> Converter:
        meta_path = path.with_suffix(".json")
        meta = read_artifact_meta(path, "speech.vc")
        model = from_dict(ModelConfig, meta["model"], str(meta_path))
        feature = from_dict(FeatureConfig, meta["feature"], str(meta_path))
        g = build_generator(model, feature, len(meta["speakers"]))
        import_weights(path, g)
        stats = {k: SpeakerStats.from_dict(v) for k, v in meta["stats"].items()}
        return cls(g, model.kind, meta["speakers"], stats, feature, meta=meta, **kwargs)

    @classmethod
    def _from_checkpoint(cls, path: Path, run_dir: Path, **kwargs: Any) -> Converter:
        config_path, stats_path = run_dir / "config.yaml", run_dir / STATS
        if not config_path.is_file() or not stats_path.is_file():
            raise CheckpointError(f"{path}: {run_dir} lacks config.yaml or {STATS}")
        cfg = from_dict(VCConfig, yaml.safe_load(config_path.read_text()), str(config_path))
        payload = load_checkpoint(path)
        g = build_generator(cfg.model, cfg.feature, len(cfg.data.speakers))
        g.load_state_dict(payload["ema"] if payload.get("ema") is not None
                          else payload["nets"]["g"])
        stats = {k: SpeakerStats.from_dict(v)
                 for k, v in json.loads(stats_path.read_text()).items()}
        meta = {"step": payload["step"], "checkpoint": str(path)}
        return cls(g, cfg.model.kind, cfg.data.speakers, stats, cfg.feature, meta=meta, **kwargs)

    # ------------------------------------------------------------------ converting

    def resolve(self, source: str | None, target: str, wav: np.ndarray | None = None) -> str:
        """Check ``target``; pick the source speaker when not given: CycleGAN's other
        speaker, or (StarGAN) the training speaker whose mean ln F0 is nearest the input's."""
        if target not in self.speakers:
            raise ValueError(f"unknown target speaker {target!r}; this model converts to "
                             f"{', '.join(self.speakers)}")
        if source is None:
            if self.kind == "cyclegan":
                return self.speakers[1 - self.speakers.index(target)]
            if wav is None:
                raise ValueError("give the source speaker (or the audio to guess it from)")
            from speech.features import logf0_stats, world_f0

            f0, _ = world_f0(np.asarray(wav, dtype=np.float64), self.sr, method="dio")
            try:
                mu = logf0_stats([f0]).mean
            except ValueError:  # no voiced frames: any speaker will do
                return next(s for s in self.speakers if s != target)
            others = [s for s in self.speakers if s != target] or self.speakers
            return min(others, key=lambda s: abs(self.stats[s].f0.mean - mu))
        if source not in self.speakers:
            raise ValueError(f"unknown source speaker {source!r}; speakers: "
                             f"{', '.join(self.speakers)}")
        if self.kind == "cyclegan" and source == target:
            raise ValueError(f"CycleGAN-VC2 converts between {self.speakers[0]} and "
                             f"{self.speakers[1]}: source and target must differ")
        return source

    @torch.no_grad()
    def convert_features(self, z: torch.Tensor, source: str, target: str) -> torch.Tensor:
        """Normalised coded envelope Tensor[B, 1, D, N] of ``source`` → ``target``'s."""
        if self.kind == "cyclegan":
            key = "xy" if target == self.speakers[1] else "yx"
            return self.g[key](z)
        c = torch.zeros(len(z), len(self.speakers))
        c[:, self.speakers.index(target)] = 1.0
        return self.g(z, c)

    def convert_chunk(self, wav: np.ndarray, source: str, target: str) -> np.ndarray:
        """One chunk, float32 [T] → [T] (WORLD analysis → G → WORLD synthesis)."""
        wav = np.asarray(wav, dtype=np.float32)
        n = len(wav)
        x = np.pad(wav, (0, max(0, 1600 - n)))  # WORLD needs a few frames: pad very short input
        utt = analyze(x, self.feature, self.f0_method, self.ap_stride)
        src, tgt = self.stats[source], self.stats[target]
        z = torch.from_numpy(src.sp.normalize(utt.coded).T.astype(np.float32))[None, None]
        out = self.convert_features(z, source, target)[0, 0].numpy().T.astype(np.float64)
        y = synthesize(utt, tgt.sp.denormalize(out), src, tgt, self.feature)
        y = np.pad(y, (0, max(0, n - len(y))))[:n]
        return np.nan_to_num(y).astype(np.float32)

    def convert(self, wav: np.ndarray, source: str | None, target: str) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        source = self.resolve(source, target, wav)
        chunk = int(round(self.chunk_seconds * self.sr))
        overlap = min(int(round(self.overlap_seconds * self.sr)), chunk - 1)
        return apply_chunked(wav, lambda w: self.convert_chunk(w, source, target), chunk, overlap)
