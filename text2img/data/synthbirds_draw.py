"""SynthBirds renderer: a bird from an attribute vector and a pose, in vectorised numpy.

Drawing happens on a canvas ``supersample`` times larger than the output (2 by default)
and is area-downsampled at the end, which anti-aliases every edge. Each part is a convex
polygon or an ellipse whose inside test runs only over the part's bounding box; the
coordinate grids, pattern fields and backdrops are computed once per :class:`Renderer`,
so a 128 px image costs a few dozen numpy operations on small windows.

Fine detail (DATASETS.md): the wing pattern is a brightness modulation of +-``PATTERN_AMPLITUDE``
grey levels laid on a 4 px grid at 128 px (2 px stripes or 2x2 px spots), aligned with
the pixel grid and zero-mean over every 4x4 block. It is clearly visible at 128 px and
averages out to the plain wing colour at 32 px (area downsampling by 4 takes exactly one
period), except for a trace along the wing outline. Palette colours keep
``PATTERN_AMPLITUDE`` of headroom so the modulation never clips (clipping would shift the
block mean and leak the pattern into 32 px).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from text2img.data.synthbirds_text import (
    BACKGROUND,
    BEAK_COLOUR,
    BEAK_COLOURS,
    BEAK_LENGTH,
    BODY,
    COLOURS,
    CROWN,
    PATTERN,
    PATTERNS,
    SIZE,
    WING,
)

__all__ = ["PALETTE", "Pose", "Renderer", "area_downsample", "get_renderer", "sample_pose"]

# Every channel within [28, 227]: room for the +-28 wing pattern (see module docstring).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (206, 38, 38),
    "orange": (227, 128, 32),
    "yellow": (226, 206, 44),
    "green": (52, 160, 62),
    "blue": (46, 92, 212),
    "purple": (132, 60, 172),
    "brown": (124, 80, 46),
    "black": (34, 34, 38),
    "white": (226, 226, 222),
    "grey": (128, 128, 128),
}
PATTERN_AMPLITUDE = 28
OUTLINE = (24, 22, 26)
BRANCH = (92, 62, 40)
SIZE_SCALE = (0.45, 0.6, 0.75)  # bird length as a fraction of the frame, per size
BACKDROP_VARIANTS = 6
PATTERN_CELL_128 = 4  # pattern period in pixels at 128 px: 2 px light + 2 px dark

# Bird geometry in bird units (length 1, x towards the head, y down), facing right.
_BODY = ((-0.02, 0.05), (0.30, 0.19), 0.10)  # centre, semi-axes, angle
_WING = ((-0.08, 0.01), (0.26, 0.12), 0.12)
_HEAD = ((0.25, -0.12), 0.145)  # centre, radius
_EYE = ((0.305, -0.095), 0.022)
_TAIL = ((-0.20, -0.03), (-0.20, 0.11), (-0.58, 0.25), (-0.62, 0.13))
# The beak must stay legible at 32 px for a small bird (a 2-3 px patch there): with a
# 0.10 x 0.10 short beak a judge trained for 500 steps stayed at chance on beak colour.
_BEAK_BASE = ((0.31, -0.21), (0.31, -0.03))
_BEAK_TIP_Y = -0.12
_BEAK_LENGTH = (0.15, 0.32)  # tip beyond the head front (x = 0.395), short / long
_LEGS = (((-0.05, 0.15), (-0.03, 0.15), (-0.03, 0.385), (-0.05, 0.385)),
         ((0.05, 0.15), (0.07, 0.15), (0.07, 0.385), (0.05, 0.385)))
_FOOT_Y = 0.37  # where the branch passes (bird units, below the body centre)


@dataclass(frozen=True)
class Pose:
    """Everything about an image that the captions do not state.

    ``facing`` -1 (left) or 1 (right); ``dx``, ``dy`` offset of the bird's centre in frame
    units; ``scale`` multiplies the size class's length; ``tilt`` rotates the bird
    (radians); ``perched`` draws legs and a branch of slope ``branch_slope``;
    ``backdrop`` picks one of the background's precomputed variants.
    """

    facing: int = 1
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    tilt: float = 0.0
    perched: bool = False
    branch_slope: float = 0.0
    backdrop: int = 0

    def to_array(self) -> np.ndarray:
        """float32 ``[8]`` in field order (stored with every rendered split)."""
        return np.array([self.facing, self.dx, self.dy, self.scale, self.tilt,
                         float(self.perched), self.branch_slope, self.backdrop], np.float32)


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random pose: small position/scale/tilt jitter, perched half of the time."""
    u = rng.random(8)
    return Pose(facing=-1 if u[0] < 0.5 else 1, dx=float(u[1] - 0.5) * 0.10,
                dy=float(u[2] - 0.5) * 0.08, scale=0.93 + 0.14 * float(u[3]),
                tilt=float(u[4] - 0.5) * 0.4, perched=bool(u[5] < 0.5),
                branch_slope=float(u[6] - 0.5) * 0.3,
                backdrop=min(int(u[7] * BACKDROP_VARIANTS), BACKDROP_VARIANTS - 1))


def area_downsample(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` → uint8 ``[N, size, size, C]``: the mean of each block,
    rounded half up. Returns ``images`` itself when it already has that size."""
    n, h, w, c = images.shape
    if h == size and w == size:
        return images
    if h % size or w % size or h != w:
        raise ValueError(f"cannot area-downsample {h}x{w} to {size}x{size}: needs a square "
                         "image whose side is a multiple of the target")
    k = h // size
    out = np.empty((n, size, size, c), np.uint8)
    chunk = max(1, (1 << 24) // (h * w * c))  # bound the uint32 temporary (~64 MB)
    for s in range(0, n, chunk):
        block = np.asarray(images[s : s + chunk]).reshape(-1, size, k, size, k, c)
        total = block.sum(axis=(2, 4), dtype=np.uint32)
        out[s : s + chunk] = (2 * total + k * k) // (2 * k * k)  # floor(mean + 0.5)
    return out


class _Window:
    """A part's bounding box on the canvas and its pixel-centre coordinates."""

    __slots__ = ("sl", "x", "y")

    def __init__(self, renderer: Renderer, x0: float, x1: float, y0: float, y1: float):
        s = renderer.canvas_size
        i0, i1 = max(int(x0 * s), 0), min(int(x1 * s) + 2, s)
        j0, j1 = max(int(y0 * s), 0), min(int(y1 * s) + 2, s)
        self.sl = (slice(j0, max(j0, j1)), slice(i0, max(i0, i1)))
        self.x = renderer.centres[i0:i1]  # (w,)
        self.y = renderer.centres[j0:j1, None]  # (h, 1)


class Renderer:
    """``render(attributes int[8], pose) → uint8 [R, R, 3]`` at ``resolution`` R."""

    def __init__(self, resolution: int = 128, supersample: int = 2) -> None:
        if resolution % 32:
            raise ValueError(f"SynthBirds resolution must be a multiple of 32, got {resolution}")
        self.resolution = resolution
        self.supersample = supersample
        self.canvas_size = s = resolution * supersample
        self.centres = ((np.arange(s, dtype=np.float32) + 0.5) / s)  # pixel centres, frame units
        self.outline = 0.010  # outline width, frame units (1.3 px at 128)
        # The canvas is uint32 [S, S], one packed RGBX pixel per element: painting a part is
        # then one masked store of a scalar (np.putmask), three to four times faster than
        # a masked store into a [S, S, 3] uint8 array.
        self._colours = [_pack(PALETTE[c]) for c in COLOURS]
        self._beak_colours = [_pack(PALETTE[c]) for c in BEAK_COLOURS]
        self._wing_luts = [np.array([_pack(np.add(PALETTE[c], d)) for d in
                                     (-PATTERN_AMPLITUDE, 0, PATTERN_AMPLITUDE)], np.uint32)
                           for c in COLOURS]  # dark, base, light per wing colour
        self._patterns = self._pattern_fields()
        self._backdrops = self._make_backdrops()
        self._small_backdrops = [self._downsample_backdrops(b) for b in self._backdrops]

    # -- precomputed fields ---------------------------------------------------------

    def _pattern_fields(self) -> dict[str, np.ndarray]:
        """uint8 ``[S, S]`` in {0, 1, 2} (dark, base, light) per pattern, on the 128 px
        grid (scaled to the canvas)."""
        s = self.canvas_size
        cell = PATTERN_CELL_128 * s // 128  # canvas pixels per pattern period
        phase = (np.arange(s) % cell) < cell // 2  # first half of each period
        stripes = np.where(phase, 2, 0).astype(np.uint8)[None, :].repeat(s, 0)
        first = phase[:, None] & phase[None, :]
        second = ~phase[:, None] & ~phase[None, :]
        spots = (1 + first.astype(np.int8) - second.astype(np.int8)).astype(np.uint8)
        return {"plain": np.ones((s, s), np.uint8), "striped": stripes, "spotted": spots}

    def _make_backdrops(self) -> list[np.ndarray]:
        """Per background, packed uint32 ``[variants, S, S]`` (fixed seed: part of the
        generator version)."""
        s = self.canvas_size
        rng = np.random.default_rng(20240601)
        t = self.centres[:, None, None]  # (S, 1, 1) vertical position
        out = []
        for kind in ("sky", "foliage", "dusk", "plain"):
            variants = []
            for _ in range(BACKDROP_VARIANTS):
                j = rng.uniform(-1, 1, 3)
                if kind == "sky":
                    top = np.array([88, 148, 226]) + 10 * j
                    img = top + (np.array([178, 212, 246]) - top) * t
                    img = img.repeat(s, 1)
                    for _ in range(2):  # soft clouds
                        self._blend_ellipse(img, rng, (236, 242, 250), 0.45)
                elif kind == "foliage":
                    base = np.array([40, 86, 42]) + 8 * j
                    img = (base * (0.85 + 0.3 * t)).repeat(s, 1)
                    for _ in range(90):
                        green = np.array([30 + 40 * rng.random(), 80 + 70 * rng.random(),
                                          30 + 35 * rng.random()])
                        self._blend_ellipse(img, rng, green, 1.0, small=True)
                elif kind == "dusk":
                    top = np.array([196, 92, 86]) + 10 * j
                    img = top + (np.array([250, 178, 96]) - top) * t
                    img = img.repeat(s, 1)
                else:
                    img = np.full((s, s, 3), 204.0 + 8 * j[0])
                rgbx = np.zeros((s, s, 4), np.uint8)
                rgbx[..., :3] = np.clip(np.rint(img), 0, 255)
                variants.append(rgbx.view(np.uint32)[..., 0])
            out.append(np.stack(variants))
        return out

    def _downsample_backdrops(self, packed: np.ndarray) -> np.ndarray:
        """uint8 ``[variants, R, R, 3]`` of packed ``[variants, S, S]`` backdrops."""
        out = np.empty((len(packed), self.resolution, self.resolution, 3), np.uint8)
        for v, canvas in enumerate(packed):
            _downsample_into(out[v], canvas, self.supersample)
        return out

    def _blend_ellipse(self, img: np.ndarray, rng: np.random.Generator, colour, alpha: float,
                       small: bool = False) -> None:
        cx, cy = rng.random(2)
        a, b = (rng.uniform(0.02, 0.07), rng.uniform(0.012, 0.03)) if small else \
            (rng.uniform(0.12, 0.22), rng.uniform(0.04, 0.07))
        ang = rng.uniform(0, math.pi) if small else rng.uniform(-0.1, 0.1)
        win, fill, _ = self._ellipse(cx, cy, a, b, ang, 0.0)
        if fill is not None:
            view = img[win.sl]
            view[fill] = (1 - alpha) * view[fill] + alpha * np.asarray(colour, float)

    # -- shapes: masks over bounding windows ----------------------------------------

    def _ellipse(self, cx: float, cy: float, a: float, b: float, ang: float, pad: float):
        """Window, fill mask and outline mask (fill grown by ``pad``) of an ellipse."""
        c, s = math.cos(ang), math.sin(ang)
        A, B = a + pad, b + pad
        hx, hy = math.hypot(A * c, B * s), math.hypot(A * s, B * c)
        win = _Window(self, cx - hx, cx + hx, cy - hy, cy + hy)
        if win.x.size == 0 or win.y.size == 0:
            return win, None, None
        X, Y = win.x - cx, win.y - cy
        p = X * c + Y * s  # (h, w) along the major axis
        q = Y * c - X * s  # (h, w) along the minor axis
        p2, q2 = p * p, q * q
        fill = p2 * (1 / (a * a)) + q2 * (1 / (b * b)) <= 1.0
        ring = p2 * (1 / (A * A)) + q2 * (1 / (B * B)) <= 1.0 if pad else fill
        return win, fill, ring

    def _polygon(self, points: list[tuple[float, float]], pad: float):
        """Window, fill and outline masks of a convex polygon (either winding)."""
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        win = _Window(self, min(xs) - pad, max(xs) + pad, min(ys) - pad, max(ys) + pad)
        if win.x.size == 0 or win.y.size == 0:
            return win, None, None
        area2 = sum(points[i - 1][0] * points[i][1] - points[i][0] * points[i - 1][1]
                    for i in range(len(points)))
        sign = 1.0 if area2 > 0 else -1.0  # interior on the left of each edge iff area2 > 0
        dist = None
        for i in range(len(points)):
            (x1, y1), (x2, y2) = points[i - 1], points[i]
            ln = math.hypot(x2 - x1, y2 - y1) or 1.0
            nx, ny = -sign * (y2 - y1) / ln, sign * (x2 - x1) / ln  # inward unit normal
            # Signed distance to the edge's line, positive inside; the (w,) and (h, 1)
            # terms broadcast, so each edge costs one full-window add.
            d = win.x * nx + (win.y * ny - (nx * x1 + ny * y1))
            dist = d if dist is None else np.minimum(dist, d)
        return win, dist >= 0, dist >= -pad

    # -- the bird -------------------------------------------------------------------

    def render(self, attributes: np.ndarray, pose: Pose) -> np.ndarray:
        """uint8 ``[R, R, 3]`` of the bird ``attributes`` describes, in ``pose``."""
        out = np.empty((self.resolution, self.resolution, 3), np.uint8)
        self.render_into(out, attributes, pose)
        return out

    def render_into(self, out: np.ndarray, attributes: np.ndarray, pose: Pose) -> None:
        """Render into ``out`` (uint8 ``[R, R, 3]``), e.g. a row of a split's array.

        Only the canvas region the parts touch is filled, painted and downsampled; the
        rest of ``out`` is the backdrop's precomputed downsampled copy (identical to what
        downsampling the untouched canvas would give).
        """
        a = [int(v) for v in attributes]
        ops = self._plan(a, pose)
        k, variant = self.supersample, pose.backdrop % BACKDROP_VARIANTS
        y0 = min(op[0][0].start for op in ops) // k * k
        x0 = min(op[0][1].start for op in ops) // k * k
        y1 = -(-max(op[0][0].stop for op in ops) // k) * k
        x1 = -(-max(op[0][1].stop for op in ops) // k) * k
        canvas = np.empty((self.canvas_size, self.canvas_size), np.uint32)  # (S, S) RGBX
        canvas[y0:y1, x0:x1] = self._backdrops[a[BACKGROUND]][variant, y0:y1, x0:x1]
        for sl, mask, value in ops:
            np.putmask(canvas[sl], mask, value)
        out[...] = self._small_backdrops[a[BACKGROUND]][variant]
        _downsample_into(out[y0 // k : y1 // k, x0 // k : x1 // k], canvas[y0:y1, x0:x1], k)

    def _plan(self, a: list[int], pose: Pose) -> list[tuple]:
        """The paint operations ``(window slices, bool mask, packed colour or colours)``
        for one bird, back to front."""
        length = SIZE_SCALE[a[SIZE]] * pose.scale
        f, ct, st = pose.facing, math.cos(pose.tilt), math.sin(pose.tilt)
        ox, oy = 0.5 + pose.dx, 0.5 + pose.dy + 0.02
        ops: list[tuple] = []

        def at(x: float, y: float) -> tuple[float, float]:  # bird units → frame units
            x *= f
            return ox + length * (ct * x - st * y), oy + length * (st * x + ct * y)

        def ellipse(part, pad: float):
            (x, y), (ea, eb), ang = part
            cx, cy = at(x, y)
            world = pose.tilt + math.atan2(math.sin(ang), f * math.cos(ang))
            return self._ellipse(cx, cy, length * ea, length * eb, world, pad)

        def paint(shape, colour) -> None:
            win, fill, ring = shape
            if fill is not None:
                if ring is not fill:
                    ops.append((win.sl, ring, _OUTLINE))
                ops.append((win.sl, fill, colour))

        pad = self.outline
        body, wing = self._colours[a[BODY]], self._colours[a[WING]]
        if pose.perched:
            for leg in _LEGS:
                paint(self._polygon([at(*p) for p in leg], 0.0), _OUTLINE)
            fx, fy = at(0.01, _FOOT_Y)
            half = 0.018 * math.hypot(1.0, pose.branch_slope)
            ends = [(-0.05, fy + pose.branch_slope * (-0.05 - fx)),
                    (1.05, fy + pose.branch_slope * (1.05 - fx))]
            branch = [(ends[0][0], ends[0][1] - half), (ends[1][0], ends[1][1] - half),
                      (ends[1][0], ends[1][1] + half), (ends[0][0], ends[0][1] + half)]
            paint(self._polygon(branch, 0.0), _BRANCH)
        paint(self._polygon([at(*p) for p in _TAIL], pad), wing)
        paint(ellipse(_BODY, pad), body)
        win, fill, ring = ellipse(_WING, pad)
        if fill is not None:
            pattern = PATTERNS[a[PATTERN]]
            if pattern != "plain":  # dark / base / light per pixel from the pattern field
                wing = self._wing_luts[a[WING]][self._patterns[pattern][win.sl]]
            paint((win, fill, ring), wing)
        tip_x = 0.395 + _BEAK_LENGTH[a[BEAK_LENGTH]]
        beak = [at(*_BEAK_BASE[0]), at(tip_x, _BEAK_TIP_Y), at(*_BEAK_BASE[1])]
        # No outline: on a beak a few pixels wide it would drown the beak's colour.
        paint(self._polygon(beak, 0.0), self._beak_colours[a[BEAK_COLOUR]])
        (hx, hy), r = _HEAD
        cx, cy = at(hx, hy)
        win, fill, ring = head = self._ellipse(cx, cy, length * r, length * r, pose.tilt, pad)
        paint(head, body)
        if fill is not None:  # the crown: the top half of the head, in the tilted frame
            above = (win.y - cy) * ct - (win.x - cx) * st < 0.0
            ops.append((win.sl, fill & above, self._colours[a[CROWN]]))
        (ex, ey), er = _EYE
        ecx, ecy = at(ex, ey)
        paint(self._ellipse(ecx, ecy, length * er, length * er, 0.0, 0.0), _OUTLINE)
        return ops


def _pack(rgb) -> np.uint32:
    """An RGB triple as one uint32 whose bytes in memory are R, G, B, 0 (any endianness)."""
    return np.array([*rgb, 0], np.uint8).view(np.uint32)[0]


_OUTLINE, _BRANCH = _pack(OUTLINE), _pack(BRANCH)
_LANE_MASK = np.uint64(0x00FF00FF00FF00FF)
_ROUND = np.uint64(0x0002000200020002)


def _downsample_into(out: np.ndarray, canvas: np.ndarray, k: int) -> None:
    """Area-downsample packed uint32 ``[h, w]`` (a canvas or a region of one) by ``k``
    into uint8 ``[h/k, w/k, 3]``, rounding block means half up (as :func:`area_downsample`)."""
    h, w = canvas.shape
    rgbx = canvas.view(np.uint8).reshape(h, w, 4)  # rows may be strided; pixels are not
    if k != 2:
        total = rgbx.reshape(h // k, k, w // k, k, 4).sum(axis=(1, 3), dtype=np.uint32)
        out[...] = ((2 * total + k * k) // (2 * k * k))[..., :3]
        return
    # k = 2: sum row pairs into uint16 lanes, then view each pixel's four uint16 lanes as
    # one uint64 and add column pairs with a single 64-bit add (each lane stays below
    # 4 * 255 + 2, so lanes never carry into each other).
    rows = np.add(rgbx[0::2], rgbx[1::2], dtype=np.uint16)  # (h/2, w, 4)
    words = rows.view(np.uint64)[..., 0]  # (h/2, w)
    total = words[:, 0::2] + words[:, 1::2]  # (h/2, w/2)
    total += _ROUND
    total >>= np.uint64(2)
    total &= _LANE_MASK
    out[...] = total.view(np.uint16).reshape(h // 2, w // 2, 4)[..., :3]


@functools.lru_cache(maxsize=4)
def get_renderer(resolution: int) -> Renderer:
    """A shared renderer per resolution (its backdrops are built once per process)."""
    return Renderer(resolution)
