"""Tracker against the real wandb client in offline/disabled mode, read back from disk."""

from __future__ import annotations

import json
import math
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from common.io import atomic_path, atomic_write_json, atomic_write_text, refuse_overwrite
from common.tracking import (
    Tracker,
    make_grid,
    read_metrics,
    resolve_wandb_mode,
    wandb_is_logged_in,
)

# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """No credentials, quiet client, every wandb directory inside tmp_path."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "NETRC", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    monkeypatch.setenv("WANDB_ARTIFACT_DIR", str(tmp_path / "wandb_artifacts"))
    return home


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) any name lookup made from this Python process."""
    lookups: list[tuple] = []
    real = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            lookups.append((host, *args))
            raise OSError(f"network access attempted in a test: {host}")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return lookups


# --------------------------------------------------------------------------- reading a .wandb file
# The offline run is a `.wandb` transaction log: a 7-byte header (":W&B", magic 0xBEE1,
# version) then LevelDB-log-format records in 32 KiB blocks (4-byte CRC, 2-byte length,
# 1-byte type: 1 full, 2 first, 3 middle, 4 last), each payload a wandb `Record` protobuf.
# wandb 0.31 ships no Python reader for it (the datastore module moved into wandb-core),
# so this small one reads it back with wandb's own protobuf classes.


def read_wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    block, pos, pending, records = 32 * 1024, 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too short for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            records.append(payload)
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            records.append(pending + payload)
    parsed = []
    for payload in records:
        rec = pb.Record()
        rec.ParseFromString(payload)
        parsed.append(rec)
    return parsed


def _put(row: dict, item) -> None:
    # Top-level keys keep their slashes ("train/d/real" is one key); media objects arrive
    # as nested keys (["samples/grid", "caption"]) and are rebuilt as nested dicts.
    path = [item.key] if item.key else list(item.nested_key)
    for part in path[:-1]:
        row = row.setdefault(part, {})
    row[path[-1]] = json.loads(item.value_json)


def offline_history_and_summary(run_dir: Path) -> tuple[str, list[dict], dict, dict]:
    """(run id, history rows, final summary, config) of the single offline run in run_dir."""
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 1, folders
    (log_file,) = folders[0].glob("run-*.wandb")
    history, summary, config, run_id = [], {}, {}, None
    records = read_wandb_records(log_file)
    assert records[-1].WhichOneof("record_type") == "exit"  # the file is complete
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run_id = rec.run.run_id
            config = {
                u.key: json.loads(u.value_json) for u in rec.run.config.update if u.key != "_wandb"
            }
        elif kind == "history":
            row: dict = {}
            for item in rec.history.item:
                _put(row, item)
            history.append(row)
        elif kind == "summary":
            for item in rec.summary.update:
                _put(summary, item)
    return run_id, history, summary, config


# --------------------------------------------------------------------------- W&B mode


def test_resolve_wandb_mode_explicit_and_env(wandb_env, monkeypatch) -> None:
    for mode in ("online", "offline", "disabled"):
        assert resolve_wandb_mode(mode) == mode
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"
    assert resolve_wandb_mode("offline") == "offline"  # an explicit request wins over env
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")  # wandb's old alias of offline
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "sideways")
    with pytest.raises(ValueError, match="WANDB_MODE"):
        resolve_wandb_mode("auto")
    with pytest.raises(ValueError, match="unknown W&B mode"):
        resolve_wandb_mode("cloud")


def test_resolve_wandb_mode_auto_login_detection(wandb_env, monkeypatch) -> None:
    home = wandb_env
    assert not wandb_is_logged_in()
    assert resolve_wandb_mode("auto") == "offline"  # no env, no key, no netrc

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.delenv("WANDB_API_KEY")

    netrc = home / ".netrc"
    netrc.write_text("machine example.org login me password secret\n")
    netrc.chmod(0o600)
    assert resolve_wandb_mode("auto") == "offline"  # a netrc without a W&B entry
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert resolve_wandb_mode("auto") == "online"

    netrc.unlink()
    other = home / "elsewhere.netrc"
    other.write_text("machine wandb.example.com login user password " + "k" * 40 + "\n")
    other.chmod(0o600)
    monkeypatch.setenv("NETRC", str(other))
    assert resolve_wandb_mode("auto") == "offline"  # entry is for a host we do not use
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert resolve_wandb_mode("auto") == "online"  # ... unless it is the configured server


# --------------------------------------------------------------------------- offline run


def test_offline_run_written_and_read_back(wandb_env, no_network, tmp_path) -> None:
    run_dir = tmp_path / "runs" / "exp" / "run0"
    config = {"model": {"head": "split", "width": 8}, "seed": 3}
    with Tracker(
        run_dir, config, group="exp", name="run0", tags=["test"], wandb_mode="offline"
    ) as tracker:
        assert tracker.mode == "offline"
        for step in range(3):
            tracker.log(
                {
                    "train/d/real": 0.5 + step,
                    "train/g/adv": torch.tensor(2.0 * step),
                    "train/lr": 1e-4,
                },
                step=step,
            )
        png = tracker.log_image("samples/grid", torch.zeros(4, 3, 8, 8), step=2, caption="a bird")
        wav = tracker.log_audio("audio/probe", np.zeros(1600, np.float32), 16000, step=2)
        tracker.summary({"metrics/fd_judge_5k": 12.5})
        run_id = tracker.wandb_id
    assert no_network == []  # nothing was looked up, let alone contacted
    print(f"wandb.init offline took {tracker.init_seconds:.2f}s")

    assert (run_dir / "wandb_id.txt").read_text().strip() == run_id
    assert Tracker.stored_wandb_id(run_dir) == run_id
    stored_id, history, summary, logged_config = offline_history_and_summary(run_dir)
    assert stored_id == run_id
    assert logged_config == config
    assert [row["_step"] for row in history] == [0, 1, 2]
    for step, row in enumerate(history):
        assert row["train/d/real"] == pytest.approx(0.5 + step)
        assert row["train/g/adv"] == pytest.approx(2.0 * step)
        assert row["train/lr"] == pytest.approx(1e-4)
    assert history[2]["samples/grid"]["_type"] == "image-file"
    assert history[2]["samples/grid"]["caption"] == "a bird"
    assert history[2]["audio/probe"]["_type"] == "audio-file"
    assert summary["metrics/fd_judge_5k"] == pytest.approx(12.5)

    assert png == run_dir / "samples" / "samples_grid_step000002.png"
    assert wav == run_dir / "audio" / "audio_probe_step000002.wav"
    assert json.loads((run_dir / "summary.json").read_text()) == {"metrics/fd_judge_5k": 12.5}


def test_resume_continues_the_same_wandb_run(wandb_env, tmp_path) -> None:
    run_dir = tmp_path / "run"
    with Tracker(run_dir, {"a": 1}, wandb_mode="offline") as first:
        first.log({"train/loss": 1.0}, step=1)
    stored = Tracker.stored_wandb_id(run_dir)
    assert stored == first.wandb_id
    with Tracker(run_dir, {"a": 1}, wandb_mode="offline", resume_id=stored, resume=True) as second:
        second.truncate_after(1)
        second.log({"train/loss": 0.5}, step=2)
    assert second.wandb_id == stored
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == [1, 2]


# --------------------------------------------------------------------------- local files


def test_metrics_jsonl_contents_and_nonfinite(wandb_env, tmp_path) -> None:
    tracker = Tracker(tmp_path / "run", {}, wandb_mode="disabled")
    tracker.log(
        {"train/d/real": torch.tensor(0.25), "train/count": np.int64(7), "val/flag": True}, step=10
    )
    with pytest.warns(RuntimeWarning, match="train/g/adv"):
        tracker.log({"train/g/adv": float("nan"), "train/d/real": 1.0}, step=11)
    tracker.log({"train/g/adv": math.inf}, step=12)  # warned once per key only
    tracker.finish()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict JSON, one object per line
    assert [r["step"] for r in records] == [10, 11, 12]
    assert all(isinstance(r["time"], float) for r in records)
    assert records[0]["train/d/real"] == 0.25 and records[0]["train/count"] == 7
    assert records[0]["val/flag"] is True
    assert records[1] == {
        "step": 11,
        "time": records[1]["time"],
        "train/g/adv": None,
        "train/d/real": 1.0,
    }
    assert records[2]["train/g/adv"] is None
    assert not (tmp_path / "run" / "wandb").exists()  # disabled: no W&B folder


def test_unnamespaced_key_raises(wandb_env, tmp_path) -> None:
    with Tracker(tmp_path / "run", {}, wandb_mode="disabled") as tracker:
        with pytest.raises(ValueError, match="'loss'"):
            tracker.log({"train/ok": 1.0, "loss": 2.0}, step=0)
        with pytest.raises(ValueError, match="'train/'"):
            tracker.log({"train/": 1.0}, step=0)
        with pytest.raises(ValueError, match="'grid'"):
            tracker.log_image("grid", np.zeros((4, 4, 3), np.uint8), step=0)
        with pytest.raises(TypeError, match="train/vec"):
            tracker.log({"train/vec": torch.ones(3)}, step=0)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == ""  # nothing half-logged


def test_non_main_rank_writes_nothing(wandb_env, tmp_path) -> None:
    run_dir = tmp_path / "rank1"
    with Tracker(run_dir, {"a": 1}, wandb_mode="offline", is_main=False) as tracker:
        tracker.log({"train/loss": 1.0}, step=0)
        assert tracker.log_image("samples/x", np.zeros((4, 4, 3), np.uint8), step=0) is None
        assert tracker.log_audio("audio/x", np.zeros(100), 16000, step=0) is None
        tracker.summary({"metrics/x": 1.0})
        assert tracker.truncate_after(0) == 0
        bar = tracker.progress(total=5)
        bar.update(1, {"train/loss": 1.0})
        bar.close()
        assert tracker.wandb_run is None
    assert not run_dir.exists()


def test_image_and_audio_files(wandb_env, tmp_path) -> None:
    run_dir = tmp_path / "run"
    with Tracker(run_dir, {}, wandb_mode="disabled") as tracker:
        batch = torch.linspace(-1, 1, 6 * 3 * 8 * 10).reshape(6, 3, 8, 10)
        p1 = tracker.log_image("samples/stage1/grid", batch, step=7)
        p2 = tracker.log_image("samples/one", np.full((5, 6, 3), 200, np.uint8), step=8)
        p3 = tracker.log_image("samples/copy", p2, step=9)
        stereo = 0.5 * np.sin(np.linspace(0, 200, 2 * 4000, dtype=np.float32)).reshape(2, 4000)
        a1 = tracker.log_audio("audio/enhanced", stereo, 22050, step=3)
        with pytest.warns(UserWarning, match="clipped"):
            a2 = tracker.log_audio("audio/loud", torch.full((1, 800), 2.0), 16000, step=4)

    assert p1.name == "samples_stage1_grid_step000007.png"
    with Image.open(p1) as im:
        # 6 images → 3 per row, 2 rows, 2-pixel white padding.
        assert im.size == (2 + 3 * (10 + 2), 2 + 2 * (8 + 2)) and im.mode == "RGB"
    with Image.open(p2) as im:
        assert np.asarray(im).tolist() == np.full((5, 6, 3), 200, np.uint8).tolist()
    with Image.open(p3) as im:
        assert im.size == (6, 5)
    data, rate = sf.read(a1)
    assert rate == 22050 and data.shape == (4000, 2)
    assert np.abs(data - stereo.T).max() < 1e-3  # 16-bit PCM quantisation
    data, rate = sf.read(a2)
    assert rate == 16000 and data.shape == (800,) and data.max() <= 1.0
    leftovers = [p.name for p in run_dir.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_make_grid_values() -> None:
    grid = make_grid(torch.tensor([[[[-1.0, 1.0]]]]), padding=0)  # one 1×2 grey image
    assert grid.dtype == np.uint8 and grid.tolist() == [[0, 255]]
    rgb = make_grid(torch.zeros(3, 4, 4), padding=1)
    assert rgb.shape == (6, 6, 3) and rgb[1, 1].tolist() == [128, 128, 128]


def test_truncate_after_drops_later_and_torn_lines(wandb_env, tmp_path) -> None:
    run_dir = tmp_path / "run"
    with Tracker(run_dir, {}, wandb_mode="disabled") as tracker:
        for step in range(10):
            tracker.log({"train/loss": float(step)}, step=step)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 10, "train/lo')  # a process killed mid-line
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == list(range(10))

    with pytest.warns(UserWarning, match="appending"):
        tracker = Tracker(run_dir, {}, wandb_mode="disabled")
    assert tracker.truncate_after(4) == 6  # steps 5..9 and the torn line
    tracker.log({"train/loss": 50.0}, step=5)
    tracker.finish()
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2, 3, 4, 5]
    assert records[-1]["train/loss"] == 50.0
    with pytest.raises(RuntimeError, match="finish"):
        tracker.log({"train/loss": 1.0}, step=6)


def test_progress_bar_updates(wandb_env, tmp_path, capsys) -> None:
    with Tracker(tmp_path / "run", {}, wandb_mode="disabled") as tracker:
        with tracker.progress(total=3, initial=1) as bar:
            bar.update(1, {"train/d/real": torch.tensor(0.123456), "train/g/adv": 2})
            bar.update(1)
            assert bar._bar.n == 3
            assert bar._bar.postfix and "d/real=0.123" in bar._bar.postfix
    assert "d/real" in capsys.readouterr().err


# --------------------------------------------------------------------------- common.io


def test_atomic_writes(tmp_path) -> None:
    target = tmp_path / "deep" / "dir" / "eval.json"
    atomic_write_json(target, {"metrics/fd": 1.5})  # parent directories are created
    assert json.loads(target.read_text()) == {"metrics/fd": 1.5}
    with pytest.raises(ValueError, match="allow_nan"):
        atomic_write_json(target, {"metrics/fd": float("nan")})
    with pytest.raises(FileExistsError, match="eval.json"):
        atomic_write_text(target, "x", overwrite=False)
    with pytest.raises(FileExistsError, match="eval.json"):
        refuse_overwrite(target)

    # A library writing through atomic_path sees the target's suffix; a failure inside
    # the block leaves the old file untouched and no temporary behind.
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".json" and tmp.parent == target.parent
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"metrics/fd": 1.5}
    new = tmp_path / "deep" / "dir" / "new.txt"
    atomic_write_text(new, "fresh", overwrite=False)
    assert new.read_text() == "fresh"
    assert sorted(p.name for p in target.parent.iterdir()) == ["eval.json", "new.txt"]
