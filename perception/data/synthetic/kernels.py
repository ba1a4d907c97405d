"""Compiled (numba) per-pixel loops of the renderer.

Each kernel computes exactly what the NumPy expression it replaced computed, operation for
operation and in the same precision, so frames stay byte-identical:

* float32 stays float32: scalar constants compared with or combined into float32 values are
  float32 constants here too (NumPy 2 casts a Python float to the array's precision);
* no fast-math and no implicit contraction of ``a * b + c``; where the replaced code went through
  BLAS (``rays @ planes.T``, 3x3 products), whose kernels compute ``fma(z, c, fma(y, b, x * a))``
  from +0, the same fused operations are spelled out with :func:`fma32` / :func:`fma64` (and
  ``+ 0`` turns a -0 sum into +0 as BLAS does). These patterns are OpenBLAS's Haswell kernels
  (what NumPy uses on this machine), checked bit for bit against it;
* reductions keep NumPy's order and tie rules (``argmax`` = first maximum; the nearest hit per
  pixel = the first of equal depths in pair order).

Transcendental float32 functions (``np.exp``), texture look-ups (``cv2.remap``) and OpenCV
filters stay outside: NumPy's SIMD float32 ``exp`` and OpenCV's code paths are not what a compiled
loop would call. Float64 ``sin`` and ``pow`` are libm's on both sides.

Kernels are compiled on first use and cached on disk (``cache=True``); :func:`warm_up` compiles
them ahead of forking worker processes.
"""
from __future__ import annotations

import llvmlite.ir as ir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "fma32", "fma64", "warm_up",
    # visibility
    "convex_rect", "batched_hits", "ellipsoid_coefs", "place_convex", "place_points", "undistort_plumb_bob",
    # ground
    "ground_hits", "interp", "track_exponent", "ground_albedo",
    # shading and camera effects
    "object_frames", "light", "haze", "upsample2", "lonely2", "grid_select", "sorted_intersect", "scale_rgb",
    "tone_and_noise",
]

_Z_NEAR32 = np.float32(0.05)
_Z_NEAR64 = 0.05
_INF32 = np.float32(np.inf)
_NINF32 = np.float32(-np.inf)

_jit = njit(cache=True, nogil=True, error_model="numpy")
_inline = njit(cache=True, nogil=True, error_model="numpy", inline="always")  # helpers of the kernels


@intrinsic
def fma32(typingctx, a, b, c):
    """``a * b + c`` in float32 with one rounding (LLVM's ``llvm.fma.f32``)."""
    sig = types.float32(types.float32, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f32, [f32, f32, f32]), "llvm.fma.f32")
        return builder.call(fn, args)

    return sig, codegen


@intrinsic
def fma64(typingctx, a, b, c):
    """``a * b + c`` in float64 with one rounding (LLVM's ``llvm.fma.f64``)."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        f64 = ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(f64, [f64, f64, f64]), "llvm.fma.f64")
        return builder.call(fn, args)

    return sig, codegen


@_inline
def _mm3(A, B):
    """``A @ B`` for 3x3 float64 as BLAS dgemm computes it: ``fma(a2, b2, fma(a1, b1, a0 * b0))``."""
    C = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            C[i, j] = fma64(A[i, 2], B[2, j], fma64(A[i, 1], B[1, j], A[i, 0] * B[0, j])) + 0.0
    return C


@_jit
def place_convex(planes_l, verts_l, T):
    """``primitive._place``: local half-spaces ``[K, 4]`` and points ``[V, 3]`` to the world
    through ``T`` ([4, 4]), as its NumPy/BLAS products compute them (``planes[:, :3] @ R.T`` and
    ``verts @ R.T``: dgemm; ``n_w @ o``: dgemv on a row-major matrix)."""
    K = planes_l.shape[0]
    V = verts_l.shape[0]
    planes_w = np.empty((K, 4))
    verts_w = np.empty((V, 3))
    o0, o1, o2 = T[0, 3], T[1, 3], T[2, 3]
    for k in range(K):
        a0, a1, a2 = planes_l[k, 0], planes_l[k, 1], planes_l[k, 2]
        n0 = fma64(a2, T[0, 2], fma64(a1, T[0, 1], a0 * T[0, 0])) + 0.0
        n1 = fma64(a2, T[1, 2], fma64(a1, T[1, 1], a0 * T[1, 0])) + 0.0
        n2 = fma64(a2, T[2, 2], fma64(a1, T[2, 1], a0 * T[2, 0])) + 0.0
        planes_w[k, 0] = n0
        planes_w[k, 1] = n1
        planes_w[k, 2] = n2
        planes_w[k, 3] = planes_l[k, 3] + (fma64(n2, o2, fma64(n0, o0, n1 * o1)) + 0.0)
    for v in range(V):
        a0, a1, a2 = verts_l[v, 0], verts_l[v, 1], verts_l[v, 2]
        verts_w[v, 0] = (fma64(a2, T[0, 2], fma64(a1, T[0, 1], a0 * T[0, 0])) + 0.0) + o0
        verts_w[v, 1] = (fma64(a2, T[1, 2], fma64(a1, T[1, 1], a0 * T[1, 0])) + 0.0) + o1
        verts_w[v, 2] = (fma64(a2, T[2, 2], fma64(a1, T[2, 1], a0 * T[2, 0])) + 0.0) + o2
    return planes_w, verts_w


@_jit
def place_points(points_l, T):
    """``points_l[e] @ T[e, :3, :3].T + T[e, :3, 3]`` for every ``e`` ([E, V, 3] and [E, 4, 4]),
    as the BLAS product computes it (see :func:`place_convex`)."""
    E, V = points_l.shape[0], points_l.shape[1]
    out = np.empty((E, V, 3))
    for e in range(E):
        for v in range(V):
            a0, a1, a2 = points_l[e, v, 0], points_l[e, v, 1], points_l[e, v, 2]
            for c in range(3):
                out[e, v, c] = (fma64(a2, T[e, c, 2], fma64(a1, T[e, c, 1], a0 * T[e, c, 0])) + 0.0) + T[e, c, 3]
    return out


@_jit
def ellipsoid_coefs(ids, frame, params, R_wc, o, coef):
    """``renderer._ellipsoid_cam`` and the ray-quadratic coefficients of ``renderer._batched``
    for the ellipsoids ``ids`` (rows of ``coef``, [M, 10]), the same float64 operations in the
    same order as the NumPy/BLAS code they replaced (dgemm: fused multiply-adds as above; dgemv
    with a transposed matrix and 1-D dot products: plain sums; dgemv with a row-major matrix:
    ``fma(a2, x2, fma(a0, x0, a1 * x1))``; BLAS sums start from +0, so ``+ 0.0`` turns a -0
    result into +0 as they do)."""
    R_cw = np.empty((3, 3))
    for a in range(3):
        for b in range(3):
            R_cw[a, b] = R_wc[b, a]
    R_cwT = np.empty((3, 3))
    for a in range(3):
        for b in range(3):
            R_cwT[a, b] = R_wc[a, b]
    D = np.zeros((3, 3))
    F3 = np.empty((3, 3))
    F3T = np.empty((3, 3))
    for q in range(ids.shape[0]):
        i = ids[q]
        for a in range(3):
            D[a, a] = 1.0 / (params[i, a] * params[i, a])
            for b in range(3):
                F3[a, b] = frame[i, a, b]
                F3T[b, a] = frame[i, a, b]
        M_w = _mm3(_mm3(F3, D), F3T)
        v0 = frame[i, 0, 3] - o[0]
        v1 = frame[i, 1, 3] - o[1]
        v2 = frame[i, 2, 3] - o[2]
        c0 = ((R_cw[0, 0] * v0 + R_cw[0, 1] * v1) + R_cw[0, 2] * v2) + 0.0
        c1 = ((R_cw[1, 0] * v0 + R_cw[1, 1] * v1) + R_cw[1, 2] * v2) + 0.0
        c2 = ((R_cw[2, 0] * v0 + R_cw[2, 1] * v1) + R_cw[2, 2] * v2) + 0.0
        M = _mm3(_mm3(R_cw, M_w), R_cwT)
        m0 = fma64(M[0, 2], c2, fma64(M[0, 0], c0, M[0, 1] * c1)) + 0.0
        m1 = fma64(M[1, 2], c2, fma64(M[1, 0], c0, M[1, 1] * c1)) + 0.0
        m2 = fma64(M[2, 2], c2, fma64(M[2, 0], c0, M[2, 1] * c1)) + 0.0
        coef[i, 0] = M[0, 0]
        coef[i, 1] = M[1, 1]
        coef[i, 2] = M[2, 2]
        coef[i, 3] = 2 * M[0, 1]
        coef[i, 4] = 2 * M[0, 2]
        coef[i, 5] = 2 * M[1, 2]
        coef[i, 6] = m0
        coef[i, 7] = m1
        coef[i, 8] = m2
        coef[i, 9] = (((c0 * m0 + c1 * m1) + c2 * m2) + 0.0) - 1.0


@_jit
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


@_jit
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


@_jit
def grid_select(index, W, step, W2):
    """Of the (sorted) flat pixel indices ``index`` of a ``W``-wide image, the positions of those on
    the ``step`` grid and their flat indices in the ``W2``-wide grid image."""
    n = index.shape[0]
    pos = np.empty(n, np.int64)
    sub = np.empty(n, np.int64)
    k = 0
    row = 0
    row_start = 0
    for q in range(n):
        p = index[q]
        while p >= row_start + W:  # (sorted: walk the rows instead of dividing)
            row += 1
            row_start += W
        if row % step:
            continue
        u = p - row_start
        on = (u & 1) == 0 if step == 2 else u % step == 0
        if on:
            pos[k] = q
            sub[k] = (row // step) * W2 + u // step
            k += 1
    return pos[:k].copy(), sub[:k].copy()


@_jit
def sorted_intersect(index, pix):
    """Positions in ``index`` of the values also in ``pix``, and their positions in ``pix``
    (both arrays sorted ascending, no repeats)."""
    n = min(index.shape[0], pix.shape[0])
    a = np.empty(n, np.int64)
    b = np.empty(n, np.int64)
    i = 0
    j = 0
    k = 0
    while i < index.shape[0] and j < pix.shape[0]:
        if index[i] < pix[j]:
            i += 1
        elif index[i] > pix[j]:
            j += 1
        else:
            a[k] = i
            b[k] = j
            k += 1
            i += 1
            j += 1
    return a[:k], b[:k]


@_jit
def lonely2(ks, key2, H, W):
    """[H, W] bool: the pixels none of whose samples in :func:`upsample2` shows their surface."""
    H2 = ks.shape[0] - 1
    W2 = ks.shape[1] - 1
    lonely = np.zeros((H, W), np.bool_)
    for i in range(H2):
        for j in range(W2):
            for dy in range(2):
                y = 2 * i + dy
                if y >= H:
                    continue
                for dx in range(2):
                    x = 2 * j + dx
                    if x >= W:
                        continue
                    target = key2[y, x]
                    alone = ks[i, j] != target
                    if alone and dx == 1:
                        alone = ks[i, j + 1] != target
                    if alone and dy == 1:
                        alone = ks[i + 1, j] != target
                    if alone and dx == 1 and dy == 1:
                        alone = ks[i + 1, j + 1] != target
                    lonely[y, x] = alone
    return lonely


@_jit
def upsample2(small, ks, key2, H, W):
    """Edge-aware 2x upsampling of the half-resolution shading (see ``renderer._shade_subsampled``).

    ``small`` ([H2 + 1, W2 + 1, 3] float32) and ``ks`` ([H2 + 1, W2 + 1] int64) are the shaded
    samples and their surface keys, edge-padded by one; ``key2`` ([2 H2, 2 W2]) the full-resolution
    keys. Pixel ``(2i + dy, 2j + dx)`` averages the samples around it that show its surface with
    the weights 1: A = (i, j); for dx: B = (i, j + 1); for dy: C = (i + 1, j); for both: B, C and
    D = (i + 1, j + 1). Returns ([H, W, 3] float32, [H, W] bool: no sample shares its surface).
    """
    H2 = small.shape[0] - 1
    W2 = small.shape[1] - 1
    out = np.empty((H, W, 3), np.float32)
    lonely = np.zeros((H, W), np.bool_)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    for i in range(H2):
        for j in range(W2):
            for dy in range(2):
                y = 2 * i + dy
                if y >= H:
                    continue
                for dx in range(2):
                    x = 2 * j + dx
                    if x >= W:
                        continue
                    target = key2[y, x]
                    a0 = zero
                    a1 = zero
                    a2 = zero
                    wsum = zero
                    for m in range(4):
                        if m == 1 and dx == 0:
                            continue
                        if m == 2 and dy == 0:
                            continue
                        if m == 3 and (dx == 0 or dy == 0):
                            continue
                        si = i + (m >> 1)
                        sj = j + (m & 1)
                        w = one if ks[si, sj] == target else zero
                        a0 += small[si, sj, 0] * w
                        a1 += small[si, sj, 1] * w
                        a2 += small[si, sj, 2] * w
                        wsum += w
                    d = wsum if wsum > one else one
                    out[y, x, 0] = a0 / d
                    out[y, x, 1] = a1 / d
                    out[y, x, 2] = a2 / d
                    lonely[y, x] = wsum == zero
    return out, lonely


@_jit
def _interp_slopes(xp, fp):
    out = np.empty(max(xp.shape[0] - 1, 0))
    for i in range(xp.shape[0] - 1):
        out[i] = (fp[i + 1] - fp[i]) / (xp[i + 1] - xp[i])
    return out


@_inline
def _interp_index(x, xp, guess):
    """NumPy's interp bracket: -1 below, len(xp) above, else the j with xp[j] <= x < xp[j + 1]
    (len(xp) - 1 at the last sample). ``guess`` (a previous answer) only speeds it up."""
    n = xp.shape[0]
    if x < xp[0]:
        return -1
    if x > xp[n - 1]:
        return n
    if x == xp[n - 1]:
        return n - 1
    # Now xp[0] <= x < xp[n - 1]: find j in [0, n - 2] with xp[j] <= x < xp[j + 1].
    lo = 0
    hi = n - 1
    if 0 <= guess < n - 1:
        if xp[guess] <= x:
            if x < xp[guess + 1]:
                return guess
            lo = guess + 1
            if lo < n - 1 and x < xp[lo + 1]:
                return lo
        else:
            hi = guess
            if guess > 0 and xp[guess - 1] <= x:
                return guess - 1
    # Invariant: xp[lo] <= x < xp[hi].
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if xp[mid] <= x:
            lo = mid
        else:
            hi = mid
    return lo


@_inline
def _interp_at(j, x, xp, fp, slopes):
    """``np.interp`` at ``x`` given its bracket ``j`` (:func:`_interp_index`), bit for bit."""
    n = xp.shape[0]
    if j == -1:
        return fp[0]
    if j >= n - 1:
        return fp[n - 1]
    if xp[j] == x:
        return fp[j]
    slope = slopes[j]
    r = slope * (x - xp[j]) + fp[j]
    if r != r:
        r = slope * (x - xp[j + 1]) + fp[j + 1]
        if r != r and fp[j] == fp[j + 1]:
            r = fp[j]
    return r


@_jit
def interp(x, xp, fp, slopes):
    """``np.interp(x, xp, fp)`` for one float64 ``x``, bit for bit (``slopes`` from
    :func:`_interp_slopes`)."""
    if x != x:
        return x
    return _interp_at(_interp_index(x, xp, -1), x, xp, fp, slopes)


@_jit
def _road_coords(X, Y, xg, yg, slg, sg, s_y, s_sl, s_s, guess):
    """``Road.to_road`` for one point; also returns the grid bracket of ``X`` (the next guess).

    The three lookups share one bracket; the interpolation is written out (the common case),
    with :func:`_interp_at` for the exact NumPy fallbacks when it gives NaN.
    """
    n = xg.shape[0]
    j = _interp_index(X, xg, guess)
    if j < 0:
        f, slope, s = yg[0], slg[0], sg[0]
    elif j >= n - 1:
        f, slope, s = yg[n - 1], slg[n - 1], sg[n - 1]
    elif xg[j] == X:
        f, slope, s = yg[j], slg[j], sg[j]
    else:
        w = X - xg[j]
        f = s_y[j] * w + yg[j]
        slope = s_sl[j] * w + slg[j]
        s = s_s[j] * w + sg[j]
        if f != f or slope != slope or s != s:
            f, slope, s = _interp3_exact(j, X, xg, yg, slg, sg, s_y, s_sl, s_s)
    return s, (Y - f) / np.sqrt(1.0 + slope * slope), j


@_jit
def _interp3_exact(j, X, xg, yg, slg, sg, s_y, s_sl, s_s):
    """NumPy's NaN fallbacks of the three lookups (out of line: never taken on finite data)."""
    if X != X:
        return X, X, X
    return _interp_at(j, X, xg, yg, s_y), _interp_at(j, X, xg, slg, s_sl), _interp_at(j, X, xg, sg, s_s)


@_inline
def _width_scale(s, amp, period, phase):
    """``Road.scale`` for one arc length."""
    if amp == 0.0:
        return 1.0
    return 1.0 + amp * np.sin(2 * np.pi * s / period + phase)


@_jit
def _plane_hits(gi, dirs_w, o, z, xg, yg, slg, sg, amp, period, phase, T, X, Y, S, D, DN, M):
    """Hits of the rays ``gi`` with the plane at height ``z``: ray parameter, world X/Y, road
    ``s``, ``d``, the width modulation ``m(s)`` and the nominal offset ``d / m(s)``."""
    s_y = _interp_slopes(xg, yg)
    s_sl = _interp_slopes(xg, slg)
    s_s = _interp_slopes(xg, sg)
    o0, o1, o2 = o[0], o[1], o[2]
    h = z - o2 if z != 0.0 else -o2
    n = xg.shape[0]
    guess = -1
    for q in range(gi.shape[0]):
        p = gi[q]
        dz = np.float64(dirs_w[p, 2])
        t = h / dz
        x = o0 + t * np.float64(dirs_w[p, 0])
        y = o1 + t * np.float64(dirs_w[p, 1])
        # Road.to_road, written out here (calling _road_coords makes this loop ~4x slower).
        j = _interp_index(x, xg, guess)
        guess = j
        if j < 0:
            f, slope, s = yg[0], slg[0], sg[0]
        elif j >= n - 1:
            f, slope, s = yg[n - 1], slg[n - 1], sg[n - 1]
        elif xg[j] == x:
            f, slope, s = yg[j], slg[j], sg[j]
        else:
            w = x - xg[j]
            f = s_y[j] * w + yg[j]
            slope = s_sl[j] * w + slg[j]
            s = s_s[j] * w + sg[j]
            if f != f or slope != slope or s != s:
                f, slope, s = _interp3_exact(j, x, xg, yg, slg, sg, s_y, s_sl, s_s)
        d = (y - f) / np.sqrt(1.0 + slope * slope)
        T[q] = t
        X[q] = x
        Y[q] = y
        S[q] = s
        D[q] = d
        m = _width_scale(s, amp, period, phase)
        M[q] = m
        DN[q] = d / m


@_jit
def _curbs(gi, dirs_w, o, hc, xg, yg, slg, sg, er, el, T, X, Y, Z, S, D, DN, surface,
           T1, X1, Y1, S1, D1, DN1):
    """Move the hits beyond the road edges onto the raised ground (height ``hc``, arrays ``*1``)
    or onto the curb face where the ray passes the edge between the two planes."""
    s_y = _interp_slopes(xg, yg)
    s_sl = _interp_slopes(xg, slg)
    s_s = _interp_slopes(xg, sg)
    o0, o1, o2 = o[0], o[1], o[2]
    guess = -1
    for q in range(gi.shape[0]):
        dn1 = DN1[q]
        if not (dn1 >= er and dn1 <= el):  # on top of the raised ground
            T[q] = T1[q]
            X[q] = X1[q]
            Y[q] = Y1[q]
            S[q] = S1[q]
            D[q] = D1[q]
            DN[q] = dn1
            Z[q] = hc
            surface[q] = 2
        elif surface[q] != 0:  # on the curb face: interpolate the crossing along the ray
            dn = DN[q]
            edge = el if dn > el else er
            frac = (edge - dn1) / (dn - dn1)
            if frac < 0.0:
                frac = 0.0
            elif frac > 1.0:
                frac = 1.0
            t1 = T1[q]
            tc = t1 + frac * (T[q] - t1)
            p = gi[q]
            T[q] = tc
            x = o0 + tc * np.float64(dirs_w[p, 0])
            y = o1 + tc * np.float64(dirs_w[p, 1])
            X[q] = x
            Y[q] = y
            Z[q] = o2 + tc * np.float64(dirs_w[p, 2])
            s, d, guess = _road_coords(x, y, xg, yg, slg, sg, s_y, s_sl, s_s, guess)
            S[q] = s
            D[q] = d
            DN[q] = edge
            surface[q] = 1


@_jit
def _ground_classes(DN, surface, er, el, walk_r, walk_l, verge_r, verge_l, road_cls, sidewalk_cls, cls):
    """Road between the edges, then the sidewalk strip, then the verge; curbs are sidewalk."""
    for q in range(DN.shape[0]):
        dn = DN[q]
        c = road_cls
        if dn < er:
            c = sidewalk_cls if er - dn <= walk_r else verge_r
        elif dn > el:
            c = sidewalk_cls if dn - el <= walk_l else verge_l
        if surface[q] == 1:
            c = sidewalk_cls
        cls[q] = c


@_jit
def _nearest_lines(M, D, DN, surface, painted, B, line_k, line_u):
    """Nearest painted boundary (index ``painted[...]``) and the signed offset from it, on the road
    (``M``: the width modulation at each hit's ``s``)."""
    nb = B.shape[0]
    for q in range(DN.shape[0]):
        if surface[q] != 0:
            continue
        dn = DN[q]
        if dn != dn:
            j = nb
        else:
            lo = 0
            hi = nb
            while lo < hi:  # first index with B[i] >= dn (searchsorted, side left)
                mid = (lo + hi) >> 1
                if B[mid] < dn:
                    lo = mid + 1
                else:
                    hi = mid
            j = lo
        j = min(max(j, 1), max(nb - 1, 1))
        jlo = min(max(j - 1, 0), nb - 1)
        jhi = min(max(j, 0), nb - 1)
        m = M[q]
        d = D[q]
        u_lo = d - m * B[jlo]
        u_hi = d - m * B[jhi]
        if abs(u_hi) < abs(u_lo):
            line_k[q] = painted[jhi]
            line_u[q] = u_hi
        else:
            line_k[q] = painted[jlo]
            line_u[q] = u_lo


def ground_hits(gi, dirs_w, o, xg, yg, slg, sg, amp, period, phase, er, el, hc, walk_r, walk_l, verge_r, verge_l,
                painted, B, road_cls, sidewalk_cls):
    """``renderer._ground_pass`` for the pixels ``gi`` whose world ray points down: the road
    plane, the raised ground beyond its edges and the curb faces between them, each hit's road
    coordinates, surface, class and nearest painted boundary. float64 throughout, the same
    operations in the same order as the NumPy code it replaced. Returns ``t, X, Y, Z, s, d, dn,
    surface, cls, line_k, line_u`` ([G] each)."""
    G = gi.shape[0]
    T, X, Y, S, D, DN, M = (np.empty(G) for _ in range(7))
    _plane_hits(gi, dirs_w, o, 0.0, xg, yg, slg, sg, amp, period, phase, T, X, Y, S, D, DN, M)
    Z = np.zeros(G)
    surface = np.where((DN >= er) & (DN <= el), 0, 2).astype(np.int8)
    if hc > 0:
        T1, X1, Y1, S1, D1, DN1, M1 = (np.empty(G) for _ in range(7))
        _plane_hits(gi, dirs_w, o, hc, xg, yg, slg, sg, amp, period, phase, T1, X1, Y1, S1, D1, DN1, M1)
        _curbs(gi, dirs_w, o, hc, xg, yg, slg, sg, er, el, T, X, Y, Z, S, D, DN, surface, T1, X1, Y1, S1, D1, DN1)
    cls = np.empty(G, np.uint8)
    _ground_classes(DN, surface, er, el, walk_r, walk_l, verge_r, verge_l, road_cls, sidewalk_cls, cls)
    line_k = np.full(G, -1, np.int64)
    line_u = np.full(G, np.inf)
    if B.shape[0]:
        # (Road-surface hits are all first-plane hits, whose m(s) is M.)
        _nearest_lines(M, D, DN, surface, painted, B, line_k, line_u)
    return T, X, Y, Z, S, D, DN, surface, cls, line_k, line_u


@_jit
def scale_rgb(img, k, rgb):
    """``(img * k) * rgb`` (float32 ``[H, W, 3]``, scalar ``k``, per-channel ``rgb``), a new array."""
    out = np.empty_like(img)
    H, W = img.shape[0], img.shape[1]
    for y in range(H):
        for x in range(W):
            for c in range(3):
                out[y, x, c] = (img[y, x, c] * k) * rgb[c]
    return out


@_jit
def tone_and_noise(img, vignette, use_vignette, lut, scale, rain, use_rain, use_noise, sigma0, bank, dy, dx,
                   use_chroma, chroma):
    """The end of ``camera_effects.finish`` in one pass over the float32 ``[H, W, 3]`` image:
    vignetting (``img * vignette[..., None]``), the tone table ``lut[int32(clip(img * scale, 0,
    len(lut) - 1))]``, the rain streaks (``+ rain[..., None]``), shot-like noise ``+ bank[dy:, dx:]
    * sigma0 * (1.3 - out * 0.6 / 255)``, a per-channel gain ``chroma``, then
    ``uint8(clip(out + 0.5, 0, 255))``; each step as the NumPy code it replaced computed it."""
    H, W = img.shape[0], img.shape[1]
    image = np.empty((H, W, 3), np.uint8)
    top = np.float32(lut.shape[0] - 1)
    zero = np.float32(0.0)
    k = np.float32(0.6 / 255.0)
    a = np.float32(1.3)
    half = np.float32(0.5)
    hi = np.float32(255.0)
    for y in range(H):
        for x in range(W):
            g = vignette[y, x]
            r = rain[y, x] if use_rain else zero
            for c in range(3):
                v = img[y, x, c]
                if use_vignette:
                    v = v * g
                v = v * scale
                if v < zero:
                    v = zero
                elif v > top:
                    v = top
                v = np.float32(lut[np.int32(v)])
                if use_rain:
                    v = v + r
                if use_noise:
                    sigma = sigma0 * (a - v * k)
                    v = v + bank[dy + y, dx + x, c] * sigma
                    if use_chroma:
                        v = v * chroma[c]
                v = v + half
                if v < zero:
                    v = zero
                elif v > hi:
                    v = hi
                image[y, x, c] = np.uint8(v)
    return image


@_jit
def light(albedo, emissive, normal, shadow, prim, ambient, contact, sunlit, sun_rgb, sun_dir, head, head_irr,
          white, lamps, lamp_irr, sodium):
    """``albedo * irradiance + emissive`` (float32 ``[N, 3]``), the irradiance as
    ``shading.shade`` sums it: sky light ``ambient * (0.55 + 0.45 n_z)`` (darkened by the contact
    ``shadow`` on the ground when ``contact``), the sun ``sun_rgb * clip(n . sun_dir, 0, 1)``
    (shadowed on the ground), ``white * head_irr`` and ``sodium * lamp_irr`` when enabled."""
    N = albedo.shape[0]
    out = np.empty((N, 3), np.float32)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    k_sky0 = np.float32(0.55)
    k_sky1 = np.float32(0.45)
    k_contact = np.float32(0.6)
    for p in range(N):
        ground = prim[p] == -1
        sky_w = k_sky0 + k_sky1 * normal[p, 2]
        if contact:
            sky_w = sky_w * (one - (k_contact * shadow[p]) * (one if ground else zero))
        lam = zero
        if sunlit:
            # [N, 3] @ [3] (float32) as NumPy computes it: a plain sum from +0.
            lam = ((normal[p, 0] * sun_dir[0] + normal[p, 1] * sun_dir[1]) + normal[p, 2] * sun_dir[2]) + zero
            if lam < zero:
                lam = zero
            elif lam > one:
                lam = one
            lam = lam * ((one - shadow[p]) if ground else one)
        for c in range(3):
            irr = ambient[c] * sky_w
            if sunlit:
                irr = irr + sun_rgb[c] * lam
            if head:
                irr = irr + white[c] * head_irr[p]
            if lamps:
                irr = irr + sodium[c] * lamp_irr[p]
            out[p, c] = albedo[p, c] * irr + emissive[p, c]
    return out


@_jit
def haze(radiance, keep, air):
    """``radiance * keep + air * (1 - keep)`` in place (float32; ``keep`` per pixel)."""
    one = np.float32(1.0)
    for p in range(radiance.shape[0]):
        k = keep[p]
        for c in range(3):
            radiance[p, c] = radiance[p, c] * k + air[c] * (one - k)


@_inline
def _plumb_bob(x, y, k):
    """``calibration.camera._distort_normalized`` (plumb_bob, ``k`` = D padded to 8) for one point."""
    r2 = x * x + y * y
    radial = (1 + r2 * (k[0] + r2 * (k[1] + r2 * k[4]))) / (1 + r2 * (k[5] + r2 * (k[6] + r2 * k[7])))
    xd = x * radial + 2 * k[2] * x * y + k[3] * (r2 + 2 * x * x)
    yd = y * radial + k[2] * (r2 + 2 * y * y) + 2 * k[3] * x * y
    return xd, yd


@_jit
def undistort_plumb_bob(xy, xy_d, k, steps, eps):
    """The Newton refinement of ``calibration.camera._undistort_normalized`` for the plumb_bob
    model, point by point with the same float64 operations: ``xy`` ([N, 2], the seed) is refined
    in place towards ``distort(xy) = xy_d``; points left without a valid preimage become NaN."""
    two_eps = 2 * eps
    for i in range(xy.shape[0]):
        x = xy[i, 0]
        y = xy[i, 1]
        xd0 = xy_d[i, 0]
        yd0 = xy_d[i, 1]
        det = 1.0
        for _ in range(steps):
            a0, a1 = _plumb_bob(x, y, k)
            f0 = a0 - xd0
            f1 = a1 - yd0
            p0, p1 = _plumb_bob(x + eps, y + 0.0, k)
            m0, m1 = _plumb_bob(x - eps, y - 0.0, k)
            fx0 = (p0 - m0) / two_eps
            fx1 = (p1 - m1) / two_eps
            p0, p1 = _plumb_bob(x + 0.0, y + eps, k)
            m0, m1 = _plumb_bob(x - 0.0, y - eps, k)
            fy0 = (p0 - m0) / two_eps
            fy1 = (p1 - m1) / two_eps
            det = fx0 * fy1 - fy0 * fx1
            ok = abs(det) > 1e-12
            safe = det if ok else 1.0
            dx = (fy1 * f0 - fy0 * f1) / safe
            dy = (-fx1 * f0 + fx0 * f1) / safe
            if ok:
                x = x - dx
                y = y - dy
            else:
                x = x - 0.0
                y = y - 0.0
        a0, a1 = _plumb_bob(x, y, k)
        r0 = abs(a0 - xd0)
        r1 = abs(a1 - yd0)
        bad = not (r0 == r0 and r1 == r1)  # NaN
        if not bad:
            residual = r0 if r0 > r1 else r1
            bad = not np.isfinite(residual) or residual > 1e-9
        if bad or det <= 0:
            x = np.nan
            y = np.nan
        xy[i, 0] = x
        xy[i, 1] = y


@_inline
def _clip(x, lo, hi):
    """``np.clip`` for one value (NaN stays NaN)."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@_inline
def _max(a, b):
    """``np.maximum`` for one pair (NaN wins)."""
    if a != a or b != b:
        return a + b
    return a if a >= b else b


@_inline
def _min(a, b):
    """``np.minimum`` for one pair (NaN wins)."""
    if a != a or b != b:
        return a + b
    return a if a <= b else b


@_inline
def _mod(a, b):
    """NumPy's floating ``np.mod`` (sign of the divisor) for one pair, ``b > 0``."""
    m = np.fmod(a, b)
    if m != 0:
        if (b < 0) != (m < 0):
            m = m + b
    else:
        m = m - m  # +0 (copysign(0, b) with b > 0)
    return m


@_jit
def track_exponent(ri, dn, d64, d32, B, n_lanes):
    """For the road pixels ``ri``: ``-(off / 0.35) ** 2`` (float32), ``off`` the lateral distance
    from the lane centre's tyre track, as ``shading._ground_albedo`` computes it (its ``np.exp``
    stays NumPy's)."""
    out = np.empty(ri.shape[0], np.float32)
    nb = B.shape[0]
    for q in range(ri.shape[0]):
        i = ri[q]
        x = dn[i]
        if x != x:
            j = nb
        else:
            lo = 0
            hi = nb
            while lo < hi:  # first index with B[j] > x (searchsorted, side right)
                mid = (lo + hi) >> 1
                if B[mid] <= x:
                    lo = mid + 1
                else:
                    hi = mid
            j = lo
        lane = min(max(j - 1, 0), n_lanes - 1)
        centre = 0.5 * (B[lane] + B[lane + 1]) * d64[i] / (x if x != 0 else 1.0)
        off = abs(d32[i] - np.float32(centre)) - np.float32(0.8)
        r = off / np.float32(0.35)
        out[q] = -(r * r)
    return out


@_jit
def ground_albedo(surface, cls, s, d, dn, fp, fpl, lo, hi, crack, use_crack, track_exp, line_k, line_u,
                  asphalt, asphalt_var, crack_k, track_k, m_style, m_num, m_color, sidewalk, curb, grass, dirt,
                  grass_var, er, el, wet, wet_k):
    """``shading._ground_albedo`` after its texture look-ups, pixel by pixel with the same float32 /
    float64 operations: asphalt (patches, cracks, tyre tracks), anti-aliased paint, sidewalk slabs,
    curbs, verges with a dirt strip, wetness; returns the clipped albedo ([G, 3] float32) and the
    wet-road reflectivity ([G] float32).

    ``m_num[k]`` holds marking ``k``'s (period, phase, half dash, half width, stroke offset, wear)
    and ``m_style[k]`` its ``LineStyle`` value (1 solid, 2 dashed, 3 double, 4 solid + dashed); scalars that the NumPy code combined with float32
    arrays come as float32 already (``asphalt_var``, ``crack_k``, ``track_k``, ``grass_var``,
    ``wet_k``), ``wet`` as float64.
    """
    G = surface.shape[0]
    out = np.empty((G, 3), np.float32)
    refl = np.zeros(G, np.float32)
    f0 = np.float32(0.0)
    f1 = np.float32(1.0)
    half = np.float32(0.5)
    t = 0
    for q in range(G):
        sf = surface[q]
        c = cls[q]
        L = lo[q]
        Hh = hi[q]
        road = sf == 0
        if sf == 1:  # curb
            g = f1 + np.float32(0.05) * Hh
            for ch in range(3):
                out[q, ch] = curb[ch] * g
        elif c == 1:  # sidewalk slabs
            js = _mod(s[q], np.float32(1.6))
            jd = _mod(d[q], np.float32(1.6))
            joint = _min(_min(js, np.float32(1.6) - js), _min(jd, np.float32(1.6) - jd))
            f = fp[q]
            line = (_clip((np.float32(0.03) - joint) / _max(f, np.float32(1e-3)) + half, f0, f1)
                    * _clip(np.float32(1.5) - f * np.float32(20), f0, f1))
            g = ((f1 + np.float32(0.08) * L) + np.float32(0.05) * Hh) * (f1 - np.float32(0.35) * line)
            for ch in range(3):
                out[q, ch] = sidewalk[ch] * g
        elif c == 6:  # verge: grass and dirt, a dirt strip along the road edge
            mix = _clip(np.float32(-0.9) * L - np.float32(0.9), f0, np.float32(0.7))
            x = dn[q]
            ne = 0.7 * _clip(1.0 - _min(abs(x - er), abs(x - el)) / 0.4, 0.0, 1.0)
            g = np.float64((f1 + grass_var * L) + np.float32(0.25) * Hh)
            for ch in range(3):
                base = grass[ch] * (f1 - mix) + dirt[ch] * mix
                out[q, ch] = np.float32((np.float64(base) * (1 - ne) + np.float64(dirt[ch]) * ne) * g)
        else:  # asphalt
            v = (f1 + asphalt_var * L) + np.float32(0.07) * Hh
            if use_crack:
                v = v * (f1 - crack_k * crack[q])
            if road:
                v = v * (f1 - track_k * track_exp[t])
            for ch in range(3):
                out[q, ch] = asphalt[ch] * v
            k = line_k[q]
            u = line_u[q]
            if road and k >= 0 and abs(u) < np.float64(half + np.float32(2.0) * fp[q]):
                period, phase, hd, hw, off2, wear = (m_num[k, 0], m_num[k, 1], m_num[k, 2], m_num[k, 3],
                                                     m_num[k, 4], m_num[k, 5])
                ph = _mod(s[q] + np.float32(phase), np.float32(period))
                hd32 = np.float32(hd)
                dash = _clip((hd32 - abs(ph - hd32)) / fpl[q] + 0.5, 0.0, 1.0)
                fps = np.float64(fp[q])
                style = m_style[k]
                if style == 1 or style == 2:  # solid, dashed
                    cv = _clip((hw - abs(u - 0.0)) / fps + 0.5, 0.0, 1.0)
                    if style == 2:
                        cv = cv * dash
                else:  # double, solid (right) + dashed (left)
                    a = _clip((hw - abs(u - -off2)) / fps + 0.5, 0.0, 1.0)
                    b = _clip((hw - abs(u - off2)) / fps + 0.5, 0.0, 1.0)
                    if style != 3:
                        b = b * dash
                    cv = _max(a, b)
                if wear > 0:
                    cv = cv * np.float64(_clip(f1 - np.float32(wear) * (np.float32(0.6) + np.float32(0.8) * Hh),
                                               f0, f1))
                cov = np.float32(cv)
                for ch in range(3):
                    out[q, ch] = out[q, ch] * (f1 - cov) + m_color[k, ch] * cov
        if road:
            t += 1
        if wet > 0:
            if road:
                for ch in range(3):
                    out[q, ch] = out[q, ch] * wet_k
            r = (wet if road else 0.0) * np.float64(np.float32(0.6) + np.float32(0.4) * _clip(L, -f1, f1))
            refl[q] = np.float32(_clip(r, 0.0, 1.0))
        for ch in range(3):
            out[q, ch] = _clip(out[q, ch], f0, f1)
    return out, refl


@_jit
def object_frames(pid, face, kind, planes_c, R_wc, frame, color, detailed, Pw, n_ell):
    """The per-pixel geometry ``shading._object_albedo`` starts from, for object pixels of
    primitives ``pid``: world normals ([K, 3] float64; convex faces: the face plane's normal
    ``@ R_wc.T`` as dgemm computes it, ellipsoids: ``n_ell`` in pixel order), the float32 copy,
    local texture coordinates and normals of the ``detailed`` pixels (the yaw frame's cos/sin, in
    float64 then float32) and the float32 primitive colours."""
    K = pid.shape[0]
    n = np.empty((K, 3))
    n32 = np.empty((K, 3), np.float32)
    q_all = np.zeros((K, 3), np.float32)
    nl_all = np.zeros((K, 3), np.float32)
    col = np.empty((K, 3), np.float32)
    e = 0
    for q in range(K):
        i = pid[q]
        if kind[i] == 0:
            f = face[q]
            a0, a1, a2 = planes_c[i, f, 0], planes_c[i, f, 1], planes_c[i, f, 2]
            for c in range(3):
                n[q, c] = fma64(a2, R_wc[c, 2], fma64(a1, R_wc[c, 1], a0 * R_wc[c, 0])) + 0.0
        else:
            for c in range(3):
                n[q, c] = n_ell[e, c]
            e += 1
        for c in range(3):
            n32[q, c] = np.float32(n[q, c])
            col[q, c] = np.float32(color[i, c])
        if detailed[q]:
            cs = frame[i, 0, 0]
            sn = frame[i, 1, 0]
            d0 = Pw[q, 0] - frame[i, 0, 3]
            d1 = Pw[q, 1] - frame[i, 1, 3]
            d2 = Pw[q, 2] - frame[i, 2, 3]
            q_all[q, 0] = np.float32(cs * d0 + sn * d1)
            q_all[q, 1] = np.float32(-sn * d0 + cs * d1)
            q_all[q, 2] = np.float32(d2)
            m0 = np.float64(n32[q, 0])
            m1 = np.float64(n32[q, 1])
            nl_all[q, 0] = np.float32(cs * m0 + sn * m1)
            nl_all[q, 1] = np.float32(-sn * m0 + cs * m1)
            nl_all[q, 2] = n32[q, 2]
    return n, n32, q_all, nl_all, col


def warm_up() -> None:
    """Compile (or load from the cache) every kernel, e.g. before forking worker processes."""
    rays2 = np.zeros((1, 1, 3), np.float32)
    rays2[..., 2] = 1.0
    depth = np.full(1, np.inf, np.float32)
    prim = np.zeros(1, np.int32)
    face = np.zeros(1, np.int8)
    planes = np.zeros((1, 6, 4), np.float32)
    convex_rect(rays2, planes[0], 0, 1, 0, 1, depth.reshape(1, 1), prim.reshape(1, 1), face.reshape(1, 1), 0)
    batched_hits(np.zeros(1, np.int64), np.array([[0, 1, 0, 1]], np.int64), np.zeros(1, np.int8), planes,
                 np.zeros((1, 10)), rays2.reshape(1, 3), 1, depth, prim, face)
    upsample2(np.zeros((2, 2, 3), np.float32), np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), 2, 2)
    lonely2(np.zeros((2, 2), np.int64), np.zeros((2, 2), np.int64), 2, 2)
    grid_select(np.arange(4), 2, 2, 1)
    sorted_intersect(np.arange(4), np.arange(2))
    img = np.zeros((2, 2, 3), np.float32)
    scale_rgb(img, np.float32(1.0), np.ones(3, np.float32))
    tone_and_noise(img, np.ones((2, 2), np.float32), True, np.zeros(16, np.uint8), np.float32(2.0),
                   np.zeros((2, 2), np.float32), True, True, np.float32(1.0), np.zeros((4, 4, 3), np.float32), 1, 1,
                   True, np.ones(3, np.float32))
    v3 = np.ones(3, np.float32)
    v1 = np.ones(1, np.float32)
    rgb = light(v3.reshape(1, 3), v3.reshape(1, 3), v3.reshape(1, 3), v1, np.zeros(1, np.int32), v3, True, True, v3,
                v3, True, v1, v3, True, v1, v3)
    haze(rgb, v1, v3)
    coef = np.zeros((1, 10))
    frame = np.eye(4)[None]
    ellipsoid_coefs(np.zeros(1, np.int64), frame, np.ones((1, 4)), np.eye(3), np.zeros(3), coef)
    place_convex(np.zeros((6, 4)), np.zeros((8, 3)), np.eye(4))
    place_convex(np.zeros((0, 4)), np.zeros((8, 3)), np.eye(4))
    place_points(np.zeros((1, 8, 3)), frame)
    grid = np.arange(3.0)
    ground_hits(np.zeros(1, np.int64), -rays2.reshape(1, 3), np.ones(3), grid, grid, grid, grid, 0.1, 400.0, 0.0,
                -5.0, 5.0, 0.15, 1.0, 1.0, 6, 6, np.zeros(1, np.int64), np.zeros(1), 0, 1)
