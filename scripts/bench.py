"""Benchmarks: ``python -m scripts.bench [--only NAME ...] [--out reports/bench.json]``.

Each benchmark returns a dict of measured figures; results are merged into one JSON file
(keyed by benchmark name, with machine facts and a timestamp) so later issues add entries
without losing earlier ones. Protocol (METRICS.md "Speed"): warm up, then the median of
several timed repeats, naming the thread count and the dtype.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from common.benchmark import NullTracker, timed
from common.io import atomic_write_json

BENCHES: dict[str, Callable[[], dict[str, Any]]] = {}


def bench(name: str):
    def register(fn: Callable[[], dict[str, Any]]):
        BENCHES[name] = fn
        return fn

    return register


@bench("toy2d_step")
def toy2d_step() -> dict[str, Any]:
    """One toy 2-D training step (D update + G update + EMA), batch 256, MLP width 256."""
    from common.config import RuntimeConfig
    from common.runtime import setup_runtime
    from research.toy2d import Toy2DConfig, mode_centres
    from research.toy2d import build as build_toy

    results: dict[str, Any] = {}
    for loss in ("bce", "wgan-gp"):
        cfg = Toy2DConfig()
        cfg.loss.kind = loss
        runtime = setup_runtime(RuntimeConfig(device="cpu", precision="fp32", threads=1), seed=0)
        centres = mode_centres(cfg.data.mixture)
        state, phases, data = build_toy(cfg, 0, centres, runtime)
        steps_per_call = 50
        run = functools.partial(_toy_steps, state, phases, data, runtime, steps_per_call)
        times = timed(run, warmup=1, repeats=5)
        per_step = statistics.median(times) / steps_per_call
        results[loss] = {
            "ms_per_step": round(per_step * 1e3, 3),
            "steps_per_s": round(1 / per_step, 1),
            "n_critic": phases[0].repeats,
        }
    return {"threads": 1, "dtype": "fp32", "batch": 256, **results}


def _toy_steps(state, phases, data, runtime, n: int) -> None:
    from common.training import train

    train(state, phases, data, steps=state.step + n, runtime=runtime, tracker=NullTracker(),
          log_every=10**9)


# Track benchmarks live next to the code they time; they are registered here by name.
def _track_bench(name: str, module: str, function: str) -> None:
    def run() -> dict[str, Any]:
        import importlib

        return getattr(importlib.import_module(module), function)()

    run.__doc__ = f"{module}.{function}()"
    BENCHES[name] = run


_track_bench("synthbirds_render", "text2img.data.synthbirds", "bench_synthbirds")
_track_bench("text_encoder", "text2img.encoders", "bench_encoder")
_track_bench("stackgan_step", "text2img.bench", "bench_stackgan_step")
_track_bench("world_analysis", "speech.features", "bench_world")
_track_bench("enhance_cli", "speech.enhance.bench", "bench_enhance")
_track_bench("vc_convert_cli", "speech.vc.bench", "bench_vc")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__)
    parser.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="benchmarks to run")
    parser.add_argument("--out", type=Path, default=Path("reports/bench.json"))
    args = parser.parse_args(argv)
    out: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    for name in args.only or sorted(BENCHES):
        print(f"bench {name} ...", flush=True)
        load_before = os.getloadavg()[0]
        result = BENCHES[name]()
        out[name] = {
            **result,
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "torch": torch.__version__,
                # 1-minute load average before / after: other work on the cores slows a
                # benchmark, so read its figures together with these
                "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            },
        }
        print(json.dumps({name: result}, indent=2))
    atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
