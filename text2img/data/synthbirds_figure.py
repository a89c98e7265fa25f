"""The SynthBirds fine-detail figure: one bird with plain, striped and spotted wings at
128, 64 and 32 px, plus a wing close-up (``python -m text2img.data.synthbirds --figure``).

Each panel title gives the mean absolute difference from the plain-wing render over the
wing's box, so the figure states the property it shows: tens of grey levels at 128 px,
about one at 32 px.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.io import atomic_path
from text2img.data.synthbirds_draw import Pose, area_downsample, get_renderer
from text2img.data.synthbirds_text import BACKGROUNDS, COLOURS, PATTERNS

__all__ = ["detail_figure", "pattern_renders"]

# A large white bird with blue wings, orange crown, short black beak, on plain grey.
_ATTRS = [COLOURS.index("white"), COLOURS.index("blue"), COLOURS.index("orange"), 0, 0, 0, 2,
          BACKGROUNDS.index("plain")]
_POSE = Pose(facing=1, dx=0.0, dy=-0.02, scale=1.0, tilt=0.0, perched=True, branch_slope=0.03)


def pattern_renders(resolution: int = 128) -> dict[str, np.ndarray]:
    """uint8 ``[R, R, 3]`` of the figure's bird for each wing pattern."""
    renderer = get_renderer(resolution)
    out = {}
    for p, name in enumerate(PATTERNS):
        attrs = np.array(_ATTRS)
        attrs[5] = p
        out[name] = renderer.render(attrs, _POSE)
    return out


def detail_figure(path: str | os.PathLike[str], resolution: int = 128) -> Path:
    """Write the figure to ``path`` (PNG, atomically) and return the path."""
    from matplotlib.figure import Figure

    masters = pattern_renders(resolution)
    sizes = [resolution // 1, resolution // 2, resolution // 4]
    if resolution > 128:
        sizes = [128, 64, 32]
    changed = np.abs(masters["striped"].astype(int) - masters["plain"]).max(-1) > 0
    rows, cols = np.nonzero(changed)
    box = (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1)  # wing box at the master

    fig = Figure(figsize=(13, 9.6), dpi=100)
    fig.suptitle("SynthBirds fine detail: the wing pattern is visible at 128 px and gone at "
                 "32 px (|Δ plain|: mean absolute difference from the plain-wing render over "
                 "the wing box, 0-255)", fontsize=10)
    grid = fig.add_gridspec(len(PATTERNS), 4, width_ratios=[1, 1, 1, 1.15])
    for r, name in enumerate(PATTERNS):
        for c, size in enumerate(sizes):
            img = area_downsample(masters[name][None], size)[0]
            ref = area_downsample(masters["plain"][None], size)[0]
            k = masters[name].shape[0] // size
            y0, y1, x0, x1 = (v // k for v in box)
            diff = np.abs(img.astype(float) - ref)[y0 : max(y1, y0 + 1), x0 : max(x1, x0 + 1)]
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(img, interpolation="nearest")
            ax.set_title(f"{name} wings, {size} px (wing |Δ plain| {diff.mean():.1f})",
                         fontsize=9)
            ax.axis("off")
        ax = fig.add_subplot(grid[r, 3])
        ax.imshow(_zoom(masters[name], box, sizes[0], sizes[2]), interpolation="nearest")
        ax.set_title(f"wing zoom: {sizes[0]} px | {sizes[2]} px", fontsize=9)
        ax.axis("off")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _zoom(master: np.ndarray, box: tuple[int, ...], hi: int, lo: int) -> np.ndarray:
    """The wing box (with a margin) at ``hi`` and at ``lo`` px, side by side, same scale."""
    y0, y1, x0, x1 = box
    s = master.shape[0]
    margin = s // 16
    y0, y1 = max(0, y0 - margin), min(s, y1 + margin)
    x0, x1 = max(0, x0 - margin), min(s, x1 + margin)
    panels = []
    for size in (hi, lo):
        img = area_downsample(master[None], size)[0]
        k = s // size
        crop = img[y0 // k : -(-y1 // k), x0 // k : -(-x1 // k)]
        rep = s // size
        panels.append(crop.repeat(rep, 0).repeat(rep, 1))
    h = min(p.shape[0] for p in panels)
    return np.concatenate([p[:h] for p in panels], axis=1)
