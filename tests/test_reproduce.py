"""The reproduction runner on real toy2d runs (tiny step counts), through its command line.

Shows the two promises of ``scripts.reproduce``: re-running a finished experiment trains
nothing, and a reproduction killed midway (SIGKILL of its whole process group) finishes
only what was missing when run again, resuming the interrupted run from its checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from common.experiments import REPO_ROOT

TINY = """\
name: {name}
claim: |
  Tiny test reproduction (Goodfellow et al. 2014). Nothing to see.
entry: research.toy2d
base_overrides:
  train.steps: {steps}
  train.eval_samples: 200
  run.sample_every: {every}
  run.checkpoint_every: {every}
  run.log_every: 10
  data.mixture: ring8
matrix:
  loss.kind: {kinds}
seeds: 1
metrics: {{eval/modes: max, eval/hq: max}}
curves: [train/d/total, train/g/total]
"""

BANNER = "=== scripts.reproduce launch"


def write_experiment(folder: Path, name: str, kinds: str = "[bce, hinge]", steps: int = 60,
                     every: int = 30, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    text = TINY.format(name=name, kinds=kinds, steps=steps, every=every)
    path.write_text(text.replace("matrix:", f"{extra}matrix:"))
    return path


def runner_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="disabled", PYTHONDONTWRITEBYTECODE="1")
    return env


def reproduce(spec: Path, root: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "scripts.reproduce", str(spec), "--runs-root",
            str(root / "runs"), "--reports-root", str(root / "reports"), *args]
    return subprocess.run(argv, cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True,
                          timeout=300, **kwargs)


def snapshot(folder: Path) -> dict[str, int]:
    """mtime (ns) of every file under ``folder``."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in sorted(folder.rglob("*")) if p.is_file()}


def launches(run_dir: Path) -> list[str]:
    log = run_dir / "stdout.log"
    return [ln for ln in log.read_text().splitlines() if ln.startswith(BANNER)] \
        if log.is_file() else []


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """One finished two-cell reproduction: (experiment file, output root, first result)."""
    root = tmp_path_factory.mktemp("repro")
    spec = write_experiment(root / "experiments", "tiny")
    first = reproduce(spec, root, "--jobs", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    return spec, root, first


def test_first_run_trains_every_cell_and_reports(tiny):
    spec, root, first = tiny
    runs = root / "runs" / "tiny"
    for cell in ("kind-bce", "kind-hinge"):
        run_dir = runs / cell / "seed0"
        assert (run_dir / "eval.json").is_file()
        assert len(launches(run_dir)) == 1
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        # W&B grouping: group = experiment, factor values as tags, factors in the config.
        assert cfg["run"]["group"] == "tiny" and cfg["run"]["name"] == f"{cell}-seed0"
        assert cfg["run"]["tags"] == [f"kind={cell[5:]}"] and cfg["loss"]["kind"] == cell[5:]
        assert cfg["train"]["steps"] == 60
        assert cfg["runtime"]["threads"] == 1  # --jobs 2: one thread per run
    assert "2 new, 0 failed" in first.stdout
    assert (runs / "base_config.yaml").is_file()
    report = root / "reports" / "tiny"
    assert (report / "index.html").is_file() and str(report / "index.html") in first.stdout
    results = json.loads((report / "results.json").read_text())
    assert [c["seeds_done"] for c in results["cells"]] == [1, 1]
    assert all(c["metrics"]["eval/modes"]["n"] == 1 for c in results["cells"])


def test_rerunning_a_finished_experiment_trains_nothing(tiny):
    spec, root, _ = tiny
    runs = root / "runs" / "tiny"
    before = snapshot(runs)
    again = reproduce(spec, root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "summary: 2 runs: 2 reused, 0 resumed, 0 new, 0 failed" in again.stdout
    assert "nothing to run: every run is finished" in again.stdout
    assert "start" not in again.stdout  # no run process was launched
    assert snapshot(runs) == before  # nothing in any run folder was touched
    for cell in ("kind-bce", "kind-hinge"):
        assert len(launches(runs / cell / "seed0")) == 1


def test_dry_run_and_list_start_nothing(tiny, tmp_path):
    spec, root, _ = tiny
    fresh = tmp_path / "fresh"
    dry = reproduce(spec, fresh, "--dry-run", "--only", "kind=hinge", "--seeds", "2")
    assert dry.returncode == 0, dry.stderr
    commands = [ln for ln in dry.stdout.splitlines() if "-m research.toy2d" in ln]
    assert len(commands) == 2 and all("loss.kind=hinge" in c for c in commands)
    assert "seed=1" in commands[1] and "'run.tags=[kind=hinge]'" in commands[1]
    assert not fresh.exists()

    listing = subprocess.run(
        [sys.executable, "-m", "scripts.reproduce", "--list", "--experiments-dir",
         str(spec.parent), "--runs-root", str(root / "runs")],
        cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert "tiny  [2 cells × 1 seed; default 2/2]" in listing.stdout
    assert "Tiny test reproduction (Goodfellow et al. 2014)." in listing.stdout


def test_bad_request_is_a_one_line_error(tiny, tmp_path):
    spec, root, _ = tiny
    bad = reproduce(spec, tmp_path, "--only", "knd=hinge")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "did you mean 'kind'?" in bad.stderr


def test_report_cli_fills_the_readme_block(tiny, tmp_path):
    spec, root, _ = tiny
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:tiny -->\n<!-- /results:tiny -->\noutro\n")
    done = subprocess.run(
        [sys.executable, "-m", "scripts.report", str(spec), "--runs-root", str(root / "runs"),
         "--reports-root", str(tmp_path / "reports"), "--readme", str(readme)],
        cwd=REPO_ROOT, env=runner_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:tiny -->\n| kind | eval/modes ↑ | eval/hq ↑ |")
    assert "| bce |" in text and "| hinge |" in text and "| 1/1 |" in text
    assert f"`python -m scripts.report tiny --readme {readme}`" in text
    assert text.endswith("<!-- /results:tiny -->\noutro\n")
    assert (tmp_path / "reports" / "tiny" / "index.html").is_file()


def test_failed_run_is_reported_others_still_run(tmp_path):
    """A run the entry rejects fails with its log tail and a hand command; the runner still
    trains the other cells, writes the report, and exits non-zero."""
    spec = write_experiment(tmp_path / "experiments", "broken", kinds="[bce, nonsense]")
    done = reproduce(spec, tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED kind-nonsense/seed0 (exit code 2" in done.stdout
    assert "loss.kind' must be one of" in done.stdout  # the tail of the run's log
    assert "re-run it by hand: cd " in done.stdout and "loss.kind=nonsense" in done.stdout
    assert "1 new, 1 failed" in done.stdout
    assert (tmp_path / "runs" / "broken" / "kind-bce" / "seed0" / "eval.json").is_file()
    assert (tmp_path / "reports" / "broken" / "index.html").is_file()


def test_killed_reproduction_finishes_only_what_was_missing(tmp_path):
    spec = write_experiment(tmp_path / "experiments", "killed", kinds="[bce, hinge, lsgan]",
                            steps=400, every=100, extra="  run.keep_checkpoints: 10\n")
    runs = tmp_path / "runs" / "killed"
    first, second, third = (runs / f"kind-{k}" / "seed0" for k in ("bce", "hinge", "lsgan"))
    argv = [sys.executable, "-m", "scripts.reproduce", str(spec), "--runs-root",
            str(tmp_path / "runs"), "--reports-root", str(tmp_path / "reports")]
    with open(tmp_path / "killed-runner.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=runner_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            # Wait until the first run has finished and the second has checkpointed.
            deadline = time.monotonic() + 180
            while not (first / "eval.json").is_file() or \
                    not list((second / "checkpoints").glob("*100*")):
                assert proc.poll() is None, (tmp_path / "killed-runner.log").read_text()
                assert time.monotonic() < deadline, "the reproduction did not get going"
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its training child
        finally:
            if proc.poll() is None:
                proc.wait(timeout=30)
    assert not (second / "eval.json").exists(), "killed too late: the second run finished"
    assert not (third / "config.yaml").exists()
    first_state = snapshot(first)
    checkpoint = next((second / "checkpoints").glob("*100*"))
    checkpoint_mtime = checkpoint.stat().st_mtime_ns

    rerun = reproduce(spec, tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    plan = {ln.split()[0]: ln.split()[1] for ln in rerun.stdout.splitlines()
            if ln.startswith("  kind-")}
    assert plan == {"kind-bce/seed0": "reuse", "kind-hinge/seed0": "resume",
                    "kind-lsgan/seed0": "new"}
    assert "3 runs: 1 reused, 1 resumed, 1 new, 0 failed" in rerun.stdout
    assert snapshot(first) == first_state  # the finished run was not touched
    assert len(launches(first)) == 1
    assert [ln.split("(")[1].split(")")[0] for ln in launches(second)] == ["new", "resume"]
    assert "--resume" in launches(second)[1]
    # It resumed from the step-100 checkpoint (not retrained from scratch: that would have
    # rewritten it), and its training log has each step once.
    assert checkpoint.stat().st_mtime_ns == checkpoint_mtime
    rows = [json.loads(ln) for ln in (second / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "train/d/total" in r]
    assert steps == list(range(10, 401, 10))
    for run_dir in (first, second, third):
        assert (run_dir / "eval.json").is_file()


def copy_of(tiny, tmp_path: Path) -> tuple[Path, Path]:
    """The tiny experiment's file and finished runs, copied so a test may change them."""
    spec, root, _ = tiny
    shutil.copytree(root / "runs", tmp_path / "runs")
    (tmp_path / "experiments").mkdir()
    return Path(shutil.copy(spec, tmp_path / "experiments")), tmp_path


def test_changed_experiment_marks_finished_runs_stale(tiny, tmp_path):
    spec, root = copy_of(tiny, tmp_path)
    spec.write_text(spec.read_text().replace("train.steps: 60", "train.steps: 70"))
    before = snapshot(root / "runs")
    done = reproduce(spec, root, "--no-report")
    assert done.returncode == 1
    assert re.search(r"kind-bce/seed0 +stale +the experiment changed since this run was "
                     r"launched \(train\.steps: 60 -> 70\); delete .*/kind-bce/seed0 to run it",
                     done.stdout), done.stdout
    assert "2 stale" in done.stdout and "start" not in done.stdout
    assert snapshot(root / "runs") == before


def test_run_locked_by_another_process_is_skipped(tiny, tmp_path):
    spec, root = copy_of(tiny, tmp_path)
    busy = root / "runs" / "tiny" / "kind-bce" / "seed1"
    busy.mkdir()
    with open(busy / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = reproduce(spec, root, "--only", "kind=bce", "--seeds", "2", "--no-report")
    assert done.returncode == 1
    assert "kind-bce/seed0  reuse" in done.stdout
    assert "kind-bce/seed1  busy  another process holds its lock" in done.stdout
    assert "start" not in done.stdout and not (busy / "config.yaml").exists()


def test_a_second_reproduction_decides_again_when_it_reaches_a_run(tiny, tmp_path):
    """Two reproductions of one experiment: runs the other one finished (or started) after
    this one made its plan are not launched afresh."""
    import scripts.reproduce as rp
    from common.experiments import plan_runs, resolve_experiment

    spec, root, _ = tiny
    exp = resolve_experiment(str(spec))
    jobs = rp.plan_jobs(plan_runs(exp, tmp_path / "runs"), python=sys.executable, jobs=1)
    assert [j.action for j in jobs] == ["new", "new"]
    shutil.copytree(root / "runs", tmp_path / "runs")  # ... then the other one finished both
    (tmp_path / "runs" / "tiny" / "kind-hinge" / "seed0" / "eval.json").unlink()  # or not
    env = rp._child_env(1)
    assert not rp._start(jobs[0], env)
    assert (jobs[0].action, jobs[0].reason) == ("reuse", "finished by another process meanwhile")
    assert rp._start(jobs[1], env)  # the partial one is resumed, not started over
    assert jobs[1].action == "resume" and "--resume" in jobs[1].argv
    assert jobs[1].proc.wait(timeout=120) == 0
    assert (jobs[1].run.dir / "eval.json").is_file()


def test_multi_process_run_goes_through_torchrun(tmp_path):
    spec = write_experiment(tmp_path / "experiments", "ddp", kinds="[hinge]")
    spec.write_text(spec.read_text() + "nproc: 2\n")
    done = reproduce(spec, tmp_path, "--no-report")
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = tmp_path / "runs" / "ddp" / "kind-hinge" / "seed0"
    (banner,) = launches(run_dir)
    assert "-m torch.distributed.run --standalone --nproc_per_node=2 -m research.toy2d" in banner
    assert (run_dir / "eval.json").is_file()
