"""The dashboard as a user sees it: headless Chromium opens reports/<name>/index.html.

A small real reproduction (two toy2d cells, W&B offline) is reported, plus a speech-style
``audio/`` folder with real wav files so the players are exercised. Chromium must load
every image and every audio element with no console errors. The screenshot is kept in
``test-output/dashboard.png`` (gitignored) and in pytest's tmp folder.

Chromium comes from Debian (``make setup-test`` installs it); it is driven through the
``playwright`` package pointed at that binary, never a downloaded browser. Without Chromium
the test fails rather than skips: CI installs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from common.experiments import REPO_ROOT

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO_ROOT / "test-output" / "dashboard.png"

SPEC = """\
name: dash
claim: |
  The hinge loss (Lim & Ye 2017, Geometric GAN) trains at least as well as the
  non-saturating BCE loss (Goodfellow et al. 2014) on a ring of 8 Gaussians.
entry: research.toy2d
base_overrides:
  train.steps: 60
  train.eval_samples: 200
  run.sample_every: 30
  run.checkpoint_every: 30
  run.log_every: 10
matrix:
  loss.kind: [bce, hinge]
seeds: 1
metrics: {eval/hq: max, eval/modes: max}
curves: [train/d/total, train/g/total]
"""


@dataclass
class PageCheck:
    """What Chromium saw: every <img> and <audio> with its load state, and console errors."""

    images: list[dict]
    audio: list[dict]
    errors: list[str]
    text: str

    @property
    def broken_images(self) -> list[str]:
        return [i["src"] for i in self.images if not (i["complete"] and i["width"] > 0)]

    @property
    def broken_audio(self) -> list[str]:
        return [a["src"] for a in self.audio if a["error"] or a["ready"] < 1]


def require_chromium() -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: the dashboard test needs Debian's chromium; run "
                    "`make setup-test` (or apt-get install chromium), or set CHROMIUM=<path>",
                    pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("the python package 'playwright' is missing: pip install -r "
                    "requirements-dev.txt (it drives the system Chromium; no browser download)",
                    pytrace=False)


def inspect_page(html: Path, screenshots: list[Path], profile: Path) -> PageCheck:
    """Open ``html`` from the file system, wait for media, screenshot the whole page."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url} {r.failure}"))
            page.goto(html.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "() => [...document.querySelectorAll('audio')]"
                ".every(a => a.readyState >= 1 || a.error !== null)", timeout=20_000)
            images = page.evaluate(
                "() => [...document.images].map(i => ({src: i.getAttribute('src'),"
                " complete: i.complete, width: i.naturalWidth}))")
            audio = page.evaluate(
                "() => [...document.querySelectorAll('audio')].map(a => ({"
                "src: a.getAttribute('src'), ready: a.readyState,"
                " error: a.error ? a.error.code : 0, duration: a.duration}))")
            text = page.inner_text("body")
            for path in screenshots:
                path.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(path), full_page=True)
        finally:
            context.close()
    return PageCheck(images, audio, errors, text)


def write_audio(run_dir: Path) -> None:
    """Speech-run media as an entry point writes them: <clip>_<role>_step<NNNNNN>.wav."""
    import soundfile

    sr = 16_000
    t = np.arange(int(0.4 * sr)) / sr
    (run_dir / "audio").mkdir(exist_ok=True)
    for role, step, freq in (("source", 0, 220.0), ("target", 0, 330.0), ("output", 30, 260.0),
                             ("output", 60, 300.0)):
        wav = (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        soundfile.write(run_dir / "audio" / f"p232_001_{role}_step{step:06d}.wav", wav, sr)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    """A real two-run reproduction, speech-style audio added, report regenerated."""
    root = tmp_path_factory.mktemp("dash")
    spec = root / "experiments" / "dash.yaml"
    spec.parent.mkdir()
    spec.write_text(SPEC)
    env = dict(os.environ, WANDB_MODE="offline", PYTHONDONTWRITEBYTECODE="1")
    common = ["--runs-root", str(root / "runs"), "--reports-root", str(root / "reports")]
    done = subprocess.run([sys.executable, "-m", "scripts.reproduce", str(spec), *common],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    write_audio(root / "runs" / "dash" / "kind-hinge" / "seed0")
    done = subprocess.run([sys.executable, "-m", "scripts.report", str(spec), *common],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, root / "reports" / "dash" / "index.html"


def test_dashboard_loads_every_image_and_audio_without_errors(dashboard, tmp_path):
    require_chromium()
    root, index = dashboard
    check = inspect_page(index, [tmp_path / "dashboard.png", SCREENSHOT], tmp_path / "profile")
    # 2 metric plots + 2 training curves + the newest grid of each sample key of each cell.
    keys = {(cell, re.sub(r"_step\d+\.png$", "", p.name))
            for cell in ("kind-bce", "kind-hinge")
            for p in (root / "runs" / "dash" / cell / "seed0" / "samples").glob("*.png")}
    assert len(keys) >= 2
    assert len(check.images) == 4 + len(keys), check.images
    assert check.broken_images == []
    assert len(check.audio) == 3 and check.broken_audio == [], check.audio
    assert all(a["duration"] == pytest.approx(0.4, abs=0.01) for a in check.audio)
    assert check.errors == []
    # The page says what a user needs: the claim, the table, the W&B and reproduce commands.
    assert "The hinge loss (Lim & Ye 2017, Geometric GAN)" in check.text
    assert "★" in check.text and "(n=1)" in check.text
    assert "wandb sync" in check.text and "python -m scripts.reproduce dash" in check.text
    assert SCREENSHOT.stat().st_size > 10_000 and (tmp_path / "dashboard.png").is_file()
    # The audio players show the newest output step and the step-0 references.
    srcs = sorted(a["src"] for a in check.audio)
    assert [Path(s).name for s in srcs] == ["p232_001_output_step000060.wav",
                                            "p232_001_source_step000000.wav",
                                            "p232_001_target_step000000.wav"]
    # The real W&B client ran offline in every run folder, ready for `wandb sync`.
    for cell in ("kind-bce", "kind-hinge"):
        assert list((root / "runs" / "dash" / cell / "seed0" / "wandb").glob("offline-run-*"))


def test_checker_fails_on_a_broken_image_or_audio(dashboard, tmp_path):
    """The check above can fail: break one image and one audio path in a copy of the page."""
    require_chromium()
    _, index = dashboard
    copy = tmp_path / "report"
    shutil.copytree(index.parent, copy)
    page = (copy / "index.html").read_text()
    page, n_img = re.subn(r'<img src="assets/', '<img src="assets/missing-', page, count=1)
    page, n_audio = re.subn(r'<audio controls preload="metadata" src="assets/',
                            '<audio controls preload="metadata" src="assets/missing-', page,
                            count=1)
    assert n_img == n_audio == 1
    (copy / "index.html").write_text(page)
    check = inspect_page(copy / "index.html", [tmp_path / "broken.png"], tmp_path / "profile")
    assert len(check.broken_images) == 1 and "missing-" in check.broken_images[0]
    assert len(check.broken_audio) == 1 and "missing-" in check.broken_audio[0]
    assert check.errors, "a missing file must show up as a console error"
