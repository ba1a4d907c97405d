"""Render one frame of a synthetic world with exact per-pixel ground truth.

Visibility is ray casting from the camera's (undistorted) pixel rays, so lens distortion is exact:

* the ground (road, curbs, raised sidewalks, verges) by ray/plane intersection per pixel;
* boxes, prisms and tree crowns by exact ray/convex-polyhedron and ray/ellipsoid intersection
  inside each primitive's screen rectangle, with a z-buffer.

Depth is the z-depth along the optical axis in metres (what KITTI and the model use), 0 where
nothing was hit (sky) or on the ego bonnet. Shading is deferred: :mod:`.shading` colours the
visible surfaces, :mod:`.camera_effects` adds the camera's defects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from calibration.camera import CameraModel, Mounting
from perception.data.classes import IGNORE_INDEX
from perception.data.synthetic import camera_effects, kernels, shading
from perception.data.synthetic.blas import single_threaded_blas
from perception.data.synthetic.intersect import ray_ellipsoid, screen_rect
from perception.data.synthetic.primitive import Cls, Kind, PrimTable
from perception.data.synthetic.world import World
from perception.errors import ConfigError

__all__ = ["Frame", "render", "SURFACE_ROAD", "SURFACE_CURB", "SURFACE_OFFROAD"]

SURFACE_ROAD, SURFACE_CURB, SURFACE_OFFROAD = 0, 1, 2
_Z_NEAR = 0.05


@dataclass
class Frame:
    """One rendered frame: the image, its ground truth and where it came from.

    Masks use 255 for "ignore" (the ego bonnet). ``lane_instances`` numbers the painted lines
    1..n from left to right; ``lane_polylines[i]`` is line ``i + 1`` in the vehicle frame.
    """

    image: np.ndarray  # [H, W, 3] uint8 RGB
    segmentation: np.ndarray  # [H, W] uint8 class ids
    depth: np.ndarray  # [H, W] float32 metres, 0 = invalid (sky, bonnet, beyond max_depth_m)
    drivable: np.ndarray  # [H, W] uint8 0 background, 1 direct, 2 alternative
    lane_instances: np.ndarray  # [H, W] uint8 0 background, 1..n
    corridor: np.ndarray  # [H, W] uint8 0/1
    lane_polylines: list[np.ndarray]  # [N_i, 3] vehicle frame, metres
    camera: CameraModel
    mounting: Mounting
    stamp_ns: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def lanes(self) -> np.ndarray:
        """[H, W] uint8 lane-line mask: 1 on lines, 0 elsewhere, 255 ignore."""
        out = (self.lane_instances > 0).astype(np.uint8)
        out[self.lane_instances == IGNORE_INDEX] = IGNORE_INDEX
        return out

    def to_sample(self) -> dict[str, Any]:
        """The common sample format of :mod:`perception.data.sample`."""
        return {
            "image": self.image,
            "segmentation": self.segmentation,
            "depth": self.depth,
            "drivable": self.drivable,
            "lanes": self.lanes,
            "lane_instances": self.lane_instances,
            "corridor": self.corridor,
            "meta": dict(self.meta, lane_polylines=[p.tolist() for p in self.lane_polylines]),
        }


# ---------------------------------------------------------------------------------------- camera
@lru_cache(maxsize=8)
def camera_rays(camera: CameraModel) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Undistorted z = 1 rays of every pixel ([H * W, 3], row-major) and their x/y extent."""
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    pix = np.stack([u.ravel(), v.ravel()], axis=1).astype(np.float64)
    rays = _pixel_rays(camera, pix).astype(np.float32)
    if not np.all(np.isfinite(rays)):
        raise ConfigError(f"camera {camera!r} has pixels without a viewing ray (distortion folds over "
                          "inside the image); use a milder distortion")
    rays.setflags(write=False)
    pad = 0.02
    bounds = (rays[:, 0].min() - pad, rays[:, 0].max() + pad, rays[:, 1].min() - pad, rays[:, 1].max() + pad)
    return rays, bounds


def _pixel_rays(camera: CameraModel, pix: np.ndarray) -> np.ndarray:
    """``camera.pixel_rays(pix)``; for plumb_bob lenses with its Newton refinement compiled
    (:func:`.kernels.undistort_plumb_bob`, the same operations), the rest as it does."""
    from calibration import camera as cam_mod

    if not (camera.is_distorted and camera.distortion_model == "plumb_bob" and camera.D.size <= 8):
        return camera.pixel_rays(pix)
    uv = np.asarray(pix, np.float64)
    Kinv = np.linalg.inv(camera.K)
    xy_d = uv @ Kinv[:2, :2].T + Kinv[:2, 2]
    xy = np.ascontiguousarray(cam_mod._initial_undistort(xy_d, camera.D, camera.distortion_model))
    k = np.zeros(8)
    k[: camera.D.size] = camera.D
    kernels.undistort_plumb_bob(xy, np.ascontiguousarray(xy_d), k, cam_mod._NEWTON_STEPS, 1e-7)
    return np.hstack([xy, np.ones((xy.shape[0], 1))])


@lru_cache(maxsize=8)
def _ray_len(camera: CameraModel) -> np.ndarray:
    return np.linalg.norm(camera_rays(camera)[0], axis=1).astype(np.float32)


@dataclass
class Ground:
    """Ray hits on the ground surfaces, for the pixels ``index`` whose ray points down."""

    index: np.ndarray  # [G] flat pixel indices
    t: np.ndarray  # z-depth
    X: np.ndarray
    Y: np.ndarray
    Z: np.ndarray
    s: np.ndarray
    d: np.ndarray  # lateral offset, metres
    dn: np.ndarray  # nominal lateral offset d / m(s)
    surface: np.ndarray  # SURFACE_*
    cls: np.ndarray  # uint8 class id
    line_k: np.ndarray  # nearest painted boundary (index into Road.boundaries_m), -1 if none
    line_u: np.ndarray  # signed offset from that boundary, metres (+ left)


@dataclass
class Context:
    """Everything the shading and ground-truth passes need about one frame."""

    world: World
    t_s: float
    H: int
    W: int
    rays: np.ndarray  # [N, 3] float32 optical frame, z = 1
    ray_len: np.ndarray  # [N] float32 |ray| (depth -> distance)
    dirs_w: np.ndarray  # [N, 3] float32 world directions of the rays
    R_wc: np.ndarray
    origin_w: np.ndarray
    depth: np.ndarray  # [N] float64, inf = nothing hit
    prim: np.ndarray  # [N] int32; -1 ground, -2 nothing
    face: np.ndarray  # [N] int8
    ground: Ground
    table: PrimTable  # visible primitives (prim indexes into it)
    planes_c: np.ndarray  # [M, MAX_PLANES, 4] optical frame
    planes_c32: np.ndarray  # the same, float32
    vehicle_pose: np.ndarray  # [x, y, yaw]
    ego_s: float
    T_wv: np.ndarray
    rng: np.random.Generator
    pixel_scale: int = 1  # shading grid step in full-resolution pixels
    # Set when the first grid[0] * grid[1] pixels form the (pixel_scale-step) image grid and the
    # pixels after them are loose full-resolution pixels (H = 1 then): see _shade_subsampled.
    grid: tuple[int, int] | None = None


def _ground_pass(world: World, dirs_w: np.ndarray, o: np.ndarray) -> Ground:
    """Ray hits on the road plane, the raised ground beyond the curbs and the curb faces
    (:func:`.kernels.ground_hits`), with each hit's road coordinates, class and nearest painted
    lane boundary."""
    road = world.road
    sec = road.section
    gi = np.flatnonzero(dirs_w[:, 2] < -1e-9)
    er, el = road.edges_m
    painted = np.array([k for k, m in enumerate(road.markings) if m.painted], dtype=np.int64)
    fields = kernels.ground_hits(
        gi, dirs_w, np.ascontiguousarray(o, np.float64), road.x_grid, road.y_grid, road.slope_grid, road.s_grid,
        float(road.width_mod_amp), float(road.width_mod_period_m), float(road.width_mod_phase), er, el,
        float(sec.curb_height_m), float(sec.sidewalk_m[0]), float(sec.sidewalk_m[1]), int(sec.verge_class[0]),
        int(sec.verge_class[1]), painted, np.ascontiguousarray(road.boundaries_m[painted], np.float64),
        int(Cls.ROAD), int(Cls.SIDEWALK))
    return Ground(gi, *fields)


def _frame_prims(world: World, t_s: float, ego_s: float) -> PrimTable:
    lo, hi = ego_s - 40.0, ego_s + world.config.view_range_m
    st = world.statics
    a, b = np.searchsorted(st.s, [lo, hi])
    fleet = world.fleet.at(world.road, t_s, lo - 10.0, hi)

    def visible(s: np.ndarray, extent: np.ndarray) -> np.ndarray:
        # Level of detail: small parts (wheels, roofs, arms, signs) only where they cover pixels.
        return np.flatnonzero(np.abs(s - ego_s) < np.maximum(extent * world.camera.fx / 3.0, 25.0))

    return PrimTable.concat([st.take(a + visible(st.s[a:b], world.statics_extent_m[a:b])),
                             fleet.take(visible(fleet.s, np.ptp(fleet.verts, axis=1).max(axis=1)))])


def _screen_rects(ctx: Context, vc: np.ndarray, camera: CameraModel, bounds) -> np.ndarray:
    """[M, 4] int pixel rectangles (u0, u1, v0, v1), empty (u0 >= u1) when off screen."""
    H, W = ctx.H, ctx.W
    K = camera.K
    z = vc[..., 2]
    M = vc.shape[0]
    rects = np.zeros((M, 4), np.int64)
    all_front = (z >= _Z_NEAR).all(axis=1)
    some_front = (z >= _Z_NEAR).any(axis=1)
    idx = np.flatnonzero(all_front)
    if idx.size:
        x = vc[idx, :, 0] / z[idx]
        y = vc[idx, :, 1] / z[idx]
        x0, x1, y0, y1 = x.min(1), x.max(1), y.min(1), y.max(1)
        _tighten_ellipsoids(ctx, idx, x0, x1, y0, y1)
        if camera.is_distorted:
            bx0, bx1, by0, by1 = bounds
            x0, x1 = np.maximum(x0, bx0), np.minimum(x1, bx1)
            y0, y1 = np.maximum(y0, by0), np.minimum(y1, by1)
            ok = (x0 <= x1) & (y0 <= y1)
            k = np.linspace(0.0, 1.0, 6)
            xs = np.concatenate([x0[:, None] + (x1 - x0)[:, None] * k] * 2 + [np.repeat(x0[:, None], 6, 1),
                                                                             np.repeat(x1[:, None], 6, 1)], 1)
            ys = np.concatenate([np.repeat(y0[:, None], 6, 1), np.repeat(y1[:, None], 6, 1)]
                                + [y0[:, None] + (y1 - y0)[:, None] * k] * 2, 1)
            pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], 1)
            uv = camera.project(pts).reshape(idx.size, -1, 2)
            u0, u1 = uv[..., 0].min(1) - 2.0, uv[..., 0].max(1) + 2.0
            v0, v1 = uv[..., 1].min(1) - 2.0, uv[..., 1].max(1) + 2.0
            u0[~ok] = W
        else:
            u0, u1 = K[0, 0] * x0 + K[0, 2] - 1.0, K[0, 0] * x1 + K[0, 2] + 1.0
            v0, v1 = K[1, 1] * y0 + K[1, 2] - 1.0, K[1, 1] * y1 + K[1, 2] + 1.0
        rects[idx, 0] = np.clip(np.floor(u0), 0, W)
        rects[idx, 1] = np.clip(np.ceil(u1) + 1, 0, W)
        rects[idx, 2] = np.clip(np.floor(v0), 0, H)
        rects[idx, 3] = np.clip(np.ceil(v1) + 1, 0, H)
    project = camera.project if camera.is_distorted else None
    for i in np.flatnonzero(some_front & ~all_front):
        rect = screen_rect(vc[i], K, (W, H), bounds, project)
        if rect is not None:
            rects[i] = rect
    return rects


def _tighten_ellipsoids(ctx: Context, idx: np.ndarray, x0, x1, y0, y1) -> None:
    """Exact normalized-image extents of ellipsoids (in place), instead of their bounding box's.

    The plane ``x = k z`` through the camera touches the ellipsoid ``(p - c)^T A^-1 (p - c) = 1``
    when ``(c_x - k c_z)^2 = A_xx - 2 k A_xz + k^2 A_zz``: the two roots are the extreme ``x/z``.
    """
    table = ctx.table
    ell = np.flatnonzero(table.kind[idx] == Kind.ELLIPSOID)
    if not ell.size:
        return
    ids = idx[ell]
    F = table.frame[ids, :3, :3]
    R = ctx.R_wc.T @ F  # [E, 3, 3] local -> camera
    r2 = table.params[ids, :3] ** 2
    A = np.einsum("eij,ej,ekj->eik", R, r2, R)  # R diag(r^2) R^T
    c = (table.frame[ids, :3, 3] - ctx.origin_w) @ ctx.R_wc
    for lo, hi, k in ((x0, x1, 0), (y0, y1, 1)):
        a = c[:, 2] ** 2 - A[:, 2, 2]
        b = c[:, k] * c[:, 2] - A[:, k, 2]
        cc = c[:, k] ** 2 - A[:, k, k]
        disc = b * b - a * cc
        ok = (a > 1e-9) & (disc >= 0)
        root = np.sqrt(np.where(ok, disc, 0.0))
        k_lo = (b - root) / np.where(ok, a, 1.0)
        k_hi = (b + root) / np.where(ok, a, 1.0)
        sel = ell[ok]
        lo[sel] = np.maximum(lo[sel], k_lo[ok] - 1e-4)
        hi[sel] = np.minimum(hi[sel], k_hi[ok] + 1e-4)


_BIG_RECT_PX = 6000


def _object_pass(ctx: Context, camera: CameraModel, bounds) -> None:
    """Z-buffered visibility of all primitives: a loop for the few large ones, one batched
    (vectorised) intersection for the many small ones."""
    table = ctx.table
    if not len(table):
        return
    H, W = ctx.H, ctx.W
    vc = (table.verts - ctx.origin_w) @ ctx.R_wc  # [M, 8, 3] optical frame
    rects = _screen_rects(ctx, vc, camera, bounds)
    area = np.maximum(rects[:, 1] - rects[:, 0], 0) * np.maximum(rects[:, 3] - rects[:, 2], 0)
    zmin = np.maximum(vc[..., 2].min(axis=1), _Z_NEAR)
    big = np.flatnonzero(area > _BIG_RECT_PX)
    big = big[np.argsort(zmin[big], kind="stable")]
    small = np.flatnonzero((area > 0) & (area <= _BIG_RECT_PX))
    depth2 = ctx.depth.reshape(H, W)
    prim2 = ctx.prim.reshape(H, W)
    face2 = ctx.face.reshape(H, W)
    rays2 = ctx.rays.reshape(H, W, 3)
    for i in big:
        u0, u1, v0, v1 = (int(x) for x in rects[i])
        zsub = depth2[v0:v1, u0:u1]
        if zsub.max() <= zmin[i]:
            continue  # wholly hidden behind what is already there
        if table.kind[i] == Kind.CONVEX:
            kernels.convex_rect(rays2, ctx.planes_c32[i, : table.nplanes[i]], v0, v1, u0, u1, depth2, prim2, face2, i)
            continue
        sub = rays2[v0:v1, u0:u1].reshape(-1, 3)
        centre_c, M_c = _ellipsoid_cam(table, i, ctx.R_wc, ctx.origin_w)
        t, _ = ray_ellipsoid(sub, centre_c, M_c)
        t = t.reshape(zsub.shape)
        win = t < zsub
        if win.any():
            zsub[win] = t[win]
            prim2[v0:v1, u0:u1][win] = i
            face2[v0:v1, u0:u1][win] = 0
    if small.size:
        _batched(ctx, small, rects[small])


def _batched(ctx: Context, ids: np.ndarray, rects: np.ndarray) -> None:
    """Intersect many small primitives: every pixel of each one's rectangle, z-buffered in
    primitive order (:func:`.kernels.batched_hits`)."""
    table = ctx.table
    coef = np.zeros((len(table), 10))
    # Per ellipsoid, the ray quadratic a t^2 - 2 b t + c = 0 has coefficients that are
    # polynomials in the ray's (x, y) (z = 1): precompute them per primitive (what
    # _ellipsoid_cam gives, see kernels.ellipsoid_coefs).
    ell = ids[table.kind[ids] != Kind.CONVEX]
    if ell.size:
        kernels.ellipsoid_coefs(ell.astype(np.int64), table.frame, table.params, np.ascontiguousarray(ctx.R_wc),
                                np.ascontiguousarray(ctx.origin_w, np.float64), coef)
    kernels.batched_hits(ids.astype(np.int64), np.ascontiguousarray(rects, np.int64), table.kind, ctx.planes_c32,
                         coef, ctx.rays, ctx.W, ctx.depth, ctx.prim, ctx.face)


def _ellipsoid_cam(table: PrimTable, i: int, R_wc: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    F = table.frame[i]
    r = table.params[i, :3]
    M_w = F[:3, :3] @ np.diag(1.0 / r**2) @ F[:3, :3].T
    R_cw = R_wc.T
    return R_cw @ (F[:3, 3] - o), R_cw @ M_w @ R_cw.T


def _lane_truth(ctx: Context, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lane-instance labels ([N] uint8) and the instance id of each painted boundary."""
    world, g = ctx.world, ctx.ground
    road, cfg = world.road, world.config
    painted = [k for k, m in enumerate(road.markings) if m.painted]
    ids = np.zeros(len(road.markings), np.uint8)
    for rank, k in enumerate(sorted(painted, key=lambda k: -road.boundaries_m[k])):
        ids[k] = rank + 1  # 1 = leftmost line
    out = np.zeros(ctx.H * ctx.W, np.uint8)
    if not painted:
        return out, ids
    half = np.array([m.half_extent_m for m in road.markings])
    fx = world.camera.fx
    ok = visible & (g.line_k >= 0) & (g.t <= cfg.lane_range_m)
    k = np.where(ok, g.line_k, 0)
    label_half = np.maximum(half[k], 0.5 * cfg.lane_label_min_px * g.t / fx)
    on = ok & (np.abs(g.line_u) <= label_half)
    out[g.index[on]] = ids[k[on]]
    return out, ids


def _polylines(ctx: Context, ids: np.ndarray) -> list[np.ndarray]:
    """Painted boundaries as vehicle-frame polylines, ordered by instance id."""
    world = ctx.world
    road, cfg = world.road, world.config
    T_vw = np.linalg.inv(ctx.T_wv)
    T_cv = world.mounting.vehicle_to_camera()
    s = ctx.ego_s + np.arange(-5.0, cfg.lane_range_m * 1.3 + 5.0, 1.0)
    out: list[tuple[int, np.ndarray]] = []
    for k, idx in enumerate(ids):
        if idx == 0:
            continue
        pw = road.boundary_points(k, s)
        pv = pw @ T_vw[:3, :3].T + T_vw[:3, 3]
        zc = pv @ T_cv[2, :3] + T_cv[2, 3]
        keep = (zc > 0.5) & (zc <= cfg.lane_range_m)
        out.append((int(idx), pv[keep]))
    return [p for _, p in sorted(out, key=lambda x: x[0])]


def _first_obstacle_s(world: World, t_s: float, ego_s: float) -> float:
    """Arc length of the nearest vehicle rear ahead that reaches into the ego lane."""
    road, fleet = world.road, world.fleet
    if not fleet.vehicles:
        return np.inf
    lane = road.ego_lane
    lo, hi = road.boundaries_m[lane], road.boundaries_m[lane + 1]
    s = fleet.s0 + fleet.speed * t_s
    length = np.array([v.length_m for v in fleet.vehicles])
    half_w = 0.5 * np.array([v.width_m for v in fleet.vehicles])
    rear = s - 0.5 * length
    overlap = (fleet.d + half_w > lo + 0.1) & (fleet.d - half_w < hi - 0.1)
    ahead = overlap & (rear > ego_s)
    return float(rear[ahead].min()) if ahead.any() else np.inf


_GROUND_FIELDS = ("t", "X", "Y", "Z", "s", "d", "dn", "surface", "cls", "line_k", "line_u")


def _sub_ground(g: Ground, sel: np.ndarray, index: np.ndarray) -> Ground:
    """The ground hits ``sel`` (positions into ``g``), renumbered to pixels ``index``."""
    return Ground(index, *(getattr(g, f)[sel] for f in _GROUND_FIELDS))


def _subsample(ctx: Context, step: int) -> tuple[Context, np.ndarray]:
    """The context restricted to every ``step``-th pixel in both directions (pixel (i, j) of the
    grid is full-resolution pixel (step i, step j)), and those pixels' flat indices."""
    H2, W2 = -(-ctx.H // step), -(-ctx.W // step)
    rows = np.arange(H2) * step
    cols = np.arange(W2) * step
    keep = (rows[:, None] * ctx.W + cols[None, :]).ravel()
    gi, index = kernels.grid_select(ctx.ground.index, ctx.W, step, W2)
    ground = _sub_ground(ctx.ground, gi, index)

    def grid(a: np.ndarray) -> np.ndarray:  # the grid pixels of a per-pixel array (a strided copy)
        return np.ascontiguousarray(a.reshape(ctx.H, ctx.W, -1)[::step, ::step]).reshape((-1,) + a.shape[1:])

    sub = Context(ctx.world, ctx.t_s, H2, W2, grid(ctx.rays), grid(ctx.ray_len), grid(ctx.dirs_w), ctx.R_wc,
                  ctx.origin_w, grid(ctx.depth), grid(ctx.prim), grid(ctx.face), ground, ctx.table, ctx.planes_c,
                  ctx.planes_c32, ctx.vehicle_pose, ctx.ego_s, ctx.T_wv, ctx.rng, pixel_scale=step)
    return sub, keep


def _with_loose_pixels(sub: Context, ctx: Context, pix: np.ndarray) -> Context:
    """``sub`` (an image grid) followed by the full-resolution pixels ``pix`` (sorted) of ``ctx``,
    as one context (``grid`` set), so both are shaded in one pass."""
    n = sub.H * sub.W
    hit, pos = kernels.sorted_intersect(ctx.ground.index, pix)
    loose = _sub_ground(ctx.ground, hit, n + pos)
    ground = Ground(*(np.concatenate([getattr(sub.ground, f), getattr(loose, f)]) for f in ("index",) + _GROUND_FIELDS))

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(sub, name), getattr(ctx, name)[pix]])

    return Context(ctx.world, ctx.t_s, 1, n + pix.size, cat("rays"), cat("ray_len"), cat("dirs_w"), ctx.R_wc,
                   ctx.origin_w, cat("depth"), cat("prim"), cat("face"), ground, ctx.table, ctx.planes_c,
                   ctx.planes_c32, ctx.vehicle_pose, ctx.ego_s, ctx.T_wv, ctx.rng, pixel_scale=sub.pixel_scale,
                   grid=(sub.H, sub.W))


def _surface_key(ctx: Context) -> np.ndarray:
    """[N] int: what surface a pixel shows (primitive id, ground class, or sky), for edge-aware
    upsampling: shading is never blended across two different surfaces."""
    key = ctx.prim.astype(np.int64)  # >= 0 primitives, -2 sky
    g = ctx.ground
    on = ctx.prim[g.index] == -1
    key[g.index[on]] = -10 - g.cls[on].astype(np.int64) - 100 * g.surface[on].astype(np.int64)
    return key


def _shade_subsampled(ctx: Context, step: int) -> np.ndarray:
    """Shade every second pixel and upsample edge-aware: a full-resolution pixel blends the
    neighbouring shaded samples that show the same surface (bilinear weights), so silhouettes stay
    exactly where the labels put them. Geometry and labels are unaffected (full resolution).

    Pixels no neighbouring sample shares a surface with (slivers thinner than the grid) and road
    paint (which would break up into dots at half resolution) are shaded exactly instead, in the
    same shading pass as the grid (shading is per pixel but for the image-space sky and wet-road
    mirror, which only the grid gets)."""
    assert step == 2, step  # SynthConfig allows 1 or 2
    sub, keep = _subsample(ctx, step)
    H, W, H2, W2 = ctx.H, ctx.W, sub.H, sub.W
    shadow_small = shading.ground_shadows(sub)
    key = _surface_key(ctx)
    ks = np.pad(key[keep].reshape(H2, W2), ((0, 1), (0, 1)), mode="edge")
    key2 = key.reshape(H, W)
    exact = kernels.lonely2(ks, key2, H, W).ravel()
    g = ctx.ground
    fp = g.t / ctx.world.camera.fx
    half = np.array([m.half_extent_m for m in ctx.world.road.markings] + [0.0])
    near_paint = (g.line_k >= 0) & (np.abs(g.line_u) < half[g.line_k] + 2.0 * fp)
    exact[g.index[near_paint]] = True
    exact &= ctx.prim >= -1  # never the sky
    pix = np.flatnonzero(exact)
    n = H2 * W2
    if pix.size:
        shadow_full = shadow_small.reshape(H2, W2)[pix // W // step, pix % W // step]
        both = _with_loose_pixels(sub, ctx, pix)
        radiance = shading.shade(both, shadow=np.concatenate([shadow_small, shadow_full]))
    else:
        radiance = shading.shade(sub, shadow=shadow_small)
    small = np.pad(radiance[:n].reshape(H2, W2, 3), ((0, 1), (0, 1), (0, 0)), mode="edge")
    # Each full-resolution pixel blends the (up to four) samples around it that show its surface.
    out, _ = kernels.upsample2(small, ks, key2, H, W)
    out = out.reshape(-1, 3)
    out[pix] = radiance[n:]
    return out


def render(world: World, t_s: float = 0.0, *, frame_seed: int = 0, stamp_ns: int = 0) -> Frame:
    """Render the world at time ``t_s`` (seconds since the start of the drive).

    ``frame_seed`` drives the per-frame randomness (sensor noise, rain streaks); the same world,
    time and seed always give the same frame, byte for byte.
    """
    with single_threaded_blas():
        return _render(world, t_s, frame_seed, stamp_ns)


def _render(world: World, t_s: float, frame_seed: int, stamp_ns: int) -> Frame:
    camera, mounting, cfg = world.camera, world.mounting, world.config
    H, W = camera.height, camera.width
    rays, bounds = camera_rays(camera)
    pose, ego_s, _ = world.ego.pose(world.road, t_s)
    T_wv = world.vehicle_to_world(t_s)
    T_wc = T_wv @ mounting.camera_to_vehicle()
    R_wc, o = T_wc[:3, :3], T_wc[:3, 3]
    dirs_w = rays @ R_wc.T.astype(np.float32)
    N = H * W
    depth = np.full(N, np.inf, np.float32)
    prim = np.full(N, -2, np.int32)
    face = np.zeros(N, np.int8)
    ground = _ground_pass(world, dirs_w, o)
    depth[ground.index] = ground.t
    prim[ground.index] = -1
    table = _frame_prims(world, t_s, ego_s)
    n_c = table.planes[..., :3] @ R_wc  # rows n_w -> n_c = R_cw n_w
    h_c = table.planes[..., 3] - table.planes[..., :3] @ o
    planes_c = np.concatenate([n_c, h_c[..., None]], axis=-1)
    rng = np.random.default_rng(np.random.SeedSequence([world.seed & 0xFFFFFFFF, int(frame_seed)]))
    ctx = Context(world, t_s, H, W, rays, _ray_len(camera), dirs_w, R_wc, o, depth, prim, face, ground, table, planes_c,
                  planes_c.astype(np.float32), pose,
                  ego_s, T_wv, rng)
    _object_pass(ctx, camera, bounds)

    # ----- ground truth
    visible_ground = prim[ground.index] == -1
    seg = np.full(N, Cls.SKY, np.uint8)
    seg[ground.index] = ground.cls
    obj = prim >= 0
    seg[obj] = table.cls[prim[obj]]
    depth_out = np.where(depth <= cfg.max_depth_m, depth, 0.0).astype(np.float32)
    road = world.road
    drivable = np.zeros(N, np.uint8)
    corridor = np.zeros(N, np.uint8)
    B = road.boundaries_m
    lane_idx = np.searchsorted(B, ground.dn, side="right") - 1
    in_lanes = visible_ground & (ground.surface == SURFACE_ROAD) & (lane_idx >= 0) & (lane_idx < road.n_lanes)
    drv = np.where(lane_idx == road.ego_lane, 1, 2).astype(np.uint8)
    drivable[ground.index[in_lanes]] = drv[in_lanes]
    s_obstacle = _first_obstacle_s(world, t_s, ego_s)
    corr = in_lanes & (lane_idx == road.ego_lane) & (ground.s > ego_s) & (ground.s < s_obstacle)
    corridor[ground.index[corr]] = 1
    lanes, ids = _lane_truth(ctx, visible_ground)
    polylines = _polylines(ctx, ids)

    # ----- appearance
    if cfg.shading_step == 1:
        radiance = shading.shade(ctx)  # [N, 3] linear
    else:
        radiance = _shade_subsampled(ctx, cfg.shading_step)
    image, bonnet = camera_effects.finish(ctx, radiance)
    if bonnet is not None:
        seg[bonnet] = IGNORE_INDEX
        depth_out[bonnet] = 0.0
        drivable[bonnet] = IGNORE_INDEX
        corridor[bonnet] = IGNORE_INDEX
        lanes[bonnet] = IGNORE_INDEX
    look = world.look
    ordered = sorted((k for k in range(len(ids)) if ids[k]), key=lambda k: ids[k])
    meta = {
        "source": "synthetic",
        "world_seed": int(world.seed),
        "t_s": float(t_s),
        "stamp_ns": int(stamp_ns),
        "scene": world.kind.value,
        "time_of_day": look.time.value,
        "rain": round(float(look.rain), 3),
        "fog": bool(np.isfinite(look.fog_m)),
        "K": camera.K.tolist(),
        "D": camera.D.tolist(),
        "distortion_model": camera.distortion_model,
        "mounting": {k: getattr(mounting, k) for k in ("x_m", "y_m", "z_m", "roll_rad", "pitch_rad", "yaw_rad")},
        "ego_speed_mps": float(world.ego.speed_mps),
        "ego_lane": int(road.ego_lane),
        "n_lanes": int(road.n_lanes),
        "lane_styles": [road.markings[k].style.name.lower() for k in ordered],
        "lane_colors": ["yellow" if road.markings[k].color_rgb[2] < 0.5 * road.markings[k].color_rgb[0] else "white"
                        for k in ordered],
        "lane_half_width_m": [round(road.markings[k].half_extent_m, 4) for k in ordered],
        "lane_label_min_px": cfg.lane_label_min_px,
        "lane_range_m": cfg.lane_range_m,
    }
    return Frame(
        image=image,
        segmentation=seg.reshape(H, W),
        depth=depth_out.reshape(H, W),
        drivable=drivable.reshape(H, W),
        lane_instances=lanes.reshape(H, W),
        corridor=corridor.reshape(H, W),
        lane_polylines=polylines,
        camera=camera,
        mounting=mounting,
        stamp_ns=int(stamp_ns),
        meta=meta,
    )
