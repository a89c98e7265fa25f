"""Timing helpers shared by every benchmark (METRICS.md "Speed").

Protocol: warm up, then the median of several timed repeats, naming the thread count and
dtype in the result. ``timed`` times a call in this process; ``run_timed`` times a whole
command in a fresh process (end to end, start-up included) and reads that child's own peak
resident memory from ``wait4``'s rusage, so a file-in/file-out CLI is measured as a user
runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["NullTracker", "run_timed", "timed"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
REPO_ROOT = Path(__file__).resolve().parents[1]


def timed(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 3) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` timed calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# Linux keeps a process's peak-RSS high-water mark across exec, so a child forked from this
# (large, torch-importing) process would report our size, not its own. A small launcher
# process forks the real command from its own fresh image and reports that grandchild's
# rusage instead.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_timed(argv: Sequence[str], *, threads: int = 1,
              cwd: Path = REPO_ROOT) -> dict[str, float]:
    """Run ``argv`` in a fresh process with ``threads`` intra-op threads.

    Returns ``{"seconds": wall time, "peak_rss_mb": the command's own maximum RSS}``; a
    non-zero exit raises ``RuntimeError`` with the command's stderr.
    """
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "maxrss"
        with tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _LAUNCHER, str(rss_file), *argv],
                                  cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
            seconds = time.perf_counter() - start
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {stderr.strip()}")
        maxrss = int(rss_file.read_text())
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1024 if sys.platform != "darwin" else 1
    return {"seconds": seconds, "peak_rss_mb": maxrss * scale / 2**20}


class NullTracker:
    """A tracker for timing runs of ``common.training.train``: logs nothing, no progress bar."""

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def progress(self, total: int, initial: int = 0) -> NullTracker:
        return self

    def update(self, *args: Any) -> None:
        pass

    def close(self) -> None:
        pass
