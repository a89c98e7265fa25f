"""Typed configs: YAML includes, strict dotted overrides, one-line errors naming file and key."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from common.config import (
    ConfigError,
    RunConfig,
    config_hash,
    load_config,
    parse_cli,
    to_dict,
)


@dataclass
class Train:
    lr: float = 1e-3
    steps: int = 10
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class Model:
    d_head: Literal["combined", "split", "projection"] = "combined"
    width: int = 64
    name: str | None = None


@dataclass
class Root:
    seed: int = 0
    train: Train = field(default_factory=Train)
    model: Model = field(default_factory=Model)
    run: RunConfig = field(default_factory=RunConfig)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_file():
    cfg = load_config(Root)
    assert cfg.train.lr == 1e-3 and cfg.model.d_head == "combined"


def test_include_is_deep_merged_and_file_wins(tmp_path):
    write(tmp_path / "base.yaml", "train: {lr: 0.01, steps: 5}\nmodel: {width: 32}\n")
    cfg_file = write(tmp_path / "exp.yaml", "include: base.yaml\ntrain: {steps: 7}\n")
    cfg = load_config(Root, cfg_file)
    assert cfg.train.lr == 0.01  # from the include
    assert cfg.train.steps == 7  # the including file wins
    assert cfg.model.width == 32


def test_overrides_are_typed_and_win_over_file(tmp_path):
    cfg_file = write(tmp_path / "exp.yaml", "train: {lr: 0.01}\n")
    cfg = load_config(
        Root,
        cfg_file,
        [
            "train.lr=1e-4",
            "model.d_head=split",
            "seed=3",
            "train.betas=[0.0, 0.9]",
            "model.name=123",
        ],
    )
    assert cfg.train.lr == pytest.approx(1e-4)
    assert cfg.model.d_head == "split"
    assert cfg.seed == 3
    assert cfg.train.betas == [0.0, 0.9]
    assert cfg.model.name == "123"  # text for a str field, not the int 123


def test_yaml_scientific_notation_without_dot_is_a_float(tmp_path):
    cfg = load_config(Root, write(tmp_path / "a.yaml", "train: {lr: 2e-4}\n"))
    assert cfg.train.lr == pytest.approx(2e-4)


def test_unknown_key_in_file_names_file_and_suggests(tmp_path):
    bad = write(tmp_path / "bad.yaml", "train: {lrr: 0.1}\n")
    with pytest.raises(ConfigError) as err:
        load_config(Root, bad)
    msg = str(err.value)
    assert str(bad) in msg and "'train.lrr'" in msg and "did you mean 'train.lr'" in msg
    assert "\n" not in msg


def test_unknown_override_suggests_closest():
    with pytest.raises(
        ConfigError, match=r"unknown key 'model.d_haed' \(did you mean 'model.d_head'"
    ):
        load_config(Root, None, ["model.d_haed=split"])


def test_wrong_type_names_key_and_types(tmp_path):
    bad = write(tmp_path / "t.yaml", "train: {steps: ten}\n")
    with pytest.raises(ConfigError, match=r"t\.yaml: key 'train.steps' expects int, got 'ten'"):
        load_config(Root, bad)
    with pytest.raises(ConfigError, match="must be one of"):
        load_config(Root, None, ["model.d_head=joint"])
    with pytest.raises(ConfigError, match="expects int"):
        load_config(Root, None, ["train.steps=true"])  # bool is not an int


def test_missing_include_names_including_file(tmp_path):
    cfg_file = write(tmp_path / "exp.yaml", "include: nowhere.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_config(Root, cfg_file)
    assert str(cfg_file.resolve()) in str(err.value) and "nowhere.yaml" in str(err.value)


def test_include_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "include: b.yaml\n")
    write(tmp_path / "b.yaml", "include: a.yaml\n")
    with pytest.raises(ConfigError, match="include cycle"):
        load_config(Root, tmp_path / "a.yaml")


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Root, tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Root, write(tmp_path / "x.yaml", "train: [unclosed\n"))


def test_hash_ignores_run_section_but_not_training_keys():
    a = load_config(Root)
    b = load_config(Root, None, ["run.log_every=7", "run.dir=elsewhere"])
    c = load_config(Root, None, ["train.lr=0.5"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)


def test_cli_dry_run_prints_resolved_yaml(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_cli(Root, ["--dry-run", "train.steps=99", "--run-dir", "runs/x"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "steps: 99" in out and "dir: runs/x" in out


def test_cli_config_error_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_cli(Root, ["train.lrr=1"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "train.lrr" in err


def test_to_dict_round_trips_through_load(tmp_path):
    cfg = load_config(Root, None, ["model.width=7", "train.weights={d/gp: 10}"])
    import yaml

    dumped = write(tmp_path / "dump.yaml", yaml.safe_dump(to_dict(cfg)))
    again = load_config(Root, dumped)
    assert again == cfg


@dataclass
class Quiet:
    run: RunConfig = field(default_factory=lambda: RunConfig(log_every=1000, sample_every=7))


def test_partial_section_merges_onto_parent_default():
    cfg = load_config(Quiet, None, ["run.dir=x"])
    assert (cfg.run.dir, cfg.run.log_every, cfg.run.sample_every) == ("x", 1000, 7)


@dataclass
class Weighted:
    weights: dict[str, float] = field(default_factory=lambda: {"g/l1": 100.0, "g/adv": 1.0})


@dataclass
class WeightedRoot:
    loss: Weighted = field(default_factory=Weighted)


def test_override_sets_one_dict_entry_and_keeps_the_others(tmp_path):
    cfg = load_config(WeightedRoot, overrides=["loss.weights.g/fm=2", "loss.weights.g/l1=50"])
    assert cfg.loss.weights == {"g/l1": 50.0, "g/adv": 1.0, "g/fm": 2.0}
    path = write(tmp_path / "w.yaml", "loss:\n  weights:\n    g/adv: 0.5\n")
    cfg = load_config(WeightedRoot, path, overrides=["loss.weights.g/fm=2"])
    # A section is deep-merged onto its default, mappings included.
    assert cfg.loss.weights == {"g/l1": 100.0, "g/adv": 0.5, "g/fm": 2.0}
    with pytest.raises(ConfigError, match=r"loss.weights.g/fm' expects float"):
        load_config(WeightedRoot, overrides=["loss.weights.g/fm=lots"])
