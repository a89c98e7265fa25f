"""SynthBirds: determinism, splits with held-out pairs, captions, fine detail, cache, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from text2img.data import synthbirds as sb
from text2img.data.synthbirds import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    Pose,
    Renderer,
    SynthBirdsSpec,
    area_downsample,
    generate,
    heldout_pairs,
    load_split,
    make_captions,
    parse_caption,
    render_count,
)


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CGAN_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def test_same_seed_renders_identical_images_and_captions() -> None:
    a = generate(SynthBirdsSpec(seed=5), "train", 12, progress=False)
    b = generate(SynthBirdsSpec(seed=5), "train", 12, progress=False)
    c = generate(SynthBirdsSpec(seed=6), "train", 12, progress=False)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (12, 128, 128, 3) and a.images.dtype == np.uint8


def test_longer_split_extends_shorter_one() -> None:
    short = generate(SynthBirdsSpec(), "val", 6, progress=False)
    long = generate(SynthBirdsSpec(), "val", 15, progress=False)
    np.testing.assert_array_equal(long.images[:6], short.images)
    np.testing.assert_array_equal(long.attributes[:6], short.attributes)
    assert long.captions[:6] == short.captions


def test_heldout_pairs_absent_from_train_and_val_present_in_test() -> None:
    spec = SynthBirdsSpec(seed=1)
    pairs = {tuple(p) for p in heldout_pairs(1).tolist()}
    assert len(pairs) == 10
    assert sorted(b for b, _ in pairs) == list(range(10))  # every body colour still trains
    for split in ("train", "val"):
        data = generate(spec, split, 300, progress=False)
        seen = {tuple(p) for p in data.attributes[:, :2].tolist()}
        assert not seen & pairs
        assert not data.unseen.any()
    test = generate(spec, "test", 300, progress=False)
    in_test = {tuple(p) for p in test.attributes[test.unseen, :2].tolist()}
    assert test.unseen.sum() > 10 and in_test <= pairs


def test_captions_mention_exactly_the_recorded_attributes() -> None:
    data = generate(SynthBirdsSpec(seed=2), "train", 150, progress=False)
    assert data.mentions.shape == (150, 10, 8)
    counts = data.mentions.sum(axis=2)
    assert counts.min() == 2 and counts.max() == 5
    for i in range(len(data)):
        for j, caption in enumerate(data.captions[i]):
            parsed = parse_caption(caption)
            expected = {name: ATTRIBUTES[k][1][data.attributes[i, k]]
                        for k, name in enumerate(ATTRIBUTE_NAMES) if data.mentions[i, j, k]}
            assert parsed == expected, caption


def test_captions_use_only_the_ten_colour_words() -> None:
    rng = np.random.default_rng(0)
    words = set()
    for _ in range(200):
        attrs = sb.sample_attributes(rng)
        caps, _ = make_captions(attrs, rng)
        words |= {w for c in caps for w in c.split()}
    colour_like = {"crimson", "scarlet", "navy", "gray", "violet", "golden", "tan"}
    assert not words & colour_like
    assert set(sb.COLOURS) <= words


def _pattern_renders(size: int) -> dict[str, np.ndarray]:
    renderer = Renderer(128)
    pose = Pose(facing=-1, dx=0.02, dy=0.0, scale=1.0, tilt=0.25, perched=False,
                branch_slope=0.0)
    out = {}
    for p, name in enumerate(sb.PATTERNS):
        attrs = np.array([1, 4, 2, 0, 1, p, 2, 0])  # blue wings, large bird, sky
        out[name] = area_downsample(renderer.render(attrs, pose)[None], size)[0].astype(float)
    return out


def test_wing_pattern_visible_at_128_and_gone_at_32() -> None:
    hi, lo = _pattern_renders(128), _pattern_renders(32)
    for pattern in ("striped", "spotted"):
        changed = np.abs(hi[pattern] - hi["plain"]).max(axis=-1) > 0  # the wing, at 128 px
        assert changed.sum() > 300
        contrast_hi = np.abs(hi[pattern] - hi["plain"])[changed].mean()
        block = changed.reshape(32, 4, 32, 4).any(axis=(1, 3))  # the same wing at 32 px
        contrast_lo = np.abs(lo[pattern] - lo["plain"])[block].mean()
        assert contrast_hi > 15.0, pattern  # stripes/spots: tens of grey levels
        assert contrast_lo < 0.15 * contrast_hi, pattern  # only a trace at the wing outline


def test_area_downsample_is_the_rounded_block_mean() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
    got = area_downsample(x, 2)
    want = np.floor(x.reshape(3, 2, 4, 2, 4, 3).astype(float).mean(axis=(2, 4)) + 0.5)
    np.testing.assert_array_equal(got, want.astype(np.uint8))


def test_second_load_renders_nothing(tmp_path) -> None:
    spec = SynthBirdsSpec(seed=4)
    first = load_split(spec, "train", 20, root=tmp_path, progress=False)
    before = render_count()
    second = load_split(spec, "train", 20, root=tmp_path, progress=False)
    assert not first.from_cache and second.from_cache
    assert render_count() == before
    np.testing.assert_array_equal(first.images, second.images)
    assert first.captions == second.captions


def test_cache_key_covers_version_and_parameters(monkeypatch) -> None:
    base = SynthBirdsSpec().key("train", 100)
    assert SynthBirdsSpec(seed=1).key("train", 100) != base
    assert SynthBirdsSpec(resolution=256).key("train", 100) != base
    assert SynthBirdsSpec(heldout_pairs=5).key("train", 100) != base
    assert SynthBirdsSpec().key("train", 101) != base
    assert SynthBirdsSpec().key("test", 100) != base
    monkeypatch.setattr(sb, "GENERATOR_VERSION", sb.GENERATOR_VERSION + 1)
    assert SynthBirdsSpec().key("train", 100) != base


def test_paper_preset_renders_256() -> None:
    data = generate(SynthBirdsSpec(resolution=256), "val", 2, progress=False)
    assert data.images.shape == (2, 256, 256, 3)
    assert data.images_at(64).shape == (2, 64, 64, 3)


def test_cli_renders_into_out_folder(tmp_path, capsys) -> None:
    sb.main(["--n", "10", "--splits", "train", "test", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "train: 10 images (rendered" in out and "test: 1 images" in out
    folders = sorted(p.name for p in tmp_path.iterdir())
    assert len(folders) == 2 and all((tmp_path / f / "info.json").is_file() for f in folders)
    with pytest.raises(SystemExit) as exit_info:
        sb.main(["--help"])
    assert exit_info.value.code == 0
    assert "--n" in capsys.readouterr().out


def test_bench_reports_speed_and_cache_hit() -> None:
    result = sb.bench_synthbirds(n=40, repeats=1)
    assert result["render_images_per_s"] > 0 and result["with_captions_images_per_s"] > 0
    assert result["cache"]["first_call_rendered"] == 40
    assert result["cache"]["second_call_rendered"] == 0
    assert result["cache"]["second_call_from_cache"] is True
