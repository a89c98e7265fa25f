"""Judge plumbing: a tiny judge trained for a few steps by the real command, then cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from text2img import judge as judge_mod
from text2img.data.synthbirds import ATTRIBUTE_NAMES, SynthBirdsSpec, generate
from text2img.judge import (
    JUDGE_INPUT,
    Judge,
    JudgeConfig,
    format_table,
    judge_features,
    judge_key,
    load_judge,
    predict,
    to_judge_input,
)

TINY = ["data.n_train=160", "data.n_test=40", "train.steps=6", "train.batch_size=16",
        "train.warmup=2", "model.widths=[4,8,8,8]", "model.feature_dim=12",
        "runtime.threads=1", "run.wandb_mode=disabled"]


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CGAN_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def test_judge_command_trains_once_then_loads_from_cache(tmp_path, capsys) -> None:
    argv = [*TINY, "--run-dir", str(tmp_path / "run")]
    first = judge_mod.main(argv)
    assert first["trained"] is True
    table = first["accuracy"]
    assert set(table["32"]) == set(ATTRIBUTE_NAMES) and table["n_test"] == 40
    assert all(0.0 <= v <= 1.0 for s in ("32", "64", "128") for v in table[s].values())
    assert (tmp_path / "cache" / "judge" / first["key"] / "judge.safetensors").is_file()
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
    second = judge_mod.main([*TINY, "--run-dir", str(tmp_path / "run2")])
    assert second["trained"] is False and second["key"] == first["key"]
    assert not (tmp_path / "run2").exists()  # nothing trained, nothing logged
    out = capsys.readouterr().out
    assert "| wing_pattern |" in out and "32 px | 64 px | 128 px" in out


def test_judge_key_follows_data_and_model() -> None:
    base = judge_key(JudgeConfig())
    cfg = JudgeConfig()
    cfg.data.n_train = 100
    assert judge_key(cfg) != base
    cfg = JudgeConfig()
    cfg.model.feature_dim = 64
    assert judge_key(cfg) != base
    cfg = JudgeConfig()
    cfg.train.eval_sizes = [128]  # evaluation settings do not change the weights
    assert judge_key(cfg) == base


def test_loaded_judge_gives_the_same_features_as_trained(tmp_path) -> None:
    result = judge_mod.main([*TINY, "--run-dir", str(tmp_path / "run")])
    judge = load_judge(result["folder"])
    again = load_judge(result["folder"])
    images = generate(SynthBirdsSpec(), "val", 6, progress=False).images
    feats = judge_features(judge, images)
    assert feats.shape == (6, 12) and feats.dtype == np.float32
    assert_close(torch.from_numpy(feats), torch.from_numpy(judge_features(again, images)))
    pred = predict(judge, images)
    assert set(pred) == {*ATTRIBUTE_NAMES, "features"} and pred["body"].shape == (6,)


def test_missing_judge_says_how_to_train_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"python -m text2img.judge"):
        load_judge(JudgeConfig())


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_judge_input_is_128_px_from_any_size(size: int) -> None:
    images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    x = to_judge_input(images)
    assert x.shape == (2, 3, JUDGE_INPUT, JUDGE_INPUT)
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    net = Judge([4, 4, 4, 4], 8).eval()
    assert net(x).features.shape == (2, 8)


def test_upsampled_flat_image_stays_flat() -> None:
    grey = np.full((1, 32, 32, 3), 100, np.uint8)
    assert_close(to_judge_input(grey), torch.full((1, 3, 128, 128), 100 / 127.5 - 1.0))


def test_format_table_lists_every_attribute() -> None:
    table = {"32": dict.fromkeys(ATTRIBUTE_NAMES, 0.5), "128": dict.fromkeys(ATTRIBUTE_NAMES, 1.0)}
    text = format_table(table)
    assert text.count("\n") == len(ATTRIBUTE_NAMES) + 1
    assert "| body | 50.00 | 100.00 |" in text


def test_judge_help_explains_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        judge_mod.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "python -m text2img.judge" in out and "cached" in out
