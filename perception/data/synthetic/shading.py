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
# Materials that paint details from local (texture) coordinates, as a lookup by material id.
_DETAILED = np.zeros(max(Material) + 1, bool)
_DETAILED[[Material.FACADE, Material.BODY, Material.SIGN, Material.SIGNAL]] = True


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
    world = ctx.world
    look = world.look
    night = look.time is TimeOfDay.NIGHT
    dusk = look.time is TimeOfDay.DUSK
    table = ctx.table
    idx = np.flatnonzero(ctx.prim >= 0)
    if not idx.size:
        return
    pid = ctx.prim[idx]
    Pw = P[idx].astype(np.float64)
    # World normals (convex: the entry face's plane; ellipsoids: the gradient at the hit), local
    # (texture) coordinates and normals for the materials that paint details (every local frame
    # here is a rotation about z plus an offset), colours: kernels.object_frames.
    ell = table.kind[pid] != Kind.CONVEX
    n_ell = np.zeros((0, 3))
    if ell.any():
        F = table.frame[pid[ell]]
        r = table.params[pid[ell], :3]
        loc = np.einsum("qji,qj->qi", F[:, :3, :3], Pw[ell] - F[:, :3, 3]) / r**2
        nn = np.einsum("qij,qj->qi", F[:, :3, :3], loc)
        n_ell = nn / (np.linalg.norm(nn, axis=1, keepdims=True) + 1e-12)
    mat = table.material[pid]
    n64, n, q_all, nl_all, col = kernels.object_frames(
        pid, ctx.face[idx], table.kind, ctx.planes_c, np.ascontiguousarray(ctx.R_wc), table.frame, table.color,
        _DETAILED[mat], Pw, n_ell)
    normal[idx] = n64
    noise = texture.sample_octaves(Pw[:, 0] + 0.7 * Pw[:, 1], Pw[:, 2] + 0.3 * Pw[:, 1], (4.0,), (0.8,),
                                   seed=look.texture_seed + 11)
    alb = col * (1.0 + 0.05 * noise)[:, None]
    emi = np.zeros((idx.size, 3), np.float32)
    sp = np.zeros(idx.size, np.float32)

    sel = mat == Material.FOLIAGE
    if sel.any():
        q = Pw[sel]
        # Triplanar leaf texture: three planar projections blended by the normal, so no
        # direction of the crown shows stretched stripes.
        an = np.abs(n[sel]) + 1e-3
        an /= an.sum(1, keepdims=True)
        seed = look.texture_seed + 21
        leaf = (an[:, 2] * texture.sample_octaves(q[:, 0], q[:, 1], (40.0,), (1.0,), seed=seed)
                + an[:, 0] * texture.sample_octaves(q[:, 1], q[:, 2], (40.0,), (1.0,), seed=seed + 1)
                + an[:, 1] * texture.sample_octaves(q[:, 0], q[:, 2], (40.0,), (1.0,), seed=seed + 2)) * 1.1
        # Clumps of leaves with dark gaps; crowns are darker underneath.
        under = np.clip(0.75 + 0.35 * n[sel, 2], 0.45, 1.0)
        # Hedges (boxes) are clipped flat: finer, softer texture than free-standing crowns.
        flat = (table.kind[pid[sel]] == Kind.CONVEX).astype(np.float32)
        clumps = np.clip(0.6 + (0.8 - 0.45 * flat) * leaf, 0.08, 1.8) ** 1.3
        alb[sel] = col[sel] * (clumps * under)[:, None]

    sel = mat == Material.GLASS
    if sel.any():
        alb[sel] = col[sel]
        sp[sel] = 0.35

    sel = mat == Material.TIRE
    if sel.any():
        alb[sel] = col[sel]

    sel = mat == Material.FACADE
    if sel.any():
        q, nl = q_all[sel], nl_all[sel]
        prm = table.params[pid[sel]]
        floor, pitch, frac, has_win = prm[:, 0], prm[:, 1], prm[:, 2], prm[:, 3]
        along = np.where(np.abs(nl[:, 1]) > 0.5, q[:, 0], q[:, 1])
        fu = np.mod(along, pitch) / pitch
        fz = np.mod(q[:, 2], floor) / floor
        window = (fu < frac) & (fz > 0.3) & (fz < 0.82) & (q[:, 2] > 1.0) & (has_win > 0) & (np.abs(nl[:, 2]) < 0.5)
        c = alb[sel] * (1.0 + 0.12 * noise[sel])[:, None]
        roof = nl[:, 2] > 0.5
        c[roof] *= 0.55
        ground_floor = q[:, 2] < 0.5
        c[ground_floor] *= 0.8
        glass = srgb_to_linear((30, 34, 40)).astype(np.float32)
        cell_tint = np.mod(np.sin(np.floor(along / pitch) * 12.9 + np.floor(q[:, 2] / floor) * 78.2) * 437.5, 1.0)
        c[window] = glass * (0.7 + 0.9 * cell_tint[window, None])
        # Window frames: a thin light border inside each window cell.
        frame_px = window & ((fu < 0.04) | (fu > frac - 0.04))
        c[frame_px] = alb[sel][frame_px] * 0.8
        alb[sel] = c
        sp_sel = np.where(window & ~frame_px, 0.12 + 0.15 * cell_tint, 0.0).astype(np.float32)
        sp[sel] = sp_sel
        if night or dusk:
            cell = np.floor(along / pitch) * 7.31 + np.floor(q[:, 2] / floor) * 3.17 + pid[sel] * 0.917
            lit = window & (np.mod(np.sin(cell) * 43758.5453, 1.0) < look.lit_windows)
            e = np.zeros((sel.sum(), 3), np.float32)
            e[lit] = np.array([1.0, 0.8, 0.5], np.float32) * (0.25 if night else 0.08)
            emi[sel] = e

    sel = mat == Material.BODY
    if sel.any():
        q, nl = q_all[sel], nl_all[sel]
        prm = table.params[pid[sel]]
        Wd, top, variant = prm[:, 1], prm[:, 2], prm[:, 3]
        c = alb[sel]
        e = np.zeros_like(c)
        rear = nl[:, 0] < -0.5
        front = nl[:, 0] > 0.5
        side_y = np.abs(q[:, 1])
        band = (q[:, 2] > top - 0.32) & (q[:, 2] < top - 0.08)
        tail = rear & (side_y > 0.5 * Wd - 0.38) & band
        head = front & (side_y > 0.5 * Wd - 0.42) & band & (variant != 3)
        plate = rear & (side_y < 0.26) & (q[:, 2] > top - 0.55) & (q[:, 2] < top - 0.38)
        grille = front & (side_y < 0.5 * Wd - 0.45) & band
        lower = q[:, 2] < 0.42
        c[lower] *= 0.6
        c[grille] = 0.02
        c[tail] = _RED
        c[plate] = srgb_to_linear((220, 220, 210))
        c[head] = 0.6
        if night or dusk or look.headlights:
            scale = 1.0 if night else 0.35
            e[tail] = _RED * 3.0 * scale
            e[head] = _WHITE_LIGHT * 6.0 * scale
        else:
            brake = np.mod(pid[sel] * 0.618, 1.0) < 0.15
            e[tail & brake] = _RED * 1.2
        alb[sel] = c
        emi[sel] = e
        sp[sel] = np.where(nl[:, 2] > 0.5, 0.12, 0.06)

    sel = mat == Material.SIGN
    if sel.any():
        q, nl = q_all[sel], nl_all[sel]
        prm = table.params[pid[sel]]
        shape, w, size, height = prm[:, 0], prm[:, 1], prm[:, 2], prm[:, 3]
        yy = q[:, 1] / (0.5 * w)
        zz = (q[:, 2] - height - 0.5 * size) / (0.5 * size)
        r = np.hypot(yy, zz)
        c = alb[sel].copy()
        front = nl[:, 0] < -0.5
        red = srgb_to_linear((200, 30, 30)).astype(np.float32)
        dark = srgb_to_linear((30, 30, 30)).astype(np.float32)
        ring = front & (shape == 0) & (r > 0.7) & (r < 1.0)
        c[ring] = red
        corners0 = front & (shape == 0) & (r >= 1.0)
        c[corners0] = srgb_to_linear((120, 120, 120))  # the plate is square, the sign is round
        rim = front & ((shape == 4) | (shape == 2)) & ((np.abs(yy) > 0.85) | (np.abs(zz) > 0.85))
        c[rim] = np.where((shape[rim] == 4)[:, None], red, dark)
        text = front & (shape == 2) & (np.abs(yy) < 0.6) & (np.mod(zz * 3.0, 1.0) < 0.35) & (np.abs(zz) < 0.6)
        c[text] = dark
        sym = front & ((shape == 1) | (shape == 3)) & (np.abs(yy) + np.abs(zz) < 0.45)
        c[sym] = np.where((shape[sym] == 1)[:, None], srgb_to_linear((230, 230, 230)), dark)
        c[~front] = srgb_to_linear((110, 110, 110))
        alb[sel] = c
        if night and look.headlights:
            emi[sel] = c * 0.08 * front[:, None]  # retro-reflective faces light up

    sel = mat == Material.SIGNAL
    if sel.any():
        q, nl = q_all[sel], nl_all[sel]
        prm = table.params[pid[sel]]
        state, yc, base = prm[:, 0], prm[:, 1], prm[:, 3]
        rel = q[:, 2] - base  # 0 bottom .. 1 m top of the housing
        front = nl[:, 0] < -0.5
        slot = np.clip(2.0 - np.floor(rel * 3.0), 0, 2)  # 0 red (top), 1 amber, 2 green
        cy = (np.floor(rel * 3.0) + 0.5) / 3.0
        lamp = front & (np.hypot(rel - cy, q[:, 1] - yc) < 0.12)
        lit = lamp & (slot == state)
        colors = np.array([[1.0, 0.08, 0.05], [1.0, 0.55, 0.05], [0.1, 1.0, 0.45]], np.float32)
        e = np.zeros((sel.sum(), 3), np.float32)
        e[lit] = colors[state[lit].astype(int)] * (3.0 if night else 1.2)
        c = alb[sel]
        c[lamp & ~lit] = 0.04
        alb[sel] = c
        emi[sel] = e

    sel = mat == Material.LAMP
    if sel.any() and (night or dusk):
        down = n[sel, 2] < -0.5
        e = np.zeros((sel.sum(), 3), np.float32)
        e[down] = _SODIUM * (8.0 if night else 2.0)
        emi[sel] = e

    albedo[idx] = np.clip(alb, 0, 1)
    emissive[idx] = emi
    spec[idx] = sp


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
    if not inside.all():  # Sutherland-Hodgman against z = near
        clipped = []
        for i in range(len(pc)):
            a, b = pc[i], pc[(i + 1) % len(pc)]
            ia, ib = a[2] >= near, b[2] >= near
            if ia:
                clipped.append(a)
            if ia != ib:
                w = (near - a[2]) / (b[2] - a[2])
                clipped.append(a + w * (b - a))
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
    extent = np.ptp(table.verts, axis=1)
    dist = np.hypot(*(table.frame[:, :2, 3] - ego_xy).T)
    body = table.material == Material.BODY
    tall = extent[:, 2] > 0.6
    cand = np.flatnonzero((dist < 60.0) & ((sunny & tall) | body))
    # Outline points of every caster: the hull vertices of convex shapes, 32 points on ellipsoids.
    ell = table.kind[cand] == Kind.ELLIPSOID
    points: list[np.ndarray] = [table.verts[i] for i in cand]
    if ell.any():
        e = cand[ell]
        sphere = np.ascontiguousarray(_SPHERE[None] * table.params[e, None, :3])
        for j, pts in zip(np.flatnonzero(ell), kernels.place_points(sphere, table.frame[e]), strict=True):
            points[j] = pts
    polys: list[np.ndarray] = []
    for i, pts in zip(cand, points, strict=True):
        if sunny and tall[i]:
            shadow = pts - (pts[:, 2:3] / sun[2]) * sun[None]
            if np.abs(shadow[:, :2] - ego_xy).max() < 300:
                polys.append(np.concatenate([shadow[:, :2], pts[:, :2]]))
        if body[i]:
            polys.append(pts[:, :2])
    if polys:
        _fill_ground_polygons(mask, polys, ctx)
    out = cv2.GaussianBlur(mask, (5, 5), 1.2).astype(np.float32) / 255.0
    return out.reshape(-1)


def _fill_ground_polygons(mask: np.ndarray, polys: list[np.ndarray], ctx: Context) -> None:
    """Rasterise the convex hulls of ground point sets; one projection call for all of them."""
    counts = [len(p) for p in polys]
    pts = np.concatenate(polys)
    pw = np.concatenate([pts, np.zeros((len(pts), 1))], axis=1)
    pc = (pw - ctx.origin_w) @ ctx.R_wc
    z_ok = pc[:, 2] >= 0.3
    uv = np.full((len(pc), 2), np.nan)
    if z_ok.any():
        uv[z_ok] = ctx.world.camera.project(pc[z_ok]) / ctx.pixel_scale
    uv_clip = np.clip(uv, -4 * ctx.W, 5 * ctx.W).astype(np.float32)
    starts = np.cumsum([0] + counts[:-1])
    n_ok = np.add.reduceat(z_ok.astype(np.int64), starts)
    clipped = []  # polygons reaching behind the camera, clipped: projected together below
    for j in np.flatnonzero(n_ok):
        start, n = int(starts[j]), counts[j]
        if n_ok[j] == n:
            hull = cv2.convexHull(uv_clip[start:start + n])
            cv2.fillConvexPoly(mask, np.round(hull.reshape(-1, 2) * 8).astype(np.int32), 255, cv2.LINE_8, 3)
        else:
            pc = _clip_ground_polygon(np.concatenate([polys[j], np.zeros((n, 1))], axis=1), ctx)
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
