"""Named experiments: a base config, a matrix of factors, seeds, metrics and a paper claim.

An experiment lives in ``configs/experiments/<name>.yaml``::

    name: toy2d-heads
    claim: |
      What the paper says, with a citation.
    entry: research.toy2d              # python -m <entry> ...
    base: configs/research/toy2d.yaml  # optional, relative to the repo root (--config)
    base_overrides: {loss.kind: bce}   # dotted key -> value, applied to every cell
    matrix:                            # dotted key -> values; cells = cartesian product
      model.d_head: [combined, split, projection]
      data.mixture: [ring8, grid25]
    seeds: 3                           # default number of seeds (0 .. seeds-1)
    metrics: {eval/label_hq: max, eval/modes: max}   # the first decides the best cell
    curves: [train/d/total, train/g/total]           # metrics.jsonl keys to plot
    nproc: 1                           # processes per run; > 1 runs under torchrun
    presets:                           # --preset NAME applies these overrides
      cpu: {train.steps: 2000}

This module loads and validates such files (unknown keys are one-line errors naming the
file and the key, with a close-match suggestion), expands the matrix into cells, names the
run folders ``<runs_root>/<name>[/<preset>]/<cell>/seed<k>`` and reads a run's status from
its folder. It starts no processes: :mod:`scripts.reproduce` does that.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from common.config import ConfigError

__all__ = [
    "REPO_ROOT",
    "EXPERIMENTS_DIR",
    "RESERVED_KEYS",
    "ExperimentError",
    "Experiment",
    "Cell",
    "RunSpec",
    "load_experiment",
    "list_experiments",
    "resolve_experiment",
    "Status",
    "expand_cells",
    "factor_labels",
    "filter_cells",
    "plan_runs",
    "format_value",
    "run_status",
    "experiment_root",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS_DIR = REPO_ROOT / "configs" / "experiments"

# Keys the runner sets itself for every run; an experiment file may not set them.
RESERVED_KEYS = ("seed", "run.dir", "run.group", "run.name", "run.tags")

Status = Literal["done", "partial", "missing"]

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MODULE_RE = _KEY_RE
# A sentence ends at . ! ? before a capital, except after "et al.", "e.g." and the like.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<!\bal\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<!\bcf\.)(?<!\bvs\.)\s+(?=[A-Z])"
)


class ExperimentError(ConfigError):
    """A problem with an experiment file or a request; one line naming the file and key."""


# --------------------------------------------------------------------------------------
# The spec.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Experiment:
    """One named experiment, validated. Mappings keep the order of the YAML file."""

    name: str
    claim: str
    entry: str
    path: Path  # the YAML file it was read from
    base: Path | None = None  # absolute path of the base config (--config), if any
    base_overrides: dict[str, Any] = field(default_factory=dict)
    matrix: dict[str, list[Any]] = field(default_factory=dict)
    seeds: int = 3
    metrics: dict[str, Literal["max", "min"]] = field(default_factory=dict)
    curves: list[str] = field(default_factory=list)
    nproc: int = 1
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def claim_summary(self) -> str:
        """The claim's first sentence (of its first paragraph), on one line."""
        paragraph = re.split(r"\n\s*\n", self.claim.strip(), maxsplit=1)[0]
        text = " ".join(paragraph.split())
        match = _SENTENCE_END.search(text)
        return text[: match.start()] if match else text

    def preset_overrides(self, preset: str | None) -> dict[str, Any]:
        if preset is None:
            return {}
        if preset not in self.presets:
            raise ExperimentError(
                f"{self.path}: unknown preset '{preset}'{_suggest(preset, self.presets)}"
            )
        return dict(self.presets[preset])


@dataclass(frozen=True)
class Cell:
    """One point of the matrix: ``factors`` maps dotted key -> value, ``slug`` names it."""

    slug: str
    factors: dict[str, Any]

    def label(self, key: str, labels: dict[str, str]) -> str:
        return f"{labels[key]}={format_value(self.factors[key])}"


@dataclass(frozen=True)
class RunSpec:
    """One run: a cell at a seed, with its folder and the overrides the runner passes."""

    experiment: Experiment
    cell: Cell
    seed: int
    dir: Path
    preset: str | None = None

    @property
    def name(self) -> str:
        """``<cell>-seed<k>``: the W&B run name."""
        return f"{self.cell.slug}-seed{self.seed}"

    @property
    def group(self) -> str:
        """The W&B group: the experiment name (``<name>/<preset>`` under a preset)."""
        exp = self.experiment.name
        return exp if self.preset is None else f"{exp}/{self.preset}"

    def tags(self) -> list[str]:
        labels = factor_labels(self.experiment.matrix)
        tags = [self.cell.label(k, labels) for k in self.cell.factors]
        return tags + ([f"preset={self.preset}"] if self.preset else [])

    def overrides(self) -> list[str]:
        """``key=value`` argv items: base, preset, factors, then the runner's own keys."""
        values: dict[str, Any] = dict(self.experiment.base_overrides)
        values.update(self.experiment.preset_overrides(self.preset))
        values.update(self.cell.factors)
        items = [f"{k}={format_value(v)}" for k, v in values.items()]
        items += [
            f"seed={self.seed}",
            f"run.group={self.group}",
            f"run.name={self.name}",
            f"run.tags={format_value(self.tags())}",
        ]
        return items

    def command(
        self, python: str, *, resume: bool = False, extra: Sequence[str] = ()
    ) -> list[str]:
        """The argv that trains this run (``torchrun`` when the experiment asks for nproc > 1).

        ``extra`` are further ``key=value`` items (e.g. ``runtime.threads=1``); they come
        after the experiment's own overrides.
        """
        exp = self.experiment
        if exp.nproc > 1:
            # `python -m torch.distributed.run` is what the `torchrun` script runs; calling
            # it through the interpreter keeps the child in the same virtualenv.
            argv = [python, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={exp.nproc}", "-m", exp.entry]
        else:
            argv = [python, "-m", exp.entry]
        if exp.base is not None:
            argv += ["--config", str(exp.base)]
        argv += ["--run-dir", str(self.dir)]
        if resume:
            argv.append("--resume")
        return argv + self.overrides() + list(extra)

    def status(self) -> Status:
        return run_status(self.dir)


# --------------------------------------------------------------------------------------
# Loading and validation.
# --------------------------------------------------------------------------------------

_TOP_KEYS = ("name", "claim", "entry", "base", "base_overrides", "matrix", "seeds",
             "metrics", "curves", "nproc", "presets")
_REQUIRED = ("name", "claim", "entry", "metrics")


def _suggest(key: str, valid: Iterable[str]) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (valid: {', '.join(valid)})" if valid else ""


def _check_overrides(source: str, where: str, data: Any) -> dict[str, Any]:
    """A mapping of dotted key -> value, none of them reserved for the runner."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ExperimentError(f"{source}: key '{where}' must be a mapping of dotted key -> value")
    for key in data:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise ExperimentError(f"{source}: key '{where}.{key}' is not a dotted config key")
        if key in RESERVED_KEYS:
            raise ExperimentError(
                f"{source}: key '{where}.{key}' is set by the runner for every run "
                f"(reserved: {', '.join(RESERVED_KEYS)})"
            )
    return dict(data)


def _positive_int(source: str, key: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ExperimentError(f"{source}: key '{key}' expects a positive int, got {value!r}")
    return value


def _text(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ExperimentError(f"{source}: key '{key}' expects non-empty text, got {value!r}")
    return value.strip()


def load_experiment(path: str | Path, root: Path = REPO_ROOT) -> Experiment:
    """Read and validate one experiment file; ``base`` paths are relative to ``root``."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise ExperimentError(f"{source}: experiment file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", err)
        raise ExperimentError(f"{source}:{line} invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ExperimentError(f"{source}: top level must be a mapping")
    for key in data:
        if key not in _TOP_KEYS:
            raise ExperimentError(f"{source}: unknown key '{key}'{_suggest(str(key), _TOP_KEYS)}")
    for key in _REQUIRED:
        if key not in data:
            raise ExperimentError(f"{source}: missing required key '{key}'")

    name = _text(source, "name", data["name"])
    if not _NAME_RE.fullmatch(name):
        raise ExperimentError(f"{source}: key 'name' must be a plain file name, got {name!r}")
    if name != path.stem:
        raise ExperimentError(
            f"{source}: key 'name' is {name!r} but the file is {path.name}; they must agree"
        )
    entry = _text(source, "entry", data["entry"])
    if not _MODULE_RE.fullmatch(entry):
        raise ExperimentError(f"{source}: key 'entry' must be a python module, got {entry!r}")

    base = None
    if data.get("base") is not None:
        base = root / _text(source, "base", data["base"])
        if not base.is_file():
            raise ExperimentError(f"{source}: key 'base': file not found: {base}")

    base_overrides = _check_overrides(source, "base_overrides", data.get("base_overrides"))

    matrix_raw = data.get("matrix") or {}
    if not isinstance(matrix_raw, dict):
        raise ExperimentError(f"{source}: key 'matrix' must be a mapping of dotted key -> list")
    matrix = _check_overrides(source, "matrix", matrix_raw)
    for key, values in matrix.items():
        if not isinstance(values, list) or not values:
            raise ExperimentError(
                f"{source}: key 'matrix.{key}' expects a non-empty list, got {values!r}"
            )
        texts = [format_value(v) for v in values]
        if len(set(texts)) != len(texts):
            raise ExperimentError(f"{source}: key 'matrix.{key}' lists a value twice: {values!r}")
        if key in base_overrides:
            raise ExperimentError(
                f"{source}: key 'matrix.{key}' is also in base_overrides; keep it in one place"
            )

    metrics_raw = data["metrics"]
    if not isinstance(metrics_raw, dict) or not metrics_raw:
        raise ExperimentError(
            f"{source}: key 'metrics' expects a mapping metric -> max|min with at least one entry"
        )
    for key, goal in metrics_raw.items():
        if goal not in ("max", "min"):
            raise ExperimentError(
                f"{source}: key 'metrics.{key}' must be 'max' or 'min' (which direction is "
                f"better), got {goal!r}"
            )

    curves = data.get("curves") or []
    if not isinstance(curves, list) or not all(isinstance(c, str) and c for c in curves):
        raise ExperimentError(f"{source}: key 'curves' expects a list of metrics.jsonl keys")

    presets_raw = data.get("presets") or {}
    if not isinstance(presets_raw, dict):
        raise ExperimentError(f"{source}: key 'presets' must be a mapping name -> overrides")
    presets: dict[str, dict[str, Any]] = {}
    for pname, overrides in presets_raw.items():
        if not isinstance(pname, str) or not _NAME_RE.fullmatch(pname):
            raise ExperimentError(f"{source}: key 'presets.{pname}': not a plain name")
        presets[pname] = _check_overrides(source, f"presets.{pname}", overrides)
        for key in presets[pname]:
            if key in matrix:
                raise ExperimentError(
                    f"{source}: key 'presets.{pname}.{key}' is a matrix factor; a preset "
                    "may not override it"
                )

    exp = Experiment(
        name=name,
        claim=_text(source, "claim", data["claim"]),
        entry=entry,
        path=path.resolve(),
        base=base,
        base_overrides=base_overrides,
        matrix=matrix,
        seeds=_positive_int(source, "seeds", data.get("seeds", 3)),
        metrics=dict(metrics_raw),
        curves=list(curves),
        nproc=_positive_int(source, "nproc", data.get("nproc", 1)),
        presets=presets,
    )
    expand_cells(exp)  # slug collisions are a file error, reported now
    return exp


def list_experiments(directory: Path = EXPERIMENTS_DIR) -> list[Path]:
    """The experiment files in ``directory``, sorted by name."""
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []


def resolve_experiment(name_or_path: str, directory: Path = EXPERIMENTS_DIR) -> Experiment:
    """Load ``<directory>/<name>.yaml``, or a YAML path given directly."""
    as_path = Path(name_or_path)
    if as_path.suffix in (".yaml", ".yml") and as_path.is_file():
        return load_experiment(as_path)
    path = directory / f"{name_or_path}.yaml"
    if not path.is_file():
        names = [p.stem for p in list_experiments(directory)]
        raise ExperimentError(
            f"{directory}: no experiment named '{name_or_path}'{_suggest(name_or_path, names)}"
        )
    return load_experiment(path)


# --------------------------------------------------------------------------------------
# Matrix expansion and naming.
# --------------------------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value as the YAML text an entry point parses back to the same value.

    ``hinge`` -> ``hinge``; ``True`` -> ``true``; ``"on"`` -> ``'on'`` (still a string);
    ``[a, b]`` -> ``[a, b]``; ``1e-4`` -> ``0.0001``.
    """
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    text = text.strip()
    if text.endswith("\n..."):  # safe_dump marks the end of a bare scalar document
        text = text[: -len("\n...")].strip()
    return text


def _slug_text(value: Any) -> str:
    text = format_value(value).strip("'\"")
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-") or "x"


def factor_labels(matrix: dict[str, Any]) -> dict[str, str]:
    """Short readable label per factor key: its last component, longer where two collide.

    ``{"loss.kind", "data.mixture"}`` -> ``kind``, ``mixture``;
    ``{"g.opt.lr", "d.opt.lr"}`` -> ``g.opt.lr``, ``d.opt.lr``.
    """
    parts = {key: key.split(".") for key in matrix}
    depth = dict.fromkeys(matrix, 1)
    while True:
        labels = {k: ".".join(parts[k][-depth[k]:]) for k in matrix}
        seen: dict[str, list[str]] = {}
        for key, label in labels.items():
            seen.setdefault(label, []).append(key)
        clashes = [keys for keys in seen.values() if len(keys) > 1]
        if not clashes:
            return labels
        for keys in clashes:
            for key in keys:
                depth[key] = min(depth[key] + 1, len(parts[key]))


def expand_cells(exp: Experiment) -> list[Cell]:
    """The cartesian product of the matrix, first factor outermost; one cell if it is empty."""
    if not exp.matrix:
        return [Cell("base", {})]
    labels = factor_labels(exp.matrix)
    keys = list(exp.matrix)
    cells = []
    for combo in itertools.product(*(exp.matrix[k] for k in keys)):
        factors = dict(zip(keys, combo, strict=True))
        slug = "_".join(f"{labels[k].replace('.', '-')}-{_slug_text(v)}"
                        for k, v in factors.items())
        cells.append(Cell(slug, factors))
    slugs = [c.slug for c in cells]
    dupes = sorted({s for s in slugs if slugs.count(s) > 1})
    if dupes:
        raise ExperimentError(
            f"{exp.path}: key 'matrix': two cells get the same folder name {dupes[0]!r}; make "
            "the values differ in their letters or digits"
        )
    return cells


def filter_cells(exp: Experiment, cells: Sequence[Cell], only: Sequence[str]) -> list[Cell]:
    """Keep cells matching every ``key=value`` filter (repeat a key to allow several values).

    ``key`` is the full dotted factor key or its short label (``loss.kind`` or ``kind``);
    ``value`` is compared as written in the matrix (``hinge``, ``true``, ``0.0001``).
    """
    labels = factor_labels(exp.matrix)
    by_name = {**{v: k for k, v in labels.items()}, **{k: k for k in exp.matrix}}
    wanted: dict[str, set[str]] = {}
    for item in only:
        if "=" not in item:
            raise ExperimentError(f"--only {item!r}: expected factor=value, e.g. kind=hinge")
        name, value = (s.strip() for s in item.split("=", 1))
        if name not in by_name:
            raise ExperimentError(
                f"{exp.path}: --only '{name}' is not a matrix factor{_suggest(name, by_name)}"
            )
        key = by_name[name]
        allowed = {format_value(v): v for v in exp.matrix[key]}
        text = format_value(yaml.safe_load(value)) if value else value
        if value not in allowed and text not in allowed:
            raise ExperimentError(
                f"{exp.path}: --only {name}={value}: not a value of matrix.{key} "
                f"(values: {', '.join(allowed)})"
            )
        wanted.setdefault(key, set()).add(value if value in allowed else text)
    return [
        cell for cell in cells
        if all(format_value(cell.factors[k]) in vals for k, vals in wanted.items())
    ]


def experiment_root(exp: Experiment, runs_root: Path, preset: str | None = None) -> Path:
    """``<runs_root>/<name>[/<preset>]``: presets never share folders."""
    root = Path(runs_root) / exp.name
    return root / preset if preset else root


def plan_runs(
    exp: Experiment,
    runs_root: Path,
    *,
    preset: str | None = None,
    seeds: int | None = None,
    only: Sequence[str] = (),
    only_seeds: Sequence[int] = (),
) -> list[RunSpec]:
    """Every run of the experiment (cells × seeds 0..n-1), seed-major: every cell's seed 0
    comes before any seed 1, so an experiment stopped part-way still compares all cells.
    ``only_seeds`` keeps just those seeds (each must be < n), e.g. to add seed 2 on another
    machine to runs of seeds 0-1 made elsewhere."""
    exp.preset_overrides(preset)  # unknown preset -> error now
    n = exp.seeds if seeds is None else seeds
    if n < 1:
        raise ExperimentError(f"--seeds must be at least 1, got {n}")
    bad = sorted({k for k in only_seeds if not 0 <= k < n})
    if bad:
        raise ExperimentError(f"--seed {bad[0]} is outside seeds 0..{n - 1} (raise --seeds)")
    cells = filter_cells(exp, expand_cells(exp), only)
    root = experiment_root(exp, runs_root, preset)
    return [
        RunSpec(exp, cell, seed, root / cell.slug / f"seed{seed}", preset)
        for seed in range(n)
        if not only_seeds or seed in only_seeds
        for cell in cells
    ]


# --------------------------------------------------------------------------------------
# Status of a run folder.
# --------------------------------------------------------------------------------------


def run_status(run_dir: Path) -> Status:
    """``done``: eval.json exists (written last, atomically); ``partial``: config.yaml but no
    eval.json (started, then stopped or failed: resume it); ``missing``: neither."""
    run_dir = Path(run_dir)
    if (run_dir / "eval.json").is_file():
        return "done"
    if (run_dir / "config.yaml").is_file():
        return "partial"
    return "missing"
