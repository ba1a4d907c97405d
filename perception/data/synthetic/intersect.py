"""Exact ray intersections for the renderer: convex polyhedra (boxes, prisms) and ellipsoids.

Rays start at the camera origin and are given as ``[P, 3]`` optical-frame directions with
``z = 1``, so the ray parameter ``t`` of a hit *is* its z-depth in metres. Shapes are given in the
optical frame too. Everything is vectorised over the rays of one screen rectangle.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ray_convex", "ray_ellipsoid", "screen_rect", "transform_planes"]

_Z_NEAR = 0.05  # metres; shapes are clipped here before their screen rectangle is computed


def transform_planes(planes_w: np.ndarray, R_cw: np.ndarray, origin_w: np.ndarray) -> np.ndarray:
    """World half-spaces ``n . x <= h`` ([K, 4] rows ``(n, h)``) -> optical frame ([K, 4])."""
    n_c = planes_w[:, :3] @ R_cw.T
    h_c = planes_w[:, 3] - planes_w[:, :3] @ origin_w
    return np.concatenate([n_c, h_c[:, None]], axis=1)


def ray_convex(rays: np.ndarray, planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry depth and entry face of rays into the intersection of half-spaces ``n . x <= h``.

    Returns ``t`` ([P], ``inf`` where missed) and ``face`` ([P] int, index of the entry plane).
    """
    dtype = np.result_type(rays.dtype, planes.dtype)
    denom = rays @ planes[:, :3].T.astype(dtype)  # [P, K]
    h = planes[:, 3].astype(dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        tk = h / denom
    enter = np.where(denom < 0, tk, -np.inf)
    face = enter.argmax(axis=1)
    t_in = np.take_along_axis(enter, face[:, None], axis=1)[:, 0]
    np.copyto(tk, np.inf, where=~(denom > 0))
    t_out = tk.min(axis=1)
    # (A ray exactly parallel to a face it starts outside of is ignored: measure zero.)
    hit = (t_in <= t_out) & (t_in > _Z_NEAR)
    return np.where(hit, t_in, np.inf), face


def ray_ellipsoid(rays: np.ndarray, centre: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First hit of rays with the ellipsoid ``(x - c)^T M (x - c) = 1``.

    Returns ``t`` ([P], ``inf`` where missed) and unit normals ([P, 3], optical frame).
    """
    Mr = rays @ M  # M is symmetric
    a = np.einsum("ij,ij->i", Mr, rays)
    b = Mr @ centre
    c = centre @ M @ centre - 1.0
    disc = b * b - a * c
    ok = disc >= 0
    t = np.where(ok, (b - np.sqrt(np.where(ok, disc, 0.0))) / a, np.inf)
    t = np.where(t > _Z_NEAR, t, np.inf)
    normal = (rays * np.where(np.isfinite(t), t, 0.0)[:, None] - centre) @ M
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-12
    return t, normal


def screen_rect(verts_c: np.ndarray, K: np.ndarray, size: tuple[int, int],
                norm_bounds: tuple[float, float, float, float] | None = None,
                project=None) -> tuple[int, int, int, int] | None:
    """Pixel rectangle ``(u0, u1, v0, v1)`` (half-open) that contains the shape's image.

    ``verts_c`` ([V, 3], optical frame) are points whose convex hull contains the shape. The hull
    is clipped at ``z = 5 cm``: the segment between every pair of points on both sides of that
    plane is cut there (pairs that are not edges cut inside the hull, which cannot widen it).
    With a distorted camera pass ``project`` (``CameraModel.project``) and ``norm_bounds`` (the
    normalized-coordinate extent of the image): the normalized rectangle is then mapped through
    the distortion along its border.
    """
    z = verts_c[:, 2]
    front = z >= _Z_NEAR
    if not front.any():
        return None
    pts = [verts_c[front]]
    back = ~front
    if back.any():
        a, b = verts_c[front], verts_c[back]
        za, zb = a[:, 2][:, None], b[:, 2][None, :]
        w = (za - _Z_NEAR) / (za - zb)  # [A, B]
        cut = a[:, None, :] + w[..., None] * (b[None, :, :] - a[:, None, :])
        pts.append(cut.reshape(-1, 3))
    p = np.concatenate(pts)
    x = p[:, 0] / p[:, 2]
    y = p[:, 1] / p[:, 2]
    x0, x1, y0, y1 = x.min(), x.max(), y.min(), y.max()
    width, height = size
    if project is None:
        u0, u1 = K[0, 0] * x0 + K[0, 1] * y0 + K[0, 2], K[0, 0] * x1 + K[0, 1] * y1 + K[0, 2]
        v0, v1 = K[1, 1] * y0 + K[1, 2], K[1, 1] * y1 + K[1, 2]
        pad = 1.0
    else:
        bx0, bx1, by0, by1 = norm_bounds
        x0, x1 = max(x0, bx0), min(x1, bx1)
        y0, y1 = max(y0, by0), min(y1, by1)
        if x0 > x1 or y0 > y1:
            return None
        k = np.linspace(0.0, 1.0, 9)
        xs = np.concatenate([x0 + (x1 - x0) * k, x0 + (x1 - x0) * k, np.full(9, x0), np.full(9, x1)])
        ys = np.concatenate([np.full(9, y0), np.full(9, y1), y0 + (y1 - y0) * k, y0 + (y1 - y0) * k])
        uv = project(np.stack([xs, ys, np.ones_like(xs)], axis=1))
        u0, u1 = np.nanmin(uv[:, 0]), np.nanmax(uv[:, 0])
        v0, v1 = np.nanmin(uv[:, 1]), np.nanmax(uv[:, 1])
        pad = 3.0
    iu0 = max(int(np.floor(u0 - pad)), 0)
    iu1 = min(int(np.ceil(u1 + pad)) + 1, width)
    iv0 = max(int(np.floor(v0 - pad)), 0)
    iv1 = min(int(np.ceil(v1 + pad)) + 1, height)
    if iu0 >= iu1 or iv0 >= iv1:
        return None
    return iu0, iu1, iv0, iv1
