"""Other road users: cars, SUVs, vans, trucks and buses as shaded boxes and prisms.

Each vehicle keeps a lane offset and moves along the road at a constant speed, so a sequence
shows the same traffic from frame to frame. All vehicles of a lane share the lane's speed, which
rules out collisions inside a lane; the ego lane's traffic is never slower than the ego.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from perception.data.synthetic.look import srgb_to_linear
from perception.data.synthetic.primitive import Cls, Material, Prim, PrimTable, box, boxes, prism
from perception.data.synthetic.road import Road

__all__ = ["Vehicle", "Fleet", "sample_traffic", "vehicle_prims"]

_PAINT = np.array([[235, 235, 235], [200, 200, 205], [150, 152, 156], [90, 92, 96], [25, 25, 28],
                   [140, 20, 20], [20, 40, 110], [30, 60, 40], [190, 175, 140], [210, 170, 20],
                   [60, 30, 25], [15, 30, 60]], float)
_PAINT_P = np.array([18, 14, 12, 12, 16, 6, 6, 3, 4, 2, 3, 4], float)
_KINDS = ("car", "suv", "van", "truck", "bus")
_KIND_P = np.array([0.55, 0.24, 0.1, 0.07, 0.04])
_GLASS = srgb_to_linear((28, 32, 38))
_TIRE = srgb_to_linear((22, 22, 22))


@dataclass(frozen=True)
class Vehicle:
    kind: str
    d_m: float  # nominal lateral offset (multiplied by the road's width modulation)
    s0_m: float  # arc length at t = 0
    speed_mps: float  # along +s (negative: oncoming)
    facing: int  # +1 nose towards +s, -1 towards -s
    length_m: float
    width_m: float
    height_m: float
    color: tuple[float, float, float]
    lane: int  # -1: parked beside the lanes

    def s_at(self, t: float) -> float:
        return self.s0_m + self.speed_mps * t


def _dims(rng: np.random.Generator, kind: str) -> tuple[float, float, float]:
    if kind == "car":
        return rng.uniform(3.9, 4.9), rng.uniform(1.7, 1.9), rng.uniform(1.38, 1.55)
    if kind == "suv":
        return rng.uniform(4.3, 5.0), rng.uniform(1.82, 2.0), rng.uniform(1.62, 1.85)
    if kind == "van":
        return rng.uniform(4.8, 5.6), rng.uniform(1.9, 2.05), rng.uniform(1.9, 2.4)
    if kind == "truck":
        return rng.uniform(7.0, 11.0), rng.uniform(2.4, 2.55), rng.uniform(3.0, 3.8)
    return rng.uniform(10.5, 12.5), 2.55, rng.uniform(3.0, 3.3)


def _cdf(weights: np.ndarray) -> list[float]:
    """What ``Generator.choice(n, p=weights / weights.sum())`` draws against: the cumulative
    probabilities, normalised by their last entry."""
    cdf = (weights / weights.sum()).cumsum()
    return (cdf / cdf[-1]).tolist()


_KIND_CDF = {True: _cdf(_KIND_P), False: _cdf(_KIND_P * np.array([1, 1, 1, 0, 0]))}
_PAINT_CDF = _cdf(_PAINT_P)


def _choice(rng: np.random.Generator, cdf: list[float]) -> int:
    """``rng.choice(len(cdf), p=...)`` (one uniform, searched in ``cdf``): the same draw without
    choice()'s per-call checks."""
    return bisect.bisect_right(cdf, rng.random())


def _new(rng: np.random.Generator, d: float, s0: float, speed: float, facing: int, lane: int,
         allow_big: bool = True) -> Vehicle:
    kind = _KINDS[_choice(rng, _KIND_CDF[bool(allow_big)])]
    L, W, H = _dims(rng, kind)
    paint = _PAINT[_choice(rng, _PAINT_CDF)] + rng.normal(0, 6, 3)
    if kind in ("truck", "bus") and rng.random() < 0.6:
        paint = _PAINT[0] + rng.normal(0, 8, 3)
    color = tuple(float(c) for c in srgb_to_linear(np.clip(paint, 0, 255)))
    return Vehicle(kind, d, s0, speed, facing, L, W, H, color, lane)


def sample_traffic(rng: np.random.Generator, road: Road, ego_s0: float, ego_speed: float,
                   duration_s: float, view_m: float, density: float, urban: bool) -> list[Vehicle]:
    """Vehicles in every lane plus parked cars, covering what the ego sees over ``duration_s``."""
    out: list[Vehicle] = []
    mean_gap = (22.0 if urban else 40.0) / max(density, 1e-3)
    s_lo, s_hi = road.s_range
    for lane, direction in enumerate(road.directions):
        if density <= 0 or rng.random() < 0.15:
            continue  # an empty lane now and then
        if lane == road.ego_lane:
            speed = ego_speed + rng.uniform(0.2, 2.0)
        elif direction > 0:
            speed = max(0.0, ego_speed + rng.uniform(-4.0, 4.0))
        else:
            speed = -rng.uniform(6.0, 18.0) if ego_speed > 0 else -rng.uniform(0.0, 12.0)
        rel = (ego_speed - speed) * duration_s
        lo = ego_s0 - 40.0 + min(0.0, rel)
        hi = ego_s0 + view_m + max(0.0, rel)
        pos = lo + rng.uniform(0, mean_gap)
        centre = road.lane_center_m(lane)
        while pos < hi:
            v = _new(rng, centre + rng.normal(0, 0.15), pos, speed, 1 if direction > 0 else -1, lane)
            keep = s_lo + 10 < pos < s_hi - 10
            if lane == road.ego_lane and pos - 0.5 * v.length_m < ego_s0 + 8.0:
                keep = False  # nothing in the ego lane next to or just ahead of the ego
            if keep:
                out.append(v)
            pos += v.length_m + rng.uniform(3.0, 9.0) + rng.exponential(mean_gap)
    # Parked cars along shoulders wide enough to be parking lanes.
    for side in (0, 1):
        shoulder = road.section.shoulder_m[side]
        if shoulder < 2.0 or rng.random() < 0.2:
            continue
        inner = road.boundaries_m[0] if side == 0 else road.boundaries_m[-1]
        d = inner - 0.5 * shoulder - 0.1 if side == 0 else inner + 0.5 * shoulder + 0.1
        facing = 1 if side == 0 or road.directions[-1] > 0 else -1
        pos = ego_s0 - 40.0 + rng.uniform(0, 10)
        hi = ego_s0 + view_m + ego_speed * duration_s
        fill = rng.uniform(0.4, 0.95) * min(density, 1.5) / 1.5 * 1.5
        while pos < hi:
            v = _new(rng, d + rng.normal(0, 0.1), pos, 0.0, facing, -1, allow_big=False)
            if rng.random() < fill and s_lo + 10 < pos < s_hi - 10:
                out.append(v)
                pos += v.length_m + rng.uniform(0.8, 3.0)
            else:
                pos += rng.uniform(4.0, 15.0)
    return out


@dataclass
class Fleet:
    """All vehicles of a world, with their parts pre-built in vehicle-local coordinates so each
    frame only applies one rigid transform per vehicle (vectorised)."""

    vehicles: list[Vehicle]
    parts: PrimTable  # local frame (origin on the ground under the vehicle centre, x = nose)
    owner: np.ndarray  # [M] vehicle index of each part
    s0: np.ndarray  # [V]
    speed: np.ndarray  # [V]
    d: np.ndarray  # [V] nominal lateral offsets
    facing: np.ndarray  # [V]

    @classmethod
    def build(cls, vehicles: list[Vehicle]) -> Fleet:
        parts, owner = [], []
        for i, v in enumerate(vehicles):
            p = _vehicle_parts(v)
            parts += p
            owner += [i] * len(p)
        return cls(vehicles, _parts_table(parts), np.array(owner, np.int64),
                   np.array([v.s0_m for v in vehicles], float), np.array([v.speed_mps for v in vehicles], float),
                   np.array([v.d_m for v in vehicles], float), np.array([v.facing for v in vehicles], float))

    def poses(self, road: Road, t: float) -> tuple[np.ndarray, np.ndarray]:
        """World ``[V, 3]`` poses ``(x, y, yaw)`` and arc lengths ``[V]`` at time ``t``."""
        s = self.s0 + self.speed * t
        d = road.scale(s) * self.d
        X, Y, heading = road.to_world(s, d)
        yaw = heading + np.where(self.facing > 0, 0.0, np.pi)
        return np.stack([X, Y, yaw], axis=1), s

    def at(self, road: Road, t: float, s_lo: float, s_hi: float) -> PrimTable:
        """World-frame parts of the vehicles with ``s_lo < s < s_hi`` at time ``t``."""
        if not self.vehicles:
            return PrimTable.empty()
        pose, s = self.poses(road, t)
        near = (s > s_lo) & (s < s_hi)
        sel = np.flatnonzero(near[self.owner])
        if not sel.size:
            return PrimTable.empty()
        parts = self.parts.take(sel)
        own = self.owner[sel]
        c, sn = np.cos(pose[own, 2]), np.sin(pose[own, 2])
        R = np.zeros((sel.size, 3, 3))
        R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -sn, sn, c, 1.0
        o = np.zeros((sel.size, 3))
        o[:, :2] = pose[own, :2]
        n_w = np.einsum("mij,mkj->mki", R, parts.planes[..., :3])
        h_w = parts.planes[..., 3] + np.einsum("mki,mi->mk", n_w, o)
        parts.planes = np.concatenate([n_w, h_w[..., None]], axis=-1)
        parts.verts = np.einsum("mij,mkj->mki", R, parts.verts) + o[:, None, :]
        T = np.zeros((sel.size, 4, 4))
        T[:, :3, :3] = R
        T[:, :3, 3] = o
        T[:, 3, 3] = 1.0
        parts.frame = T @ parts.frame
        parts.s = s[own]
        return parts


def vehicle_prims(v: Vehicle) -> list[Prim]:
    """Body, cabin and wheels of a vehicle in its local frame (x = nose, y left, z up)."""
    T = np.eye(4)
    return [box(T, *part[1:], s=0.0) if part[0] == "box" else prism(T, *part[1:], s=0.0)
            for part in _vehicle_parts(v)]


def _vehicle_parts(v: Vehicle) -> list[tuple]:
    """:func:`vehicle_prims` as arguments: ``("box", lo, hi, cls, material, colour, params)`` or
    ``("prism", profile, half width, cls, material, colour, params)``."""
    L, W, H = v.length_m, v.width_m, v.height_m
    hl, hw = 0.5 * L, 0.5 * W
    color = np.array(v.color)
    glass, tire = _GLASS, _TIRE
    prims: list[tuple] = []
    clearance = 0.22 if v.kind in ("car", "suv", "van") else 0.45
    wheel_r = 0.33 if v.kind in ("car", "suv") else (0.38 if v.kind == "van" else 0.5)
    if v.kind in ("truck", "bus"):
        if v.kind == "bus":
            prims.append(("box", (-hl, -hw, clearance), (hl, hw, H), Cls.VEHICLE, Material.BODY, color,
                          (L, W, H, 1.0)))
            prims.append(("box", (-hl + 0.3, -hw - 0.01, 1.3), (hl - 0.3, hw + 0.01, H - 0.35), Cls.VEHICLE,
                          Material.GLASS, glass, (0, 0, 0, 0)))
        else:
            cab = 2.2
            prims.append(("box", (hl - cab, -hw, clearance + 0.2), (hl, hw, 2.9), Cls.VEHICLE, Material.BODY,
                          color * 0.9 + 0.05, (L, W, 2.9, 2.0)))
            prims.append(("box", (-hl, -hw, clearance + 0.3), (hl - cab - 0.2, hw, H), Cls.VEHICLE,
                          Material.BODY, color, (L, W, H, 3.0)))
    else:
        body_top = clearance + (0.52 if v.kind != "van" else 0.75) * (H - clearance)
        prims.append(("box", (-hl, -hw, clearance), (hl, hw, body_top), Cls.VEHICLE, Material.BODY, color,
                      (L, W, body_top, 0.0)))
        inset = 0.1
        if v.kind == "car":
            rear, front = -hl + 0.12 * L, hl - 0.28 * L
            profile = [(rear, body_top), (front + 0.55, body_top), (front - 0.35, H), (rear + 0.45, H)]
        elif v.kind == "suv":
            rear, front = -hl + 0.05 * L, hl - 0.3 * L
            profile = [(rear, body_top), (front + 0.5, body_top), (front - 0.25, H), (rear + 0.1, H)]
        else:
            rear, front = -hl + 0.02 * L, hl - 0.12 * L
            profile = [(rear, body_top), (front + 0.3, body_top), (front - 0.1, H), (rear + 0.02, H)]
        prims.append(("prism", np.array(profile), hw - inset, Cls.VEHICLE, Material.GLASS, glass,
                      (0, 0, 0, 0)))
        # Roof: a thin body-coloured slab on top of the glass house.
        roof_front, roof_rear = profile[2][0], profile[3][0]
        prims.append(("box", (roof_rear + 0.05, -hw + inset + 0.05, H - 0.06), (roof_front - 0.05, hw - inset - 0.05, H + 0.01),
                      Cls.VEHICLE, Material.PLAIN, color, (0, 0, 0, 0)))
    axle = hl - (0.8 if v.kind in ("car", "suv", "van") else 1.3)
    for x in (axle, -axle):
        for side in (-1.0, 1.0):
            y0 = side * (hw - 0.02)
            prims.append(("box", (x - wheel_r, min(y0, y0 - side * 0.22), 0.0),
                          (x + wheel_r, max(y0, y0 - side * 0.22), 2 * wheel_r), Cls.VEHICLE,
                          Material.TIRE, tire, (0, 0, 0, 0)))
    return prims


def _parts_table(parts: list[tuple]) -> PrimTable:
    """The primitives of :func:`_vehicle_parts` tuples in their order (the numbers
    :func:`vehicle_prims` gives), the boxes built together."""
    if not parts:
        return PrimTable.empty()
    is_box = np.array([p[0] == "box" for p in parts], bool)
    bx = [p for p in parts if p[0] == "box"]
    n = len(bx)

    def column(k: int, dtype=float, width: int = 3) -> np.ndarray:
        return np.array([p[k] for p in bx], dtype).reshape(n, width)

    box_table = boxes(np.broadcast_to(np.eye(4), (n, 4, 4)).copy(), column(1), column(2), column(3, np.uint8, 1)[:, 0],
                      column(4, np.int8, 1)[:, 0], column(5), np.zeros(n), column(6, width=4))
    T1 = np.eye(4)
    prisms = PrimTable.from_prims([prism(T1, *p[1:], s=0.0) for p in parts if p[0] == "prism"])
    order = np.empty(len(parts), np.int64)
    order[is_box] = np.arange(n)
    order[~is_box] = n + np.arange(len(parts) - n)
    return PrimTable.concat([box_table, prisms]).take(order)
