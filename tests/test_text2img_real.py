"""Real-dataset loaders on miniature fixtures in the StackGAN / AttnGAN release layouts.

The pickles are written opcode by opcode the way Python 2 (with Python-2-era numpy) wrote
them, so the latin1 path is exercised for real: strings are byte strings (BINSTRING) and an
array's raw buffer is one such string.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from text2img.data.legacy import DatasetError, load_legacy_pickle
from text2img.data.real import cub_crop_box, load_coco, load_cub, load_flowers, load_real
from text2img.encoders import EncoderError, get_encoder

# ----------------------------------------------------------------------------- py2 pickles


def _py2(obj) -> bytes:
    """Protocol-2 pickle bytes as Python 2 + numpy 1.x produced them."""
    return b"\x80\x02" + _py2_obj(obj) + b"."


def _py2_str(s: str | bytes) -> bytes:
    raw = s.encode("latin1") if isinstance(s, str) else s
    if len(raw) < 256:
        return b"U" + bytes([len(raw)]) + raw  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(raw)) + raw  # BINSTRING


def _py2_obj(obj) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, float):
        return b"G" + struct.pack(">d", obj)
    if isinstance(obj, (str, bytes)):
        return _py2_str(obj)
    if isinstance(obj, tuple):
        return b"(" + b"".join(_py2_obj(v) for v in obj) + b"t"
    if isinstance(obj, list):
        return b"](" + b"".join(_py2_obj(v) for v in obj) + b"e"
    if isinstance(obj, dict):
        return b"}(" + b"".join(_py2_obj(k) + _py2_obj(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, np.ndarray):
        dtype = (b"cnumpy\ndtype\n" + _py2_obj((obj.dtype.str[1:], 0, 1)) + b"R"
                 + _py2_obj((3, "<", None, None, None, -1, -1, 0)) + b"b")
        return (b"cnumpy.core.multiarray\n_reconstruct\n"
                + b"(cnumpy\nndarray\n" + _py2_obj((0,)) + _py2_str("b") + b"tR"
                + b"(" + _py2_obj(1) + _py2_obj(tuple(obj.shape)) + dtype + b"\x89"
                + _py2_str(np.ascontiguousarray(obj).astype("<" + obj.dtype.str[1:]).tobytes())
                + b"tb")
    raise TypeError(type(obj))


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_py2_pickle_needs_latin1_and_loads_restricted(tmp_path) -> None:
    emb = np.array([[0.5, -1.25, 3.0e7], [255.0, 1e-3, -7.0]], np.float32)
    path = _write(tmp_path / "e.pickle", _py2({"emb": emb, "names": ["a", "b"], "k": 3}))
    with pytest.raises(UnicodeDecodeError):  # what a plain pickle.load does with these bytes
        pickle.loads(path.read_bytes())
    value = load_legacy_pickle(path)
    np.testing.assert_array_equal(value["emb"], emb)
    assert value["names"] == ["a", "b"] and value["k"] == 3


# ----------------------------------------------------------------------------- fixtures

CUB_KEYS = ["001.Black_footed_Albatross/Black_Footed_Albatross_0046_18",
            "002.Laysan_Albatross/Laysan_Albatross_0002_1027"]


def _image(path: Path, w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def _captions(path: Path, n: int, tag: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{tag} caption number {j}\n" for j in range(n)) + "\n")


def make_cub(root: Path, text_dir: str = "text_c10") -> np.ndarray:
    cub = root / "CUB_200_2011"
    (cub / "images").mkdir(parents=True)
    all_keys = [*CUB_KEYS, "003.Sooty_Albatross/Sooty_Albatross_0001_796"]  # not in the split
    (cub / "images.txt").write_text("".join(f"{i + 1} {k}.jpg\n" for i, k in enumerate(all_keys)))
    (cub / "bounding_boxes.txt").write_text("1 10.0 20.0 40.0 30.0\n2 0.0 0.0 60.0 80.0\n"
                                            "3 1.0 1.0 2.0 2.0\n")
    for i, key in enumerate(all_keys):
        _image(cub / "images" / f"{key}.jpg", 120, 100, i)
        _captions(root / text_dir / f"{key}.txt", 10, f"bird{i}")
    emb = np.random.default_rng(0).normal(size=(2, 10, 1024)).astype(np.float32)
    _write(root / "train" / "filenames.pickle", _py2(CUB_KEYS))
    _write(root / "train" / "class_info.pickle", _py2([1, 2]))
    _write(root / "train" / "char-CNN-RNN-embeddings.pickle", _py2(emb))
    return emb


def test_cub_loads_keys_captions_classes_boxes_and_embeddings(tmp_path) -> None:
    emb = make_cub(tmp_path / "birds")
    ds = load_cub(tmp_path / "birds", "train")
    assert ds.keys == CUB_KEYS and len(ds) == 2
    assert ds.captions[1][0] == "bird1 caption number 0" and len(ds.captions[1]) == 10
    np.testing.assert_array_equal(ds.class_ids, [1, 2])
    np.testing.assert_array_equal(ds.boxes[0], [10.0, 20.0, 40.0, 30.0])
    np.testing.assert_array_equal(ds.embeddings(), emb)
    # StackGAN crop: half-side int(0.75 * 40) = 30 around the centre (30, 35), clipped.
    assert cub_crop_box(ds.boxes[0], 120, 100) == (0, 5, 60, 65)
    assert ds.load_image(0).shape == (60, 60, 3)
    assert ds.load_image(1, size=64).shape == (64, 64, 3)
    assert ds[0]["class_id"] == 1 and ds[0]["key"] == CUB_KEYS[0]


def test_cub_reads_attngan_text_folder(tmp_path) -> None:
    make_cub(tmp_path / "birds", text_dir="text")
    ds = load_real("birds", tmp_path / "birds", "train")
    assert ds.captions[0][9] == "bird0 caption number 9"


def test_flowers_finds_captions_in_class_folders(tmp_path) -> None:
    root = tmp_path / "flowers"
    keys = ["jpg/image_06734", "jpg/image_00001"]
    for i, key in enumerate(keys):
        _image(root / f"{key}.jpg", 50, 40, i)
        stem = key.split("/")[1]
        _captions(root / "text_c10" / f"class_{77 + i:05d}" / f"{stem}.txt", 10, stem)
    _write(root / "test" / "filenames.pickle", _py2(keys))
    _write(root / "test" / "class_info.pickle", _py2([77, 78]))
    ds = load_flowers(root, "test")
    assert ds.captions[0][0] == "image_06734 caption number 0"
    assert ds.image_paths[1] == root / "jpg" / "image_00001.jpg"
    assert ds.load_image(0, size=32).shape == (32, 32, 3)
    np.testing.assert_array_equal(ds.class_ids, [77, 78])


def test_coco_finds_images_in_year_folders_with_five_captions(tmp_path) -> None:
    root = tmp_path / "coco"
    keys = ["COCO_train2014_000000000009", "COCO_val2014_000000000042"]
    _image(root / "images" / "train2014" / f"{keys[0]}.jpg", 64, 48, 0)
    _image(root / "images" / "val2014" / f"{keys[1]}.jpg", 64, 48, 1)
    for key in keys:
        _captions(root / "text" / f"{key}.txt", 6, key)
    _write(root / "train" / "filenames.pickle", _py2(keys))
    ds = load_coco(root, "train")
    assert [len(c) for c in ds.captions] == [5, 5]
    assert ds.class_ids is None and ds.image_paths[1].parent.name == "val2014"
    assert len(ds.dataset_hash) == 16


# ----------------------------------------------------------------------------- bad input


def test_missing_dataset_folder_names_it(tmp_path) -> None:
    with pytest.raises(DatasetError, match=r"nowhere.*CUB \(birds\) folder not found"):
        load_cub(tmp_path / "nowhere")


def test_missing_filenames_pickle_names_the_file(tmp_path) -> None:
    make_cub(tmp_path / "birds")
    (tmp_path / "birds" / "train" / "filenames.pickle").unlink()
    with pytest.raises(DatasetError, match=r"train/filenames.pickle: filenames pickle not found"):
        load_cub(tmp_path / "birds")


def test_truncated_pickle_is_a_clear_error(tmp_path) -> None:
    make_cub(tmp_path / "birds")
    path = tmp_path / "birds" / "train" / "char-CNN-RNN-embeddings.pickle"
    path.write_bytes(path.read_bytes()[:5000])
    ds = load_cub(tmp_path / "birds")
    with pytest.raises(DatasetError, match=r"char-CNN-RNN-embeddings.pickle: .* is truncated"):
        ds.embeddings()


def test_pickle_with_arbitrary_global_is_refused_without_running_it(tmp_path) -> None:
    marker = tmp_path / "pwned"
    evil = b"\x80\x02cos\nsystem\n" + _py2_obj((f"touch {marker}",)) + b"R."
    path = _write(tmp_path / "birds" / "train" / "filenames.pickle", evil)
    with pytest.raises(DatasetError, match=r"refusing to load global 'os.system'"):
        load_legacy_pickle(path)
    assert not marker.exists()


class Anything:
    """Stands for any class a hostile or careless pickle might instantiate."""


def test_pickle_with_a_class_instance_is_refused(tmp_path) -> None:
    path = _write(tmp_path / "x.pickle", pickle.dumps([Anything()], protocol=2))
    with pytest.raises(DatasetError, match=r"refusing to load global .*Anything"):
        load_legacy_pickle(path)


@pytest.mark.parametrize("protocol", [2, 4])
def test_numpy_scalars_and_python3_bytes_are_plain_data(tmp_path, protocol) -> None:
    # A class_info.pickle re-saved by Python 3 holds numpy ints; bytes at protocol 2 go
    # through _codecs.encode. Both are data, not code, and must load.
    obj = {"ids": [np.int64(3), np.int32(7)], "raw": b"\x00\xffab", "arr": np.arange(4)}
    path = _write(tmp_path / "class_info.pickle", pickle.dumps(obj, protocol=protocol))
    got = load_legacy_pickle(path)
    assert [int(i) for i in got["ids"]] == [3, 7]
    assert isinstance(got["ids"][0], np.integer)
    assert got["raw"] == b"\x00\xffab"
    np.testing.assert_array_equal(got["arr"], np.arange(4))


def test_mismatched_class_info_names_the_file(tmp_path) -> None:
    make_cub(tmp_path / "birds")
    _write(tmp_path / "birds" / "train" / "class_info.pickle", _py2([1, 2, 3]))
    with pytest.raises(DatasetError, match=r"class_info.pickle: holds \(3,\) class ids, expected"):
        load_cub(tmp_path / "birds")


def test_wrong_pickle_content_type_names_the_file(tmp_path) -> None:
    make_cub(tmp_path / "birds")
    _write(tmp_path / "birds" / "train" / "filenames.pickle", _py2({"not": "a list"}))
    with pytest.raises(DatasetError, match=r"filenames.pickle: expected a list of strings"):
        load_cub(tmp_path / "birds")


def test_empty_caption_file_names_the_file(tmp_path) -> None:
    make_cub(tmp_path / "birds")
    (tmp_path / "birds" / "text_c10" / f"{CUB_KEYS[1]}.txt").write_text("\n  \n")
    with pytest.raises(DatasetError, match=r"Laysan_Albatross_0002_1027.txt: caption file holds"):
        load_cub(tmp_path / "birds")


def test_missing_image_names_the_file(tmp_path) -> None:
    make_cub(tmp_path / "birds")
    (tmp_path / "birds" / "CUB_200_2011" / "images" / f"{CUB_KEYS[0]}.jpg").unlink()
    with pytest.raises(DatasetError, match=r"Black_Footed_Albatross_0046_18.jpg: image not found"):
        load_cub(tmp_path / "birds")


# ----------------------------------------------------------------------------- char-CNN-RNN


def test_char_cnn_rnn_encoder_looks_up_released_vectors(tmp_path) -> None:
    emb = make_cub(tmp_path / "birds")
    enc = get_encoder(f"char-cnn-rnn:cub:{tmp_path / 'birds'}")
    assert enc.dim == 1024
    got = enc.encode(["bird1 caption number 3", "bird0  caption number 0"])
    np.testing.assert_array_equal(got.numpy(), np.stack([emb[1, 3], emb[0, 0]]))
    with pytest.raises(EncoderError, match=r"no released char-CNN-RNN embedding"):
        enc.encode(["a new sentence about a red bird"])
