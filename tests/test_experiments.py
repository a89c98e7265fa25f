"""Experiment specs (validation, matrix, --only, naming, status) and report aggregation.

No training here: run folders are written by hand where a test needs them. The real
reproduction runs in tests/test_reproduce.py and tests/test_dashboard.py.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from common.experiments import (
    EXPERIMENTS_DIR,
    ExperimentError,
    expand_cells,
    factor_labels,
    filter_cells,
    format_value,
    list_experiments,
    load_experiment,
    plan_runs,
    resolve_experiment,
    run_status,
)
from common.report import (
    build_report,
    collect_results,
    config_diff,
    format_stat,
    mean_ci,
    render_markdown,
    update_readme,
)

SPEC = """\
name: {name}
claim: |
  Hinge beats BCE (Lim & Ye 2017). Second sentence.

  More detail.
entry: research.toy2d
base_overrides: {{train.steps: 40, model.d_head: none}}
matrix:
  loss.kind: [bce, hinge]
  data.mixture: [ring8, grid25]
seeds: 2
metrics: {{eval/hq: max, eval/modes: max}}
curves: [train/d/total]
presets:
  demo: {{train.steps: 10}}
"""


def write_spec(folder: Path, text: str = SPEC, name: str = "exp") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text.format(name=name) if "{name}" in text else text)
    return path


@pytest.fixture
def exp(tmp_path):
    return load_experiment(write_spec(tmp_path))


# ----------------------------------------------------------------------------- validation


def test_valid_spec_loads_in_file_order(exp, tmp_path):
    assert exp.name == "exp" and exp.entry == "research.toy2d" and exp.seeds == 2
    assert list(exp.matrix) == ["loss.kind", "data.mixture"]
    assert list(exp.metrics) == ["eval/hq", "eval/modes"]
    assert exp.presets == {"demo": {"train.steps": 10}}
    assert exp.claim_summary == "Hinge beats BCE (Lim & Ye 2017)."
    assert exp.path == (tmp_path / "exp.yaml").resolve()


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda t: t.replace("matrix:", "matirx:"),
         r"exp\.yaml: unknown key 'matirx' \(did you mean 'matrix'\?\)"),
        (lambda t: t.replace("eval/hq: max", "eval/hq: maximum"),
         r"exp\.yaml: key 'metrics\.eval/hq' must be 'max' or 'min'"),
        (lambda t: t.replace("train.steps: 40", "seed: 3"),
         r"exp\.yaml: key 'base_overrides\.seed' is set by the runner"),
        (lambda t: t.replace("demo: {train.steps: 10}", "demo: {loss.kind: bce}"),
         r"exp\.yaml: key 'presets\.demo\.loss\.kind' is a matrix factor"),
        (lambda t: t.replace("[ring8, grid25]", "ring8"),
         r"exp\.yaml: key 'matrix\.data\.mixture' expects a non-empty list"),
        (lambda t: t.replace("[ring8, grid25]", "[ring8, ring8]"),
         r"exp\.yaml: key 'matrix\.data\.mixture' lists a value twice"),
        (lambda t: t.replace("seeds: 2", "seeds: 0"),
         r"exp\.yaml: key 'seeds' expects a positive int"),
        (lambda t: t.replace("name: exp", "name: other"),
         r"exp\.yaml: key 'name' is 'other' but the file is exp\.yaml"),
        (lambda t: t.replace("entry: research.toy2d\n", ""),
         r"exp\.yaml: missing required key 'entry'"),
        (lambda t: t.replace("model.d_head: none", "data.mixture: ring8"),
         r"exp\.yaml: key 'matrix\.data\.mixture' is also in base_overrides"),
        (lambda t: t + "base: configs/nope.yaml\n",
         r"exp\.yaml: key 'base': file not found"),
        (lambda t: t.replace("curves: [train/d/total]", "curves: train/d/total"),
         r"exp\.yaml: key 'curves' expects a list"),
        (lambda t: t.replace("claim: |", "claim: [\n"), r"exp\.yaml:.* invalid YAML"),
    ],
)
def test_spec_errors_name_file_and_key(tmp_path, edit, pattern):
    path = write_spec(tmp_path, edit(SPEC.format(name="exp")))
    with pytest.raises(ExperimentError, match=pattern) as info:
        load_experiment(path)
    assert "\n" not in str(info.value)  # one line


def test_unknown_preset_and_experiment_suggest_close_match(exp, tmp_path):
    with pytest.raises(ExperimentError, match=r"unknown preset 'dmo' \(did you mean 'demo'\?\)"):
        plan_runs(exp, tmp_path, preset="dmo")
    with pytest.raises(ExperimentError, match=r"no experiment named 'exq' \(did you mean 'exp'"):
        resolve_experiment("exq", tmp_path)


def test_repo_experiments_load_and_their_overrides_resolve(capsys):
    """Every shipped experiment file is valid and its entry accepts every override of every
    preset (the entry's own --dry-run, in-process, so a typo fails here, not mid-ablation)."""
    paths = list_experiments(EXPERIMENTS_DIR)
    assert {p.stem for p in paths} >= {"toy2d-losses", "toy2d-heads"}
    for path in paths:
        spec = load_experiment(path)
        entry = importlib.import_module(spec.entry)
        for preset in (None, *spec.presets):
            run = plan_runs(spec, Path("/tmp/never-written"), preset=preset)[-1]
            argv = run.command("python")[run.command("python").index("--run-dir"):]
            with pytest.raises(SystemExit) as done:
                entry.main([*argv, "--dry-run"])
            assert done.value.code == 0, capsys.readouterr().err
            resolved = yaml.safe_load(capsys.readouterr().out)
            for key, value in {**spec.base_overrides, **spec.preset_overrides(preset),
                               **run.cell.factors}.items():
                node = resolved
                for part in key.split("."):
                    node = node[part]
                if isinstance(value, dict):  # a mapping is merged over the defaults
                    assert {k: node[k] for k in value} == value, (path.name, preset, key)
                else:
                    assert node == value, (path.name, preset, key)
            assert resolved["run"]["group"] == run.group
            assert resolved["run"]["tags"] == run.tags()


# ----------------------------------------------------------------------------- matrix


def test_matrix_expands_first_factor_outermost(exp):
    cells = expand_cells(exp)
    assert [c.slug for c in cells] == [
        "kind-bce_mixture-ring8", "kind-bce_mixture-grid25",
        "kind-hinge_mixture-ring8", "kind-hinge_mixture-grid25",
    ]
    assert cells[1].factors == {"loss.kind": "bce", "data.mixture": "grid25"}


def test_labels_disambiguate_colliding_last_components():
    labels = factor_labels({"g.opt.lr": [1], "d.opt.lr": [2], "model.d_head": [3]})
    assert labels == {"g.opt.lr": "g.opt.lr", "d.opt.lr": "d.opt.lr", "model.d_head": "d_head"}
    assert factor_labels({"g.lr": [1], "d.lr": [1]}) == {"g.lr": "g.lr", "d.lr": "d.lr"}


def test_colliding_slugs_are_a_file_error(tmp_path):
    text = SPEC.format(name="exp").replace("[ring8, grid25]", "['a b', 'a/b']")
    with pytest.raises(ExperimentError, match="same folder name 'kind-bce_mixture-a-b'"):
        load_experiment(write_spec(tmp_path, text))


def test_empty_matrix_is_one_base_cell(tmp_path):
    text = re.sub(r"matrix:\n(  .*\n)+", "", SPEC.format(name="exp"))
    spec = load_experiment(write_spec(tmp_path, text))
    assert [(c.slug, c.factors) for c in expand_cells(spec)] == [("base", {})]


@pytest.mark.parametrize(
    "value", ["hinge", "on", "1e-4", "a b", True, False, None, 3, 1e-4, 1e-5, 2.5,
              [1, 2], ["x=y", "z"], {"d/gp": 10.0}],
)
def test_format_value_round_trips_through_yaml(value):
    text = format_value(value)
    assert "\n" not in text
    assert yaml.safe_load(text) == value


def test_boolean_factors_name_and_filter(tmp_path):
    text = SPEC.format(name="exp").replace("data.mixture: [ring8, grid25]", "model.ca: [on, off]")
    spec = load_experiment(write_spec(tmp_path, text))
    cells = expand_cells(spec)
    assert [c.slug for c in cells][:2] == ["kind-bce_ca-true", "kind-bce_ca-false"]
    assert [c.slug for c in filter_cells(spec, cells, ["ca=on"])] == [
        "kind-bce_ca-true", "kind-hinge_ca-true"]


def test_only_filters_by_label_or_dotted_key(exp):
    cells = expand_cells(exp)
    slugs = lambda only: [c.slug for c in filter_cells(exp, cells, only)]  # noqa: E731
    assert slugs(["kind=hinge"]) == ["kind-hinge_mixture-ring8", "kind-hinge_mixture-grid25"]
    assert slugs(["loss.kind=hinge", "mixture=ring8"]) == ["kind-hinge_mixture-ring8"]
    assert slugs(["mixture=ring8", "mixture=grid25"]) == [c.slug for c in cells]  # OR
    with pytest.raises(ExperimentError, match=r"--only 'knd' is not a matrix factor \(did you "
                                              r"mean 'kind'\?\)"):
        filter_cells(exp, cells, ["knd=hinge"])
    with pytest.raises(ExperimentError, match=r"not a value of matrix\.loss\.kind "
                                              r"\(values: bce, hinge\)"):
        filter_cells(exp, cells, ["kind=wgan"])
    with pytest.raises(ExperimentError, match="expected factor=value"):
        filter_cells(exp, cells, ["kind"])


# ----------------------------------------------------------------------------- naming


def test_run_folders_overrides_and_commands(exp, tmp_path):
    runs = plan_runs(exp, tmp_path / "runs", preset="demo", seeds=3, only=["kind=hinge"])
    # Seed-major: both cells' seed 0 first, so a part-run experiment compares every cell.
    assert [r.dir.relative_to(tmp_path) for r in runs[:4]] == [
        Path("runs/exp/demo/kind-hinge_mixture-ring8/seed0"),
        Path("runs/exp/demo/kind-hinge_mixture-grid25/seed0"),
        Path("runs/exp/demo/kind-hinge_mixture-ring8/seed1"),
        Path("runs/exp/demo/kind-hinge_mixture-grid25/seed1"),
    ]
    run = runs[2]
    assert run.overrides() == [
        "train.steps=10", "model.d_head=none",  # base, then the preset on top
        "loss.kind=hinge", "data.mixture=ring8",  # factors
        "seed=1", "run.group=exp/demo", "run.name=kind-hinge_mixture-ring8-seed1",
        "run.tags=[kind=hinge, mixture=ring8, preset=demo]",
    ]
    argv = run.command("py", resume=True, extra=["runtime.threads=1"])
    assert argv[:6] == ["py", "-m", "research.toy2d", "--run-dir", str(run.dir), "--resume"]
    assert argv[-1] == "runtime.threads=1"
    # Without a preset: runs/<name>/<cell>/seed<k>, group = the experiment name.
    plain = plan_runs(exp, tmp_path)[0]
    assert plain.dir == tmp_path / "exp" / "kind-bce_mixture-ring8" / "seed0"
    assert plain.group == "exp" and "train.steps=40" in plain.overrides()
    assert len(plan_runs(exp, tmp_path)) == 4 * exp.seeds


def test_only_seeds_keeps_those_seeds_and_refuses_one_out_of_range(exp, tmp_path):
    runs = plan_runs(exp, tmp_path, seeds=3, only_seeds=[2])
    assert {r.seed for r in runs} == {2} and len(runs) == 4
    assert all(r.dir.name == "seed2" for r in runs)
    with pytest.raises(ExperimentError, match=r"--seed 3 is outside seeds 0\.\.2"):
        plan_runs(exp, tmp_path, seeds=3, only_seeds=[3])


def test_multi_process_runs_go_through_torchrun(tmp_path):
    text = SPEC.format(name="exp") + "nproc: 2\nbase: configs/base.yaml\n"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("seed: 0\n")
    spec = load_experiment(write_spec(tmp_path, text), root=tmp_path)
    argv = plan_runs(spec, tmp_path)[0].command("py")
    assert argv[:8] == ["py", "-m", "torch.distributed.run", "--standalone",
                        "--nproc_per_node=2", "-m", "research.toy2d", "--config"]
    assert argv[8] == str(tmp_path / "configs" / "base.yaml")


def test_run_status_from_folder(tmp_path):
    run_dir = tmp_path / "run"
    assert run_status(run_dir) == "missing"
    run_dir.mkdir()
    (run_dir / "stdout.log").write_text("crashed before config\n")
    assert run_status(run_dir) == "missing"
    (run_dir / "config.yaml").write_text("seed: 0\n")
    assert run_status(run_dir) == "partial"
    (run_dir / "eval.json").write_text("{}")
    assert run_status(run_dir) == "done"


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("values", [[0.5, 0.7], [1.0, 2.0, 4.0], [3, 3, 3, 3],
                                    list(np.linspace(-1, 1, 7))])
def test_mean_ci_matches_scipy_student_t(values):
    mean, half = mean_ci(values)
    x = np.asarray(values, float)
    sem = stats.sem(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sem) if sem > 0 else (
        x.mean(), x.mean())
    assert mean == pytest.approx(x.mean())
    assert half == pytest.approx((hi - lo) / 2)


def test_mean_ci_small_samples():
    assert mean_ci([]) == (None, None)
    assert mean_ci([0.25]) == (0.25, None)
    # Two seeds: t(0.975, 1) = 12.706, so the interval is wide; that is the honest answer.
    assert mean_ci([0.0, 1.0])[1] == pytest.approx(12.7062 * 0.5, rel=1e-4)


def test_format_stat():
    from common.report import Stat

    assert format_stat(Stat((), None, None)) == "—"
    assert format_stat(Stat((0.93,), 0.93, None)) == "0.93 (n=1)"
    assert format_stat(Stat((8, 8), 8.0, 0.0)) == "8 ± 0"
    assert format_stat(Stat((), 0.93412, 0.01234)) == "0.934 ± 0.012"
    assert format_stat(Stat((), 7.3333, 1.52)) == "7.3 ± 1.5"


# ----------------------------------------------------------------------------- reports


def fake_run(run_dir: Path, cfg: dict, evals: dict | None, steps=(10, 20), wav: bool = False):
    """A run folder as an entry point leaves it (evals None = interrupted)."""
    (run_dir / "samples").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = [{"step": s, "time": 0.0, "train/d/total": 1.0 / s} for s in steps]
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 30, "trai')  # torn last line
    from PIL import Image

    for s in steps:
        Image.new("RGB", (8, 8), (s, 0, 0)).save(run_dir / "samples" / f"grid_step{s:06d}.png")
    if wav:
        import soundfile

        (run_dir / "audio").mkdir()
        tone = 0.1 * np.sin(np.linspace(0, 200, 1600)).astype(np.float32)
        for role in ("source", "output", "target"):
            soundfile.write(run_dir / "audio" / f"clip_a_{role}_step000020.wav", tone, 16000)
        soundfile.write(run_dir / "audio" / "clip_a_output_step000010.wav", tone, 16000)
    if evals is not None:
        (run_dir / "eval.json").write_text(json.dumps(evals))


def test_collect_results_aggregates_and_marks_best(exp, tmp_path):
    root = tmp_path / "runs"
    hq = {"kind-bce_mixture-ring8": [0.5, 0.7], "kind-hinge_mixture-ring8": [0.9, 0.8],
          "kind-bce_mixture-grid25": [0.6, None], "kind-hinge_mixture-grid25": [None, None]}
    for run in plan_runs(exp, root):
        value = hq[run.cell.slug][run.seed]
        cfg = {"seed": run.seed, "loss": {"kind": run.cell.factors["loss.kind"]},
               "data": {"mixture": run.cell.factors["data.mixture"]}, "run": {"name": run.name}}
        if run.cell.slug == "kind-hinge_mixture-grid25" and run.seed == 1:
            continue  # never started
        fake_run(run.dir, cfg, None if value is None else {"eval/hq": value, "eval/modes": 8},
                 wav=run.cell.slug == "kind-hinge_mixture-ring8")
    results = collect_results(exp, root)
    by = {c.cell.slug: c for c in results.cells}
    assert by["kind-hinge_mixture-ring8"].stats["eval/hq"].mean == pytest.approx(0.85)
    assert by["kind-bce_mixture-grid25"].stats["eval/hq"].values == (0.6,)
    assert by["kind-bce_mixture-grid25"].n_done == 1
    assert [r.status for r in by["kind-hinge_mixture-grid25"].runs] == ["partial", "missing"]
    assert results.best["eval/hq"] == ["kind-hinge_mixture-ring8"]
    assert len(results.best["eval/modes"]) == 3  # ties share the star
    run = by["kind-hinge_mixture-ring8"].runs[0]
    assert run.curves["train/d/total"] == [(10, 0.1), (20, 0.05)]  # torn line skipped
    assert run.samples["grid"][0] == 20  # newest step per key
    assert run.audio["clip_a"]["output"][0] == 20 and set(run.audio["clip_a"]) == {
        "source", "output", "target"}

    index = build_report(exp, runs_root=root, reports_root=tmp_path / "reports")
    page = index.read_text()
    assert index == tmp_path / "reports" / "exp" / "index.html"
    assert "Hinge beats BCE (Lim &amp; Ye 2017)." in page
    # t(0.975, 1) · s/√2 = 12.706 · 0.0707 / 1.414 = 0.64; the best cell is starred.
    assert '<td class="num best">0.85 ± 0.64 ★</td>' in page
    assert "0.6 (n=1)" in page and "1/2" in page
    assert page.count("<audio") == 3
    for src in re.findall(r'src="([^"]+)"', page):
        assert (index.parent / src).is_file(), src
    assert "http://" not in page and "https://" not in page  # no external resources
    assert "loss.kind: <span class=\"old\">bce</span> → <b>hinge</b>" in page
    md = (index.parent / "results.md").read_text()
    assert "| hinge | ring8 | **0.85 ± 0.64** ★ |" in md
    data = json.loads((index.parent / "results.json").read_text())
    assert data["runs_done"] == 5 and data["runs_total"] == 8


def test_report_escapes_text(tmp_path):
    text = SPEC.format(name="exp").replace("Hinge beats BCE", "<script>alert(1)</script>")
    spec = load_experiment(write_spec(tmp_path, text))
    page = build_report(spec, runs_root=tmp_path / "runs",
                        reports_root=tmp_path / "reports").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "No sample grids yet" in page


def test_config_diff_ignores_per_run_keys():
    base = {"seed": 0, "run": {"name": "a"}, "runtime": {"threads": None},
            "loss": {"kind": "bce", "weights": {"d/gp": 10.0}}}
    cell = {"seed": 1, "run": {"name": "b"}, "runtime": {"threads": 1},
            "loss": {"kind": "hinge", "weights": {"d/gp": 10.0}}, "new": [1]}
    assert config_diff(base, cell) == [("loss.kind", "bce", "hinge"),
                                       ("new", "(absent)", "[1]")]


def test_update_readme_replaces_only_the_block(tmp_path, exp):
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- results:exp -->\nold table\n<!-- /results:exp -->\n\nEnd\n")
    block = render_markdown(collect_results(exp, tmp_path / "runs"))
    update_readme(readme, "exp", block)
    text = readme.read_text()
    assert text.startswith("# Title\n\n<!-- results:exp -->\n| kind | mixture |")
    assert text.endswith("<!-- /results:exp -->\n\nEnd\n") and "old table" not in text
    assert "`python -m scripts.report exp --readme README.md`" in text
    update_readme(readme, "exp", block)
    assert readme.read_text() == text  # idempotent
    with pytest.raises(ValueError, match="no '<!-- results:other -->'"):
        update_readme(readme, "other", block)


def test_readme_key_prefers_a_preset_block():
    from common.report import readme_key

    text = "<!-- results:exp -->\n<!-- /results:exp -->\n"
    assert readme_key(text, "exp", None) == "exp"
    assert readme_key(text, "exp", "cpu") == "exp"  # falls back to the experiment's block
    text += "<!-- results:exp/cpu -->\n<!-- /results:exp/cpu -->\n"
    assert readme_key(text, "exp", "cpu") == "exp/cpu"
