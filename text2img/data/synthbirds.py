"""SynthBirds: the built-in, procedurally drawn text-to-image dataset (DATASETS.md).

Every image is drawn from eight attributes (body, wing and crown colour, beak colour and
length, wing pattern, size, background; :data:`ATTRIBUTES`) and a pose the captions never
mention (:class:`Pose`). The 128 px master (256 px for the paper preset) is rendered at
twice that size and area-downsampled; lower Stage-I resolutions are area-downsampled
copies of the master (:meth:`SynthBirds.images_at`). The wing pattern is fine detail:
visible at 128 px, averaged away at 32 px.

Splits are deterministic and prefix-stable: image ``i`` of a split depends only on
``(seed, split, i)``, so a longer split extends a shorter one. ``test`` also holds the
body x wing colour pairs of :func:`heldout_pairs`, which ``train`` and ``val`` never
contain (``SynthBirds.unseen`` marks them), to measure compositional generalisation.

:func:`load_split` caches renders under ``$CGAN_CACHE/datasets/synthbirds/<key>/`` where
the key covers the generator version, every :class:`SynthBirdsSpec` parameter, the split
and the size; a second call renders nothing. From the shell::

    python -m text2img.data.synthbirds --n 20000        # train 20000, val/test 2000 each
    python -m text2img.data.synthbirds --figure docs/synthbirds_detail.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_path, atomic_write_json
from common.paths import cache_dir, short_hash
from text2img.data.synthbirds_draw import (
    PALETTE,
    Pose,
    Renderer,
    area_downsample,
    get_renderer,
    sample_pose,
)
from text2img.data.synthbirds_text import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    BACKGROUNDS,
    BEAK_COLOURS,
    BEAK_LENGTHS,
    BODY,
    COLOURS,
    PATTERNS,
    SIZES,
    WING,
    attributes_to_indices,
    make_captions,
    parse_caption,
    sample_attributes,
)

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_NAMES",
    "BACKGROUNDS",
    "BEAK_COLOURS",
    "BEAK_LENGTHS",
    "COLOURS",
    "GENERATOR_VERSION",
    "PALETTE",
    "PATTERNS",
    "SIZES",
    "SPLITS",
    "Pose",
    "Renderer",
    "SynthBirds",
    "SynthBirdsSpec",
    "area_downsample",
    "attributes_to_indices",
    "bench_synthbirds",
    "generate",
    "heldout_pairs",
    "load_split",
    "main",
    "make_captions",
    "parse_caption",
    "render_count",
    "sample_attributes",
    "sample_pose",
]

GENERATOR_VERSION = 1  # bump whenever any image or caption could change
SPLITS = ("train", "val", "test")
_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_HELDOUT_STREAM = 0x48454C44  # seeds the choice of held-out pairs apart from the images
_rendered = 0  # images rendered by this process (see render_count)


def render_count() -> int:
    """How many images this process has rendered so far (cache hits render none)."""
    return _rendered


@dataclass(frozen=True)
class SynthBirdsSpec:
    """What a SynthBirds dataset is: seed, master resolution, held-out pair count,
    captions per image. ``key(split, n)`` names its cached renders."""

    seed: int = 0
    resolution: int = 128  # master size; 256 for the paper preset
    heldout_pairs: int = 10  # body x wing colour pairs kept out of train and val
    captions_per_image: int = 10

    def __post_init__(self) -> None:
        if self.resolution % 128 or not 128 <= self.resolution <= 512:
            raise ValueError(f"SynthBirds resolution must be 128, 256 or 512, got "
                             f"{self.resolution} (lower sizes are images_at(size) copies)")
        if not 0 <= self.heldout_pairs <= 45:
            raise ValueError(f"heldout_pairs must be in [0, 45], got {self.heldout_pairs}")
        if self.captions_per_image < 1:
            raise ValueError("captions_per_image must be at least 1")

    def stream_key(self, split: str) -> str:
        """Hash of everything image ``i`` of ``split`` depends on (not the split size)."""
        _check_split(split)
        return short_hash({"dataset": "synthbirds", "version": GENERATOR_VERSION,
                           "spec": asdict(self), "split": split})

    def key(self, split: str, n: int) -> str:
        """Cache key of the first ``n`` images of ``split``: readable prefix + hash."""
        return f"{split}-{n}-{short_hash({'stream': self.stream_key(split), 'n': n})}"


def _check_split(split: str) -> None:
    if split not in _SPLIT_CODES:
        raise ValueError(f"unknown SynthBirds split {split!r}; use {', '.join(SPLITS)}")


def heldout_pairs(seed: int, n: int = 10) -> np.ndarray:
    """int64 ``[n, 2]`` (body, wing) colour pairs only the test split contains.

    Pairs go round the body colours in a random order, one new wing colour (never the
    body's own) per visit, so up to 10 pairs cover 10 different body colours and every
    colour still trains with most wings.
    """
    rng = np.random.default_rng([seed, _HELDOUT_STREAM])
    bodies = rng.permutation(len(COLOURS))
    wings = [rng.permutation([w for w in range(len(COLOURS)) if w != b]) for b in bodies]
    pairs = [(int(bodies[j % 10]), int(wings[j % 10][j // 10])) for j in range(n)]
    return np.array(sorted(pairs), dtype=np.int64).reshape(n, 2)


@dataclass
class SynthBirds:
    """One split: images, attributes, captions and what each caption mentions.

    ``images`` uint8 ``[N, R, R, 3]`` (R = spec.resolution; a read-only memory map when
    loaded from the cache); ``attributes`` int64 ``[N, 8]``; ``captions`` N lists of
    ``spec.captions_per_image`` strings; ``mentions`` bool ``[N, C, 8]``; ``unseen`` bool
    ``[N]`` (held-out body x wing pair); ``poses`` float32 ``[N, 8]`` (:meth:`Pose.to_array`).
    """

    spec: SynthBirdsSpec
    split: str
    images: np.ndarray
    attributes: np.ndarray
    captions: list[list[str]]
    mentions: np.ndarray
    unseen: np.ndarray
    poses: np.ndarray
    from_cache: bool = False
    folder: Path | None = None
    _lower: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.attributes)

    @property
    def key(self) -> str:
        return self.spec.key(self.split, len(self))

    def images_at(self, size: int) -> np.ndarray:
        """uint8 ``[N, size, size, 3]``: area-downsampled copies of the master (kept)."""
        if size not in self._lower:
            self._lower[size] = area_downsample(self.images, size)
        return self._lower[size]

    def flat_captions(self) -> list[str]:
        """All captions, image-major: caption j of image i at ``i * C + j``."""
        return [c for caps in self.captions for c in caps]

    def head(self, n: int) -> SynthBirds:
        """The first ``n`` images (views, no copies)."""
        return SynthBirds(self.spec, self.split, self.images[:n], self.attributes[:n],
                          self.captions[:n], self.mentions[:n], self.unseen[:n],
                          self.poses[:n], self.from_cache, self.folder)


# ----------------------------------------------------------------------------- rendering


def _draw(spec: SynthBirdsSpec, split: str, start: int, stop: int, captions: bool = True,
          progress: bool = False) -> SynthBirds:
    """Render images ``[start, stop)`` of ``split`` (captions optional, for the bench)."""
    global _rendered
    _check_split(split)
    m, r, c = stop - start, spec.resolution, spec.captions_per_image
    renderer = get_renderer(r)
    held = np.zeros((len(COLOURS), len(COLOURS)), bool)  # (body, wing) -> held out
    pairs = heldout_pairs(spec.seed, spec.heldout_pairs)
    held[pairs[:, 0], pairs[:, 1]] = True
    images = np.empty((m, r, r, 3), np.uint8)
    attributes = np.empty((m, len(ATTRIBUTES)), np.int64)
    mentions = np.zeros((m, c, len(ATTRIBUTES)), bool)
    poses = np.empty((m, 8), np.float32)
    texts: list[list[str]] = []
    from tqdm import tqdm

    bar = tqdm(range(start, stop), desc=f"synthbirds {split}", unit="img", file=sys.stderr,
               disable=not progress, mininterval=0.5 if sys.stderr.isatty() else 30.0)
    for j, i in enumerate(bar):
        rng = np.random.default_rng([spec.seed, _SPLIT_CODES[split], i])
        attrs = sample_attributes(rng)
        if split != "test":  # redraw the wing colour of a held-out pair
            while held[attrs[BODY], attrs[WING]]:
                attrs[WING] = rng.integers(len(COLOURS))
        pose = sample_pose(rng)
        renderer.render_into(images[j], attrs, pose)
        attributes[j] = attrs
        poses[j] = pose.to_array()
        if captions:
            caps, mentions[j] = make_captions(attrs, rng, c)
            texts.append(caps)
        _rendered += 1
    bar.close()
    unseen = held[attributes[:, BODY], attributes[:, WING]]
    return SynthBirds(spec, split, images, attributes, texts if captions else [[] for _ in
                      range(m)], mentions, unseen, poses)


def generate(spec: SynthBirdsSpec, split: str, n: int, progress: bool = True) -> SynthBirds:
    """Render the first ``n`` images of ``split`` (no cache; see :func:`load_split`)."""
    return _draw(spec, split, 0, n, progress=progress)


def _concat(a: SynthBirds, b: SynthBirds) -> SynthBirds:
    return SynthBirds(a.spec, a.split, np.concatenate([a.images, b.images]),
                      np.concatenate([a.attributes, b.attributes]), a.captions + b.captions,
                      np.concatenate([a.mentions, b.mentions]),
                      np.concatenate([a.unseen, b.unseen]), np.concatenate([a.poses, b.poses]))


# ----------------------------------------------------------------------------- cache


def default_root() -> Path:
    """``$CGAN_CACHE/datasets/synthbirds`` (read on every call)."""
    return cache_dir("datasets") / "synthbirds"


def _info(spec: SynthBirdsSpec, split: str, n: int) -> dict[str, Any]:
    return {"dataset": "synthbirds", "version": GENERATOR_VERSION, "spec": asdict(spec),
            "split": split, "n": n, "key": spec.key(split, n),
            "stream_key": spec.stream_key(split)}


def _write(data: SynthBirds, folder: Path, seconds: float) -> None:
    """Write a split; every file atomically, ``info.json`` last (it marks completeness)."""
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "images.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(data.images))
    with atomic_path(folder / "labels.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, attributes=data.attributes, mentions=data.mentions, unseen=data.unseen,
                 poses=data.poses)
    with atomic_path(folder / "captions.json") as tmp:
        tmp.write_text(json.dumps(data.captions, separators=(",", ":")), encoding="utf-8")
    info = _info(data.spec, data.split, len(data))
    info.update({"render_seconds": round(seconds, 3), "unseen": int(data.unseen.sum()),
                 "files": ["images.npy", "labels.npz", "captions.json"]})
    atomic_write_json(folder / "info.json", info)


def _read(folder: Path, spec: SynthBirdsSpec, split: str) -> SynthBirds | None:
    """A cached split, or None if the folder is incomplete, stale or unreadable."""
    try:
        info = json.loads((folder / "info.json").read_text())
        if info.get("stream_key") != spec.stream_key(split) or info.get("version") != \
                GENERATOR_VERSION:
            return None
        n = int(info["n"])
        images = np.load(folder / "images.npy", mmap_mode="r")
        with np.load(folder / "labels.npz") as z:
            labels = {k: z[k] for k in ("attributes", "mentions", "unseen", "poses")}
        captions = json.loads((folder / "captions.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, EOFError) as err:
        if (folder / "info.json").exists():
            print(f"warning: unreadable SynthBirds cache {folder} ({err}); re-rendering",
                  file=sys.stderr)
        return None
    r = spec.resolution
    if images.shape != (n, r, r, 3) or len(captions) != n or labels["attributes"].shape[0] != n:
        print(f"warning: SynthBirds cache {folder} does not match its info.json; re-rendering",
              file=sys.stderr)
        return None
    return SynthBirds(spec, split, images, labels["attributes"].astype(np.int64), captions,
                      labels["mentions"], labels["unseen"], labels["poses"], True, folder)


def _cached_streams(root: Path, spec: SynthBirdsSpec, split: str) -> list[tuple[int, Path]]:
    """``(n, folder)`` of every complete cached render of this split's stream."""
    want = spec.stream_key(split)
    found = []
    if root.is_dir():
        for folder in root.glob(f"{split}-*"):
            try:
                info = json.loads((folder / "info.json").read_text())
            except (OSError, ValueError):
                continue
            if info.get("stream_key") == want and info.get("version") == GENERATOR_VERSION:
                found.append((int(info["n"]), folder))
    return sorted(found)


def load_split(spec: SynthBirdsSpec, split: str, n: int,
               root: str | os.PathLike[str] | None = None, progress: bool = True) -> SynthBirds:
    """The first ``n`` images of ``split``, from the cache when possible.

    Looks for ``<root>/<spec.key(split, n)>/``; failing that, slices a longer cached
    render of the same stream, or extends a shorter one (splits are prefix-stable);
    otherwise renders everything. New renders are written to the cache atomically.
    ``from_cache`` tells whether nothing had to be rendered.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    root = Path(root) if root is not None else default_root()
    folder = root / spec.key(split, n)
    hit = _read(folder, spec, split) if (folder / "info.json").is_file() else None
    if hit is not None:
        return hit
    streams = _cached_streams(root, spec, split)
    longer = [(m, f) for m, f in streams if m > n]
    if longer:
        data = _read(longer[0][1], spec, split)
        if data is not None:
            return data.head(n)
    shorter = [(m, f) for m, f in streams if m < n]
    prefix = _read(shorter[-1][1], spec, split) if shorter else None
    t0 = time.perf_counter()
    start = len(prefix) if prefix is not None else 0
    rest = _draw(spec, split, start, n, progress=progress)
    data = _concat(prefix, rest) if prefix is not None else rest
    _write(data, folder, time.perf_counter() - t0)
    data.from_cache, data.folder = False, folder
    return data


# ----------------------------------------------------------------------------- bench


def bench_synthbirds(n: int = 500, repeats: int = 3, resolution: int = 128) -> dict[str, Any]:
    """Rendering speed on one thread (images/s, with and without captions; median of
    ``repeats``) and a cache check (a second :func:`load_split` renders nothing).

    Also reports per-CPU-second rates, which a busy shared machine distorts less.
    """
    with contextlib.ExitStack() as stack:
        try:  # the renderer is single-threaded numpy; pin BLAS/OpenMP pools anyway
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(1))
        except ImportError:
            pass
        torch = sys.modules.get("torch")  # only if already imported: no torch dependency
        if torch is not None:
            stack.callback(torch.set_num_threads, torch.get_num_threads())
            torch.set_num_threads(1)
        return _bench(n, repeats, resolution)


def _bench(n: int, repeats: int, resolution: int) -> dict[str, Any]:
    spec = SynthBirdsSpec(resolution=resolution)
    get_renderer(resolution)  # build the backdrops outside the timed region
    _draw(spec, "val", 0, min(n, 20), captions=True)  # warm-up
    result: dict[str, Any] = {"resolution": resolution, "threads": 1, "images": n}
    for label, captions in (("render", False), ("with_captions", True)):
        wall, cpu = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            _draw(spec, "train", 0, n, captions=captions)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        result[f"{label}_images_per_s"] = round(n / statistics.median(wall), 1)
        result[f"{label}_images_per_cpu_s"] = round(n / max(statistics.median(cpu), 1e-9), 1)
    with tempfile.TemporaryDirectory() as tmp:
        before = render_count()
        t0 = time.perf_counter()
        load_split(spec, "val", n, root=tmp, progress=False)
        first_s = time.perf_counter() - t0
        mid = render_count()
        t0 = time.perf_counter()
        second = load_split(spec, "val", n, root=tmp, progress=False)
        second_s = time.perf_counter() - t0
        result["cache"] = {"first_call_rendered": mid - before,
                           "second_call_rendered": render_count() - mid,
                           "second_call_from_cache": second.from_cache,
                           "first_call_s": round(first_s, 3), "second_call_s": round(second_s, 4)}
    return result


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Render (or find cached) splits; optionally draw the fine-detail figure."""
    parser = argparse.ArgumentParser(
        prog="python -m text2img.data.synthbirds",
        description="Render the SynthBirds splits into the cache (a second run finds them "
                    "cached and renders nothing), or draw the fine-detail figure.")
    parser.add_argument("--n", type=int, default=None,
                        help="training images (default 20000); val and test get n/10 each")
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=128, help="master size: 128 or 256")
    parser.add_argument("--heldout-pairs", type=int, default=10,
                        help="body x wing colour pairs only the test split holds")
    parser.add_argument("--out", default=None,
                        help="cache folder (default $CGAN_CACHE/datasets/synthbirds)")
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="write the wing-pattern detail figure (128/64/32 px) to PNG")
    parser.add_argument("--bench", action="store_true", help="print bench_synthbirds() as JSON")
    args = parser.parse_args(argv)
    try:
        spec = SynthBirdsSpec(args.seed, args.resolution, args.heldout_pairs)
    except ValueError as err:
        parser.error(str(err))
    if args.n is not None and args.n < 1:
        parser.error(f"--n must be at least 1, got {args.n}")
    report: dict[str, Any] = {"spec": asdict(spec), "splits": {}}
    if args.figure:
        from text2img.data.synthbirds_figure import detail_figure

        path = detail_figure(args.figure, spec.resolution)
        print(f"figure: {path}")
        report["figure"] = str(path)
    if args.n is not None or not (args.figure or args.bench):
        n_train = 20000 if args.n is None else args.n
        for split in args.splits:
            n = n_train if split == "train" else max(1, n_train // 10)
            t0 = time.perf_counter()
            data = load_split(spec, split, n, root=args.out)
            seconds = time.perf_counter() - t0
            how = "cached" if data.from_cache else \
                f"rendered and saved in {seconds:.1f} s"
            print(f"{split}: {len(data)} images ({how}, {int(data.unseen.sum())} with held-out "
                  f"pairs) -> {data.folder}")
            report["splits"][split] = {"n": len(data), "from_cache": data.from_cache,
                                       "folder": str(data.folder)}
    if args.bench:
        report["bench"] = bench_synthbirds()
        print(json.dumps(report["bench"], indent=2))
    return report


if __name__ == "__main__":
    main()
