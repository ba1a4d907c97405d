"""Static roadside objects: buildings, walls, trees, poles, street lights, signs, traffic lights.

Objects are placed along the road in road coordinates ``(s, d)`` and stored in world coordinates;
their sides follow the road heading at their position.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from perception.data.synthetic.primitive import (
    Cls,
    Material,
    Prim,
    PrimTable,
    box,
    boxes,
    ellipsoids,
    frame,
    frames,
    prism,
)
from perception.data.synthetic.road import Road

__all__ = ["SceneKind", "Scenery", "sample_scenery"]


class SceneKind(Enum):
    URBAN = "urban"
    SUBURBAN = "suburban"
    RURAL = "rural"
    HIGHWAY = "highway"


@dataclass
class Scenery:
    table: PrimTable  # in creation order (not sorted by s)
    lamps: np.ndarray  # [L, 3] world positions of street-light heads (night lighting)


_FACADES = np.array([[150, 80, 60], [170, 100, 80], [120, 60, 50], [200, 190, 170], [225, 220, 210],
                     [160, 160, 160], [110, 110, 115], [190, 170, 130], [90, 100, 110], [210, 200, 180],
                     [140, 125, 105], [80, 75, 70]], float)
_ROOFS = np.array([[70, 50, 45], [60, 60, 65], [110, 60, 45], [90, 85, 80]], float)
_FOLIAGE = np.array([[60, 85, 35], [45, 70, 30], [80, 100, 45], [95, 105, 50], [55, 75, 45],
                     [120, 110, 45], [140, 90, 40]], float)
_FOLIAGE_P = np.array([20, 20, 15, 10, 15, 4, 2], float)


_FOLIAGE_CDF = (_FOLIAGE_P / _FOLIAGE_P.sum()).cumsum()
_FOLIAGE_CDF = (_FOLIAGE_CDF / _FOLIAGE_CDF[-1]).tolist()


def _lin(rgb, rng: np.random.Generator, jitter: float = 6.0) -> np.ndarray:
    """A jittered sRGB colour in linear RGB: ``srgb_to_linear(clip(rgb + N(0, jitter), 0, 255))``
    in Python floats (called thousands of times per world; the same operations)."""
    return np.array(_lin_list(np.asarray(rgb, float).tolist(), rng, jitter))


def _lin_list(rgb: list[float], rng: np.random.Generator, jitter: float) -> list[float]:
    """:func:`_lin` as a list of Python floats."""
    noise = rng.normal(0, jitter, 3).tolist()
    out = []
    for v, e in zip(rgb, noise, strict=True):
        c = min(max(v + e, 0.0), 255.0) / 255.0
        out.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    return out


def _foliage_index(u: float) -> int:
    """``rng.choice(len(_FOLIAGE), p=_FOLIAGE_P / _FOLIAGE_P.sum())`` from its uniform draw ``u``
    (``rng.random()``): the same index (``u`` against the normalised cumulative weights), without
    choice()'s per-call checks."""
    return bisect.bisect_right(_FOLIAGE_CDF, u)


def _interp1(x: float, xp: list[float], fp: list[float]) -> float:
    """``np.interp`` at one point, bit for bit (the same bracket and formula, in Python floats)."""
    if x != x:
        return x
    n = len(xp)
    if x < xp[0]:
        return fp[0]
    if x >= xp[-1]:
        return fp[-1]
    j = bisect.bisect_right(xp, x) - 1  # xp[j] <= x < xp[j + 1]
    if xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    r = slope * (x - xp[j]) + fp[j]
    if r != r:
        r = slope * (x - xp[j + 1]) + fp[j + 1]
        if r != r and fp[j] == fp[j + 1]:
            r = fp[j]
    return r if j < n - 1 else fp[-1]


class _Placer:
    """Road-aligned frames at ``(s, d)``: ``Road.scale`` and ``Road.to_world`` for one point, in
    Python floats (thousands of calls per world; the same operations as the array versions)."""

    def __init__(self, road: Road) -> None:
        self.road = road
        self._s = road.s_grid.tolist()
        self._x = road.x_grid.tolist()
        self._y = road.y_grid.tolist()
        self._slope = road.slope_grid.tolist()

    def frame(self, s: float, d: float, z: float = 0.0, yaw_extra: float = 0.0) -> np.ndarray:
        X, Y, yaw = self.pose(s, d, yaw_extra)
        return frame(np.array([X, Y, z]), yaw)

    def pose(self, s: float, d: float, yaw_extra: float = 0.0) -> tuple[float, float, float]:
        """World ``(X, Y, yaw)`` of the road-aligned frame at ``(s, d)``."""
        road = self.road
        s = float(s)
        if road.width_mod_amp == 0.0:
            m = 1.0
        else:
            m = 1.0 + road.width_mod_amp * np.sin(2 * np.pi * s / road.width_mod_period_m + road.width_mod_phase)
        dm = d * m
        X = _interp1(s, self._s, self._x)
        f = _interp1(X, self._x, self._y)
        slope = _interp1(X, self._x, self._slope)
        Y = f + dm * math.sqrt(1.0 + slope * slope)
        return X, Y, float(np.arctan(slope)) + yaw_extra


def _uniform(lo: float, hi: float, u: float) -> float:
    """``rng.uniform(lo, hi)`` from the ``rng.random()`` draw ``u`` (numpy computes it so)."""
    return lo + (hi - lo) * u


_BARK = [75.0, 68.0, 60.0]
_FOLIAGE_ROWS = _FOLIAGE.tolist()


class _Trees:
    """Trees: a trunk and a crown of 2-4 overlapping ellipsoids (irregular, not a lollipop).

    :meth:`add` draws one tree's random numbers (the draws and the order of the former one-tree
    builder, so worlds stay the same); :meth:`table` then builds all trees' primitives at once,
    with ``primitive.boxes`` / ``primitive.ellipsoids`` (the numbers ``box`` / ``ellipsoid``
    give), instead of ~15 small NumPy calls per primitive.
    """

    def __init__(self, place: _Placer) -> None:
        self.place = place
        self.trunks: list[tuple[float, ...]] = []  # X, Y, yaw, trunk radius, trunk top, s, bark RGB
        # Per crown blob: tree, first (1/0), angle, lift, reach, crown centre height, crown radius,
        # blob radius, 3 radius factors, yaw, RGB.
        self.blobs: list[tuple[float, ...]] = []
        self.rows: list[int] = []  # per primitive in creation order: ~tree (trunk) or blob index

    def add(self, rng: np.random.Generator, s: float, d: float, scale: float = 1.0, blobs: int = 0) -> int:
        """Draw one tree at ``(s, d)``; returns its number of primitives.

        Consecutive ``rng.uniform(lo, hi)`` draws are taken as one ``rng.random(k)``: the same
        numbers (``uniform`` is ``lo + (hi - lo) * next_double``, ``random`` is ``next_double``).
        """
        X, Y, yaw = self.place.pose(s, d)
        u = rng.random(2).tolist()
        height = _uniform(5.0, 11.0, u[0]) * scale
        trunk_h = height * _uniform(0.2, 0.35, u[1])
        trunk_r = 0.08 + 0.015 * height
        bark = _lin_list(_BARK, rng, 8)
        u = rng.random(2).tolist()
        foliage = _FOLIAGE_ROWS[_foliage_index(u[0])]
        crown_r = (height - trunk_h) * _uniform(0.32, 0.45, u[1])
        tree = len(self.trunks)
        self.trunks.append((X, Y, yaw, trunk_r, trunk_h + crown_r, s, *bark))
        self.rows.append(~tree)
        centre_z = trunk_h + crown_r
        n_blobs = blobs or int(rng.integers(2, 5))
        for i in range(n_blobs):
            if i == 0:
                first, ang, lift, reach, r = 1.0, 0.0, 0.0, 0.0, crown_r
                u = rng.random(3).tolist()
            else:
                first = 0.0
                u = rng.random(7).tolist()
                ang = _uniform(0, 2 * np.pi, u[0])
                lift = _uniform(-0.6, 0.5, u[1])
                reach = _uniform(0.5, 0.8, u[2])
                r = crown_r * _uniform(0.55, 0.85, u[3])
                u = u[4:]
            f0, f1, f2 = _uniform(0.9, 1.25, u[0]), _uniform(0.9, 1.25, u[1]), _uniform(0.7, 1.05, u[2])
            color = _lin_list(foliage, rng, 10)
            self.rows.append(len(self.blobs))
            self.blobs.append((tree, first, ang, lift, reach, centre_z, crown_r, r, f0, f1, f2,
                               _uniform(0, np.pi, rng.random()), *color))
        return 1 + n_blobs

    def table(self) -> PrimTable:
        """All trees' primitives, in creation order."""
        if not self.rows:
            return PrimTable.empty()
        tr = np.array(self.trunks)  # [T, 9]
        bl = np.array(self.blobs)  # [B, 15]
        nt = len(tr)
        # Trunks: boxes |x|, |y| <= r, 0 <= z <= top in the road-aligned frame at the tree.
        zero = np.zeros(nt)
        r, top = tr[:, 3], tr[:, 4]
        trunks = boxes(frames(np.stack([tr[:, 0], tr[:, 1], zero], 1), tr[:, 2]), np.stack([-r, -r, zero], 1),
                       np.stack([r, r, top], 1), Cls.VEGETATION, Material.PLAIN, tr[:, 6:9], tr[:, 5])
        # Crown blobs: ellipsoids around the crown centre (the first one on it).
        tree = bl[:, 0].astype(np.int64)
        ang, lift, reach, centre_z, crown_r = bl[:, 2], bl[:, 3], bl[:, 4], bl[:, 5], bl[:, 6]
        off = np.stack([np.cos(ang), np.sin(ang), lift], 1) * crown_r[:, None] * reach[:, None]
        off[bl[:, 1] > 0] = 0.0
        centre = np.stack([tr[tree, 0] + off[:, 0], tr[tree, 1] + off[:, 1], 0.0 + (centre_z + off[:, 2])], 1)
        crowns = ellipsoids(centre, bl[:, 7:8] * bl[:, 8:11], Cls.VEGETATION, Material.FOLIAGE, bl[:, 12:15],
                            bl[:, 11], tr[tree, 5])
        rows = np.array(self.rows)
        return PrimTable.concat([trunks, crowns]).take(np.where(rows < 0, ~rows, rows + nt))


def _building(rng, place: _Placer, s: float, side: int, d_front: float, length: float, kind: SceneKind,
              ) -> list[Prim]:
    depth = rng.uniform(8.0, 18.0)
    if kind is SceneKind.URBAN:
        height = rng.uniform(6.0, 24.0)
    else:
        height = rng.uniform(3.5, 7.0)
    # Local frame at the facade centre; y points away from the road on the left, towards it on the
    # right, so we build the box from d_front outwards using the side sign.
    T = place.frame(s, d_front)
    y_lo, y_hi = (0.0, depth) if side > 0 else (-depth, 0.0)
    rgb = _FACADES[rng.integers(len(_FACADES))]
    floor = rng.uniform(2.8, 3.6)
    pitch = rng.uniform(1.8, 3.5)
    frac = rng.uniform(0.35, 0.7)
    params = (floor, pitch, frac, 1.0 if rng.random() < 0.85 else 0.0)
    prims = [box(T, (-0.5 * length, y_lo, 0.0), (0.5 * length, y_hi, height), Cls.BUILDING, Material.FACADE,
                 _lin(rgb, rng, 10), params, s)]
    if kind is not SceneKind.URBAN and rng.random() < 0.7:
        # Pitched roof: a triangular prism along the facade.
        ridge = rng.uniform(1.5, 3.0)
        Tr = T @ frame(np.array([0.0, 0.5 * (y_lo + y_hi), height]), np.pi / 2)
        half = 0.5 * depth + 0.3
        profile = np.array([(-half, 0.0), (half, 0.0), (0.0, ridge)])
        prims.append(prism(Tr, profile, 0.5 * length + 0.2, Cls.BUILDING, Material.PLAIN,
                           _lin(_ROOFS[rng.integers(len(_ROOFS))], rng, 6), s=s))
    return prims


def _street_light(rng, place: _Placer, s: float, d: float, side: int, height: float,
                  arm: float) -> tuple[list[Prim], np.ndarray]:
    T = place.frame(s, d)
    metal = _lin((120, 122, 125), rng, 12)
    r = 0.09
    prims = [box(T, (-r, -r, 0.0), (r, r, height), Cls.POLE, Material.PLAIN, metal, s=s)]
    toward = -side  # towards the road centre
    y0, y1 = sorted((0.0, toward * arm))
    prims.append(box(T, (-0.05, y0, height - 0.12), (0.05, y1, height), Cls.POLE, Material.PLAIN, metal, s=s))
    head_y = toward * arm
    prims.append(box(T, (-0.3, head_y - 0.15, height - 0.2), (0.3, head_y + 0.15, height - 0.02), Cls.POLE,
                     Material.LAMP, _lin((200, 200, 190), rng, 5), s=s))
    lamp = (T @ np.array([0.0, head_y, height - 0.25, 1.0]))[:3]
    return prims, lamp


def _sign(rng, place: _Placer, s: float, d: float) -> list[Prim]:
    T = place.frame(s, d, yaw_extra=rng.normal(0, 0.08))
    metal = _lin((130, 130, 130), rng, 10)
    height = rng.uniform(2.0, 2.8)
    size = rng.uniform(0.6, 0.9)
    shape = int(rng.integers(0, 5))  # 0 red circle, 1 blue square, 2 white rect, 3 yellow diamond, 4 red/white triangle
    faces = [(230, 230, 230), (30, 70, 160), (235, 235, 235), (230, 190, 30), (235, 235, 235)]
    prims = [box(T, (-0.04, -0.04, 0.0), (0.04, 0.04, height), Cls.POLE, Material.PLAIN, metal, s=s)]
    w = size * (1.4 if shape == 2 else 1.0)
    # The plate faces -x (towards traffic coming along +s).
    prims.append(box(T, (-0.1, -0.5 * w, height), (-0.06, 0.5 * w, height + size), Cls.TRAFFIC_SIGN,
                     Material.SIGN, _lin(faces[shape], rng, 8), (float(shape), w, size, height), s))
    return prims


def _traffic_light(rng, place: _Placer, s: float, d_pole: float, side: int, reach: float) -> list[Prim]:
    T = place.frame(s, d_pole)
    metal = _lin((70, 75, 70), rng, 10)
    height = rng.uniform(5.5, 6.5)
    prims = [box(T, (-0.12, -0.12, 0.0), (0.12, 0.12, height), Cls.POLE, Material.PLAIN, metal, s=s)]
    toward = -side
    y0, y1 = sorted((0.0, toward * reach))
    prims.append(box(T, (-0.07, y0, height - 0.15), (0.07, y1, height), Cls.POLE, Material.PLAIN, metal, s=s))
    state = float(rng.integers(0, 3))  # 0 red, 1 amber, 2 green
    for frac in (0.55, 0.95):
        y = toward * reach * frac
        prims.append(box(T, (-0.35, y - 0.17, height - 1.05), (-0.05, y + 0.17, height - 0.05), Cls.TRAFFIC_SIGN,
                         Material.SIGNAL, _lin((25, 25, 25), rng, 4), (state, y, 0.0, height - 1.05), s))
    return prims


def sample_scenery(rng: np.random.Generator, road: Road, kind: SceneKind, s_lo: float, s_hi: float) -> Scenery:
    """All static objects for ``s_lo <= s <= s_hi``."""
    place = _Placer(road)
    trees = _Trees(place)
    prims: list[Prim | None] = []  # None: the next primitive of ``trees``
    lamps: list[np.ndarray] = []
    sec = road.section
    edges = road.edges_m
    urban = kind is SceneKind.URBAN
    for side_i, side in ((0, -1), (1, 1)):
        edge = edges[side_i]
        sidewalk_out = edge + side * sec.sidewalk_m[side_i]
        # Buildings.
        if kind in (SceneKind.URBAN, SceneKind.SUBURBAN) or (kind is SceneKind.RURAL and rng.random() < 0.3):
            setback = {SceneKind.URBAN: (0.0, 1.5), SceneKind.SUBURBAN: (5.0, 16.0)}.get(kind, (12.0, 40.0))
            gap = {SceneKind.URBAN: (0.0, 5.0), SceneKind.SUBURBAN: (6.0, 25.0)}.get(kind, (30.0, 150.0))
            pos = s_lo + rng.uniform(0, 10)
            while pos < s_hi:
                length = rng.uniform(8.0, 30.0) if urban else rng.uniform(8.0, 16.0)
                if rng.random() < (0.9 if urban else 0.75):
                    d_front = sidewalk_out + side * rng.uniform(*setback)
                    prims += _building(rng, place, pos + 0.5 * length, side, d_front, length, kind)
                pos += length + rng.uniform(*gap)
        # Trees.
        tree_gap = {SceneKind.URBAN: (12.0, 40.0), SceneKind.SUBURBAN: (5.0, 18.0),
                    SceneKind.RURAL: (3.0, 12.0), SceneKind.HIGHWAY: (6.0, 25.0)}[kind]
        if rng.random() < (0.5 if urban else 0.9):
            pos = s_lo + rng.uniform(0, 10)
            while pos < s_hi:
                if urban:
                    d = edge + side * min(1.0, 0.5 * sec.sidewalk_m[side_i])
                else:
                    d = sidewalk_out + side * rng.uniform(1.5, 9.0)
                prims += [None] * trees.add(rng, pos, d)
                pos += rng.uniform(*tree_gap)
        # A far tree line / far buildings closing the horizon.
        # A far tree line (or far buildings in town) closes the horizon, as in real streets.
        pos = s_lo + rng.uniform(0, 20)
        far_lo = 20.0 if kind is SceneKind.URBAN else 25.0
        while pos < s_hi + 150:
            d = edge + side * rng.uniform(far_lo, far_lo + 45.0)
            if kind is SceneKind.URBAN and rng.random() < 0.6:
                length = rng.uniform(15.0, 40.0)
                prims += _building(rng, place, pos, side, d, length, kind)
                pos += length + rng.uniform(0.0, 10.0)
            else:
                prims += [None] * trees.add(rng, pos, d, scale=rng.uniform(1.4, 2.4), blobs=2)
                pos += rng.uniform(8.0, 20.0)
        # Poles: street lights (urban/suburban/highway) or wooden utility poles.
        if kind is not SceneKind.RURAL or rng.random() < 0.3:
            spacing = rng.uniform(22.0, 45.0)
            use_lights = kind is not SceneKind.RURAL and rng.random() < 0.8
            if use_lights and (side_i == 0 or rng.random() < 0.6):
                height = rng.uniform(6.5, 9.5)
                arm = rng.uniform(1.0, 2.5)
                pos = s_lo + rng.uniform(0, spacing)
                while pos < s_hi:
                    ps, lamp = _street_light(rng, place, pos, edge + side * 0.5, side, height, arm)
                    prims += ps
                    lamps.append(lamp)
                    pos += spacing
            elif not use_lights:
                pos = s_lo + rng.uniform(0, spacing)
                wood = _lin((95, 80, 60), rng, 10)
                height = rng.uniform(8.0, 10.5)
                while pos < s_hi:
                    T = place.frame(pos, sidewalk_out + side * rng.uniform(0.3, 1.5))
                    prims.append(box(T, (-0.13, -0.13, 0.0), (0.13, 0.13, height), Cls.POLE, Material.PLAIN,
                                     wood, s=pos))
                    prims.append(box(T, (-0.06, -1.0, height - 0.8), (0.06, 1.0, height - 0.65), Cls.POLE,
                                     Material.PLAIN, wood, s=pos))
                    pos += spacing
        # Signs (on the right-hand side mostly).
        if side_i == 0 or rng.random() < 0.4:
            pos = s_lo + rng.uniform(0, 40)
            while pos < s_hi:
                prims += _sign(rng, place, pos, edge + side * rng.uniform(0.4, 1.2))
                pos += rng.uniform(35.0, 140.0)
        # Hedges / low walls in front of suburban houses, a median wall on highways.
        if kind is SceneKind.SUBURBAN and rng.random() < 0.6:
            pos = s_lo
            color = _lin(_FOLIAGE[rng.integers(5)], rng, 8)  # hedges stay green
            while pos < s_hi:
                length = rng.uniform(4.0, 14.0)
                T = place.frame(pos + 0.5 * length, sidewalk_out + side * 0.8)
                prims.append(box(T, (-0.5 * length, -0.4, 0.0), (0.5 * length, 0.4, rng.uniform(0.8, 1.6)),
                                 Cls.VEGETATION, Material.FOLIAGE, color, s=pos))
                pos += length + rng.uniform(3.0, 20.0)
    if kind is SceneKind.HIGHWAY:
        pos = s_lo
        concrete = _lin((170, 168, 160), rng, 8)
        d = edges[1] + 0.3
        while pos < s_hi:
            T = place.frame(pos + 5.0, d)
            prims.append(box(T, (-5.05, -0.25, 0.0), (5.05, 0.25, 0.85), Cls.BUILDING, Material.PLAIN, concrete,
                             s=pos))
            pos += 10.0
    if kind is SceneKind.URBAN and rng.random() < 0.5:
        pos = s_lo + rng.uniform(20, 120)
        while pos < s_hi:
            reach = rng.uniform(3.0, max(3.5, 0.5 * (edges[1] - edges[0]) + 1.0))
            prims += _traffic_light(rng, place, pos, edges[0] - 0.6, -1, reach)
            pos += rng.uniform(120.0, 300.0)
    # Trees and the other primitives, back in creation order.
    is_tree = np.array([p is None for p in prims], bool)
    others = PrimTable.from_prims([p for p in prims if p is not None])
    order = np.empty(len(prims), np.int64)
    order[~is_tree] = np.arange(len(others))
    order[is_tree] = len(others) + np.arange(int(is_tree.sum()))
    table = PrimTable.concat([others, trees.table()]).take(order)
    return Scenery(table, np.array(lamps).reshape(-1, 3))
