"""Static HTML dashboards for named experiments, built from run folders.

:func:`build_report` reads every run of an experiment (``config.yaml``, ``metrics.jsonl``,
``eval.json``, ``samples/*.png``, ``audio/*.wav``), aggregates the metrics per cell over
seeds and writes::

    <reports_root>/<name>[/<preset>]/index.html    the dashboard (opens from file://)
    <reports_root>/<name>[/<preset>]/assets/       curves, metric plots, copied grids and wavs
    <reports_root>/<name>[/<preset>]/results.md    the results table in markdown (README)
    <reports_root>/<name>[/<preset>]/results.json  the same numbers, machine-readable

The page holds the claim being reproduced, a results table (mean ± 95 % CI per cell, the
best cell per metric starred), training curves, the newest fixed-probe grid per cell, audio
players, each cell's config diff against the base, and links to the run folders. It uses
no external resources, so it renders offline. Nothing here starts a process or trains.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from common.experiments import (
    REPO_ROOT,
    Cell,
    Experiment,
    RunSpec,
    Status,
    expand_cells,
    experiment_root,
    factor_labels,
    format_value,
    run_status,
)
from common.io import atomic_write_json, atomic_write_text

__all__ = [
    "Stat",
    "RunResult",
    "CellResult",
    "Results",
    "mean_ci",
    "format_stat",
    "collect_results",
    "read_run",
    "config_diff",
    "render_html",
    "build_report",
    "render_markdown",
    "update_readme",
    "readme_key",
    "reproduce_command",
    "report_command",
    "report_dir",
    "BASE_CONFIG_NAME",
]

# The runner writes the experiment's resolved base config (no factors) here, under the
# experiment's run root; cells are diffed against it.
BASE_CONFIG_NAME = "base_config.yaml"

_SAMPLE_RE = re.compile(r"^(?P<key>.+)_step(?P<step>\d+)\.png$")
_AUDIO_RE = re.compile(r"^(?P<clip>.+)_(?P<role>source|output|target)_step(?P<step>\d+)\.wav$")
_AUDIO_ROLES = ("source", "output", "target")
# Per-run keys, and the thread count the runner sets for parallel runs: not part of a cell.
_IGNORED_DIFF_KEYS = ("run", "seed", "runtime.threads")


# --------------------------------------------------------------------------------------
# Statistics.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """Mean and 95 % CI half-width of one metric over the finished seeds of a cell."""

    values: tuple[float, ...]
    mean: float | None  # None when no seed has the metric
    half_width: float | None  # None when n < 2

    @property
    def n(self) -> int:
        return len(self.values)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float | None,
                                                                        float | None]:
    """Mean and the half-width of its Student-t confidence interval (n - 1 dof).

    ``half_width = t_{(1+confidence)/2, n-1} · s / √n`` with ``s`` the sample standard
    deviation (ddof=1). n = 0 gives ``(None, None)``; n = 1 gives ``(value, None)``.
    """
    from scipy import stats  # deferred: scipy is slow to import and only needed here

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return None, None
    mean = float(x.mean())
    if x.size == 1:
        return mean, None
    sem = float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean, float(stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)) * sem


def _stat(values: Iterable[float]) -> Stat:
    vals = tuple(float(v) for v in values)
    mean, hw = mean_ci(vals)
    return Stat(vals, mean, hw)


def _decimals(half_width: float) -> int:
    """Decimals that show two significant digits of the CI half-width."""
    return int(min(6, max(0, 1 - math.floor(math.log10(half_width)))))


def format_stat(stat: Stat) -> str:
    """``0.934 ± 0.012``; ``0.93 (n=1)``; ``—`` when no seed finished."""
    if stat.mean is None:
        return "—"
    if stat.half_width is None:
        return f"{stat.mean:.4g} (n=1)"
    if stat.half_width == 0:
        return f"{stat.mean:.4g} ± 0"
    d = _decimals(stat.half_width)
    return f"{stat.mean:.{d}f} ± {stat.half_width:.{d}f}"


# --------------------------------------------------------------------------------------
# Reading run folders.
# --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What one run folder holds (only the parts a report shows)."""

    spec: RunSpec
    status: Status
    eval: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> (step, v)
    samples: dict[str, tuple[int, Path]] = field(default_factory=dict)  # key -> newest (step, png)
    audio: dict[str, dict[str, tuple[int, Path]]] = field(default_factory=dict)  # clip -> role
    config: dict[str, Any] | None = None


@dataclass
class CellResult:
    cell: Cell
    runs: list[RunResult]
    stats: dict[str, Stat]

    @property
    def n_done(self) -> int:
        return sum(r.status == "done" for r in self.runs)


@dataclass
class Results:
    experiment: Experiment
    preset: str | None
    root: Path  # the experiment's run root
    cells: list[CellResult]
    best: dict[str, list[str]]  # metric -> slugs of the best cell(s)
    base_config: dict[str, Any] | None

    @property
    def n_runs(self) -> int:
        return sum(len(c.runs) for c in self.cells)

    @property
    def n_done(self) -> int:
        return sum(c.n_done for c in self.cells)


def _read_jsonl(path: Path, keys: Sequence[str]) -> dict[str, list[tuple[int, float]]]:
    """``key -> [(step, value)]`` for the requested keys; unreadable lines are skipped (a
    killed run may leave a torn last line)."""
    out: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
    if not path.is_file():
        return out
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            continue
        for key in keys:
            value = row.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[key].append((row["step"], float(value)))
    return out


def _newest(folder: Path, pattern: re.Pattern[str], *groups: str) -> dict[tuple[str, ...],
                                                                             tuple[int, Path]]:
    """Newest file per ``groups`` tuple among the files of ``folder`` matching ``pattern``."""
    found: dict[tuple[str, ...], tuple[int, Path]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        match = pattern.match(path.name)
        if match is None or not path.is_file():
            continue
        key = tuple(match[g] for g in groups)
        step = int(match["step"])
        if key not in found or step > found[key][0]:
            found[key] = (step, path)
    return found


def read_run(spec: RunSpec, curves: Sequence[str] = ()) -> RunResult:
    """Load one run folder."""
    run = RunResult(spec, run_status(spec.dir))
    if run.status == "missing":
        return run
    config_path = spec.dir / "config.yaml"
    if config_path.is_file():
        run.config = yaml.safe_load(config_path.read_text()) or {}
    if run.status == "done":
        data = json.loads((spec.dir / "eval.json").read_text())
        run.eval = data if isinstance(data, dict) else {}
    run.curves = _read_jsonl(spec.dir / "metrics.jsonl", curves)
    run.samples = {k[0]: v for k, v in _newest(spec.dir / "samples", _SAMPLE_RE, "key").items()}
    for (clip, role), found in _newest(spec.dir / "audio", _AUDIO_RE, "clip", "role").items():
        run.audio.setdefault(clip, {})[role] = found
    return run


def _seed_count(exp: Experiment, root: Path, cells: Sequence[Cell], seeds: int | None) -> int:
    """Seeds to show: ``seeds`` if given, else the spec's count or more if more are on disk."""
    if seeds is not None:
        return seeds
    on_disk = [
        int(p.name[4:])
        for cell in cells
        for p in (root / cell.slug).glob("seed*")
        if p.name[4:].isdigit() and (p / "config.yaml").is_file()
    ]
    return max([exp.seeds, *(k + 1 for k in on_disk)])


def collect_results(
    exp: Experiment, runs_root: Path, *, preset: str | None = None, seeds: int | None = None
) -> Results:
    """Read every run of ``exp`` under ``runs_root`` and aggregate metrics per cell."""
    root = experiment_root(exp, runs_root, preset)
    cells = expand_cells(exp)
    n_seeds = _seed_count(exp, root, cells, seeds)
    cell_results = []
    for cell in cells:
        runs = [read_run(RunSpec(exp, cell, k, root / cell.slug / f"seed{k}", preset),
                         exp.curves) for k in range(n_seeds)]
        stats = {
            metric: _stat(
                r.eval[metric] for r in runs
                if r.status == "done" and isinstance(r.eval.get(metric), (int, float))
                and math.isfinite(r.eval[metric])
            )
            for metric in exp.metrics
        }
        cell_results.append(CellResult(cell, runs, stats))
    best: dict[str, list[str]] = {}
    for metric, goal in exp.metrics.items():
        means = [(c.stats[metric].mean, c.cell.slug) for c in cell_results
                 if c.stats[metric].mean is not None]
        if means:
            top = (max if goal == "max" else min)(m for m, _ in means)
            best[metric] = [slug for m, slug in means if math.isclose(m, top, rel_tol=1e-12,
                                                                      abs_tol=1e-15)]
    base_path = root / BASE_CONFIG_NAME
    base_config = yaml.safe_load(base_path.read_text()) if base_path.is_file() else None
    return Results(exp, preset, root, cell_results, best, base_config)


# --------------------------------------------------------------------------------------
# Config diffs.
# --------------------------------------------------------------------------------------


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(f"{k}.") for k in _IGNORED_DIFF_KEYS)


def config_diff(base: dict[str, Any], other: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(dotted key, base value, other value)`` for every leaf that differs, ignoring the
    per-run keys (``run.*``, ``seed``, ``runtime.threads``)."""
    a = {k: v for k, v in _flatten(base).items() if not _ignored(k)}
    b = {k: v for k, v in _flatten(other).items() if not _ignored(k)}
    absent = "(absent)"
    return [
        (key, format_value(a[key]) if key in a else absent,
         format_value(b[key]) if key in b else absent)
        for key in sorted(set(a) | set(b))
        if a.get(key, absent) != b.get(key, absent)
    ]


def _cell_config(cell: CellResult) -> dict[str, Any] | None:
    return next((r.config for r in cell.runs if r.config is not None), None)


# --------------------------------------------------------------------------------------
# Commands and paths.
# --------------------------------------------------------------------------------------


def report_dir(exp: Experiment, reports_root: Path, preset: str | None = None) -> Path:
    root = Path(reports_root) / exp.name
    return root / preset if preset else root


def _options(preset: str | None, seeds: int | None, exp: Experiment) -> str:
    opts = f" --preset {preset}" if preset else ""
    if seeds is not None and seeds != exp.seeds:
        opts += f" --seeds {seeds}"
    return opts


def reproduce_command(exp: Experiment, preset: str | None = None,
                      seeds: int | None = None) -> str:
    return f"python -m scripts.reproduce {exp.name}{_options(preset, seeds, exp)}"


def report_command(exp: Experiment, preset: str | None = None, seeds: int | None = None,
                   readme: str | None = None) -> str:
    tail = f" --readme {readme}" if readme else ""
    return f"python -m scripts.report {exp.name}{_options(preset, seeds, exp)}{tail}"


# --------------------------------------------------------------------------------------
# Plots (matplotlib's object API: no pyplot state, no backend switching).
# --------------------------------------------------------------------------------------


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _plot_curve(results: Results, key: str, path: Path) -> bool:
    """Mean over seeds per cell (one line per cell, min–max band over seeds) of a
    metrics.jsonl key. Returns False (and writes nothing) when no run logged it."""
    from matplotlib.figure import Figure

    series = []
    for cell in results.cells:
        per_step: dict[int, list[float]] = {}
        for run in cell.runs:
            for step, value in run.curves.get(key, []):
                per_step.setdefault(step, []).append(value)
        if per_step:
            steps = np.array(sorted(per_step))
            vals = [np.array(per_step[s]) for s in steps]
            series.append((cell.cell.slug, steps, vals))
    if not series:
        return False
    fig = Figure(figsize=(7.5, 3.6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for (slug, steps, vals), color in zip(series, _colors(len(series)), strict=True):
        mean = np.array([v.mean() for v in vals])
        ax.plot(steps, mean, color=color, lw=1.4, label=slug)
        if max(len(v) for v in vals) > 1:
            lo, hi = np.array([v.min() for v in vals]), np.array([v.max() for v in vals])
            ax.fill_between(steps, lo, hi, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("step")
    ax.set_title(key, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    fig.savefig(path)
    return True


def _plot_metric(results: Results, metric: str, path: Path) -> bool:
    """Per cell: every seed's value (dots) and mean ± 95 % CI (bar)."""
    from matplotlib.figure import Figure

    cells = [c for c in results.cells if c.stats[metric].n]
    if not cells:
        return False
    fig = Figure(figsize=(5.0, 0.9 + 0.34 * len(cells)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    best = set(results.best.get(metric, []))
    for y, cell in enumerate(cells):
        stat = cell.stats[metric]
        color = "#c2410c" if cell.cell.slug in best else "#1d4ed8"
        ax.scatter(stat.values, [y] * stat.n, s=14, color="#9ca3af", zorder=2)
        ax.errorbar([stat.mean], [y], xerr=[[stat.half_width or 0.0]], fmt="o", color=color,
                    capsize=3, ms=5, zorder=3)
    ax.set_yticks(range(len(cells)), [c.cell.slug for c in cells], fontsize=7)
    ax.invert_yaxis()
    goal = "higher is better" if results.experiment.metrics[metric] == "max" else \
        "lower is better"
    ax.set_title(f"{metric} ({goal})", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="x", labelsize=7)
    fig.savefig(path)
    return True


# --------------------------------------------------------------------------------------
# HTML.
# --------------------------------------------------------------------------------------

_CSS = """
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#ffffff; --soft:#f8fafc;
        --accent:#1d4ed8; --best:#fff7ed; --best-fg:#c2410c; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       color:var(--fg); background:var(--soft); }
main { max-width:1200px; margin:0 auto; padding:24px 28px 64px; background:var(--bg);
       min-height:100vh; }
h1 { font-size:26px; margin:0 0 4px; }
h2 { font-size:19px; margin:36px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h3 { font-size:15px; margin:16px 0 6px; }
.meta { color:var(--muted); font-size:13px; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; background:#e0e7ff;
         color:#3730a3; font-size:12px; vertical-align:middle; margin-left:6px; }
blockquote { margin:0; padding:10px 16px; border-left:4px solid var(--accent);
             background:#eff6ff; border-radius:4px; }
blockquote p { margin:6px 0; }
table { border-collapse:collapse; font-size:14px; margin:6px 0; }
th, td { padding:6px 12px; border-bottom:1px solid var(--line); text-align:left;
         vertical-align:top; }
th { background:var(--soft); font-weight:600; }
td.num { font-variant-numeric:tabular-nums; white-space:nowrap; }
td.best { background:var(--best); color:var(--best-fg); font-weight:700; }
code, pre { font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; font-size:13px; }
pre { background:#0f172a; color:#e2e8f0; padding:10px 14px; border-radius:6px; overflow-x:auto; }
.note { color:var(--muted); font-size:13px; }
.chips a, .chips span { display:inline-block; margin:0 4px 2px 0; padding:0 7px;
       border-radius:9px; font-size:12px; text-decoration:none; }
.done { background:#dcfce7; color:#166534; }
.partial { background:#fef9c3; color:#854d0e; }
.missing { background:#f3f4f6; color:#9ca3af; }
.grid { display:grid; grid-template-columns:repeat(auto-fill,minmax(300px,1fr)); gap:14px; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px; background:var(--bg); }
.card img { width:100%; height:auto; display:block; image-rendering:auto; }
.card .title { font-weight:600; font-size:13px; margin-bottom:6px; word-break:break-all; }
figure { margin:0 0 8px; }
figcaption { color:var(--muted); font-size:12px; margin-top:4px; }
.plots img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px;
             margin:4px 0; }
.plots-row { display:flex; flex-wrap:wrap; gap:12px; align-items:flex-start; }
audio { width:220px; height:36px; }
.diff td { font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12.5px; }
.diff .old { color:#9ca3af; }
"""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _rel(path: Path, start: Path) -> str:
    """A relative URL from ``start`` to ``path`` (forward slashes, percent-safe)."""
    from urllib.parse import quote

    return quote(Path(os.path.relpath(path, start)).as_posix())


def _claim_html(claim: str) -> str:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", claim) if p.strip()]
    return "".join(f"<p>{_e(' '.join(p.split()))}</p>" for p in paragraphs)


def _results_table(results: Results, out_dir: Path) -> str:
    exp = results.experiment
    labels = factor_labels(exp.matrix)
    head = "".join(f"<th>{_e(labels[k])}</th>" for k in exp.matrix)
    for metric, goal in exp.metrics.items():
        arrow = "↑" if goal == "max" else "↓"
        head += f"<th>{_e(metric)} {arrow}</th>"
    head += "<th>seeds</th><th>run folders</th>"
    rows = []
    for cell in results.cells:
        tds = "".join(f"<td>{_e(format_value(cell.cell.factors[k]))}</td>" for k in exp.matrix)
        for metric in exp.metrics:
            stat = cell.stats[metric]
            best = cell.cell.slug in results.best.get(metric, [])
            star = " ★" if best else ""
            cls = "num best" if best else "num"
            tds += f'<td class="{cls}">{_e(format_stat(stat))}{star}</td>'
        tds += f'<td class="num">{cell.n_done}/{len(cell.runs)}</td>'
        chips = []
        for run in cell.runs:
            label = f"seed{run.spec.seed}"
            if run.spec.dir.is_dir():
                chips.append(f'<a class="{run.status}" href="{_rel(run.spec.dir, out_dir)}/" '
                             f'title="{_e(run.status)}">{_e(label)}</a>')
            else:
                chips.append(f'<span class="missing" title="missing">{_e(label)}</span>')
        tds += f'<td class="chips">{"".join(chips)}</td>'
        rows.append(f"<tr>{tds}</tr>")
    return (f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            '<p class="note">mean ± 95 % confidence interval over finished seeds (Student t, '
            'n − 1 degrees of freedom); ★ marks the best cell per metric (ties share it); '
            'seed chips: <span class="chips"><span class="done">done</span>'
            '<span class="partial">partial</span><span class="missing">missing</span></span>'
            "</p>")


def _samples_html(results: Results, assets: Path, out_dir: Path) -> str:
    cards = []
    for cell in results.cells:
        run = next((r for r in cell.runs if r.samples), None)
        if run is None:
            continue
        figures = []
        for key, (step, src) in sorted(run.samples.items()):
            dest = assets / "samples" / cell.cell.slug / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            caption = f"{key} · step {step} · seed {run.spec.seed}"
            figures.append(f'<figure><img src="{_rel(dest, out_dir)}" alt="{_e(caption)}" '
                           f'loading="eager"><figcaption>{_e(caption)}</figcaption></figure>')
        cards.append(f'<div class="card"><div class="title">{_e(cell.cell.slug)}</div>'
                     f'{"".join(figures)}</div>')
    if not cards:
        return '<p class="note">No sample grids yet.</p>'
    return f'<div class="grid">{"".join(cards)}</div>'


def _audio_html(results: Results, assets: Path, out_dir: Path) -> str:
    blocks = []
    for cell in results.cells:
        run = next((r for r in cell.runs if r.audio), None)
        if run is None:
            continue
        rows = []
        for clip, roles in sorted(run.audio.items()):
            tds = ""
            for role in _AUDIO_ROLES:
                if role not in roles:
                    tds += "<td class='note'>—</td>"
                    continue
                step, src = roles[role]
                dest = assets / "audio" / cell.cell.slug / src.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
                tds += (f'<td><audio controls preload="metadata" src="{_rel(dest, out_dir)}" '
                        f'title="{_e(f"{clip} {role} step {step}")}"></audio>'
                        f'<div class="note">step {step}</div></td>')
            rows.append(f"<tr><td>{_e(clip)}</td>{tds}</tr>")
        blocks.append(
            f"<h3>{_e(cell.cell.slug)} <span class='note'>seed {run.spec.seed}</span></h3>"
            "<table><thead><tr><th>clip</th><th>source</th><th>output</th><th>target</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    return "".join(blocks)


def _config_html(results: Results) -> str:
    exp = results.experiment
    shared = {**exp.base_overrides, **exp.preset_overrides(results.preset)}
    parts = []
    base_desc = f"<code>{_e(exp.base)}</code>" if exp.base else "the entry point's defaults"
    parts.append(f"<p>Base: {base_desc}"
                 + (" with these overrides on every cell:" if shared else ".") + "</p>")
    if shared:
        items = "".join(f"<tr><td>{_e(k)}</td><td>{_e(format_value(v))}</td></tr>"
                        for k, v in shared.items())
        parts.append(f'<table class="diff"><tbody>{items}</tbody></table>')
    base = results.base_config
    against = "the resolved base config"
    if base is None:
        base = next((c for c in map(_cell_config, results.cells) if c is not None), None)
        against = "the first cell that has a config"
    if base is None:
        return "".join(parts) + '<p class="note">No run has written its config yet.</p>'
    parts.append(f"<p>Each cell's resolved <code>config.yaml</code> (its first seed) against "
                 f"{against}; <code>run.*</code>, <code>seed</code> and "
                 "<code>runtime.threads</code> are per-run and left out.</p>")
    rows = []
    for cell in results.cells:
        config = _cell_config(cell)
        if config is None:
            lines = '<span class="note">not started</span>'
        else:
            diff = config_diff(base, config)
            lines = "<br>".join(
                f'{_e(k)}: <span class="old">{_e(a)}</span> → <b>{_e(b)}</b>'
                for k, a, b in diff) or '<span class="note">same as base</span>'
        rows.append(f"<tr><td>{_e(cell.cell.slug)}</td><td>{lines}</td></tr>")
    parts.append('<table class="diff"><thead><tr><th>cell</th><th>differs from base</th></tr>'
                 f"</thead><tbody>{''.join(rows)}</tbody></table>")
    return "".join(parts)


def _wandb_html(results: Results, out_dir: Path) -> str:
    group = results.experiment.name if results.preset is None else \
        f"{results.experiment.name}/{results.preset}"
    pattern = _display_path(results.root)
    return (
        "<p>Every run is logged to W&amp;B with <code>group</code> = "
        f"<code>{_e(group)}</code>, the factor values as tags, and its full resolved config "
        "(so each factor is a config column). Runs are recorded offline unless you are "
        "logged in; to upload them:</p>"
        f"<pre>wandb sync {_e(pattern)}/*/seed*/wandb/offline-run-*</pre>"
        "<p>In the W&amp;B project, choose <i>Group by → group</i> (or by a factor column) "
        "in the runs table to see the ablation side by side.</p>"
    )


def render_html(results: Results, out_dir: Path, assets: Path) -> str:
    """The dashboard page; writes plots and copies media into ``assets``."""
    exp = results.experiment
    preset = results.preset
    when = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    badge = f'<span class="badge">preset: {_e(preset)}</span>' if preset else ""
    n_cells = len(results.cells)
    n_seeds = len(results.cells[0].runs) if results.cells else 0
    sections = [
        f"<h1>{_e(exp.name)}{badge}</h1>",
        f'<div class="meta">entry <code>{_e(exp.entry)}</code> · {_plural(n_cells, "cell")} × '
        f"{_plural(n_seeds, 'seed')} · {results.n_done}/{results.n_runs} runs finished · "
        f"generated {_e(when)}</div>",
        "<h2>Claim</h2>",
        f"<blockquote>{_claim_html(exp.claim)}</blockquote>",
        "<h2>Results</h2>",
        _results_table(results, out_dir),
    ]
    plots = []
    for i, metric in enumerate(exp.metrics):
        path = assets / f"metric_{i}.png"
        if _plot_metric(results, metric, path):
            plots.append(f'<img src="{_rel(path, out_dir)}" alt="{_e(metric)} per cell">')
    if plots:
        sections.append(f'<div class="plots plots-row">{"".join(plots)}</div>')

    if exp.curves:
        sections.append("<h2>Training curves</h2>")
        curve_html = []
        for i, key in enumerate(exp.curves):
            path = assets / f"curve_{i}.png"
            if _plot_curve(results, key, path):
                curve_html.append(f'<img src="{_rel(path, out_dir)}" alt="{_e(key)}">')
            else:
                curve_html.append(f'<p class="note">No run logged <code>{_e(key)}</code> '
                                  "yet.</p>")
        sections.append(f'<div class="plots">{"".join(curve_html)}</div>'
                        '<p class="note">mean over seeds; the band spans the seeds\' min–max.'
                        "</p>")

    sections += ["<h2>Samples (fixed probes, newest step)</h2>",
                 _samples_html(results, assets, out_dir)]
    audio = _audio_html(results, assets, out_dir)
    if audio:
        sections += ["<h2>Audio (source / output / target)</h2>", audio]
    sections += ["<h2>Config per cell</h2>", _config_html(results)]
    sections += [
        "<h2>Reproduce</h2>",
        f"<pre>{_e(reproduce_command(exp, preset, n_seeds))}\n"
        f"{_e(report_command(exp, preset, n_seeds))}</pre>",
        f'<p class="note">Experiment file: <code>{_e(_display_path(exp.path))}</code>. '
        "Re-running reuses finished runs and resumes interrupted ones.</p>",
        "<h2>Weights &amp; Biases</h2>",
        _wandb_html(results, out_dir),
    ]
    title = f"{exp.name} — {exp.claim_summary}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><link rel='icon' href='data:,'>"
        f"<style>{_CSS}</style></head><body><main>{''.join(sections)}</main></body></html>\n"
    )


def _display_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.as_posix()


# --------------------------------------------------------------------------------------
# Markdown, JSON, README.
# --------------------------------------------------------------------------------------


def render_markdown(results: Results, readme: str | None = "README.md") -> str:
    """The results table in markdown with the commands that reproduce and regenerate it."""
    exp = results.experiment
    labels = factor_labels(exp.matrix)
    n_seeds = len(results.cells[0].runs) if results.cells else 0
    header = [labels[k] for k in exp.matrix]
    header += [f"{m} {'↑' if g == 'max' else '↓'}" for m, g in exp.metrics.items()]
    header.append("seeds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell in results.cells:
        row = [format_value(cell.cell.factors[k]) for k in exp.matrix]
        for metric in exp.metrics:
            text = format_stat(cell.stats[metric])
            if cell.cell.slug in results.best.get(metric, []):
                text = f"**{text}** ★"
            row.append(text)
        row.append(f"{cell.n_done}/{len(cell.runs)}")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    preset = f", preset `{results.preset}`" if results.preset else ""
    lines += [
        "",
        f"{exp.claim_summary}",
        "",
        f"Mean ± 95 % CI over seeds (Student t){preset}; ★ best cell per metric. "
        f"Reproduce: `{reproduce_command(exp, results.preset, n_seeds)}` · "
        f"regenerate this table: `{report_command(exp, results.preset, n_seeds, readme)}`",
    ]
    return "\n".join(lines) + "\n"


def _results_json(results: Results) -> dict[str, Any]:
    exp = results.experiment
    return {
        "experiment": exp.name,
        "preset": results.preset,
        "claim": exp.claim,
        "entry": exp.entry,
        "metrics": exp.metrics,
        "runs_done": results.n_done,
        "runs_total": results.n_runs,
        "cells": [
            {
                "cell": c.cell.slug,
                "factors": c.cell.factors,
                "seeds_done": c.n_done,
                "seeds_total": len(c.runs),
                "runs": {f"seed{r.spec.seed}": {"dir": str(r.spec.dir), "status": r.status}
                         for r in c.runs},
                "metrics": {
                    m: {"mean": s.mean, "ci95": s.half_width, "n": s.n, "values": list(s.values),
                        "best": c.cell.slug in results.best.get(m, [])}
                    for m, s in c.stats.items()
                },
            }
            for c in results.cells
        ],
    }


def update_readme(readme: Path, key: str, block: str) -> None:
    """Replace the text between ``<!-- results:<key> -->`` and ``<!-- /results:<key> -->``.

    The markers must already be in the file (nothing is appended); raises ``ValueError``
    naming the file and the missing marker otherwise.
    """
    text = readme.read_text()
    start, end = f"<!-- results:{key} -->", f"<!-- /results:{key} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < 0 or j < i:
        raise ValueError(f"{readme}: no '{start}' ... '{end}' block to fill; add the two "
                         "marker lines where the table should go")
    new = text[: i + len(start)] + "\n" + block.rstrip("\n") + "\n" + text[j:]
    if new != text:
        atomic_write_text(readme, new)


def readme_key(text: str, name: str, preset: str | None) -> str:
    """The README marker key for an experiment: ``<name>/<preset>`` if that block exists,
    else ``<name>``."""
    if preset and f"<!-- results:{name}/{preset} -->" in text:
        return f"{name}/{preset}"
    return name


# --------------------------------------------------------------------------------------
# Entry.
# --------------------------------------------------------------------------------------


def build_report(
    exp: Experiment,
    *,
    runs_root: Path,
    reports_root: Path,
    preset: str | None = None,
    seeds: int | None = None,
) -> Path:
    """Write index.html, assets/, results.md and results.json; return the index.html path."""
    results = collect_results(exp, Path(runs_root), preset=preset, seeds=seeds)
    out_dir = report_dir(exp, Path(reports_root), preset).resolve()
    assets = out_dir / "assets"
    if assets.is_dir():
        shutil.rmtree(assets)  # ours alone: stale grids of removed cells must not linger
    assets.mkdir(parents=True)
    page = render_html(results, out_dir, assets)
    atomic_write_text(out_dir / "results.md", render_markdown(results))
    atomic_write_json(out_dir / "results.json", _results_json(results))
    atomic_write_text(out_dir / "index.html", page)
    return out_dir / "index.html"
