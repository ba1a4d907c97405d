"""A synthetic driving world: road, roadside scenery, traffic, the ego's calibrated camera, its
motion and the appearance (light, weather, camera defects). One seed gives one world; the same
seed always gives the same world.

Example:
    >>> world = generate_world(7, SynthConfig(), duration_s=2.0)
    >>> frame = render(world, t_s=0.5)                      # perception.data.synthetic.renderer
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from calibration.camera import CameraModel, Mounting
from perception.data.synthetic.config import SynthConfig
from perception.data.synthetic.look import Look, sample_look, srgb_to_linear
from perception.data.synthetic.primitive import Cls, PrimTable
from perception.data.synthetic.road import CrossSection, LineStyle, Marking, Road, build_centreline
from perception.data.synthetic.scenery import SceneKind, sample_scenery
from perception.data.synthetic.vehicle import Fleet, sample_traffic

__all__ = ["Ego", "World", "generate_world", "sample_camera"]


@dataclass(frozen=True)
class Ego:
    """The ego vehicle's motion along its lane: ``s(t) = s0 + speed * t`` with a slow weave."""

    s0_m: float
    d_m: float  # nominal lateral offset of the vehicle origin
    speed_mps: float
    weave_m: float
    weave_period_s: float
    weave_phase: float
    yaw_offset_rad: float

    def pose(self, road: Road, t: float) -> tuple[np.ndarray, float, float]:
        """World ``[x, y, yaw]`` of the vehicle frame at time ``t``, its ``s`` and its ``d``."""
        s = self.s0_m + self.speed_mps * t
        w = 2 * np.pi / self.weave_period_s
        d_nom = self.d_m + self.weave_m * np.sin(w * t + self.weave_phase)
        d = float(road.scale(np.array([s]))[0] * d_nom)
        X, Y, heading = road.to_world(np.array([s]), np.array([d]))
        # Heading follows the weave: dd/ds = weave * w * cos(.) / speed.
        dd_ds = self.weave_m * w * np.cos(w * t + self.weave_phase) / max(self.speed_mps, 1.0)
        yaw = float(heading[0]) + float(np.arctan(dd_ds)) + self.yaw_offset_rad
        return np.array([X[0], Y[0], yaw]), s, d


@dataclass
class World:
    seed: int
    config: SynthConfig
    kind: SceneKind
    road: Road
    camera: CameraModel
    mounting: Mounting
    ego: Ego
    statics: PrimTable  # sorted by s
    lamps: np.ndarray  # [L, 3]
    fleet: Fleet
    look: Look
    duration_s: float

    @cached_property
    def statics_extent_m(self) -> np.ndarray:
        """[N] the largest axis-aligned extent of each static primitive (the renderer's level of
        detail; computed once per world)."""
        return np.ptp(self.statics.verts, axis=1).max(axis=1)

    def vehicle_to_world(self, t: float) -> np.ndarray:
        """[4, 4] vehicle frame -> world at time ``t``."""
        pose, _, _ = self.ego.pose(self.road, t)
        c, s = np.cos(pose[2]), np.sin(pose[2])
        T = np.eye(4)
        T[:2, :2] = [[c, -s], [s, c]]
        T[:2, 3] = pose[:2]
        return T


def sample_camera(rng: np.random.Generator, height: int, width: int,
                  distortion_prob: float) -> tuple[CameraModel, Mounting]:
    """A dashcam-like camera: ~75-95 deg horizontal FOV, 1.2-1.7 m high, slightly pitched down."""
    fx = rng.uniform(0.46, 0.62) * width
    fy = fx * rng.uniform(0.99, 1.01)
    cx = (width - 1) / 2 + rng.uniform(-0.02, 0.02) * width
    cy = (height - 1) / 2 + rng.uniform(-0.04, 0.04) * height
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    camera = CameraModel(width, height, K)
    if rng.random() < distortion_prob:
        D = np.array([rng.uniform(-0.22, -0.02), rng.uniform(0.0, 0.06), rng.normal(0, 5e-4),
                      rng.normal(0, 5e-4), 0.0])
        # Keep the radial curve monotonic well past the image corners, otherwise corner pixels
        # have no unique ray: d/dr [r (1 + k1 r^2 + k2 r^4)] = 1 + 3 k1 r^2 + 5 k2 r^4 > 0.5.
        r2 = (max(cx, width - 1 - cx) / fx) ** 2 + (max(cy, height - 1 - cy) / fy) ** 2
        r2 *= 1.5
        while 1 + 3 * D[0] * r2 + 5 * D[1] * r2 * r2 < 0.5:
            D[:2] *= 0.8
        camera = CameraModel(width, height, K, D, "plumb_bob")
    mounting = Mounting(
        x_m=rng.uniform(1.2, 2.2),
        y_m=rng.uniform(-0.3, 0.3),
        z_m=rng.uniform(1.2, 1.7),
        roll_rad=np.deg2rad(rng.uniform(-1.5, 1.5)),
        pitch_rad=np.deg2rad(rng.uniform(-1.0, 6.0)),
        yaw_rad=np.deg2rad(rng.uniform(-2.0, 2.0)),
    )
    return camera, mounting


_WHITE = tuple(srgb_to_linear((225, 225, 220)))
_YELLOW = tuple(srgb_to_linear((225, 175, 45)))


def _marking(rng: np.random.Generator, style: LineStyle, yellow: bool, kind: SceneKind) -> Marking:
    us = rng.random() < 0.5
    color = _YELLOW if yellow else _WHITE
    color = tuple(float(c) * rng.uniform(0.75, 1.05) for c in color)
    return Marking(
        style=style,
        color_rgb=color,
        width_m=rng.uniform(0.1, 0.2) if kind is not SceneKind.HIGHWAY else rng.uniform(0.15, 0.25),
        dash_m=rng.uniform(2.5, 3.5) if us else rng.uniform(3.0, 6.0),
        gap_m=rng.uniform(7.0, 10.0) if us else rng.uniform(3.0, 9.0),
        phase_m=rng.uniform(0, 12.0),
        spacing_m=rng.uniform(0.1, 0.2),
        wear=float(rng.uniform(0.0, 0.7) if rng.random() < 0.6 else 0.0),
    )


def _sample_road(rng: np.random.Generator, kind: SceneKind, s_lo: float, s_hi: float,
                 curviness: float) -> Road:
    if kind is SceneKind.HIGHWAY:
        n = int(rng.choice([2, 3, 4], p=[0.35, 0.4, 0.25]))
        directions = [1] * n
    else:
        n = int(rng.choice([1, 2, 3, 4], p=[0.15, 0.45, 0.15, 0.25]))
        if n == 1:
            directions = [1]
        elif n == 2:
            directions = [1, -1] if rng.random() < 0.8 else [1, 1]
        elif n == 3:
            directions = [1, 1, -1] if rng.random() < 0.6 else [1, 1, 1]
        else:
            directions = [1, 1, -1, -1] if rng.random() < 0.75 else [1, 1, 1, 1]
    base_w = rng.uniform(3.3, 3.8) if kind is SceneKind.HIGHWAY else rng.uniform(2.8, 3.7)
    widths = base_w + rng.uniform(-0.15, 0.15, n)
    bounds = np.concatenate([[0.0], np.cumsum(widths)])
    ego_candidates = [i for i, d in enumerate(directions) if d > 0]
    ego_lane = int(rng.choice(ego_candidates))
    # Centre the carriageway roughly on the centreline.
    bounds -= bounds[-1] / 2 + rng.uniform(-0.5, 0.5)
    markings = []
    for k in range(n + 1):
        outer = k in (0, n)
        if outer:
            style = LineStyle.SOLID if rng.random() < (0.9 if kind is SceneKind.HIGHWAY else 0.55) else LineStyle.NONE
            yellow = k == n and kind is SceneKind.HIGHWAY and rng.random() < 0.5
        elif directions[k - 1] != directions[k]:  # between opposite directions
            style = LineStyle(rng.choice([LineStyle.DOUBLE.value, LineStyle.DASHED.value, LineStyle.SOLID.value,
                                          LineStyle.SOLID_DASHED.value], p=[0.45, 0.3, 0.15, 0.1]))
            yellow = rng.random() < 0.6
        else:
            style = LineStyle.DASHED if rng.random() < 0.85 else LineStyle.SOLID
            yellow = False
        markings.append(_marking(rng, style, yellow, kind))
    if kind is SceneKind.URBAN:
        shoulder = tuple(rng.choice([0.3, 2.2, 2.5], p=[0.35, 0.35, 0.3]) for _ in range(2))
        section = CrossSection(shoulder, rng.uniform(0.1, 0.18), tuple(rng.uniform(2.0, 5.0, 2)),
                               (Cls.SIDEWALK, Cls.SIDEWALK))
    elif kind is SceneKind.SUBURBAN:
        curb = rng.random() < 0.6
        shoulder = tuple(rng.choice([0.3, 1.0, 2.3], p=[0.4, 0.3, 0.3]) for _ in range(2))
        walk = tuple(rng.uniform(1.2, 2.2, 2) if rng.random() < 0.7 else (0.0, 0.0))
        section = CrossSection(shoulder, rng.uniform(0.08, 0.15) if curb else 0.0, walk,
                               (Cls.TERRAIN, Cls.TERRAIN))
    elif kind is SceneKind.RURAL:
        section = CrossSection(tuple(rng.uniform(0.2, 1.0, 2)), 0.0, (0.0, 0.0), (Cls.TERRAIN, Cls.TERRAIN))
    else:
        section = CrossSection((rng.uniform(1.5, 3.0), rng.uniform(0.5, 1.2)), 0.0, (0.0, 0.0),
                               (Cls.TERRAIN, Cls.TERRAIN))
    x, y, slope, s = build_centreline(rng, s_lo, s_hi, curviness)
    return Road(
        x_grid=x, y_grid=y, slope_grid=slope, s_grid=s,
        boundaries_m=bounds, markings=tuple(markings), directions=tuple(directions), ego_lane=ego_lane,
        section=section,
        width_mod_amp=float(rng.uniform(0.0, 0.05)),
        width_mod_period_m=float(rng.uniform(150.0, 600.0)),
        width_mod_phase=float(rng.uniform(0, 2 * np.pi)),
    )


def generate_world(seed: int | np.random.SeedSequence, config: SynthConfig | None = None, *,
                   duration_s: float = 0.0, speed_mps: float | None = None) -> World:
    """Build the world for ``seed``; it covers what the ego sees while driving ``duration_s``.

    Args:
        seed: an int or a ``SeedSequence`` (the dataset writer spawns one per world).
        config: size and randomisation; default :class:`SynthConfig`.
        duration_s: length of the drive the world must cover (0 for a single frame).
        speed_mps: ego speed; default drawn from the scene type (urban 5-14 m/s, highway 20-32).
    """
    config = config or SynthConfig()
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    rng = np.random.default_rng(ss)
    rand = config.randomization
    kind = SceneKind(rng.choice([k.value for k in SceneKind], p=[0.35, 0.3, 0.15, 0.2]))
    if speed_mps is None:
        lo, hi = {SceneKind.URBAN: (4.0, 14.0), SceneKind.SUBURBAN: (8.0, 16.0),
                  SceneKind.RURAL: (12.0, 25.0), SceneKind.HIGHWAY: (20.0, 32.0)}[kind]
        speed_mps = float(rng.uniform(lo, hi))
    travel = max(speed_mps, 0.0) * duration_s
    s_lo = -80.0
    s_hi = travel + config.view_range_m + 120.0
    road = _sample_road(rng, kind, s_lo, s_hi, rand.curviness)
    camera, mounting = sample_camera(rng, config.height, config.width, rand.distortion_prob)
    lane_w = road.lane_width_m(road.ego_lane)
    ego = Ego(
        s0_m=0.0,
        d_m=road.lane_center_m(road.ego_lane) + rng.uniform(-0.15, 0.15) * lane_w / 3.5,
        speed_mps=float(speed_mps),
        weave_m=float(rng.uniform(0.0, 0.25)),
        weave_period_s=float(rng.uniform(6.0, 15.0)),
        weave_phase=float(rng.uniform(0, 2 * np.pi)),
        yaw_offset_rad=float(np.deg2rad(rng.normal(0, 0.5))),
    )
    scenery = sample_scenery(rng, road, kind, s_lo + 5.0, s_hi - 5.0)
    statics = scenery.table.sorted_by_s()
    vehicles = sample_traffic(rng, road, ego.s0_m, ego.speed_mps, duration_s, config.view_range_m,
                              rand.traffic_density, kind in (SceneKind.URBAN, SceneKind.SUBURBAN))
    look = sample_look(rng, rand)
    world_seed = int(ss.generate_state(1)[0])
    return World(world_seed, config, kind, road, camera, mounting, ego, statics, scenery.lamps,
                 Fleet.build(vehicles), look, float(duration_s))
