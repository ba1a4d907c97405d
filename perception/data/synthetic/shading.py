"""Deferred shading of the visible surfaces: procedural albedo per material, sun with ground
shadows, sky light, ego headlights and street lamps, emissive lights, sky, wet-road and glass
reflections, haze and fog. Output is linear radiance; :mod:`.camera_effects` turns it into an
8-bit image."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from perception.data.synthetic import kernels, texture
from perception.data.synthetic.look import TimeOfDay, srgb_to_linear
from perception.data.synthetic.primitive import Kind, Material

if TYPE_CHECKING:
    from perception.data.synthetic.renderer import Context

__all__ = ["shade", "sky_radiance", "ground_shadows"]

_RED = srgb_to_linear((200, 20, 15)).astype(np.float32)
_WHITE_LIGHT = np.array([1.0, 0.95, 0.85], np.float32)
_SODIUM = np.array([1.0, 0.75, 0.45], np.float32)
_DIRT = srgb_to_linear((120, 105, 80)).astype(np.float32)
# Fixed object colours, rows as kernels.albedo names them: tail light, headlight, street lamp,
# window glass, number plate, sign red, sign dark, round sign's plate corners, sign white, sign
# back, traffic-light red, amber, green.
_PALETTE = np.concatenate([
    np.stack([_RED, _WHITE_LIGHT, _SODIUM]),
    np.stack([srgb_to_linear(c) for c in ((30, 34, 40), (220, 220, 210), (200, 30, 30), (30, 30, 30),
                                          (120, 120, 120), (230, 230, 230), (110, 110, 110))]).astype(np.float32),
    np.array([[1.0, 0.08, 0.05], [1.0, 0.55, 0.05], [0.1, 1.0, 0.45]], np.float32)])
_PALETTE.setflags(write=False)


def sky_radiance(look, dirs: np.ndarray, origin: np.ndarray, clouds: bool = True) -> np.ndarray:
    """[P, 3] sky radiance for world directions ``dirs`` (any length); ``clouds=False`` skips the
    cloud layer (reflections)."""
    d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    e = np.clip(d[:, 2], 0.0, 1.0)
    w = (e ** 0.45)[:, None]
    out = (look.sky_horizon * (1 - w) + look.sky_zenith * w).astype(np.float32)
    if look.sun_dir[2] > -0.05:
        cosg = np.clip(d @ look.sun_dir, 0.0, 1.0)
        glow = 0.12 * cosg**6 + 0.8 * cosg**120 + 30.0 * (cosg > 0.99995)
        out += (glow[:, None] * look.sun_rgb[None]).astype(np.float32)
    if clouds and look.cloud_cover > 0:
        up = np.maximum(d[:, 2], 0.02)
        cx = origin[0] + d[:, 0] / up * 1500.0
        cy = origin[1] + d[:, 1] / up * 1500.0
        # Large soft cloud banks (a few hundred metres across at 1.5 km), not cotton-wool dots.
        n = texture.sample_octaves(cx, cy, (0.012, 0.045), (1.0, 0.35), seed=7)
        cover = np.clip((n + 2.4 * look.cloud_cover - 1.2) * 0.6, 0.0, 1.0)
        cover *= np.clip(d[:, 2] * 12.0, 0.0, 1.0) ** 0.5 * 0.85 + 0.15
        if look.time is TimeOfDay.NIGHT:
            cloud = look.sky_horizon * 0.8
        else:
            shade = 0.75 + 0.25 * np.clip(n, -1, 1)
            cloud = (look.sky_horizon * 1.05)[None] * shade[:, None]
            if look.sun_rgb.max() > 0:
                cloud = cloud + 0.08 * look.sun_rgb[None]
        out = out * (1 - cover[:, None]) + (cloud * cover[:, None] if np.ndim(cloud) == 2 else
                                            cloud[None] * cover[:, None])
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------- ground
def _ground_albedo(ctx: Context, albedo: np.ndarray, spec: np.ndarray, rough: np.ndarray) -> None:
    world, g = ctx.world, ctx.ground
    look, road = world.look, world.road
    vis = ctx.prim[g.index] == -1
    idx = g.index[vis]
    X, Y = g.X[vis].astype(np.float32), g.Y[vis].astype(np.float32)
    s, d, t = g.s[vis].astype(np.float32), g.d[vis].astype(np.float32), g.t[vis].astype(np.float32)
    surface, cls = g.surface[vis], g.cls[vis]
    cam_h = max(ctx.origin_w[2], 0.3)

    def footprints(t: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
        fx, fy = world.camera.fx / scale, world.camera.fy / scale
        fp = t / fx  # metres per (shading) pixel across
        return fp, np.maximum(t * t / (fy * cam_h), fp)

    if ctx.grid is None:
        fp, fp_long = footprints(t, ctx.pixel_scale)
    else:  # grid pixels at the grid's scale, then loose full-resolution pixels
        loose = idx >= ctx.grid[0] * ctx.grid[1]
        (fp_g, fl_g), (fp_l, fl_l) = footprints(t[~loose], ctx.pixel_scale), footprints(t[loose], 1)
        fp, fp_long = np.empty(t.shape, fp_g.dtype), np.empty(t.shape, fl_g.dtype)
        fp[~loose], fp[loose], fp_long[~loose], fp_long[loose] = fp_g, fp_l, fl_g, fl_l
    seed = look.texture_seed
    lo = texture.sample_octaves(X, Y, (0.5,), (1.0,), seed=seed)
    hi = texture.sample_octaves(X, Y, (12.0,), (1.0,), footprint=fp, seed=seed + 3)
    use_crack = look.crack_amount > 0.05
    crack = (texture.sample(texture.crack_tile(seed), X * 18.0, Y * 18.0) * np.clip(1.5 - fp * 12, 0, 1)
             if use_crack else lo)
    # Tyre tracks in the lane centres: exp(-(off / 0.35)^2) on the road, NumPy's float32 exp.
    ri = np.flatnonzero(surface == 0)
    dn, d64 = g.dn[vis], g.d[vis]
    tracks = np.exp(kernels.track_exponent(ri, dn, d64, d, road.boundaries_m, road.n_lanes))
    # Asphalt (patches, cracks, tracks), paint, sidewalk slabs, curbs, verges, wetness.
    m_style, m_num, m_color = _marking_table(road)
    out, refl = kernels.ground_albedo(
        surface, cls, s, d, dn, fp, fp_long, lo, hi, crack, use_crack, tracks, g.line_k[vis], g.line_u[vis],
        look.asphalt_rgb.astype(np.float32), np.float32(look.asphalt_var), np.float32(0.5 * look.crack_amount),
        np.float32(look.track_amount * 0.5), m_style, m_num, m_color, look.sidewalk_rgb.astype(np.float32),
        look.curb_rgb.astype(np.float32), look.grass_rgb.astype(np.float32), _DIRT, np.float32(look.grass_var),
        *road.edges_m, float(look.wet), np.float32(1.0 - 0.45 * look.wet))
    if look.wet > 0:
        spec[idx] = refl
        rough[idx] = 0.0
    albedo[idx] = out


def _marking_table(road) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per lane boundary: ``LineStyle`` value, (dash period, phase, half dash, half width, stroke
    offset of double lines, wear) and colour (float32), for :func:`kernels.ground_albedo`."""
    style = np.array([m.style.value for m in road.markings], np.int64)
    num = np.array([(m.dash_m + m.gap_m, m.phase_m, 0.5 * m.dash_m, 0.5 * m.width_m,
                     0.5 * (m.spacing_m + m.width_m), m.wear) for m in road.markings], np.float64)
    color = np.array([m.color_rgb for m in road.markings], np.float32)
    return style, num, color


# --------------------------------------------------------------------------------------- objects
def _object_albedo(ctx: Context, P: np.ndarray, albedo: np.ndarray, normal: np.ndarray,
                   emissive: np.ndarray, spec: np.ndarray) -> None:
    """Normals, albedo, emission and specular weight of the object pixels: flat colours with mild
    noise, triplanar leaf texture on foliage, windows (lit at night) on facades, lights, plate and
    grille on vehicle bodies, sign faces, traffic-light lamps, street-lamp heads (see
    :func:`kernels.object_albedo`; the texture look-ups stay here)."""
    look = ctx.world.look
    table = ctx.table
    idx = np.flatnonzero(ctx.prim >= 0)
    if not idx.size:
        return
    pid = ctx.prim[idx]
    Pw = P[idx].astype(np.float64)
    noise = texture.sample_octaves(Pw[:, 0] + 0.7 * Pw[:, 1], Pw[:, 2] + 0.3 * Pw[:, 1], (4.0,), (0.8,),
                                   seed=look.texture_seed + 11)
    # Leaf texture: three planar projections (blended by the normal in the kernel), so no
    # direction of the crown shows stretched stripes.
    q = Pw[table.material[pid] == Material.FOLIAGE]
    seed = look.texture_seed + 21
    leaf = np.stack([texture.sample_octaves(q[:, 0], q[:, 1], (40.0,), (1.0,), seed=seed),
                     texture.sample_octaves(q[:, 1], q[:, 2], (40.0,), (1.0,), seed=seed + 1),
                     texture.sample_octaves(q[:, 0], q[:, 2], (40.0,), (1.0,), seed=seed + 2)], 1)
    kernels.object_albedo(idx, pid, ctx.face[idx], table.kind, table.material, ctx.planes_c,
                          np.ascontiguousarray(ctx.R_wc), table.frame, table.color, table.params, Pw, noise, leaf,
                          _PALETTE, look.time is TimeOfDay.NIGHT, look.time is TimeOfDay.DUSK, bool(look.headlights),
                          float(look.lit_windows), normal, albedo, emissive, spec)


# -------------------------------------------------------------------------------------- lighting
def _clip_ground_polygon(pts_w: np.ndarray, ctx: Context) -> np.ndarray | None:
    """The convex hull of world ground points in the optical frame, clipped at ``z = 0.3`` m
    (None when wholly behind)."""
    hull = cv2.convexHull(pts_w[:, :2].astype(np.float32)).reshape(-1, 2).astype(np.float64)
    poly = np.concatenate([hull, np.full((len(hull), 1), pts_w[0, 2])], axis=1)
    R_cw = ctx.R_wc.T
    pc = (poly - ctx.origin_w) @ R_cw.T
    near = 0.3
    inside = pc[:, 2] >= near
    if not inside.any():
        return None
    if not inside.all():  # Sutherland-Hodgman against z = near (in Python floats: a few points)
        pts = pc.tolist()
        clipped = []
        for i, a in enumerate(pts):
            b = pts[(i + 1) % len(pts)]
            ia, ib = a[2] >= near, b[2] >= near
            if ia:
                clipped.append(a)
            if ia != ib:
                w = (near - a[2]) / (b[2] - a[2])
                clipped.append([a[0] + w * (b[0] - a[0]), a[1] + w * (b[1] - a[1]), a[2] + w * (b[2] - a[2])])
        pc = np.array(clipped)
    return pc


def _fill_projected(mask: np.ndarray, uv: np.ndarray, ctx: Context, value: int = 255) -> None:
    if not np.all(np.isfinite(uv)):
        return
    uv = np.clip(uv, -4 * ctx.W, 5 * ctx.W)
    cv2.fillConvexPoly(mask, np.round(uv * 8).astype(np.int32), value, cv2.LINE_8, 3)


_SPHERE = np.array([[np.cos(a) * np.cos(b), np.sin(a) * np.cos(b), np.sin(b)]
                    for b in (-0.9, -0.3, 0.3, 0.9) for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)])


def ground_shadows(ctx: Context) -> np.ndarray:
    """[N] float32 sun-shadow factor on the ground (1 = fully shadowed), plus contact shadows
    under vehicles. Each caster's shadow is the convex hull of its outline projected along the
    sun onto the ground, drawn in the image."""
    look = ctx.world.look
    H, W = ctx.H, ctx.W
    mask = np.zeros((H, W), np.uint8)
    table = ctx.table
    sun = look.sun_dir
    sunny = look.sun_rgb.max() > 0.3 and sun[2] > 0.03
    ego_xy = ctx.vehicle_pose[:2]
    dist = np.hypot(*(table.frame[:, :2, 3] - ego_xy).T)
    body = table.material == Material.BODY
    tall = np.ptp(table.verts[:, :, 2], axis=1) > 0.6
    cand = np.flatnonzero((dist < 60.0) & ((sunny & tall) | body))
    # Outline points of every caster: the hull vertices of convex shapes, 32 points on ellipsoids;
    # per group of equal point counts: the sun's shadow (the outline and its projection along the
    # sun, when near enough) and the contact shadow under vehicle bodies.
    ell = table.kind[cand] == Kind.ELLIPSOID
    groups = [(cand[~ell], table.verts[cand[~ell]])]
    if ell.any():
        e = cand[ell]
        groups.append((e, kernels.place_points(np.ascontiguousarray(_SPHERE[None] * table.params[e, None, :3]),
                                               table.frame[e])))
    polys: list[np.ndarray] = []  # [n, k, 2] polygons of k points
    for ids, pts in groups:
        if not len(ids):
            continue
        if sunny:
            cast = tall[ids]
            shadow = pts[cast] - (pts[cast, :, 2:3] / sun[2]) * sun
            near = np.abs(shadow[..., :2] - ego_xy).max(axis=(1, 2)) < 300
            polys.append(np.concatenate([shadow[near, :, :2], pts[cast][near, :, :2]], axis=1))
        polys.append(pts[body[ids], :, :2])
    polys = [p for p in polys if len(p)]
    if polys:
        _fill_ground_polygons(mask, polys, ctx)
    out = cv2.GaussianBlur(mask, (5, 5), 1.2).astype(np.float32) / 255.0
    return out.reshape(-1)


def _fill_ground_polygons(mask: np.ndarray, polys: list[np.ndarray], ctx: Context) -> None:
    """Rasterise the convex hulls of ground point sets (groups of ``[n, k, 2]``: n sets of k
    points); one projection call for all of them."""
    counts = np.concatenate([np.full(len(p), p.shape[1]) for p in polys])
    pts = np.concatenate([p.reshape(-1, 2) for p in polys])
    pw = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    pc = (pw - ctx.origin_w) @ ctx.R_wc
    z_ok = pc[:, 2] >= 0.3
    uv = np.full((len(pc), 2), np.nan)
    if z_ok.any():
        uv[z_ok] = ctx.world.camera.project(pc[z_ok]) / ctx.pixel_scale
    uv_clip = np.clip(uv, -4 * ctx.W, 5 * ctx.W).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(counts[:-1])])
    n_ok = np.add.reduceat(z_ok.astype(np.int64), starts)
    clipped = []  # polygons reaching behind the camera, clipped: projected together below
    for j in np.flatnonzero(n_ok).tolist():
        start, n = int(starts[j]), int(counts[j])
        if n_ok[j] == n:
            hull = cv2.convexHull(uv_clip[start:start + n])
            cv2.fillConvexPoly(mask, np.round(hull.reshape(-1, 2) * 8).astype(np.int32), 255, cv2.LINE_8, 3)
        else:
            pc = _clip_ground_polygon(pw[start:start + n], ctx)
            if pc is not None:
                clipped.append(pc)
    if clipped:
        # (All polygons fill the same value, so the order they are drawn in does not matter.)
        uv_all = ctx.world.camera.project(np.concatenate(clipped)) / ctx.pixel_scale
        start = 0
        for pc in clipped:
            _fill_projected(mask, uv_all[start:start + len(pc)], ctx)
            start += len(pc)


def _headlights(ctx: Context, P: np.ndarray, n: np.ndarray, valid: np.ndarray) -> np.ndarray:
    T = ctx.T_wv
    mount = ctx.world.mounting
    light = (T @ np.array([mount.x_m + 1.8, 0.0, 0.7, 1.0]))[:3]
    fwd = T[:3, 0]
    L = P[valid] - light
    r = np.linalg.norm(L, axis=1) + 1e-6
    Ld = L / r[:, None]
    cos = np.clip(Ld @ fwd, 0, 1)
    beam = cos**30 + 0.15 * cos**6
    cutoff = np.clip((0.03 - Ld[:, 2]) / 0.03, 0, 1)  # low beam: little light above the horizon
    lam = np.clip(-(n[valid] * Ld).sum(1), 0, 1)
    out = np.zeros(P.shape[0], np.float32)
    # Real low beams light the road from ~5 m on; keep the pool in front of the bonnet moderate.
    out[valid] = 90.0 * beam * cutoff * lam / np.maximum(r * r, 40.0)
    return out


def _lamps(ctx: Context, P: np.ndarray, n: np.ndarray, valid: np.ndarray) -> np.ndarray:
    lamps = ctx.world.lamps
    out = np.zeros(P.shape[0], np.float32)
    if not len(lamps):
        return out
    dist = np.linalg.norm(lamps[:, :2] - ctx.vehicle_pose[:2], axis=1)
    near = lamps[np.argsort(dist)[:4]]
    near = near[np.linalg.norm(near[:, :2] - ctx.vehicle_pose[:2], axis=1) < 90]
    # Lamps light the ground (what shows); walls and cars get the ambient share.
    sel = np.flatnonzero(valid & (ctx.prim == -1))
    Pv = P[sel].astype(np.float32)
    acc = np.zeros(sel.size, np.float32)
    for lamp in near.astype(np.float32):
        L = lamp - Pv
        r2 = (L * L).sum(1)
        cos_down = L[:, 2] / np.sqrt(r2)  # ground normal is up
        acc += 30.0 * np.clip(cos_down, 0, 1) ** 2.5 / np.maximum(r2, 4.0)
    out[sel] = acc
    return out


def _mirror(ctx: Context, radiance: np.ndarray, spec: np.ndarray) -> np.ndarray:
    """Add a blurred reflection of the scene about the horizon (wet road)."""
    from calibration.ground import horizon_row

    H, W = ctx.H, ctx.W
    cam, mount = ctx.world.camera, ctx.world.mounting
    s = ctx.pixel_scale  # shading pixel j sits at full-resolution pixel s * j
    v_left = horizon_row(cam, mount, 0.0) / s
    v_right = horizon_row(cam, mount, s * (W - 1.0)) / s
    u = np.arange(W, dtype=np.float32)
    vh = v_left + (v_right - v_left) * u / max(W - 1, 1)
    vv = np.arange(H, dtype=np.float32)[:, None]
    map_y = (2 * vh[None, :] - vv).astype(np.float32)
    map_x = np.broadcast_to(u[None, :], (H, W)).astype(np.float32)
    img = radiance.reshape(H, W, 3)
    small = cv2.resize(img, (W // 2, H // 2), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (1, 9), 0)
    blurred = cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR)
    refl = cv2.remap(blurred, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return radiance + refl.reshape(-1, 3) * spec[:, None]


@lru_cache(maxsize=8)
def _sky_grid(H: int, W: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows and columns of the 1/step sky grid and the remap maps from pixels to grid coordinates
    (the last grid row/column sits on the image border); per image size, read-only."""
    ys = np.minimum(np.arange(0, H + step, step), H - 1)
    xs = np.minimum(np.arange(0, W + step, step), W - 1)
    gx = np.interp(np.arange(W), xs, np.arange(len(xs))).astype(np.float32)
    gy = np.interp(np.arange(H), ys, np.arange(len(ys))).astype(np.float32)
    map_x = np.ascontiguousarray(np.broadcast_to(gx[None, :], (H, W)))
    map_y = np.ascontiguousarray(np.broadcast_to(gy[:, None], (H, W)))
    for a in (ys, xs, map_x, map_y):
        a.setflags(write=False)
    return ys, xs, map_x, map_y


def _sky_image(ctx: Context, step: int = 4) -> np.ndarray:
    """[N, 3] sky radiance for every pixel, evaluated on a 1/step grid and interpolated (the sky is
    smooth; this costs 1/16 of a full-resolution evaluation)."""
    H, W = ctx.H, ctx.W
    ys, xs, map_x, map_y = _sky_grid(H, W, step)
    grid = ctx.dirs_w.reshape(H, W, 3)[ys][:, xs]
    small = sky_radiance(ctx.world.look, grid.reshape(-1, 3), ctx.origin_w).reshape(len(ys), len(xs), 3)
    return cv2.remap(small, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)


def _grid_part(ctx: Context, image_space: bool) -> tuple[Context | None, int]:
    """The image grid among the pixels of ``ctx`` (for the image-space passes: sky, wet-road
    mirror) and its pixel count: all of ``ctx`` for an image, the leading ``ctx.grid`` pixels of a
    grid-plus-loose-pixels context, none for loose pixels only."""
    if not image_space:
        return None, 0
    if ctx.grid is None:
        return ctx, ctx.H * ctx.W
    from perception.data.synthetic.renderer import Context

    (H, W), n = ctx.grid, ctx.grid[0] * ctx.grid[1]
    return Context(ctx.world, ctx.t_s, H, W, ctx.rays[:n], ctx.ray_len[:n], ctx.dirs_w[:n], ctx.R_wc, ctx.origin_w,
                   ctx.depth[:n], ctx.prim[:n], ctx.face[:n], None, ctx.table, ctx.planes_c, ctx.planes_c32,
                   ctx.vehicle_pose, ctx.ego_s, ctx.T_wv, ctx.rng, pixel_scale=ctx.pixel_scale), n


def shade(ctx: Context, image_space: bool = True, shadow: np.ndarray | None = None) -> np.ndarray:
    """[N, 3] float32 linear radiance of every pixel of ``ctx``.

    ``image_space=False`` shades a loose set of pixels (not an image grid): wet-road reflections,
    drawn in image space, are left out, and ground shadows come from ``shadow`` ([N], or none).
    A context with ``grid`` set is an image grid followed by loose pixels: the image-space passes
    apply to the grid only.
    """
    look = ctx.world.look
    N = ctx.H * ctx.W
    albedo = np.zeros((N, 3), np.float32)
    normal = np.zeros((N, 3), np.float32)
    normal[:, 2] = 1.0
    emissive = np.zeros((N, 3), np.float32)
    spec = np.zeros(N, np.float32)
    rough = np.ones(N, np.float32)
    finite = np.isfinite(ctx.depth)
    depth0 = np.where(finite, ctx.depth, 0.0).astype(np.float32)
    P = ctx.origin_w.astype(np.float32) + ctx.dirs_w * depth0[:, None]  # [N, 3] world
    _ground_albedo(ctx, albedo, spec, rough)
    g = ctx.ground
    curb = g.surface == 1
    if curb.any():
        # The curb face looks towards the road centre.
        heading = np.arctan(np.interp(g.X[curb], ctx.world.road.x_grid, ctx.world.road.slope_grid))
        side = np.where(g.dn[curb] > 0, -1.0, 1.0)
        normal[g.index[curb]] = np.stack([-np.sin(heading) * side, np.cos(heading) * side, 0 * side], 1)
    _object_albedo(ctx, P, albedo, normal, emissive, spec)

    ground_px = ctx.prim == -1
    if shadow is None:
        shadow = ground_shadows(ctx) if image_space else np.zeros(N, np.float32)
    # Sky light (contact shadows darken it under vehicles when the sun is weak), the sun (ground
    # shadows), ego headlights, street lamps: see kernels.light.
    none = np.zeros(1, np.float32)
    head = _headlights(ctx, P, normal, finite) if look.headlights else none
    lamps = look.time in (TimeOfDay.NIGHT, TimeOfDay.DUSK)
    lamp = _lamps(ctx, P, normal, finite) * (1.0 if look.time is TimeOfDay.NIGHT else 0.3) if lamps else none
    radiance = kernels.light(albedo, emissive, normal, np.ascontiguousarray(shadow, np.float32), ctx.prim,
                             look.ambient_rgb.astype(np.float32), bool(look.sun_rgb.max() <= 0.3),
                             bool(look.sun_rgb.max() > 0), look.sun_rgb.astype(np.float32),
                             look.sun_dir.astype(np.float32), bool(look.headlights), head, _WHITE_LIGHT, lamps,
                             lamp, _SODIUM)

    sky = ~finite
    grid, n_grid = _grid_part(ctx, image_space)
    if sky.any():
        if n_grid:
            # (radiance[:n_grid] is a view: the mask assignment writes through)
            radiance[:n_grid][sky[:n_grid]] = _sky_image(grid)[sky[:n_grid]]
        loose_sky = np.flatnonzero(sky[n_grid:]) + n_grid
        if loose_sky.size:
            radiance[loose_sky] = sky_radiance(look, ctx.dirs_w[loose_sky], ctx.origin_w)
    glassy = np.flatnonzero((spec > 0) & (ctx.prim >= 0))
    if glassy.size:
        d = ctx.dirs_w[glassy] / np.linalg.norm(ctx.dirs_w[glassy], axis=1, keepdims=True)
        nn = normal[glassy]
        cos = (d * nn).sum(1, keepdims=True)
        r = d - 2 * cos * nn
        fres = spec[glassy, None] * (0.4 + 0.6 * (1 - np.abs(cos)) ** 3)
        radiance[glassy] += sky_radiance(look, r, ctx.origin_w, clouds=False) * fres
    if look.wet > 0 and n_grid:
        # Fresnel: reflections grow towards grazing angles (far road).
        wet_spec = np.where(ground_px, spec * np.clip(0.15 + depth0 / 60.0, 0, 0.9), 0.0).astype(np.float32)
        radiance[:n_grid] = _mirror(grid, radiance[:n_grid], wet_spec[:n_grid])

    # Aerial perspective and fog.
    dist = depth0 * ctx.ray_len
    air = look.sky_horizon.astype(np.float32)
    k = 1.0 / look.haze_m
    if np.isfinite(look.fog_m):
        k += 3.0 / look.fog_m
        air = (0.7 * look.sky_horizon + 0.3 * look.sky_horizon.mean()).astype(np.float32)
        if look.time is TimeOfDay.NIGHT:
            air = air * 1.5
        radiance[sky] = radiance[sky] * 0.2 + air * 0.8
    keep = np.where(finite, np.exp(-dist * np.float32(k)), 1.0).astype(np.float32)
    kernels.haze(radiance, keep, air)
    return radiance
