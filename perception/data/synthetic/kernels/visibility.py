"""Z-buffering: the nearest primitive hit per pixel, convex primitives and ellipsoids."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import fma32, jit

__all__ = ["convex_rect", "batched_hits"]

_Z_NEAR32 = np.float32(0.05)
_Z_NEAR64 = 0.05
_INF32 = np.float32(np.inf)
_NINF32 = np.float32(-np.inf)


@jit
def convex_rect(rays2, planes, v0, v1, u0, u1, depth2, prim2, face2, index):
    """Z-buffer one convex primitive over a screen rectangle.

    ``planes`` ([K, 4] float32, optical frame) are the half-spaces ``n . x <= h``. Per pixel this
    is ``intersect.ray_convex`` (``rays @ planes[:, :3].T`` through BLAS, entry = first
    maximum of the entering planes' ``h / denom``, exit = minimum of the leaving ones), then the
    pixel takes the hit if it is strictly nearer than the buffer.
    """
    K = planes.shape[0]
    zero = np.float32(0.0)
    for v in range(v0, v1):
        for u in range(u0, u1):
            x = rays2[v, u, 0]
            y = rays2[v, u, 1]
            z = rays2[v, u, 2]
            t_in = _NINF32
            f = 0
            t_out = _INF32
            for k in range(K):
                denom = fma32(z, planes[k, 2], fma32(y, planes[k, 1], x * planes[k, 0])) + zero
                tk = planes[k, 3] / denom
                if denom < 0:
                    if tk > t_in:
                        t_in = tk
                        f = k
                elif denom > 0:
                    if tk < t_out:
                        t_out = tk
            if t_in <= t_out and t_in > _Z_NEAR32 and t_in < depth2[v, u]:
                depth2[v, u] = t_in
                prim2[v, u] = index
                face2[v, u] = f


@jit
def batched_hits(ids, rects, kind, planes32, coef, rays, W, depth, prim, face):
    """Z-buffer many small primitives, pair by pair (primitive order, then row-major pixels).

    Convex primitives use ``denom = n_x x + n_y y + n_z`` (rays have ``z = 1``) in float32;
    ellipsoids the float64 quadratic ``a t^2 - 2 b t + c`` whose coefficients ``coef`` ([M, 10])
    are polynomials in the ray's ``(x, y)``. A hit is kept where strictly nearer than the buffer,
    so each pixel ends with the nearest hit and, among equal depths, the first pair.
    """
    P = planes32.shape[1]
    for s in range(ids.shape[0]):
        i = ids[s]
        u0, u1, v0, v1 = rects[s, 0], rects[s, 1], rects[s, 2], rects[s, 3]
        convex = kind[i] == 0
        for v in range(v0, v1):
            for u in range(u0, u1):
                p = v * W + u
                if convex:
                    x = rays[p, 0]
                    y = rays[p, 1]
                    t_in = _NINF32
                    f = 0
                    t_out = _INF32
                    for k in range(P):
                        denom = planes32[i, k, 0] * x + planes32[i, k, 1] * y + planes32[i, k, 2]
                        tk = planes32[i, k, 3] / denom
                        if denom < 0:
                            if tk > t_in:
                                t_in = tk
                                f = k
                        elif denom > 0:
                            if tk < t_out:
                                t_out = tk
                    if t_in <= t_out and t_in > _Z_NEAR32:
                        t = t_in
                    else:
                        continue
                else:
                    x64 = np.float64(rays[p, 0])
                    y64 = np.float64(rays[p, 1])
                    c = coef[i]
                    a = c[0] * x64 * x64 + c[1] * y64 * y64 + c[2] + c[3] * x64 * y64 + c[4] * x64 + c[5] * y64
                    b = c[6] * x64 + c[7] * y64 + c[8]
                    disc = b * b - a * c[9]
                    if not disc >= 0:
                        continue
                    te = (b - np.sqrt(disc)) / a
                    if not te > _Z_NEAR64:
                        continue
                    t = np.float32(te)
                    f = 0
                if t < depth[p]:
                    depth[p] = t
                    prim[p] = i
                    face[p] = f
