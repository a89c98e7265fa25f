"""Loaders for the real text-to-image datasets, in the layouts their releases use.

The folders are read unchanged, as the StackGAN (Zhang et al. 2017), AttnGAN (Xu et al.
2018) and DF-GAN (Tao et al. 2022) releases lay them out::

    birds/    CUB_200_2011/images/<class>/<img>.jpg, images.txt, bounding_boxes.txt
              text_c10/<class>/<img>.txt  (or text/<class>/<img>.txt)   10 captions a file
              train|test/filenames.pickle          keys '001.Black_footed_Albatross/...'
              train|test/class_info.pickle         class id per image
              train|test/char-CNN-RNN-embeddings.pickle   (N, 10, 1024)
    flowers/  jpg/image_XXXXX.jpg, text_c10/class_000NN/image_XXXXX.txt,
              train|test/{same pickles}            keys 'jpg/image_06734'
    coco/     images/<key>.jpg (or images/train2014/, images/val2014/),
              text/<key>.txt (5 captions), train|test/filenames.pickle

Every pickle goes through :func:`text2img.data.legacy.load_legacy_pickle` (restricted,
latin1). Anything missing or malformed is a :class:`DatasetError` naming the path. The
char-CNN-RNN embeddings are large and optional, so they are read on first use
(:meth:`RealDataset.embeddings`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from text2img.data.legacy import DatasetError, load_legacy_pickle

__all__ = [
    "DatasetError",
    "RealDataset",
    "cub_crop_box",
    "load_coco",
    "load_cub",
    "load_flowers",
    "load_real",
]

SPLITS = ("train", "test")
EMBEDDINGS_FILE = "char-CNN-RNN-embeddings.pickle"

_LAYOUTS = {
    "cub": ("CUB (birds)", "CUB_200_2011/images/<class>/<img>.jpg, CUB_200_2011/images.txt, "
            "CUB_200_2011/bounding_boxes.txt, text_c10/ (or text/), train|test/filenames.pickle"),
    "flowers": ("Oxford-102 (flowers)", "jpg/image_XXXXX.jpg, text_c10/class_000NN/"
                "image_XXXXX.txt, train|test/filenames.pickle"),
    "coco": ("COCO", "images/ (or images/train2014, images/val2014), text/<key>.txt, "
             "train|test/filenames.pickle"),
}


@dataclass
class RealDataset:
    """One split of a real dataset: keys, image paths, captions, classes, boxes.

    ``captions[i]`` holds the ``captions_per_image`` captions of image ``i`` (file order);
    ``class_ids`` is int64 ``[N]`` (None for COCO); ``boxes`` is float32 ``[N, 4]`` as
    ``(x, y, width, height)`` in pixels (CUB only, else None). ``dataset_hash`` (16 hex)
    identifies the split's content (names, keys, captions), e.g. for embedding caches.
    """

    name: str  # cub | flowers | coco
    root: Path
    split: str
    keys: list[str]
    image_paths: list[Path]
    captions: list[list[str]]
    class_ids: np.ndarray | None = None
    boxes: np.ndarray | None = None
    captions_per_image: int = 10
    embeddings_path: Path | None = None
    dataset_hash: str = field(init=False)
    _embeddings: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        h = hashlib.sha256(f"{self.name}\0{self.split}\0{len(self.keys)}".encode())
        for key, caps in zip(self.keys, self.captions, strict=True):
            h.update(("\0" + key + "\1" + "\1".join(caps)).encode("utf-8"))
        self.dataset_hash = h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.keys)

    def embeddings(self) -> np.ndarray:
        """The released char-CNN-RNN embeddings, float32 ``[N, captions, 1024]``."""
        if self._embeddings is None:
            path = self.embeddings_path or self.root / self.split / EMBEDDINGS_FILE
            value = load_legacy_pickle(path, "char-CNN-RNN embeddings pickle")
            try:
                # StackGAN stored either one array or a list of per-image arrays.
                emb = np.asarray(value, dtype=np.float32)
            except (TypeError, ValueError) as err:
                raise DatasetError(f"{path}: expected an array of embeddings, got "
                                   f"{type(value).__name__} ({err})") from None
            if emb.ndim == 2:  # one vector per image: treat as a single caption
                emb = emb[:, None, :]
            if emb.ndim != 3 or emb.shape[0] != len(self):
                raise DatasetError(f"{path}: holds embeddings of shape {emb.shape}, expected "
                                   f"({len(self)}, captions, dim) (one row per filename)")
            self._embeddings = emb
        return self._embeddings

    def load_image(self, i: int, size: int | None = None) -> np.ndarray:
        """uint8 ``[H, W, 3]``: image ``i`` (CUB: cropped around its box), resized to
        ``size x size`` if given (bicubic, as the StackGAN loaders resize to a square)."""
        from PIL import Image, UnidentifiedImageError

        path = self.image_paths[i]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if self.boxes is not None:
                    im = im.crop(cub_crop_box(self.boxes[i], im.width, im.height))
                if size is not None:
                    im = im.resize((size, size), Image.Resampling.BICUBIC)
                return np.asarray(im, dtype=np.uint8)
        except FileNotFoundError:
            raise DatasetError(f"{path}: image not found") from None
        except (UnidentifiedImageError, OSError) as err:
            raise DatasetError(f"{path}: cannot read image ({err})") from None

    def __getitem__(self, i: int) -> dict[str, Any]:
        """``{"key", "image" (uint8 [H, W, 3]), "captions", "class_id" (int or None)}``."""
        return {"key": self.keys[i], "image": self.load_image(i), "captions": self.captions[i],
                "class_id": None if self.class_ids is None else int(self.class_ids[i])}


def cub_crop_box(box: Any, width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the StackGAN crop for a CUB box ``(x, y, w, h)``.

    A square of side 1.5 * max(w, h) centred on the box (half-side ``int(0.75 * max)``,
    centre truncated to integers), clipped to the ``width x height`` image, so boxes near
    the border give a non-square crop, as in the reference loaders.
    """
    x, y, w, h = (float(v) for v in box)
    half = int(max(w, h) * 0.75)
    cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
    return (max(0, cx - half), max(0, cy - half), min(width, cx + half), min(height, cy + half))


# ----------------------------------------------------------------------------- pieces


def _check_root(root: Path, name: str) -> Path:
    if not root.is_dir():
        title, layout = _LAYOUTS[name]
        raise DatasetError(f"{root}: {title} folder not found; expected the layout {layout}")
    return root


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; the releases have {', '.join(SPLITS)}")


def _filenames(root: Path, split: str) -> list[str]:
    path = root / split / "filenames.pickle"
    value = load_legacy_pickle(path, "filenames pickle")
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, tuple):
        value = list(value)
    if not isinstance(value, list) or not all(isinstance(k, (str, bytes)) for k in value):
        raise DatasetError(f"{path}: expected a list of strings (image keys), got "
                           f"{type(value).__name__}")
    keys = [k.decode("latin1") if isinstance(k, bytes) else k for k in value]
    if not keys:
        raise DatasetError(f"{path}: holds no filenames")
    return keys


def _class_info(root: Path, split: str, n: int) -> np.ndarray | None:
    path = root / split / "class_info.pickle"
    if not path.exists():
        return None
    value = load_legacy_pickle(path, "class info pickle")
    try:
        ids = np.asarray(value)
    except (TypeError, ValueError):
        ids = np.asarray([])
    if ids.dtype.kind not in "iuf" or ids.ndim != 1:
        raise DatasetError(f"{path}: expected a list of integer class ids, got "
                           f"{type(value).__name__}")
    if ids.shape != (n,):
        raise DatasetError(f"{path}: holds {ids.shape} class ids, expected ({n},) (one per "
                           "name in filenames.pickle)")
    return ids.astype(np.int64)


def _read_captions(path: Path, count: int) -> list[str]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: caption file not found") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read caption file ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # a few release files are not UTF-8; latin1 never fails
        text = raw.decode("latin1")
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) < count:
        raise DatasetError(f"{path}: caption file holds {len(lines)} captions, expected at "
                           f"least {count}")
    return lines[:count]  # AttnGAN also reads only the first `count` captions


def _text_dir(root: Path) -> Path:
    for name in ("text_c10", "text"):  # StackGAN's folder, then AttnGAN/DF-GAN's
        if (root / name).is_dir():
            return root / name
    raise DatasetError(f"{root / 'text_c10'}: caption folder not found (looked for text_c10/ "
                       "and text/)")


def _require_images(paths: list[Path]) -> None:
    for path in paths:
        if not path.is_file():
            raise DatasetError(f"{path}: image not found")


# ----------------------------------------------------------------------------- datasets


def load_cub(root: str | os.PathLike[str], split: str = "train") -> RealDataset:
    """CUB-200-2011 in the StackGAN/AttnGAN ``birds/`` layout (images are cropped around
    their bounding box by :meth:`RealDataset.load_image`)."""
    root = _check_root(Path(root), "cub")
    _check_split(split)
    keys = _filenames(root, split)
    cub = root / "CUB_200_2011"
    if not cub.is_dir():
        raise DatasetError(f"{cub}: CUB_200_2011 folder not found (images/, images.txt, "
                           "bounding_boxes.txt)")
    boxes_by_key = _cub_boxes(cub)
    missing = [k for k in keys if k not in boxes_by_key]
    if missing:
        raise DatasetError(f"{cub / 'images.txt'}: has no entry for {missing[0]!r} "
                           f"({len(missing)} of the {split} filenames are missing)")
    boxes = np.array([boxes_by_key[k] for k in keys], dtype=np.float32)
    text = _text_dir(root)
    captions = [_read_captions(text / f"{k}.txt", 10) for k in keys]
    paths = [cub / "images" / f"{k}.jpg" for k in keys]
    _require_images(paths)
    class_ids = _class_info(root, split, len(keys))
    if class_ids is None:  # the class folder's number, '001.Black_footed_Albatross' -> 1
        class_ids = np.array([_leading_int(k) for k in keys], dtype=np.int64)
    return RealDataset("cub", root, split, keys, paths, captions, class_ids, boxes, 10)


def _leading_int(key: str) -> int:
    head = key.split("/")[0].split(".")[0]
    return int(head) if head.isdigit() else -1


def _cub_boxes(cub: Path) -> dict[str, tuple[float, float, float, float]]:
    """``{key: (x, y, w, h)}`` from images.txt ("id path") and bounding_boxes.txt."""
    ids: dict[str, str] = {}
    for _lineno, parts in _table(cub / "images.txt", 2):
        ids[parts[0]] = parts[1].removesuffix(".jpg")
    boxes: dict[str, tuple[float, float, float, float]] = {}
    path = cub / "bounding_boxes.txt"
    for lineno, parts in _table(path, 5):
        try:
            box = tuple(float(v) for v in parts[1:5])
        except ValueError:
            raise DatasetError(f"{path}:{lineno}: expected 'id x y width height'") from None
        if parts[0] in ids:
            boxes[ids[parts[0]]] = box  # type: ignore[assignment]
    return boxes


def _table(path: Path, columns: int) -> list[tuple[int, list[str]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: not found") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < columns:
            raise DatasetError(f"{path}:{lineno}: expected {columns} columns, got {len(parts)}")
        rows.append((lineno, parts))
    return rows


def load_flowers(root: str | os.PathLike[str], split: str = "train") -> RealDataset:
    """Oxford-102 flowers in the StackGAN ``flowers/`` layout (captions in class folders)."""
    root = _check_root(Path(root), "flowers")
    _check_split(split)
    keys = _filenames(root, split)
    text = _text_dir(root)
    # Caption files sit in per-class folders that the keys do not name: index them once.
    index = {p.stem: p for p in text.glob("*/*.txt")}
    index.update({p.stem: p for p in text.glob("*.txt")})
    captions, folder_ids = [], []
    for key in keys:
        stem = key.rsplit("/", 1)[-1]
        path = index.get(stem)
        if path is None:
            raise DatasetError(f"{text / '<class>' / (stem + '.txt')}: caption file not found")
        captions.append(_read_captions(path, 10))
        digits = "".join(ch for ch in path.parent.name if ch.isdigit())
        folder_ids.append(int(digits) if digits else -1)
    paths = [root / f"{key}.jpg" for key in keys]
    _require_images(paths)
    class_ids = _class_info(root, split, len(keys))
    if class_ids is None:  # 'class_00077' -> 77
        class_ids = np.array(folder_ids, dtype=np.int64)
    return RealDataset("flowers", root, split, keys, paths, captions, class_ids, None, 10)


def load_coco(root: str | os.PathLike[str], split: str = "train") -> RealDataset:
    """MS-COCO 2014 in the AttnGAN/DF-GAN ``coco/`` layout (5 captions an image)."""
    root = _check_root(Path(root), "coco")
    _check_split(split)
    keys = _filenames(root, split)
    text = root / "text"
    if not text.is_dir():
        raise DatasetError(f"{text}: caption folder not found (text/<key>.txt)")
    captions = [_read_captions(text / f"{key}.txt", 5) for key in keys]
    images = root / "images"
    if not images.is_dir():
        raise DatasetError(f"{images}: image folder not found (images/ or images/train2014, "
                           "images/val2014)")
    paths = [_coco_image(images, key) for key in keys]
    class_ids = _class_info(root, split, len(keys))
    return RealDataset("coco", root, split, keys, paths, captions, class_ids, None, 5)


def _coco_image(images: Path, key: str) -> Path:
    # Keys carry their year folder ('COCO_val2014_...'); look there first.
    folders = [f for f in ("train2014", "val2014") if f in key]
    folders += [f for f in ("", "train2014", "val2014") if f not in folders]
    for folder in folders:
        path = images / folder / f"{key}.jpg"
        if path.is_file():
            return path
    raise DatasetError(f"{images / folders[0] / (key + '.jpg')}: image not found")


_LOADERS = {"cub": load_cub, "birds": load_cub, "flowers": load_flowers,
            "oxford102": load_flowers, "coco": load_coco, "mscoco": load_coco}


def load_real(name: str, root: str | os.PathLike[str], split: str = "train") -> RealDataset:
    """Load ``name`` (cub | birds | flowers | coco) from ``root``."""
    loader = _LOADERS.get(name.lower())
    if loader is None:
        raise DatasetError(f"unknown dataset {name!r}; use cub (birds), flowers or coco")
    return loader(root, split)
