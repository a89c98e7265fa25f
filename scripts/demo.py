"""``make demo``: a quick pass over the headline experiments, ending with dashboard paths.

Each experiment runs through the reproduction runner with its ``demo`` preset (built-in
data, short CPU schedules, one seed, two runs at a time), then its dashboard is written.
Re-running reuses finished runs, so a second ``make demo`` only rebuilds the reports.

    python -m scripts.demo                  # all headline experiments
    python -m scripts.demo toy2d-heads      # just one
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

# The experiments a newcomer should see first, in order.
HEADLINE = ["toy2d-losses", "toy2d-r1", "toy2d-heads"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=HEADLINE, help="experiments to run")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    failed, reports = [], []
    for name in args.names:
        print(f"\n=== demo: {name} ===", flush=True)
        cmd = [sys.executable, "-m", "scripts.reproduce", name, "--preset", "demo",
               "--seeds", "1", "--jobs", str(args.jobs)]
        if subprocess.call(cmd) != 0:
            failed.append(name)
        index = Path("reports") / name / "demo" / "index.html"
        if index.exists():
            reports.append(index.resolve())
    minutes = (time.perf_counter() - start) / 60
    print(f"\ndemo finished in {minutes:.1f} min. Dashboards (open in a browser):")
    for path in reports:
        print(f"  file://{path}")
    if failed:
        print(f"these experiments had failing runs: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
