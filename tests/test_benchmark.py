"""The shared benchmark timers measure the command itself, not the process that starts it."""

from __future__ import annotations

import sys

import pytest
import torch  # noqa: F401 - makes this (parent) process large, as it is in make bench

from common.benchmark import run_timed, timed


def test_timed_calls_warmup_plus_repeats():
    calls = []
    times = timed(lambda: calls.append(1), warmup=2, repeats=3)
    assert len(calls) == 5 and len(times) == 3 and all(t >= 0 for t in times)


def test_run_timed_reports_the_childs_own_peak_memory():
    small = run_timed([sys.executable, "-c", "pass"])
    big = run_timed([sys.executable, "-c", "import numpy as np; a = np.ones(40_000_000)"])
    assert small["peak_rss_mb"] < 100  # not this torch-importing parent's size
    assert abs(big["peak_rss_mb"] - small["peak_rss_mb"] - 305) < 60  # 320 MB of float64
    assert big["seconds"] > 0


def test_run_timed_failure_names_the_command_and_its_stderr():
    with pytest.raises(RuntimeError, match=r"failed \(3\): boom"):
        run_timed([sys.executable, "-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"])
