"""Placing primitives in the world and ellipsoids in the camera frame, as the NumPy/BLAS
products they replaced computed them (see the package docstring)."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import fma64, inline, jit

__all__ = ["place_convex", "place_planes", "place_points", "ellipsoid_coefs"]


@inline
def _mm3(A, B):
    """``A @ B`` for 3x3 float64 as BLAS dgemm computes it: ``fma(a2, b2, fma(a1, b1, a0 * b0))``."""
    C = np.empty((3, 3))
    for i in range(3):
        for j in range(3):
            C[i, j] = fma64(A[i, 2], B[2, j], fma64(A[i, 1], B[1, j], A[i, 0] * B[0, j])) + 0.0
    return C


@inline
def _place_planes(planes_l, T, planes_w):
    """Half-spaces ``[K, 4]`` to the world through ``T`` into ``planes_w`` (see :func:`place_convex`)."""
    o0, o1, o2 = T[0, 3], T[1, 3], T[2, 3]
    for k in range(planes_l.shape[0]):
        a0, a1, a2 = planes_l[k, 0], planes_l[k, 1], planes_l[k, 2]
        n0 = fma64(a2, T[0, 2], fma64(a1, T[0, 1], a0 * T[0, 0])) + 0.0
        n1 = fma64(a2, T[1, 2], fma64(a1, T[1, 1], a0 * T[1, 0])) + 0.0
        n2 = fma64(a2, T[2, 2], fma64(a1, T[2, 1], a0 * T[2, 0])) + 0.0
        planes_w[k, 0] = n0
        planes_w[k, 1] = n1
        planes_w[k, 2] = n2
        planes_w[k, 3] = planes_l[k, 3] + (fma64(n2, o2, fma64(n0, o0, n1 * o1)) + 0.0)


@jit
def place_convex(planes_l, verts_l, T):
    """``primitive._place``: local half-spaces ``[K, 4]`` and points ``[V, 3]`` to the world
    through ``T`` ([4, 4]), as its NumPy/BLAS products compute them (``planes[:, :3] @ R.T`` and
    ``verts @ R.T``: dgemm; ``n_w @ o``: dgemv on a row-major matrix)."""
    K = planes_l.shape[0]
    V = verts_l.shape[0]
    planes_w = np.empty((K, 4))
    verts_w = np.empty((V, 3))
    o0, o1, o2 = T[0, 3], T[1, 3], T[2, 3]
    _place_planes(planes_l, T, planes_w)
    for v in range(V):
        a0, a1, a2 = verts_l[v, 0], verts_l[v, 1], verts_l[v, 2]
        verts_w[v, 0] = (fma64(a2, T[0, 2], fma64(a1, T[0, 1], a0 * T[0, 0])) + 0.0) + o0
        verts_w[v, 1] = (fma64(a2, T[1, 2], fma64(a1, T[1, 1], a0 * T[1, 0])) + 0.0) + o1
        verts_w[v, 2] = (fma64(a2, T[2, 2], fma64(a1, T[2, 1], a0 * T[2, 0])) + 0.0) + o2
    return planes_w, verts_w


@jit
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


@jit
def place_planes(planes_l, T):
    """The half-spaces of :func:`place_convex` for many primitives at once: ``planes_l[e]``
    ([E, K, 4]) through ``T[e]`` ([E, 4, 4]), the same numbers as one ``place_convex`` call each."""
    out = np.empty(planes_l.shape)
    for e in range(planes_l.shape[0]):
        _place_planes(planes_l[e], T[e], out[e])
    return out


@jit
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
