"""The loop and checkpoints: exact resume (incl. a real SIGKILL), NaN guard, torchrun, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from common.checkpoint import FORMAT_VERSION, Checkpointer, CheckpointError, load_checkpoint
from common.config import RuntimeConfig
from common.runtime import setup_runtime
from common.training import NonFiniteLossError, Phase, TrainState, train

REPO = Path(__file__).resolve().parents[1]
# Small, deterministic toy runs: one thread, fp32, deterministic kernels, no W&B.
TOY = [
    "runtime.deterministic=true",
    "runtime.threads=1",
    "run.wandb_mode=disabled",
    "model.hidden=64",
    "data.batch_size=64",
    "train.eval_samples=200",
    "run.log_every=10",
]


def toy(
    run_dir: Path,
    *overrides: str,
    resume: bool = False,
    module: list[str] | None = None,
    wait: bool = True,
) -> subprocess.Popen | subprocess.CompletedProcess:
    cmd = [
        *(module or [sys.executable, "-m"]),
        "research.toy2d",
        "--run-dir",
        str(run_dir),
        *TOY,
        *overrides,
        *(["--resume"] if resume else []),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not wait:
        return subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def final_state(run_dir: Path) -> dict:
    ckpt = Checkpointer(run_dir / "checkpoints", config_hash="x").latest()
    return torch.load(ckpt, weights_only=True)


def assert_states_equal(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for group in ("nets", "optimizers", "ema"):
        torch.testing.assert_close(a[group], b[group], rtol=0, atol=0)


def test_resume_after_sigkill_is_bitwise_exact(tmp_path):
    steps = ["train.steps=1500", "run.checkpoint_every=100", "run.sample_every=1500"]
    straight = toy(tmp_path / "straight", *steps)
    assert straight.returncode == 0, straight.stdout + straight.stderr

    killed_dir = tmp_path / "killed"
    proc = toy(killed_dir, *steps, wait=False)
    first = killed_dir / "checkpoints" / "step_000000100.pt"
    deadline = time.time() + 120
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # a real SIGKILL of the training process
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert first.exists() and not (killed_dir / "eval.json").exists(), "killed too late"

    resumed = toy(killed_dir, *steps, resume=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_states_equal(final_state(tmp_path / "straight"), final_state(killed_dir))
    assert (killed_dir / "eval.json").read_text() == (
        tmp_path / "straight" / "eval.json"
    ).read_text()
    # The log holds each step once: lines past the restored checkpoint were dropped.
    import json

    steps_logged = [
        json.loads(line)["step"] for line in (killed_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps_logged == sorted(set(steps_logged))


def test_resume_refuses_changed_config_and_keeps_files(tmp_path):
    run_dir = tmp_path / "run"
    first = toy(run_dir, "train.steps=20", "run.checkpoint_every=10")
    assert first.returncode == 0, first.stderr
    before = (run_dir / "config.yaml").read_text()
    again = toy(run_dir, "train.steps=20", "run.checkpoint_every=10")  # no --resume
    assert again.returncode != 0 and "already exists" in again.stderr
    changed = toy(run_dir, "train.steps=20", "optim.lr=0.5", resume=True)
    assert changed.returncode != 0
    last = changed.stderr.strip().splitlines()[-1]
    assert "config.yaml" in last and "optim.lr: None -> 0.5" in last
    assert (run_dir / "config.yaml").read_text() == before


def test_checkpoint_of_another_format_version_is_refused(tmp_path):
    path = tmp_path / "step_000000001.pt"
    torch.save({"format_version": FORMAT_VERSION + 1, "config_hash": "abc", "step": 1}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "'format_version'" in str(err.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(garbage)


class _Sink:
    def __init__(self):
        self.logged = []

    def log(self, values, step):
        self.logged.append((step, values))

    def progress(self, total, initial=0):
        return self

    def update(self, *args):
        pass

    def close(self):
        pass


class _Counter:
    def __init__(self):
        self.i = 0

    def next(self):
        self.i += 1
        return torch.ones(4, 3)

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


def test_nan_loss_stops_with_clear_message_and_last_checkpoint_loads(tmp_path):
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    net = nn.Linear(3, 1)
    state = TrainState(nets={"g": net}, optimizers={"g": torch.optim.SGD(net.parameters(), 0.1)})
    ckpt = Checkpointer(tmp_path / "ckpt", config_hash="h", keep=2)

    def loss_fn(st, batch):
        out = net(batch).mean()
        poison = torch.tensor(float("nan")) if st.step == 6 else torch.tensor(0.0)
        return {"g/fit": out**2, "g/poisoned": poison}

    with pytest.raises(NonFiniteLossError) as err:
        train(
            state,
            [Phase("g", "g", loss_fn)],
            _Counter(),
            steps=20,
            runtime=runtime,
            tracker=_Sink(),
            checkpointer=ckpt,
            checkpoint_every=5,
        )
    msg = str(err.value)
    assert "step 7" in msg and "'g/g/poisoned'" not in msg and "'g/poisoned'" in msg
    assert "nan" in msg and str(ckpt.path_for(5)) in msg
    payload = ckpt.load()
    assert payload["step"] == 5
    assert torch.isfinite(payload["nets"]["g"]["weight"]).all()


def test_a_phase_run_every_k_steps_is_logged_with_its_latest_update():
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    net, q = nn.Linear(3, 1), nn.Linear(3, 1)
    state = TrainState(nets={"g": net, "q": q},
                       optimizers={"g": torch.optim.SGD(net.parameters(), 0.1),
                                   "q": torch.optim.SGD(q.parameters(), 0.1)})

    def q_loss(st, batch):  # the step it ran at, as its loss value; a term it drops later
        early = {"q/early": q(batch).mean()} if st.step < 5 else {}
        return {"q/step": q(batch).mean() * 0 + st.step, **early}

    sink = _Sink()
    train(state, [Phase("q", "q", q_loss, every=4),
                  Phase("g", "g", lambda st, b: {"g/fit": net(b).pow(2).mean()})],
          _Counter(), steps=10, runtime=runtime, tracker=sink, log_every=5)
    # Logged at steps 5 and 10 (after steps 4 and 9 ran); Q ran at steps 0, 4 and 8.
    assert [(step, values["train/q/step"]) for step, values in sink.logged] == [(5, 4.0),
                                                                                (10, 8.0)]
    assert all("train/g/fit" in values for _, values in sink.logged)
    assert ["train/q/early" in values for _, values in sink.logged] == [True, False]


def test_checkpoints_rotate_and_are_written_atomically(tmp_path):
    runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    net = nn.Linear(3, 1)
    state = TrainState(nets={"g": net}, optimizers={"g": torch.optim.SGD(net.parameters(), 0.1)})
    ckpt = Checkpointer(tmp_path / "ckpt", config_hash="h", keep=2)
    train(
        state,
        [Phase("g", "g", lambda st, b: {"g/fit": net(b).pow(2).mean()})],
        _Counter(),
        steps=12,
        runtime=runtime,
        tracker=_Sink(),
        checkpointer=ckpt,
        checkpoint_every=3,
    )
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["step_000000009.pt", "step_000000012.pt"]  # newest two, no temp files


def test_torchrun_two_processes_stay_identical_with_one_tracker_output(tmp_path):
    run_dir = tmp_path / "ddp"
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
    ]
    out = toy(
        run_dir,
        "train.steps=30",
        "run.checkpoint_every=30",
        "run.wandb_mode=offline",
        module=torchrun,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    main = torch.load(run_dir / "checkpoints" / "step_000000030.pt", weights_only=True)
    rank1 = torch.load(run_dir / "checkpoints" / "step_000000030.rank1.pt", weights_only=True)
    assert main["param_digest"] == rank1["param_digest"]
    # Ranks drew different data: the data positions are per rank.
    assert not torch.equal(main["data"]["gen"], rank1["data"]["gen"])
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) >= 1
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1
    assert (run_dir / "eval.json").exists()
