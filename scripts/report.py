"""Write the dashboard of a named experiment from its run folders (no training).

    python -m scripts.report toy2d-heads                  # reports/toy2d-heads/index.html
    python -m scripts.report toy2d-heads --preset cpu     # reports/toy2d-heads/cpu/index.html
    python -m scripts.report toy2d-heads --preset cpu --readme README.md

Writes ``index.html`` (opens from the file system; assets/ next to it), ``results.md`` and
``results.json``. With ``--readme FILE`` the block between ``<!-- results:<name> -->`` and
``<!-- /results:<name> -->`` in FILE is replaced by the markdown table and the commands that
reproduce and regenerate it (with a preset, a ``results:<name>/<preset>`` block is used
when the file has one). The markers must already be in the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from common.config import ConfigError
from common.experiments import resolve_experiment
from common.report import (
    build_report,
    collect_results,
    readme_key,
    render_markdown,
    update_readme,
)
from scripts.reproduce import add_location_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.report",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="experiment name (configs/experiments/<name>.yaml) "
                                     "or a YAML path")
    parser.add_argument("--preset", default=None, help="report the runs of this preset")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="seeds expected per cell (default: the experiment's, or more "
                             "if more are on disk)")
    parser.add_argument("--readme", type=Path, default=None, metavar="FILE",
                        help="also fill the results:<name> block of this markdown file")
    add_location_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        exp = resolve_experiment(args.name, args.experiments_dir)
        exp.preset_overrides(args.preset)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runs_root = args.runs_root.resolve()
    index = build_report(exp, runs_root=runs_root, reports_root=args.reports_root,
                         preset=args.preset, seeds=args.seeds)
    print(f"report: {index}\n  open file://{index.resolve()}")
    if args.readme is not None:
        if not args.readme.is_file():
            print(f"error: {args.readme}: file not found", file=sys.stderr)
            return 2
        results = collect_results(exp, runs_root, preset=args.preset, seeds=args.seeds)
        key = readme_key(args.readme.read_text(), exp.name, args.preset)
        try:
            update_readme(args.readme, key, render_markdown(results, readme=str(args.readme)))
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"updated the results:{key} block of {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
