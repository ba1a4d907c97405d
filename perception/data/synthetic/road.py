"""Road geometry of the synthetic world: centreline, lane layout, markings and cross-section.

World frame: flat ground ``z = 0``, x roughly along the road, y left, z up (metres). The
centreline is the graph ``Y = f(X)`` of a curve built from arcs and clothoid ramps (heading stays
within +-40 degrees of the x axis, so ``f`` is single valued). Road coordinates ``(s, d)`` are
the centreline arc length ``s`` and the lateral offset ``d`` (positive to the left):

    d = (Y - f(X)) * cos(theta(X)),   theta = atan(f'(X)),   s = S(X)

This is the exact definition the renderer, the ground truth and the lane polylines share, so the
geometry tests compare like with like. Lane boundaries sit at ``d = m(s) * B_k`` with nominal
offsets ``B_k`` (ascending, right to left) and a slow width modulation ``m(s)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = ["LineStyle", "Marking", "CrossSection", "Road", "build_centreline"]

_GRID_M = 0.5  # centreline sampling step


class LineStyle(Enum):
    NONE = 0
    SOLID = 1
    DASHED = 2
    DOUBLE = 3  # two solid lines
    SOLID_DASHED = 4  # solid on the right, dashed on the left (passing allowed one way)


@dataclass(frozen=True)
class Marking:
    """Paint of one lane boundary."""

    style: LineStyle
    color_rgb: tuple[float, float, float] = (0.85, 0.85, 0.82)  # linear albedo
    width_m: float = 0.15  # of one stroke
    dash_m: float = 3.0
    gap_m: float = 9.0
    phase_m: float = 0.0
    spacing_m: float = 0.15  # gap between the strokes of a double line
    wear: float = 0.0  # 0 fresh .. 1 nearly gone

    @property
    def painted(self) -> bool:
        return self.style is not LineStyle.NONE

    @property
    def half_extent_m(self) -> float:
        """Half the total painted width (both strokes for double lines)."""
        if self.style in (LineStyle.DOUBLE, LineStyle.SOLID_DASHED):
            return self.width_m + 0.5 * self.spacing_m
        return 0.5 * self.width_m


@dataclass(frozen=True)
class CrossSection:
    """What lies beside the carriageway on each side (right = index 0, left = index 1)."""

    shoulder_m: tuple[float, float]  # paved road beyond the outer boundary (parking/shoulder)
    curb_height_m: float  # 0: no curb, the verge is at road level
    sidewalk_m: tuple[float, float]  # sidewalk width beyond the shoulder (0: none)
    verge_class: tuple[int, int]  # class id of the ground beyond the sidewalk


@dataclass
class Road:
    """Centreline lookup tables plus the lane layout; see the module docstring."""

    x_grid: np.ndarray  # [G] increasing X of the centreline samples
    y_grid: np.ndarray  # [G] f(X)
    slope_grid: np.ndarray  # [G] f'(X)
    s_grid: np.ndarray  # [G] arc length S(X)
    boundaries_m: np.ndarray  # [n + 1] nominal lane boundary offsets, ascending (right -> left)
    markings: tuple[Marking, ...]  # [n + 1] paint per boundary
    directions: tuple[int, ...]  # [n] +1 same direction as ego, -1 oncoming
    ego_lane: int  # index into lanes (0 = rightmost)
    section: CrossSection
    width_mod_amp: float = 0.0  # m(s) = 1 + amp * sin(2 pi s / period + phase)
    width_mod_period_m: float = 400.0
    width_mod_phase: float = 0.0

    # ---------------------------------------------------------------- layout
    @property
    def n_lanes(self) -> int:
        return len(self.directions)

    @property
    def edges_m(self) -> tuple[float, float]:
        """Nominal offsets of the paved road's right and left edges (shoulders included)."""
        return (float(self.boundaries_m[0] - self.section.shoulder_m[0]),
                float(self.boundaries_m[-1] + self.section.shoulder_m[1]))

    def lane_center_m(self, lane: int) -> float:
        return float(0.5 * (self.boundaries_m[lane] + self.boundaries_m[lane + 1]))

    def lane_width_m(self, lane: int) -> float:
        return float(self.boundaries_m[lane + 1] - self.boundaries_m[lane])

    # ---------------------------------------------------------------- lookups
    def scale(self, s: np.ndarray) -> np.ndarray:
        """Width modulation ``m(s)`` (dimensionless, near 1)."""
        if self.width_mod_amp == 0.0:
            return np.ones_like(s)
        return 1.0 + self.width_mod_amp * np.sin(2 * np.pi * s / self.width_mod_period_m + self.width_mod_phase)

    def to_road(self, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World ``(X, Y)`` -> road ``(s, d)``."""
        f = np.interp(X, self.x_grid, self.y_grid)
        slope = np.interp(X, self.x_grid, self.slope_grid)
        s = np.interp(X, self.x_grid, self.s_grid)
        return s, (Y - f) / np.sqrt(1.0 + slope * slope)

    def to_world(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Road ``(s, d)`` -> world ``(X, Y, heading_rad)``; the exact inverse of :meth:`to_road`."""
        X = np.interp(s, self.s_grid, self.x_grid)
        f = np.interp(X, self.x_grid, self.y_grid)
        slope = np.interp(X, self.x_grid, self.slope_grid)
        return X, f + d * np.sqrt(1.0 + slope * slope), np.arctan(slope)

    def boundary_points(self, k: int, s: np.ndarray) -> np.ndarray:
        """[N, 3] world points of lane boundary ``k`` at arc lengths ``s`` (on the ground)."""
        d = self.scale(s) * self.boundaries_m[k]
        X, Y, _ = self.to_world(s, d)
        return np.stack([X, Y, np.zeros_like(X)], axis=1)

    @property
    def s_range(self) -> tuple[float, float]:
        return float(self.s_grid[0]), float(self.s_grid[-1])


def build_centreline(rng: np.random.Generator, s_start: float, s_end: float,
                     curviness: float) -> tuple[np.ndarray, ...]:
    """Sample a centreline from arcs joined by clothoid ramps.

    Returns ``(x, y, slope, s)`` grids with ``s`` from ``s_start`` to ``s_end`` and the road
    passing through the origin heading along +x at ``s = 0``.
    """
    n = int(np.ceil((s_end - s_start) / _GRID_M)) + 1
    s = s_start + _GRID_M * np.arange(n)
    kappa = np.zeros(n)
    pos = s_start
    current = 0.0
    while pos < s_end:
        length = rng.uniform(40.0, 220.0)
        if rng.random() < curviness:
            radius = rng.uniform(120.0, 900.0)
            target = rng.choice([-1.0, 1.0]) / radius
        else:
            target = 0.0
        ramp = rng.uniform(15.0, 50.0)
        seg = (s >= pos) & (s < pos + length)
        frac = np.clip((s[seg] - pos) / ramp, 0.0, 1.0)
        kappa[seg] = current + (target - current) * frac
        current = target
        pos += length
    heading = np.cumsum(kappa) * _GRID_M
    heading -= np.interp(0.0, s, heading)  # heading 0 at s = 0
    # Keep the graph single valued and the curves plausible: fold back large headings.
    limit = np.deg2rad(40.0)
    heading = limit * np.tanh(heading / limit)
    cos, sin = np.cos(heading), np.sin(heading)
    x = np.concatenate([[0.0], np.cumsum(0.5 * (cos[1:] + cos[:-1]) * _GRID_M)])
    y = np.concatenate([[0.0], np.cumsum(0.5 * (sin[1:] + sin[:-1]) * _GRID_M)])
    x -= np.interp(0.0, s, x)
    y -= np.interp(0.0, s, y)
    # Arc length of the sampled polyline itself, so S(X) matches the geometry exactly.
    seg_len = np.hypot(np.diff(x), np.diff(y))
    s_poly = np.concatenate([[0.0], np.cumsum(seg_len)])
    s_poly -= np.interp(0.0, x, s_poly)  # S(X = 0) = 0
    return x, y, np.tan(heading), s_poly
