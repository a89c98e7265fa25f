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

__all__ = ["run_timed", "timed"]

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


def run_timed(argv: Sequence[str], *, threads: int = 1,
              cwd: Path = REPO_ROOT) -> dict[str, float]:
    """Run ``argv`` in a fresh process with ``threads`` intra-op threads.

    Returns ``{"seconds": wall time, "peak_rss_mb": the child's maximum RSS}``; a non-zero
    exit raises ``RuntimeError`` with the child's stderr.
    """
    env = dict(os.environ)
    for var in _THREAD_VARS:
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        seconds = time.perf_counter() - start
        returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    if returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({returncode}): {stderr.strip()}")
    # ru_maxrss is in kilobytes on Linux (bytes on macOS).
    scale = 1024 if sys.platform != "darwin" else 1
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss * scale / 2**20}
