"""Offline evaluation of text-to-image generators on SynthBirds (METRICS.md).

Three sources of images:

``checkpoint=PATH sampler=module:function``
    a generator, through any module whose ``function(checkpoint, device)`` returns a
    :class:`Sampler`. ``sampler=oracle`` is the built-in reference: it renders exactly what
    each caption says (other attributes random) - a perfect generator, so its scores are
    the ceiling the judge allows.
``images=DIR``
    a folder of square images with ``DIR/captions.jsonl``, one line per image:
    ``{"image": "0001.png", "caption": "...", "attributes": {"body": "red", ...}}``
    (``attributes`` optional: lines without it count for fd_judge and diversity only).
``prompts=FILE.jsonl`` (with a sampler)
    your own sentences: ``{"caption": "...", "attributes": {...}}`` per line (attributes
    optional: if absent they are read from the caption by SynthBirds' caption parser);
    ``n_z`` images each, scored per prompt.

Metrics, written to ``<run dir>/eval.json`` and logged to W&B:

* ``metrics/attr_acc`` - the judge's prediction equals the caption's attribute, averaged
  over the attributes each caption mentions, then over images; ``metrics/attr_acc/<name>``
  per attribute; ``metrics/judge_ceiling/<name>`` is the judge's own accuracy on real
  renders at the same resolution;
* ``metrics/binding/swapped`` - over captions naming two or more different body / wing /
  crown colours, the share of those parts drawn in the colour the caption gives another
  part (colour right, part wrong); ``metrics/binding/wrong`` - the share drawn wrong at
  all (:func:`colour_binding`);
* ``metrics/fd_judge_<n>`` - Fréchet distance of judge features against the first ``n``
  SynthBirds test renders (statistics cached), and ``metrics/fd_judge_<n>_floor``: the
  same distance between two disjoint real sets of ``n`` test renders (test images
  ``[n, 2n)`` against ``[0, n)``); a generator cannot be expected to go below the floor;
* ``metrics/diversity`` - mean pairwise L2 distance of judge features across ``n_z``
  samples of one caption, averaged over captions;
* ``metrics/fid_inception_<n>``, ``metrics/is_inception_<n>`` when ``inception=PATH``.

Generated images are quantised to uint8 (as when saved to PNG), then judged like real ones:
real renders are area-downsampled from the 128 px master to the evaluated resolution, and
every image is resized to the judge's 128 px input (:func:`text2img.judge.to_judge_input`).

    python -m text2img.evaluate sampler=oracle n=5000
    python -m text2img.evaluate images=samples/ --run-dir runs/eval/mine
    python -m text2img.evaluate prompts=my_prompts.jsonl checkpoint=runs/x/g.safetensors
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from common.config import RunConfig, RuntimeConfig, parse_cli, to_dict
from common.io import atomic_write_json
from common.metrics import FeatureStats, RealStatsCache, fd_metric_name, frechet_distance
from common.metrics.registry import register_metric
from common.paths import cache_dir
from common.tracking import Tracker
from text2img.data.synthbirds import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    COLOURS,
    Renderer,
    SynthBirds,
    SynthBirdsSpec,
    area_downsample,
    attributes_to_indices,
    load_split,
    parse_caption,
    sample_attributes,
    sample_pose,
)
from text2img.judge import Judge, JudgeConfig, load_judge, predict

__all__ = [
    "EvalConfig",
    "EvalError",
    "OracleSampler",
    "Sampler",
    "attribute_accuracy",
    "diversity",
    "heldout_accuracy",
    "evaluate",
    "load_sampler",
    "main",
    "read_image_folder",
    "read_prompts",
]


class EvalError(ValueError):
    """Bad evaluation input; the message names the file (and line) at fault."""


@runtime_checkable
class Sampler(Protocol):
    """What evaluation needs from a generator.

    ``resolution``: output size R; ``encoder``: the text-encoder name the generator was
    trained with (``text2img.encoders.get_encoder``), or None if it needs no embeddings.
    ``sample`` returns ``Tensor[N, n_z, 3, R, R]`` in [-1, 1]: ``n_z`` images per caption,
    noise drawn from ``generator``; ``embeddings`` is ``Tensor[N, D]`` or None.
    """

    resolution: int
    encoder: str | None

    def sample(self, captions: Sequence[str], embeddings: Tensor | None, n_z: int,
               generator: torch.Generator) -> Tensor: ...


class OracleSampler:
    """The perfect generator: renders what a caption states (:func:`parse_caption`), every
    attribute it does not state drawn at random, in a random pose."""

    encoder = None

    def __init__(self, resolution: int = 128, master: int = 128) -> None:
        if master % resolution:
            raise EvalError(f"oracle resolution {resolution} must divide {master}")
        self.resolution = resolution
        self.renderer = Renderer(master)

    def sample(self, captions: Sequence[str], embeddings: Tensor | None, n_z: int,
               generator: torch.Generator) -> Tensor:
        r = self.resolution
        out = np.empty((len(captions), n_z, r, r, 3), np.uint8)
        for i, caption in enumerate(captions):
            stated = attributes_to_indices(parse_caption(caption))
            for z in range(n_z):
                seed = int(torch.randint(0, 2**62, (1,), generator=generator))
                rng = np.random.default_rng(seed)
                attrs = sample_attributes(rng)
                for name, value in stated.items():
                    attrs[ATTRIBUTE_NAMES.index(name)] = value
                image = self.renderer.render(attrs, sample_pose(rng))[None]
                out[i, z] = area_downsample(image, r)[0]
        x = torch.from_numpy(out).permute(0, 1, 4, 2, 3).float()  # (N, n_z, 3, R, R)
        return x / 127.5 - 1.0


def load_sampler(ref: str, checkpoint: str | None, device: str | torch.device = "cpu",
                 master: int = 128, resolution: int | None = None) -> Sampler:
    """``"oracle"`` or ``"package.module:function"`` called as ``function(checkpoint, device)``."""
    if ref == "oracle":
        return OracleSampler(resolution or master, master)
    module_name, _, attr = ref.partition(":")
    attr = attr or "load_sampler"
    if checkpoint is None:
        raise EvalError(f"sampler {ref!r} needs checkpoint=PATH (or use sampler=oracle)")
    if not Path(checkpoint).exists():
        raise EvalError(f"{checkpoint}: checkpoint not found")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise EvalError(f"sampler module {module_name!r} cannot be imported ({err}); give "
                        "sampler=package.module:function that returns a Sampler") from None
    factory = getattr(module, attr, None)
    if factory is None:
        raise EvalError(f"{module_name} has no {attr!r}; it must export {attr}(checkpoint, device)")
    sampler = factory(checkpoint, device)
    if not isinstance(sampler, Sampler):
        raise EvalError(f"{ref} returned {type(sampler).__name__}, which lacks the Sampler "
                        "protocol (resolution, encoder, sample)")
    return sampler


# ----------------------------------------------------------------------------- config


@dataclass
class EvalConfig:
    seed: int = 0
    images: str | None = None  # folder of images + captions.jsonl
    prompts: str | None = None  # JSON-lines prompts (needs a sampler)
    checkpoint: str | None = None  # generator checkpoint, given to the sampler factory
    sampler: str | None = None  # "module:function" (default text2img.sample:load_sampler) | oracle
    n: int = 5000  # generated images for fd_judge and attribute accuracy
    n_z: int = 8  # samples per caption for diversity and prompts
    diversity_captions: int = 50
    resolution: int | None = None  # evaluated size (default: the sampler's / the images')
    encoder: str | None = None  # override the sampler's text encoder
    judge: str = "default"  # "default" (cached judge of the default config) or a judge folder
    inception: str | None = None  # TorchScript Inception for FID/IS (see text2img.inception)
    batch_size: int = 50
    run: RunConfig = field(default_factory=RunConfig)
    runtime: RuntimeConfig = field(
        default_factory=lambda: RuntimeConfig(device="cpu", precision="fp32")
    )


# ----------------------------------------------------------------------------- inputs


def _read_jsonl(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise EvalError(f"{path}: {what} file not found")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise EvalError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise EvalError(f"{path}:{lineno}: each line must be a JSON object")
        caption = row.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise EvalError(f"{path}:{lineno}: 'caption' must be a non-empty string")
        rows.append((lineno, row))
    if not rows:
        raise EvalError(f"{path}: no entries")
    return rows


def _attributes(row: dict[str, Any], where: str, parse: bool) -> dict[str, int] | None:
    named = row.get("attributes")
    if named is None:
        return attributes_to_indices(parse_caption(row["caption"])) if parse else None
    if not isinstance(named, dict):
        raise EvalError(f"{where}: 'attributes' must be an object like {{\"body\": \"red\"}}")
    try:
        return attributes_to_indices(named)
    except ValueError as err:
        raise EvalError(f"{where}: {err}") from None


def read_prompts(path: str | Path) -> list[dict[str, Any]]:
    """Prompts as ``{"caption", "attributes": {name: index}, "parsed": bool}``."""
    path = Path(path)
    out = []
    for lineno, row in _read_jsonl(path, "prompts"):
        attrs = _attributes(row, f"{path}:{lineno}", parse=True)
        out.append({"caption": row["caption"], "attributes": attrs,
                    "parsed": "attributes" not in row})
    return out


def read_image_folder(folder: str | Path) -> dict[str, Any]:
    """Images ``uint8[N, R, R, 3]``, captions and attributes (or None) of an image folder."""
    from PIL import Image, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"{folder}: image folder not found")
    index = folder / "captions.jsonl"
    rows = _read_jsonl(index, "captions index (captions.jsonl)")
    images, captions, attrs = [], [], []
    size = None
    for lineno, row in rows:
        where = f"{index}:{lineno}"
        name = row.get("image")
        if not isinstance(name, str):
            raise EvalError(f"{where}: 'image' must be a file name")
        path = folder / name
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except FileNotFoundError:
            raise EvalError(f"{path}: image not found (listed at {where})") from None
        except (UnidentifiedImageError, OSError) as err:
            raise EvalError(f"{path}: cannot read image ({err})") from None
        if arr.shape[0] != arr.shape[1] or (size is not None and arr.shape[0] != size):
            raise EvalError(f"{path}: {arr.shape[1]}x{arr.shape[0]} px; all images must be "
                            f"square and the same size{f' ({size} px)' if size else ''}")
        size = arr.shape[0]
        images.append(arr)
        captions.append(row["caption"])
        attrs.append(_attributes(row, where, parse=False))
    return {"images": np.stack(images), "captions": captions, "attributes": attrs,
            "resolution": size}


# ----------------------------------------------------------------------------- metrics


def attribute_accuracy(preds: dict[str, np.ndarray], targets: Sequence[dict[str, int] | None],
                       ) -> dict[str, float]:
    """``attr_acc`` (mean over images of the mean over their stated attributes) and
    ``attr_acc/<name>`` over images whose caption states that attribute."""
    per_image, per_attr = [], {name: [] for name in ATTRIBUTE_NAMES}
    for i, target in enumerate(targets):
        if not target:
            continue
        hits = [float(preds[name][i] == value) for name, value in target.items()]
        for (name, _), hit in zip(target.items(), hits, strict=True):
            per_attr[name].append(hit)
        per_image.append(float(np.mean(hits)))
    out = {"attr_acc": float(np.mean(per_image))} if per_image else {}
    for name, hits in per_attr.items():
        if hits:
            out[f"attr_acc/{name}"] = float(np.mean(hits))
    return out


def heldout_accuracy(preds: dict[str, np.ndarray], targets: Sequence[dict[str, int] | None],
                     unseen: np.ndarray) -> dict[str, float]:
    """Compositional generalisation on the (body, wing) colour pairs training never shows.

    ``pair_acc`` is the fraction of captions stating both colours whose image gets both
    right; ``heldout/*`` covers images of a held-out pair, ``seen/*`` the others, so the
    two are read side by side. ``heldout/attr_acc`` is :func:`attribute_accuracy` on the
    held-out images (every attribute their caption states).
    """
    out: dict[str, float] = {}
    for prefix, keep in (("heldout", unseen), ("seen", ~unseen)):
        idx = np.flatnonzero(keep)
        sub = [targets[i] for i in idx]
        acc = attribute_accuracy({k: v[idx] for k, v in preds.items()}, sub)
        both = [float(preds["body"][i] == t["body"] and preds["wing"][i] == t["wing"])
                for i, t in zip(idx, sub, strict=True) if t and "body" in t and "wing" in t]
        out[f"{prefix}/n"] = float(len(idx))
        if "attr_acc" in acc:
            out[f"{prefix}/attr_acc"] = acc["attr_acc"]
        if both:
            out[f"{prefix}/pair_acc"] = float(np.mean(both))
            out[f"{prefix}/pair_n"] = float(len(both))
    return out


# the attributes that share the ten colour words: body, wing, crown
COLOUR_PARTS = tuple(name for name, values in ATTRIBUTES if values == COLOURS)


def colour_binding(preds: dict[str, np.ndarray], targets: Sequence[dict[str, int] | None],
                   ) -> dict[str, float]:
    """How often a part is drawn in the colour the caption gives another part.

    Over captions that state two or more of body / wing / crown colour with different
    values: ``binding/swapped`` is the share of those stated parts whose judged colour is
    another stated part's colour ("a red bird with blue wings" drawn with a blue body) —
    colour right, part wrong; ``binding/wrong`` the share judged wrong at all, so
    swapped / wrong is the part of the colour errors that are binding errors.
    """
    parts = swapped = wrong = 0
    for i, target in enumerate(targets):
        stated = {k: v for k, v in (target or {}).items() if k in COLOUR_PARTS}
        if len(set(stated.values())) < 2:
            continue
        for name, value in stated.items():
            got = int(preds[name][i])
            parts += 1
            wrong += got != value
            swapped += got != value and any(got == v for k, v in stated.items() if k != name)
    if not parts:
        return {}
    return {"binding/swapped": swapped / parts, "binding/wrong": wrong / parts,
            "binding/n": float(parts)}


def diversity(features: np.ndarray) -> float:
    """Mean pairwise L2 distance between judge features ``[groups, n_z, D]``, over groups."""
    f = torch.from_numpy(np.asarray(features, np.float64))
    if f.ndim != 3 or f.shape[1] < 2:
        raise ValueError(f"diversity needs features [groups, n_z ≥ 2, D], got {tuple(f.shape)}")
    return float(torch.stack([torch.pdist(g).mean() for g in f]).mean())


@register_metric("fd_judge_5k")
def fd_judge_5k(*, features: np.ndarray, reference: FeatureStats) -> float:
    """fd_judge protocol at 5000 samples: judge features of 5k images vs reference stats."""
    if len(features) != 5000 or reference.n != 5000:
        raise ValueError("fd_judge_5k needs 5000 generated and 5000 reference samples")
    return frechet_distance(FeatureStats.from_features(features), reference)


def _to_uint8(x: Tensor) -> np.ndarray:
    """float [N, 3, R, R] in [-1, 1] → uint8 [N, R, R, 3] (as saved to PNG)."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(
        0, 2, 3, 1).numpy()


@dataclass
class RealReference:
    """Judge statistics of SynthBirds test renders at one resolution, cached."""

    spec: SynthBirdsSpec
    judge: Judge
    resolution: int
    batch: int = 250
    progress: bool = True
    _test: SynthBirds | None = None

    def _parts(self, split: str, n: int, extractor: str, extractor_hash: str) -> dict[str, Any]:
        return {"dataset": "synthbirds", "dataset_hash": self.spec.stream_key("test"),
                "split": split, "resolution": self.resolution,
                "resizer": f"area_from_{self.spec.resolution}",
                "extractor": extractor, "extractor_hash": extractor_hash, "n": n}

    def test(self, n: int) -> SynthBirds:
        if self._test is None or len(self._test) < n:
            self._test = load_split(self.spec, "test", n, progress=self.progress)
        return self._test

    def images(self, start: int, stop: int) -> np.ndarray:
        return area_downsample(self.test(stop).images[start:stop], self.resolution)

    def stats(self, start: int, stop: int, extractor: str = "judge",
              features=None, extractor_hash: str | None = None) -> FeatureStats:
        """Stats of test images [start, stop) (split prefix-stable, so a range is content)."""
        features = features or (lambda imgs: predict(self.judge, imgs, self.batch)["features"])
        parts = self._parts(f"test[{start}:{stop}]", stop - start, extractor,
                            extractor_hash or self.judge.extractor_hash)
        cache = RealStatsCache(cache_dir("real_stats"))
        return cache.get_or_compute(parts, lambda: features(self.images(start, stop)))


def _fd_block(gen_features: np.ndarray, ref: RealReference, n: int) -> dict[str, float]:
    name = fd_metric_name("judge", n)
    real = ref.stats(0, n)
    floor = frechet_distance(ref.stats(n, 2 * n), real)
    return {name: frechet_distance(FeatureStats.from_features(gen_features), real),
            f"{name}_floor": floor}


def _inception_block(path: str, images: np.ndarray, ref: RealReference, n: int,
                     device: torch.device) -> dict[str, float]:
    from text2img.inception import InceptionNet, inception_score

    net = InceptionNet(path, device)
    real = ref.stats(0, n, extractor="inception", features=net.features, extractor_hash=net.hash)
    out = {fd_metric_name("inception", n):
           frechet_distance(FeatureStats.from_features(net.features(images)), real)}
    if len(images) >= 10:  # the Inception Score uses 10 splits (METRICS.md)
        score = inception_score(net.probabilities(images))
        count = fd_metric_name("inception", n).rsplit("_", 1)[1]
        out.update({f"is_inception_{count}": score["mean"], f"is_inception_{count}_std":
                    score["std"]})
    return out


def _ceiling(judge: Judge, resolution: int) -> dict[str, float]:
    table = (getattr(judge, "meta", None) or {}).get("accuracy", {})
    row = table.get(str(resolution))
    return {f"judge_ceiling/{k}": v for k, v in row.items()} if row else {}


# ----------------------------------------------------------------------------- modes


def _embed(sampler: Sampler, captions: list[str], cfg: EvalConfig) -> Tensor | None:
    name = cfg.encoder or sampler.encoder
    if name is None:
        return None
    from text2img.encoders import EmbeddingCache, get_encoder

    return EmbeddingCache().encode(get_encoder(name), captions)


def _generate(sampler: Sampler, captions: list[str], cfg: EvalConfig, n_z: int,
              gen: torch.Generator, desc: str) -> np.ndarray:
    """uint8 [N, n_z, R, R, 3] for ``captions``."""
    from tqdm import tqdm

    emb = _embed(sampler, captions, cfg)
    out = []
    step = max(cfg.batch_size // n_z, 1)
    for s in tqdm(range(0, len(captions), step), desc=desc, unit="batch", file=sys.stderr,
                  disable=len(captions) <= step):
        x = sampler.sample(captions[s : s + step], None if emb is None else emb[s : s + step],
                           n_z, gen)
        if x.ndim != 5 or x.shape[1] != n_z or x.shape[2] != 3:
            raise EvalError(f"sampler returned shape {tuple(x.shape)}, expected "
                            f"[N, {n_z}, 3, R, R]")
        u8 = _to_uint8(x.flatten(0, 1))  # (N * n_z, R, R, 3)
        out.append(u8.reshape(x.shape[0], n_z, *u8.shape[1:]))
    return np.concatenate(out)


def evaluate_sampler(sampler: Sampler, judge: Judge, spec: SynthBirdsSpec, cfg: EvalConfig,
                     device: torch.device) -> dict[str, Any]:
    """Captions of the first ``n`` test images → one image each (+ diversity groups)."""
    r = cfg.resolution or sampler.resolution
    for size, what in ((r, "evaluated"), (sampler.resolution, "generated")):
        if spec.resolution % size:
            raise EvalError(f"{what} resolution {size} must divide the {spec.resolution} px "
                            "SynthBirds renders the judge was trained on")
    if sampler.resolution < r:
        raise EvalError(f"resolution={r} is above the sampler's {sampler.resolution} px; "
                        "evaluate at the generated size or below")
    ref = RealReference(spec, judge, r, cfg.batch_size)
    test = ref.test(2 * cfg.n)
    rng = np.random.default_rng(cfg.seed)
    which = rng.integers(spec.captions_per_image, size=cfg.n)
    captions = [test.captions[i][j] for i, j in enumerate(which)]
    targets = [{name: int(test.attributes[i, k]) for k, name in enumerate(ATTRIBUTE_NAMES)
                if test.mentions[i, j, k]} for i, j in enumerate(which)]
    gen = torch.Generator().manual_seed(cfg.seed)
    images = _generate(sampler, captions, cfg, 1, gen, "generating")[:, 0]  # (n, R', R', 3)
    images = area_downsample(images, r)  # a Stage-II sampler judged at a Stage-I size
    pred = predict(judge, images, cfg.batch_size)
    metrics = attribute_accuracy(pred, targets)
    metrics.update(heldout_accuracy(pred, targets, test.unseen[:cfg.n]))
    metrics.update(colour_binding(pred, targets))
    metrics.update(_ceiling(judge, r))
    metrics.update(_fd_block(pred["features"], ref, cfg.n))
    k = min(cfg.diversity_captions, cfg.n)
    if cfg.n_z >= 2 and k:
        groups = _generate(sampler, captions[:k], cfg, cfg.n_z, gen, "diversity")
        groups = area_downsample(groups.reshape(-1, *groups.shape[2:]), r)
        feats = predict(judge, groups, cfg.batch_size)["features"]
        metrics["diversity"] = diversity(feats.reshape(k, cfg.n_z, -1))
    if cfg.inception:
        metrics.update(_inception_block(cfg.inception, images, ref, cfg.n, device))
    return {"metrics": metrics, "resolution": r, "n": cfg.n,
            "grid": (images[:16], captions[:16])}


def evaluate_folder(judge: Judge, spec: SynthBirdsSpec, cfg: EvalConfig,
                    device: torch.device) -> dict[str, Any]:
    data = read_image_folder(cfg.images)
    images, r = data["images"], data["resolution"]
    if spec.resolution % r:
        raise EvalError(f"{cfg.images}: {r} px images cannot be compared with the "
                        f"{spec.resolution} px SynthBirds renders (needs a divisor)")
    pred = predict(judge, images, cfg.batch_size)
    metrics = attribute_accuracy(pred, data["attributes"])
    metrics.update(colour_binding(pred, data["attributes"]))
    metrics.update(_ceiling(judge, r))
    n = len(images)
    ref = RealReference(spec, judge, r, cfg.batch_size)
    if n >= 2:
        metrics.update(_fd_block(pred["features"], ref, n))
    groups: dict[str, list[int]] = {}
    for i, caption in enumerate(data["captions"]):
        groups.setdefault(caption, []).append(i)
    per_caption = [torch.pdist(torch.from_numpy(pred["features"][idx]).double()).mean().item()
                   for idx in groups.values() if len(idx) >= 2]
    if per_caption:
        metrics["diversity"] = float(np.mean(per_caption))
    if cfg.inception and n >= 2:
        metrics.update(_inception_block(cfg.inception, images, ref, n, device))
    return {"metrics": metrics, "resolution": r, "n": n,
            "grid": (images[:16], data["captions"][:16])}


def evaluate_prompts(sampler: Sampler, judge: Judge, cfg: EvalConfig) -> dict[str, Any]:
    prompts = read_prompts(cfg.prompts)
    captions = [p["caption"] for p in prompts]
    gen = torch.Generator().manual_seed(cfg.seed)
    images = _generate(sampler, captions, cfg, cfg.n_z, gen, "prompts")  # (P, n_z, R, R, 3)
    r = images.shape[2]
    pred = predict(judge, images.reshape(-1, r, r, 3), cfg.batch_size)
    rows, all_targets = [], []
    for p, prompt in enumerate(prompts):
        sl = slice(p * cfg.n_z, (p + 1) * cfg.n_z)
        sub = {name: pred[name][sl] for name in ATTRIBUTE_NAMES}
        targets = [prompt["attributes"]] * cfg.n_z
        all_targets += targets
        row: dict[str, Any] = {
            "caption": prompt["caption"],
            "attributes": {name: ATTRIBUTES[ATTRIBUTE_NAMES.index(name)][1][v]
                           for name, v in (prompt["attributes"] or {}).items()},
            "attributes_from": "parsed from caption" if prompt["parsed"] else "given",
            **attribute_accuracy(sub, targets),
            "predicted": [{name: ATTRIBUTES[k][1][int(sub[name][z])]
                           for k, name in enumerate(ATTRIBUTE_NAMES)} for z in range(cfg.n_z)],
        }
        if cfg.n_z >= 2:
            row["diversity"] = diversity(pred["features"][sl][None])
        rows.append(row)
    metrics = {f"prompts/{k}": v for k, v in attribute_accuracy(pred, all_targets).items()}
    return {"metrics": metrics, "prompts": rows, "resolution": r, "n": len(prompts),
            "prompt_images": images}


# ----------------------------------------------------------------------------- entry


def _judge_and_spec(cfg: EvalConfig) -> tuple[Judge, SynthBirdsSpec]:
    judge = load_judge(JudgeConfig() if cfg.judge == "default" else cfg.judge)
    data = judge.meta["config"]["data"]
    spec = SynthBirdsSpec(int(data["seed"]), int(data["resolution"]), int(data["heldout_pairs"]))
    return judge, spec


def evaluate(cfg: EvalConfig, tracker: Tracker | None = None) -> dict[str, Any]:
    """Run the evaluation ``cfg`` describes; returns what goes into eval.json."""
    if cfg.images and (cfg.prompts or cfg.checkpoint or cfg.sampler):
        raise EvalError("images=DIR evaluates a folder; do not combine it with a sampler, a "
                        "checkpoint or prompts")
    if not cfg.images and not cfg.checkpoint and not cfg.sampler:
        raise EvalError("nothing to evaluate: give images=DIR, checkpoint=PATH "
                        "(with sampler=module:function), or sampler=oracle")
    device = torch.device(cfg.runtime.device if cfg.runtime.device != "auto" else "cpu")
    judge, spec = _judge_and_spec(cfg)
    t0 = time.perf_counter()
    if cfg.images:
        mode, result = "images", evaluate_folder(judge, spec, cfg, device)
    else:
        sampler = load_sampler(cfg.sampler or "text2img.sample:load_sampler", cfg.checkpoint,
                               device, master=spec.resolution, resolution=cfg.resolution)
        if cfg.prompts:
            mode, result = "prompts", evaluate_prompts(sampler, judge, cfg)
        else:
            mode, result = "generator", evaluate_sampler(sampler, judge, spec, cfg, device)
    report = {
        "mode": mode,
        "metrics": {f"metrics/{k}": v for k, v in result["metrics"].items()},
        "resolution": result["resolution"],
        "n": result["n"],
        "judge": {"folder": str(judge.folder), "extractor_hash": judge.extractor_hash},
        "dataset": {"name": "synthbirds", "spec": to_dict_spec(spec), "split": "test"},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if "prompts" in result:
        report["prompts"] = result["prompts"]
    if tracker is not None:
        tracker.log(report["metrics"], step=0)
        if "grid" in result:
            imgs, caps = result["grid"]
            tracker.log_image("eval/samples", _grid_tensor(imgs), step=0,
                              caption=" | ".join(caps[:4]))
        for p, row in enumerate(result.get("prompts", [])):
            tracker.log_image(f"eval/prompt_{p:03d}", _grid_tensor(result["prompt_images"][p]),
                              step=0, caption=row["caption"])
        tracker.summary(report["metrics"])
    return report


def to_dict_spec(spec: SynthBirdsSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(spec)


def _grid_tensor(images: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def main(argv: list[str] | None = None) -> dict[str, Any]:
    inv = parse_cli(EvalConfig, argv, prog="python -m text2img.evaluate", description=__doc__)
    cfg: EvalConfig = inv.config
    if cfg.runtime.threads is not None:
        torch.set_num_threads(cfg.runtime.threads)
    run_dir = Path(cfg.run.dir or Path("runs") / "eval" / time.strftime("%Y%m%d-%H%M%S"))
    if (run_dir / "eval.json").exists():
        print(f"error: {run_dir / 'eval.json'} exists; choose another --run-dir", file=sys.stderr)
        raise SystemExit(2)
    try:
        tracker = Tracker(run_dir, to_dict(cfg), project=cfg.run.wandb_project,
                          group=cfg.run.group or "eval", name=cfg.run.name or run_dir.name,
                          tags=list(cfg.run.tags), wandb_mode=cfg.run.wandb_mode)
        try:
            report = evaluate(cfg, tracker)
        finally:
            tracker.finish()
    except (EvalError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    report["config"] = to_dict(cfg)
    atomic_write_json(run_dir / "eval.json", report)
    width = max(len(k) for k in report["metrics"]) if report["metrics"] else 0
    for key, value in report["metrics"].items():
        print(f"{key:<{width}}  {value:.4f}")
    print(f"wrote {run_dir / 'eval.json'}")
    return report


if __name__ == "__main__":
    main()
