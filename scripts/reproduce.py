"""Reproduce a named experiment: expand its matrix, run what is missing, write the report.

    python -m scripts.reproduce toy2d-heads --preset cpu          # run + report
    python -m scripts.reproduce toy2d-heads --preset cpu --jobs 2 # two runs at a time
    python -m scripts.reproduce toy2d-losses --only kind=hinge --seeds 1
    python -m scripts.reproduce enhance-heads --preset cpu --seed 2 # just seed 2 of 0..2
    python -m scripts.reproduce toy2d-heads --dry-run             # print the commands only
    python -m scripts.reproduce --list                            # experiments and status

Idempotent: a run folder with ``eval.json`` is finished and reused without starting a
process; one with ``config.yaml`` but no ``eval.json`` was interrupted and is relaunched with
``--resume``; anything else starts fresh. So re-running the same command after a crash or a
kill finishes only what is missing. Each run is one process (``torchrun`` when the
experiment's ``nproc`` > 1) writing to ``<run dir>/stdout.log``; a lock file next to it stops
two reproductions from training the same run at once.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from common.config import ConfigError
from common.experiments import (
    EXPERIMENTS_DIR,
    REPO_ROOT,
    Experiment,
    RunSpec,
    expand_cells,
    experiment_root,
    format_value,
    list_experiments,
    load_experiment,
    plan_runs,
    resolve_experiment,
)
from common.io import atomic_write_json, atomic_write_text

Action = Literal["reuse", "resume", "new", "stale", "busy"]

LAUNCH_RECORD = "launch.json"  # what the runner asked of a run (to notice a changed spec)
LOG_NAME = "stdout.log"
LOCK_NAME = ".lock"
LAUNCH_BANNER = "=== scripts.reproduce launch"


@dataclass
class Job:
    """A planned run and, once launched, its process."""

    run: RunSpec
    action: Action
    reason: str = ""
    argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    seconds: float = 0.0
    failed: bool = False

    @property
    def label(self) -> str:
        return f"{self.run.cell.slug}/seed{self.run.seed}"


# --------------------------------------------------------------------------------------
# Planning.
# --------------------------------------------------------------------------------------


def _record(run: RunSpec) -> dict[str, Any]:
    exp = run.experiment
    return {"entry": exp.entry, "base": str(exp.base) if exp.base else None,
            "overrides": run.overrides()}


def _stale_reason(run: RunSpec) -> str:
    """Why the folder's recorded launch differs from what the experiment asks now ("" if not)."""
    path = run.dir / LAUNCH_RECORD
    if not path.is_file():
        return ""
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return ""
    new = _record(run)
    before = {"entry": old.get("entry"), "base": old.get("base"),
              **dict(o.split("=", 1) for o in old.get("overrides", []))}
    after = {"entry": new["entry"], "base": new["base"],
             **dict(o.split("=", 1) for o in new["overrides"])}
    absent = "(unset)"
    changed = [f"{k}: {before.get(k, absent)} -> {after.get(k, absent)}"
               for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)]
    if not changed:
        return ""
    return ("the experiment changed since this run was launched (" + "; ".join(changed[:4])
            + ("; ..." if len(changed) > 4 else "") + f"); delete {run.dir} to run it again")


def _is_locked(run_dir: Path) -> bool:
    path = run_dir / LOCK_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock
    return False


def _saved_threads(run_dir: Path) -> list[str]:
    """Keep ``runtime.threads`` as the run was started with: resume refuses a changed config."""
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    runtime = saved.get("runtime")
    if isinstance(runtime, dict) and "threads" in runtime:
        return [f"runtime.threads={format_value(runtime['threads'])}"]
    return []


def plan_jobs(runs: Sequence[RunSpec], *, python: str, jobs: int) -> list[Job]:
    """Decide per run: reuse (done), resume (partial), new (missing), stale or busy."""
    planned = []
    for run in runs:
        status = run.status()
        # Only a started run has results or state to protect; a folder whose launch failed
        # before the entry wrote config.yaml is simply launched again.
        stale = _stale_reason(run) if status != "missing" else ""
        if stale:
            planned.append(Job(run, "stale", stale))
        elif status == "done":
            planned.append(Job(run, "reuse"))
        elif _is_locked(run.dir):
            planned.append(Job(run, "busy", "another process holds its lock (still training?)"))
        elif status == "partial":
            planned.append(Job(run, "resume",
                               argv=run.command(python, resume=True,
                                                extra=_saved_threads(run.dir))))
        else:
            # Parallel runs share the cores: one intra-op thread each.
            extra = ["runtime.threads=1"] if jobs > 1 else []
            planned.append(Job(run, "new", argv=run.command(python, extra=extra)))
    return planned


# --------------------------------------------------------------------------------------
# Running.
# --------------------------------------------------------------------------------------


def _child_env(jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if jobs > 1:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = "1"
    return env


def _start(job: Job, env: dict[str, str]) -> bool:
    """Lock the run folder and launch the run; False if another process holds the lock."""
    run_dir = job.run.dir
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        job.action, job.reason = "busy", "another process took its lock"
        return False
    # The plan was made when this reproduction started; a second one running the same
    # experiment may have finished or started this run since. Decide again under the lock.
    status = job.run.status()
    if status == "done":
        os.close(fd)
        job.action, job.reason = "reuse", "finished by another process meanwhile"
        return False
    if status == "partial" and job.action == "new":
        job.action = "resume"
        job.argv = job.run.command(job.argv[0], resume=True, extra=_saved_threads(run_dir))
    try:
        if job.action == "new" or not (run_dir / LAUNCH_RECORD).is_file():
            atomic_write_json(run_dir / LAUNCH_RECORD, _record(job.run))
        log_path = run_dir / LOG_NAME
        # A killed run may leave a progress bar without its newline; start the banner afresh.
        fresh_line = not log_path.is_file() or log_path.read_bytes()[-1:] in (b"", b"\n")
        with open(log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            banner = f"{LAUNCH_BANNER} {stamp} ({job.action}): {shlex.join(job.argv)}\n"
            log.write((banner if fresh_line else "\n" + banner).encode())
            log.flush()
            # The child inherits the locked file description, so the lock lasts exactly as
            # long as the training process, even if this runner is killed.
            job.proc = subprocess.Popen(job.argv, cwd=REPO_ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        pass_fds=(fd,))
    finally:
        os.close(fd)
    job.started = time.monotonic()
    return True


def _log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, with progress-bar carriage returns collapsed."""
    try:
        text = path.read_bytes()[-64_000:].decode(errors="replace")
    except OSError:
        return "(no log)"
    rows = [ln.rsplit("\r", 1)[-1] for ln in text.splitlines()]
    return "\n".join("    | " + r for r in rows[-lines:])


def _eval_summary(job: Job) -> str:
    try:
        data = json.loads((job.run.dir / "eval.json").read_text())
    except (OSError, json.JSONDecodeError):
        return ""
    parts = []
    for metric in job.run.experiment.metrics:
        value = data.get(metric)
        if isinstance(value, (int, float)):
            parts.append(f"{metric}={value:.4g}")
    return "  " + " ".join(parts) if parts else ""


def _rerun_hint(job: Job, python: str) -> str:
    """The command that continues (or restarts) this run by hand."""
    if job.run.status() == "partial":
        argv = job.run.command(python, resume=True, extra=_saved_threads(job.run.dir))
    else:
        argv = job.argv
    return f"cd {shlex.quote(str(REPO_ROOT))} && {shlex.join(argv)}"


def run_jobs(todo: list[Job], *, jobs: int, python: str) -> None:
    """Launch ``todo`` with at most ``jobs`` processes at a time; fill in results."""
    env = _child_env(jobs)
    pending = list(todo)
    running: list[Job] = []
    total, finished = len(todo), 0
    width = len(str(total))
    try:
        while pending or running:
            while pending and len(running) < jobs:
                job = pending.pop(0)
                if _start(job, env):
                    running.append(job)
                    print(f"[{finished + len(running):>{width}}/{total}] start {job.label} "
                          f"({job.action})", flush=True)
                else:
                    finished += 1
                    print(f"  skip  {job.label}: {job.reason}", flush=True)
            time.sleep(0.1)
            for job in [j for j in running if j.proc is not None and j.proc.poll() is not None]:
                running.remove(job)
                finished += 1
                job.seconds = time.monotonic() - job.started
                code = job.proc.returncode
                job.failed = code != 0 or job.run.status() != "done"
                if not job.failed:
                    print(f"[{finished:>{width}}/{total}] done  {job.label} "
                          f"{job.seconds:.1f}s{_eval_summary(job)}", flush=True)
                    continue
                why = f"exit code {code}" if code != 0 else "exited without writing eval.json"
                print(f"[{finished:>{width}}/{total}] FAILED {job.label} ({why}, "
                      f"{job.seconds:.1f}s); log tail ({job.run.dir / LOG_NAME}):\n"
                      f"{_log_tail(job.run.dir / LOG_NAME)}\n"
                      f"  re-run it by hand: {_rerun_hint(job, python)}", flush=True)
    except KeyboardInterrupt:
        for job in running:
            with contextlib.suppress(ProcessLookupError):
                job.proc.terminate()
        for job in running:
            try:
                job.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                job.proc.kill()
        print("\ninterrupted: run the same command again to finish what is missing",
              flush=True)
        raise


def write_base_config(exp: Experiment, root: Path, preset: str | None, python: str) -> None:
    """Resolve the experiment's base (no factors) with the entry's ``--dry-run`` into
    ``<root>/base_config.yaml``, which the report diffs each cell against."""
    from common.report import BASE_CONFIG_NAME

    path = root / BASE_CONFIG_NAME
    if path.is_file() and path.stat().st_mtime >= exp.path.stat().st_mtime:
        return
    overrides = {**exp.base_overrides, **exp.preset_overrides(preset)}
    argv = [python, "-m", exp.entry, "--dry-run"]
    argv += ["--config", str(exp.base)] if exp.base else []
    argv += [f"{k}={format_value(v)}" for k, v in overrides.items()]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode == 0 and done.stdout.strip():
        atomic_write_text(path, done.stdout)
    else:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"note: could not resolve the base config ({tail}); the report diffs cells "
              "against the first cell instead", flush=True)


# --------------------------------------------------------------------------------------
# Command line.
# --------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _print_plan(exp: Experiment, planned: list[Job], root: Path, preset: str | None) -> None:
    cells = len({j.run.cell.slug for j in planned})
    seeds = len({j.run.seed for j in planned})
    where = f" (preset {preset})" if preset else ""
    print(f"{exp.name}{where}: {_plural(cells, 'cell')} × {_plural(seeds, 'seed')} = "
          f"{_plural(len(planned), 'run')} -> {root}")
    print(f"  claim: {exp.claim_summary}")
    width = max((len(j.label) for j in planned), default=10)
    for job in planned:
        detail = f"  {job.reason}" if job.action in ("stale", "busy") else ""
        print(f"  {job.label:<{width}}  {job.action}{detail}")
    print(flush=True)


def _counts(planned: list[Job]) -> dict[str, int]:
    return {
        "reused": sum(j.action == "reuse" for j in planned),
        "resumed": sum(j.action == "resume" and not j.failed for j in planned),
        "new": sum(j.action == "new" and not j.failed for j in planned),
        "failed": sum(j.failed for j in planned),
        "stale": sum(j.action == "stale" for j in planned),
        "busy": sum(j.action == "busy" for j in planned),
    }


def list_cmd(directory: Path, runs_root: Path) -> int:
    """Print every experiment with its claim, size and status per preset."""
    paths = list_experiments(directory)
    if not paths:
        print(f"no experiments in {directory}")
        return 0
    code = 0
    for path in paths:
        try:
            exp = load_experiment(path)
        except ConfigError as err:
            print(f"{path.stem}: INVALID: {err}")
            code = 2
            continue
        n_cells = len(expand_cells(exp))
        status = []
        for preset in (None, *exp.presets):
            runs = plan_runs(exp, runs_root, preset=preset)
            done = sum(r.status() == "done" for r in runs)
            status.append(f"{preset or 'default'} {done}/{len(runs)}")
        print(f"{exp.name}  [{_plural(n_cells, 'cell')} × {_plural(exp.seeds, 'seed')}; "
              f"{', '.join(status)}]\n"
              f"    {exp.claim_summary}")
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.reproduce",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?",
                        help="experiment name (configs/experiments/<name>.yaml) or a YAML path")
    parser.add_argument("--list", action="store_true", help="list experiments and their status")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="seeds 0..N-1 (default: the experiment's 'seeds')")
    parser.add_argument("--seed", type=int, action="append", default=[], metavar="K",
                        dest="only_seeds",
                        help="run only seed K of those (repeatable); the report still "
                             "covers every seed whose run folder exists")
    parser.add_argument("--preset", default=None,
                        help="apply the experiment's preset overrides; runs go to "
                             "<runs-root>/<name>/<preset>/")
    parser.add_argument("--only", action="append", default=[], metavar="FACTOR=VALUE",
                        help="run only cells with this factor value (repeatable; a repeated "
                             "factor means any of its values), e.g. --only kind=hinge")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="runs in parallel (each then uses one thread); default 1")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the commands; run nothing")
    parser.add_argument("--no-report", action="store_true",
                        help="do not write reports/<name>/index.html at the end")
    add_location_args(parser)
    return parser


def add_location_args(parser: argparse.ArgumentParser) -> None:
    """--runs-root / --reports-root / --experiments-dir, shared with scripts.report."""
    parser.add_argument("--runs-root", type=Path, default=REPO_ROOT / "runs", metavar="DIR",
                        help="where run folders are (default: runs/)")
    parser.add_argument("--reports-root", type=Path, default=REPO_ROOT / "reports", metavar="DIR",
                        help="where dashboards go (default: reports/)")
    parser.add_argument("--experiments-dir", type=Path, default=EXPERIMENTS_DIR, metavar="DIR",
                        help="where experiment files are (default: configs/experiments/)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    python = sys.executable
    runs_root = args.runs_root.resolve()
    if args.list:
        return list_cmd(args.experiments_dir, runs_root)
    if not args.name:
        build_parser().error("an experiment name is required (or --list)")
    if args.jobs < 1:
        build_parser().error("--jobs must be at least 1")
    try:
        exp = resolve_experiment(args.name, args.experiments_dir)
        runs = plan_runs(exp, runs_root, preset=args.preset, seeds=args.seeds, only=args.only,
                         only_seeds=args.only_seeds)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not runs:
        print("error: --only matched no cell", file=sys.stderr)
        return 2
    if not _entry_exists(exp.entry):
        print(f"error: {exp.path}: key 'entry': module '{exp.entry}' not found", file=sys.stderr)
        return 2

    root = experiment_root(exp, runs_root, args.preset)
    planned = plan_jobs(runs, python=python, jobs=args.jobs)
    _print_plan(exp, planned, root, args.preset)
    todo = [j for j in planned if j.action in ("resume", "new")]
    if args.dry_run:
        for job in todo:
            print(shlex.join(job.argv))
        if not todo:
            print("nothing to run: every run is finished")
        return 0

    if todo:
        root.mkdir(parents=True, exist_ok=True)
        write_base_config(exp, root, args.preset, python)
        try:
            run_jobs(todo, jobs=args.jobs, python=python)
        except KeyboardInterrupt:
            return 130
    counts = _counts(planned)
    print(f"\nsummary: {_plural(len(planned), 'run')}: "
          + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)
    if counts["reused"] == len(planned):
        print("nothing to run: every run is finished (reused)", flush=True)

    if not args.no_report:
        from common.report import build_report

        index = build_report(exp, runs_root=runs_root, reports_root=args.reports_root,
                             preset=args.preset, seeds=args.seeds)
        print(f"report: {index}\n  open file://{index}", flush=True)
    bad = counts["failed"] + counts["stale"] + counts["busy"]
    return 1 if bad else 0


def _entry_exists(module: str) -> bool:
    import importlib.util

    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


if __name__ == "__main__":
    raise SystemExit(main())
