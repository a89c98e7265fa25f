"""Evaluation entry point: generator (oracle sampler), image-folder and prompts modes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.testing import assert_close

from text2img import evaluate as ev
from text2img import judge as judge_mod
from text2img.data.synthbirds import ATTRIBUTE_NAMES, ATTRIBUTES, SynthBirdsSpec, generate
from text2img.inception import inception_score
from text2img.judge import load_judge, predict

TINY_JUDGE = ["data.n_train=160", "data.n_test=40", "train.steps=6", "train.batch_size=16",
              "train.warmup=2", "model.widths=[4,8,8,8]", "model.feature_dim=12",
              "runtime.threads=1", "run.wandb_mode=disabled"]


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CGAN_CACHE", str(root))
        judge_mod.main([*TINY_JUDGE, "--run-dir", str(root / "judge-run")])
    return root


@pytest.fixture()
def judge_dir(cache_root, monkeypatch) -> str:
    monkeypatch.setenv("CGAN_CACHE", str(cache_root))
    torch.set_num_threads(1)
    return str(next((cache_root / "judge").iterdir()))


def _run(args: list[str], run_dir: Path, judge_dir: str, wandb: str = "disabled") -> dict:
    ev.main([*args, f"judge={judge_dir}", "batch_size=16", f"run.wandb_mode={wandb}",
             "--run-dir", str(run_dir)])
    return json.loads((run_dir / "eval.json").read_text())


def test_oracle_generator_mode_reports_all_metrics(tmp_path, judge_dir, cache_root) -> None:
    report = _run(["sampler=oracle", "n=24", "n_z=3", "diversity_captions=4"],
                  tmp_path / "run", judge_dir)
    m = report["metrics"]
    assert report["mode"] == "generator" and report["resolution"] == 128
    assert 0.0 <= m["metrics/attr_acc"] <= 1.0
    assert m["metrics/fd_judge_24"] >= 0.0 and m["metrics/fd_judge_24_floor"] >= 0.0
    assert m["metrics/diversity"] > 0.0
    assert any(k.startswith("metrics/attr_acc/") for k in m)
    assert any(k.startswith("metrics/judge_ceiling/") for k in m)
    stats = sorted((cache_root / "real_stats").glob("*.npz"))
    assert len(stats) == 2  # test[0:24] and the floor's test[24:48]
    mtimes = [p.stat().st_mtime_ns for p in stats]
    again = _run(["sampler=oracle", "n=24", "n_z=3", "diversity_captions=4"],
                 tmp_path / "run2", judge_dir)
    assert [p.stat().st_mtime_ns for p in stats] == mtimes  # cached real statistics reused
    assert again["metrics"]["metrics/fd_judge_24_floor"] == m["metrics/fd_judge_24_floor"]


def test_oracle_at_64_px_is_judged_at_64(tmp_path, judge_dir) -> None:
    report = _run(["sampler=oracle", "resolution=64", "n=10", "n_z=2", "diversity_captions=2"],
                  tmp_path / "run", judge_dir)
    assert report["resolution"] == 64 and "metrics/fd_judge_10" in report["metrics"]


def _write_folder(folder: Path, size: int = 64, n: int = 6) -> tuple[np.ndarray, list]:
    data = generate(SynthBirdsSpec(), "test", n, progress=False)
    images = data.images_at(size)
    folder.mkdir()
    lines, targets = [], []
    for i in range(n):
        Image.fromarray(images[i]).save(folder / f"{i:03d}.png")
        j = 0 if i < 5 else 1
        stated = {name: ATTRIBUTES[k][1][data.attributes[i, k]]
                  for k, name in enumerate(ATTRIBUTE_NAMES) if data.mentions[i, j, k]}
        row = {"image": f"{i:03d}.png", "caption": data.captions[i][j]}
        if i != 3:  # one image without attributes: counts for fd and diversity only
            row["attributes"] = stated
        lines.append(json.dumps(row))
        targets.append({k: ATTRIBUTES[ATTRIBUTE_NAMES.index(k)][1].index(v)
                        for k, v in stated.items()} if i != 3 else None)
    # Two images with the same caption: one diversity group.
    lines.append(json.dumps({"image": "000.png", "caption": "shared", "attributes": {}}))
    lines.append(json.dumps({"image": "001.png", "caption": "shared"}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return images, targets


def test_folder_mode_scores_what_the_judge_predicts(tmp_path, judge_dir) -> None:
    images, targets = _write_folder(tmp_path / "imgs")
    report = _run([f"images={tmp_path / 'imgs'}"], tmp_path / "run", judge_dir)
    pred = predict(load_judge(judge_dir), images)
    expected = ev.attribute_accuracy(pred, targets)
    assert report["mode"] == "images" and report["resolution"] == 64 and report["n"] == 8
    assert_close(report["metrics"]["metrics/attr_acc"], expected["attr_acc"])
    feats = pred["features"][[0, 1]].astype(np.float64)
    assert_close(report["metrics"]["metrics/diversity"], float(np.linalg.norm(feats[0] - feats[1])),
                 rtol=1e-5, atol=1e-6)
    assert "metrics/fd_judge_8" in report["metrics"]


def test_prompts_mode_scores_each_prompt_and_logs_offline(tmp_path, judge_dir) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        json.dumps({"caption": "a bird with a crimson crown and red wings",
                    "attributes": {"crown": "red", "wing": "red"}}) + "\n\n"
        + json.dumps({"caption": "this small bird has a long black beak at dusk"}) + "\n")
    report = _run([f"prompts={prompts}", "sampler=oracle", "n_z=3"], tmp_path / "run", judge_dir,
                  wandb="offline")
    rows = report["prompts"]
    assert report["mode"] == "prompts" and len(rows) == 2
    assert rows[0]["attributes_from"] == "given" and rows[1]["attributes_from"] == \
        "parsed from caption"
    assert rows[1]["attributes"] == {"size": "small", "beak_length": "long",
                                     "beak_colour": "black", "background": "dusk"}
    assert len(rows[0]["predicted"]) == 3 and 0.0 <= rows[0]["attr_acc"] <= 1.0
    assert "metrics/prompts/attr_acc" in report["metrics"]
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(list((tmp_path / "run" / "samples").glob("eval_prompt_*.png"))) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"caption": "a red bird"}\n{"caption": "  "}\n', r"prompts.jsonl:2: 'caption' must be"),
        ('{"caption": "a red bird"\n', r"prompts.jsonl:1: not valid JSON"),
        ('{"caption": "a bird", "attributes": {"body": "crimson"}}\n',
         r"prompts.jsonl:1: attribute 'body' has no value 'crimson'; values: red, orange"),
        ('{"caption": "a bird", "attributes": {"tail": "red"}}\n',
         r"prompts.jsonl:1: unknown attribute 'tail'"),
    ],
)
def test_bad_prompts_name_file_and_line(tmp_path, judge_dir, capsys, content, message) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        _run([f"prompts={prompts}", "sampler=oracle", "n_z=2"], tmp_path / "run", judge_dir)
    assert exit_info.value.code == 2
    assert __import__("re").search(message, capsys.readouterr().err)


def test_long_and_non_ascii_prompts_are_accepted(tmp_path, judge_dir) -> None:
    prompts = tmp_path / "prompts.jsonl"
    long = " ".join(["a large bird with grey wings"] * 400)
    prompts.write_text(json.dumps({"caption": long}) + "\n"
                       + json.dumps({"caption": "un oiseau 鳥 with a blue crown"}) + "\n")
    report = _run([f"prompts={prompts}", "sampler=oracle", "n_z=2"], tmp_path / "run", judge_dir)
    assert report["prompts"][0]["attributes"] == {"size": "large", "wing": "grey"}
    assert report["prompts"][1]["attributes"] == {"crown": "blue"}


def test_missing_inputs_are_clear_errors(tmp_path, judge_dir, capsys) -> None:
    for args, message in [
        ([], "nothing to evaluate"),
        ([f"images={tmp_path / 'nope'}"], "nope: image folder not found"),
        ([f"images={tmp_path}", "sampler=oracle"], "do not combine"),
        (["checkpoint=/no/such.ckpt", "sampler=my.module:fn"], "/no/such.ckpt: checkpoint not"),
    ]:
        with pytest.raises(SystemExit):
            _run(args, tmp_path / f"run{len(args)}{len(message)}", judge_dir)
        assert message in capsys.readouterr().err


def test_load_sampler_accepts_any_module_exporting_the_protocol(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_sampler.py").write_text(
        "from text2img.evaluate import OracleSampler\n"
        "def load_sampler(checkpoint, device):\n    return OracleSampler(32)\n"
        "def broken(checkpoint, device):\n    return object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ckpt = tmp_path / "g.ckpt"
    ckpt.write_bytes(b"")
    sampler = ev.load_sampler("my_sampler", str(ckpt))
    assert isinstance(sampler, ev.Sampler) and sampler.resolution == 32
    x = sampler.sample(["a red bird"], None, 2, torch.Generator().manual_seed(0))
    assert x.shape == (1, 2, 3, 32, 32) and float(x.min()) >= -1 and float(x.max()) <= 1
    with pytest.raises(ev.EvalError, match=r"lacks the Sampler protocol"):
        ev.load_sampler("my_sampler:broken", str(ckpt))
    with pytest.raises(ev.EvalError, match=r"cannot be imported"):
        ev.load_sampler("no_such_module_xyz:f", str(ckpt))
    sys.modules.pop("my_sampler", None)


def test_attribute_accuracy_averages_over_stated_attributes() -> None:
    preds = {name: np.zeros(3, np.int64) for name in ATTRIBUTE_NAMES}
    preds["body"] = np.array([0, 1, 0])
    targets = [{"body": 0, "wing": 1}, {"body": 1}, None]
    acc = ev.attribute_accuracy(preds, targets)
    assert acc["attr_acc"] == pytest.approx((0.5 + 1.0) / 2)
    assert acc["attr_acc/body"] == 1.0 and acc["attr_acc/wing"] == 0.0
    assert "attr_acc/crown" not in acc


def test_heldout_accuracy_splits_unseen_colour_pairs_from_seen_ones() -> None:
    preds = {name: np.zeros(4, np.int64) for name in ATTRIBUTE_NAMES}
    preds["body"] = np.array([2, 2, 5, 5])
    preds["wing"] = np.array([3, 0, 1, 1])
    targets = [{"body": 2, "wing": 3}, {"body": 2, "wing": 3, "size": 0}, {"body": 5, "wing": 1},
               {"body": 4}]
    unseen = np.array([True, True, False, False])
    out = ev.heldout_accuracy(preds, targets, unseen)
    assert out["heldout/n"] == 2 and out["seen/n"] == 2
    assert out["heldout/pair_acc"] == pytest.approx(0.5)  # image 1 misses its wing
    assert out["heldout/attr_acc"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert out["seen/pair_acc"] == 1.0 and out["seen/pair_n"] == 1  # image 3 states no wing
    assert out["seen/attr_acc"] == pytest.approx(0.5)


def test_colour_binding_counts_parts_drawn_in_another_stated_part_s_colour() -> None:
    preds = {name: np.zeros(5, np.int64) for name in ATTRIBUTE_NAMES}
    preds["body"] = np.array([4, 0, 7, 3, 9])
    preds["wing"] = np.array([4, 4, 1, 3, 0])
    preds["crown"] = np.array([0, 5, 2, 3, 0])
    targets = [{"body": 0, "wing": 4},  # body drawn in the wing's colour: swapped
               {"body": 0, "wing": 4, "crown": 2},  # crown wrong, not a stated colour
               {"body": 3, "wing": 1, "crown": 2},  # body wrong (7): wrong, not swapped
               {"body": 3, "wing": 3},  # one colour: nothing to bind, left out
               {"body": 9, "size": 1}]  # one colour part: left out
    out = ev.colour_binding(preds, targets)
    assert out["binding/n"] == 8
    assert out["binding/swapped"] == pytest.approx(1 / 8)
    assert out["binding/wrong"] == pytest.approx(3 / 8)
    assert ev.colour_binding(preds, [{"body": 1}, None]) == {}


def test_diversity_is_mean_pairwise_distance() -> None:
    feats = np.array([[[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]])  # distances 5, 0, 5
    assert ev.diversity(feats) == pytest.approx(10 / 3)


def _tiny_inception(path: Path) -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(3, 6)

        def forward(self, x: torch.Tensor, return_features: bool = False,
                    no_output_bias: bool = False) -> torch.Tensor:
            h = x.float().mean(dim=(2, 3)) / 255.0  # (N, 3)
            if return_features:
                return torch.cat([h, h * h], dim=1)
            return torch.softmax(self.proj(h), dim=1)

    torch.manual_seed(0)
    torch.jit.script(Net()).save(str(path))


def test_fid_and_is_with_user_supplied_torchscript_inception(tmp_path, judge_dir) -> None:
    net = tmp_path / "inception.pt"
    _tiny_inception(net)
    _write_folder(tmp_path / "imgs", n=10)
    report = _run([f"images={tmp_path / 'imgs'}", f"inception={net}"], tmp_path / "run", judge_dir)
    m = report["metrics"]
    assert m["metrics/fid_inception_12"] > 0.0
    assert 1.0 - 1e-9 <= m["metrics/is_inception_12"] <= 6.0


def test_inception_score_of_uniform_predictions_is_one() -> None:
    assert inception_score(np.full((20, 5), 0.2))["mean"] == pytest.approx(1.0)
    onehot = np.eye(4)[np.arange(48) % 4]  # confident and balanced: IS = number of classes
    assert inception_score(onehot, splits=4)["mean"] == pytest.approx(4.0, rel=1e-6)


def test_missing_inception_file_is_a_clear_error(tmp_path, judge_dir, capsys) -> None:
    _write_folder(tmp_path / "imgs")
    with pytest.raises(SystemExit):
        _run([f"images={tmp_path / 'imgs'}", f"inception={tmp_path / 'none.pt'}"],
             tmp_path / "run", judge_dir)
    assert "none.pt: Inception weights not found" in capsys.readouterr().err


def test_evaluate_help_explains_the_modes(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ev.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "images=DIR" in out and "prompts=FILE.jsonl" in out and "sampler=oracle" in out


def test_high_resolution_sampler_is_judged_at_a_lower_resolution(judge_dir) -> None:
    judge = load_judge(judge_dir)
    cfg = ev.EvalConfig(n=6, n_z=2, diversity_captions=2, resolution=64, batch_size=16)
    out = ev.evaluate_sampler(ev.OracleSampler(128), judge, SynthBirdsSpec(), cfg,
                              torch.device("cpu"))
    assert out["resolution"] == 64 and out["grid"][0].shape[1:] == (64, 64, 3)
    cfg.resolution = 128
    with pytest.raises(ev.EvalError, match=r"above the sampler's 64 px"):
        ev.evaluate_sampler(ev.OracleSampler(64), judge, SynthBirdsSpec(), cfg,
                            torch.device("cpu"))
