"""Lane-line mask -> metric polylines in the vehicle frame (and the reverse, for rendering).

:func:`mask_to_polylines` turns the ``lanes`` head's binary mask into one polyline per lane
line on the ground (vehicle frame: x forward, y left, z up, metres):

1. **Row runs.** Pixels without a lane pixel in the row above or below (speckle) are dropped.
   Each image row is split into runs of lane pixels; a run's two outer edges are projected to
   the ground (flat-ground model, lens distortion included), giving one centre point and a metric
   width per run. Runs wider than ``max_marking_width_m`` (stop lines, crosswalks, blobs) are
   dropped; runs closer than ``merge_gap_m`` (double lines) are merged.
2. **Tracking, near to far.** Rows are visited from the bottom of the image up. Each lane keeps
   an exponentially-weighted line fit (length scale ``track_length_m``) that predicts its
   lateral offset at the next row; runs are assigned greedily to the nearest prediction inside a
   gate that widens with the distance since the lane's last point. Only *confirmed* lanes (at
   least ``min_length_m`` long) may bridge gaps (dashes, up to ``max_gap_m``); unconfirmed pieces
   must continue in the next rows, so blobs and speckle cannot chain into a lane. Unassigned
   runs start new lanes.
3. **Curve fit.** Lanes with too few rows, too short an extent or too much lateral scatter are
   dropped as clutter; the rest get a robust (Huber, then Tukey) polynomial ``y(x)`` of degree
   up to ``degree`` (lower for short lanes). Pieces that continue each other (occlusions, long
   gaps) are joined, and each lane is sampled every ``step_m`` metres over its observed extent.

The mask must have the size of ``camera``: when the network runs at another resolution, pass
``camera.resized(w, h)`` (and ``camera.rectified()`` if the frames were undistorted first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.camera import CameraModel, Mounting
from calibration.ground import ground_to_pixel, pixel_to_ground
from perception.errors import InputError

__all__ = ["LaneFitConfig", "mask_to_polylines", "draw_lane_mask"]


@dataclass(frozen=True)
class LaneFitConfig:
    """Tuning of :func:`mask_to_polylines`; the defaults suit road markings up to ~50 m."""

    threshold: float = 0.5  # mask > threshold is a lane pixel (bool, {0,255} or probabilities)
    vertical_support: bool = True  # drop pixels without a lane pixel in the row above/below
    min_range_m: float = 0.0  # ignore ground points nearer than this (x, vehicle frame)
    max_range_m: float = 50.0  # ... and farther than this
    max_lateral_m: float = 20.0  # ... and with |y| above this
    max_marking_width_m: float = 1.0  # wider runs are not lane lines (stop lines, blobs)
    merge_gap_m: float = 0.35  # runs closer than this in one row are one (double) line
    gate_m: float = 0.5  # association gate around a lane's predicted offset
    gate_growth: float = 0.06  # extra gate per metre since the lane's last point (curves, dashes)
    max_gap_m: float = 16.0  # a lane unseen for this long ends (dash gaps are ~9-12 m)
    track_length_m: float = 8.0  # length scale of the tracking line fit
    min_rows: int = 6  # fewer supporting image rows: noise
    min_length_m: float = 2.0  # shorter x-extent: noise
    degree: int = 3  # highest polynomial degree of y(x)
    step_m: float = 1.0  # polyline sample spacing along x
    huber_m: float = 0.05  # Huber scale of the robust fit
    max_spread_m: float = 0.12  # robust lateral scatter (1.48 MAD) above this: clutter, not a line


_DEFAULT = LaneFitConfig()


_MAX_ROW_GAP = 3  # image rows an unconfirmed track may skip


class _Track:
    """One lane being followed: its points and an exponentially-weighted linear fit y(x).

    Plain floats, not numpy: this runs once per image row and lane, where numpy's per-call
    overhead dominates.
    """

    __slots__ = ("xs", "ys", "last_x", "last_row", "confirmed", "w", "sx", "sy", "sxx", "sxy")

    def __init__(self, x: float, y: float, row: int) -> None:
        self.xs, self.ys = [x], [y]
        self.last_x, self.last_row = x, row
        self.confirmed = False  # long enough to be a marking; only then may it bridge gaps
        self.w, self.sx, self.sy, self.sxx, self.sxy = 1.0, x, y, x * x, x * y

    def add(self, x: float, y: float, row: int, cfg: LaneFitConfig, weight: float = 1.0) -> None:
        decay = math.exp(-abs(x - self.last_x) / cfg.track_length_m)
        self.w = self.w * decay + weight
        self.sx = self.sx * decay + weight * x
        self.sy = self.sy * decay + weight * y
        self.sxx = self.sxx * decay + weight * x * x
        self.sxy = self.sxy * decay + weight * x * y
        self.xs.append(x)
        self.ys.append(y)
        self.last_x, self.last_row = x, row
        if not self.confirmed and len(self.xs) >= 3 and x - self.xs[0] >= cfg.min_length_m:
            self.confirmed = True

    def predict(self, x: float) -> float:
        mx, my = self.sx / self.w, self.sy / self.w
        var = self.sxx / self.w - mx * mx
        if var < 0.25:  # under ~2 m of support: no reliable heading yet
            return my
        slope = min(1.0, max(-1.0, (self.sxy / self.w - mx * my) / var))
        return my + slope * (x - mx)


def _with_vertical_support(mask: np.ndarray) -> np.ndarray:
    """Drop pixels with no lane pixel among their 3 neighbours in the row above or below.

    Lines drawn or predicted as 8-connected curves keep every pixel except their end rows;
    isolated speckle (the usual false positives of a segmentation head) disappears.
    """
    wide = mask.copy()
    wide[:, 1:] |= mask[:, :-1]
    wide[:, :-1] |= mask[:, 1:]
    support = np.zeros_like(mask)
    support[1:] |= wide[:-1]
    support[:-1] |= wide[1:]
    return mask & support


def _row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True per row: (row, first column, last column), rows descending (near first)."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    r0, c0 = np.nonzero(d == 1)  # run starts (column of first pixel)
    r1, c1 = np.nonzero(d == -1)  # run ends (column after the last pixel)
    order = np.lexsort((c0, -r0))
    order1 = np.lexsort((c1, -r1))
    return r0[order], c0[order], c1[order1] - 1


def _robust_polyfit(
    x: np.ndarray, y: np.ndarray, degree: int, scale_m: float
) -> tuple[np.polynomial.Polynomial, np.ndarray]:
    """Polynomial y(x) by iteratively reweighted least squares (Huber, then Tukey biweight).

    Returns the fit and the final weights (0 for rejected points).
    """
    fit = np.polynomial.Polynomial.fit(x, y, degree)
    w = np.ones_like(x)
    for it in range(6):
        r = np.abs(y - fit(x))
        if it < 3:  # Huber: converges from a poor start
            w = np.where(r <= scale_m, 1.0, scale_m / np.maximum(r, 1e-12))
        else:  # Tukey: clutter beyond 4 scales gets no weight at all
            c = max(2.0 * scale_m, 4.685 * 1.4826 * float(np.median(r)))
            w = np.where(r < c, (1 - (r / c) ** 2) ** 2, 0.0)
        if np.count_nonzero(w) <= degree:
            break
        fit = np.polynomial.Polynomial.fit(x, y, degree, w=np.sqrt(w))
    return fit, w


def mask_to_polylines(
    mask: np.ndarray,
    camera: CameraModel,
    mounting: Mounting,
    *,
    config: LaneFitConfig = _DEFAULT,
    ground_z_m: float = 0.0,
) -> list[np.ndarray]:
    """Turn a lane-line mask into vehicle-frame polylines on the ground.

    Args:
        mask: [H, W] lane mask of the image described by ``camera`` (bool, uint8 or float).
        camera: model of the mask's pixels (``camera.resized(...)`` for a network resolution).
        mounting: camera pose in the vehicle frame.
        config: thresholds and fit settings (:class:`LaneFitConfig`).
        ground_z_m: height of the road plane in the vehicle frame.

    Returns:
        One [N, 3] float64 array per lane line (x increasing, ``z = ground_z_m``), sorted by
        lateral offset ``y`` ascending (rightmost first) at their nearest common distance.

    Raises:
        InputError: the mask is not 2-D or does not match the camera size.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.shape != (camera.height, camera.width):
        raise InputError(
            f"mask_to_polylines: mask shape {mask.shape} does not match the camera "
            f"({camera.height}, {camera.width}); pass camera.resized(width, height)"
        )
    cfg = config
    lane = mask > cfg.threshold
    if cfg.vertical_support:
        lane = _with_vertical_support(lane)
    rows, first, last = _row_runs(lane)
    if rows.size == 0:
        return []
    # Outer edges of every run in continuous pixel coordinates, projected to the ground.
    edges = np.concatenate(
        [np.stack([first - 0.5, rows], 1), np.stack([last + 0.5, rows], 1)]
    ).astype(np.float64)
    ground = pixel_to_ground(camera, mounting, edges, ground_z_m=ground_z_m)[:, :2]
    n = rows.size
    left, right = ground[:n], ground[n:]
    centre = 0.5 * (left + right)
    width = np.linalg.norm(left - right, axis=1)
    ok = (
        np.isfinite(width)
        & (centre[:, 0] >= cfg.min_range_m)
        & (centre[:, 0] <= cfg.max_range_m)
        & (np.abs(centre[:, 1]) <= cfg.max_lateral_m)
    )
    tracks = _track(rows[ok], centre[ok], width[ok], left[ok], right[ok], cfg)
    lanes = [lane for t in tracks if (lane := _fit_lane(np.asarray(t.xs), np.asarray(t.ys), cfg))]
    lanes = _merge_fragments(lanes, cfg)
    if not lanes:
        return []
    # Sort by the offset at the nearest distance all share (the end value if one stops short).
    x_ref = max(lane.xs[0] for lane in lanes)
    lanes.sort(key=lambda lane: float(lane.fit(min(max(x_ref, lane.xs[0]), lane.xs[-1]))))
    out = []
    for lane in lanes:
        samples = np.append(np.arange(lane.xs[0], lane.xs[-1], cfg.step_m), lane.xs[-1])
        out.append(np.column_stack([samples, lane.fit(samples), np.full(samples.size, ground_z_m)]))
    return out


@dataclass
class _Lane:
    xs: np.ndarray  # [N] inlier x, sorted
    ys: np.ndarray  # [N]
    fit: np.polynomial.Polynomial


def _fit_lane(xs: np.ndarray, ys: np.ndarray, cfg: LaneFitConfig) -> _Lane | None:
    """Robust curve fit of one track; None when it is too short or too scattered to be a line."""
    if len(xs) < cfg.min_rows or xs.max() - xs.min() < cfg.min_length_m:
        return None
    extent = xs.max() - xs.min()
    degree = min(cfg.degree, 1 if extent < 8 else 2 if extent < 20 else 3, len(xs) - 1)
    fit, w = _robust_polyfit(xs, ys, degree, cfg.huber_m)
    inliers = w > 0.5
    spread = 1.4826 * float(np.median(np.abs(ys - fit(xs))))
    if inliers.sum() < cfg.min_rows or spread > cfg.max_spread_m:
        return None  # a chain of clutter, not a line
    order = np.argsort(xs[inliers])
    return _Lane(xs[inliers][order], ys[inliers][order], fit)


def _continues(a: _Lane, b: _Lane, cfg: LaneFitConfig) -> bool:
    """Does ``b`` (starting farther) continue ``a``? Each must predict the other's near points
    by linear extrapolation from its own end."""
    gap = b.xs[0] - a.xs[-1]
    if gap < -cfg.min_length_m or gap > 2 * cfg.max_gap_m:
        return False
    tol = cfg.gate_m / 2 + cfg.gate_growth * max(gap, 0.0)
    slope_a, slope_b = a.fit.deriv()(a.xs[-1]), b.fit.deriv()(b.xs[0])
    near_b = b.xs <= b.xs[0] + 5.0
    near_a = a.xs >= a.xs[-1] - 5.0
    pred_b = a.fit(a.xs[-1]) + slope_a * (b.xs[near_b] - a.xs[-1])
    pred_a = b.fit(b.xs[0]) + slope_b * (a.xs[near_a] - b.xs[0])
    return bool(
        np.median(np.abs(pred_b - b.ys[near_b])) < tol
        and np.median(np.abs(pred_a - a.ys[near_a])) < tol
    )


def _merge_fragments(lanes: list[_Lane], cfg: LaneFitConfig) -> list[_Lane]:
    """Join pieces of one lane line that tracking split (occlusion, a long dash gap)."""
    lanes = sorted(lanes, key=lambda lane: lane.xs[0])
    merged = True
    while merged:
        merged = False
        for i, a in enumerate(lanes):
            for j in range(i + 1, len(lanes)):
                b = lanes[j]
                if not _continues(a, b, cfg):
                    continue
                joined = _fit_lane(np.concatenate([a.xs, b.xs]), np.concatenate([a.ys, b.ys]), cfg)
                if joined is None:
                    continue
                lanes[i] = joined
                del lanes[j]
                merged = True
                break
            if merged:
                break
    return lanes


def _track(
    rows: np.ndarray,
    centre: np.ndarray,
    width: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    cfg: LaneFitConfig,
) -> list[_Track]:
    """Follow lanes through the rows (near to far); see the module docstring."""
    active: list[_Track] = []
    done: list[_Track] = []
    lo = np.minimum(left[:, 1], right[:, 1]).tolist()
    hi = np.maximum(left[:, 1], right[:, 1]).tolist()
    xc, yc, wd = centre[:, 0].tolist(), centre[:, 1].tolist(), width.tolist()
    bounds = [0, *(np.flatnonzero(np.diff(rows)) + 1).tolist(), len(xc)]
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        # Merge runs of one row that form a double line (gap below merge_gap_m), in y order.
        groups: list[list[float]] = []  # [x_sum, count, y_lo, y_hi, width]
        for i in sorted(range(start, stop), key=yc.__getitem__):
            if groups and lo[i] - groups[-1][3] < cfg.merge_gap_m:
                g = groups[-1]
                g[0] += xc[i]
                g[1] += 1
                g[3] = max(g[3], hi[i])
                g[4] = g[3] - g[2]
            else:
                groups.append([xc[i], 1, lo[i], hi[i], wd[i]])
        runs = [
            (g[0] / g[1], 0.5 * (g[2] + g[3])) for g in groups if g[4] <= cfg.max_marking_width_m
        ]
        if not runs:
            continue
        x_row, row = runs[0][0], int(rows[start])
        still = []
        for t in active:
            # Unconfirmed pieces (blobs, speckle, a dash's first rows) must continue in the next
            # image rows; only confirmed lanes bridge gaps (dashes), up to max_gap_m.
            alive = (
                x_row - t.last_x <= cfg.max_gap_m
                if t.confirmed
                else t.last_row - row <= _MAX_ROW_GAP
            )
            (still if alive else done).append(t)
        active = still
        # Greedy assignment: smallest |residual| first, each run and lane used once.
        pairs = []
        for ti, t in enumerate(active):
            gate = cfg.gate_m + cfg.gate_growth * max(0.0, x_row - t.last_x)
            for ri, (x, y) in enumerate(runs):
                r = abs(y - t.predict(x))
                if r <= gate:
                    pairs.append((r, ti, ri))
        used_t, used_r, near = set(), set(), set()
        for r, ti, ri in sorted(pairs):
            near.add(ri)
            if ti in used_t or ri in used_r:
                continue
            used_t.add(ti)
            used_r.add(ri)
            # Far-off runs (clutter in a dash gap) barely move the prediction, so a chain of
            # clutter cannot drag a lane away; the final robust fit decides about them.
            weight = 1.0 / (1.0 + (3.0 * r / cfg.gate_m) ** 2)
            active[ti].add(*runs[ri], row, cfg, weight)
        # A run inside some lane's gate but not taken is clutter beside that lane, not a new lane.
        for ri, (x, y) in enumerate(runs):
            if ri not in near:
                active.append(_Track(x, y, row))
    return done + active


def draw_lane_mask(
    polylines: list[np.ndarray],
    camera: CameraModel,
    mounting: Mounting,
    *,
    width_m: float = 0.15,
    step_m: float = 0.25,
    dash: tuple[float, float] | None = None,
    value: int = 255,
) -> np.ndarray:
    """Render ground-plane lane lines ([N, 3] or [N, 2] vehicle-frame polylines) as a uint8 mask.

    Each line is a ``width_m`` wide stripe on the ground, drawn in perspective (with the lens
    distortion of ``camera``). ``dash=(on_m, off_m)`` draws it dashed along x. Used for overlays,
    synthetic ground truth and tests of :func:`mask_to_polylines`.
    """
    import cv2

    mask = np.zeros((camera.height, camera.width), np.uint8)
    shift = 4  # sub-pixel vertices (1/16 px)
    for line in polylines:
        line = np.asarray(line, dtype=np.float64)
        # Resample densely so that straight image segments follow curves and lens distortion.
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(line[:, :2], axis=0), axis=1))])
        ss = np.arange(0.0, s[-1] + 1e-9, step_m)
        pts = np.column_stack([np.interp(ss, s, line[:, 0]), np.interp(ss, s, line[:, 1])])
        if len(pts) < 2:
            continue
        tangent = np.gradient(pts, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.column_stack([-tangent[:, 1], tangent[:, 0]]) * (width_m / 2)
        z = np.zeros((len(pts), 1))
        lpix = ground_to_pixel(camera, mounting, np.hstack([pts + normal, z]))
        rpix = ground_to_pixel(camera, mounting, np.hstack([pts - normal, z]))
        for i in range(len(pts) - 1):
            if dash is not None and (ss[i] % (dash[0] + dash[1])) >= dash[0]:
                continue
            quad = np.array([lpix[i], lpix[i + 1], rpix[i + 1], rpix[i]])
            if not np.all(np.isfinite(quad)) or np.abs(quad).max() > 1e5:
                continue
            cv2.fillConvexPoly(
                mask, np.round(quad * (1 << shift)).astype(np.int32), value, cv2.LINE_8, shift
            )
    return mask


def ego_lane_centre(polylines: list[np.ndarray] | None, step_m: float = 1.0) -> np.ndarray | None:
    """Centre line [N, 3] of the ego lane: midway between the nearest lane line on the right
    (y < 0 at its near end) and on the left, over the distance both cover; None without both.
    This is what the node publishes on ``~/lanes/path`` and replay writes to its bags."""
    if not polylines:
        return None
    rights = [p for p in polylines if len(p) and p[0, 1] < 0]
    lefts = [p for p in polylines if len(p) and p[0, 1] >= 0]
    if not rights or not lefts:
        return None
    right = max(rights, key=lambda p: p[0, 1])
    left = min(lefts, key=lambda p: p[0, 1])
    x0, x1 = max(right[0, 0], left[0, 0]), min(right[-1, 0], left[-1, 0])
    if x1 <= x0:
        return None
    xs = np.append(np.arange(x0, x1, step_m), x1)
    mid = [0.5 * (np.interp(xs, right[:, 0], right[:, k]) + np.interp(xs, left[:, 0], left[:, k]))
           for k in (1, 2)]
    return np.column_stack([xs, *mid])


def path_headings(points: np.ndarray) -> np.ndarray:
    """Yaw (rad) along a [N, 2+] path from the point gradient; zeros for fewer than 2 points."""
    if len(points) < 2:
        return np.zeros(len(points))
    return np.arctan2(np.gradient(points[:, 1]), np.gradient(points[:, 0]))
