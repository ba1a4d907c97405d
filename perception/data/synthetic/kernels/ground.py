"""The ground pass: rays against the road plane, the raised ground beyond its edges and the curb
faces, with road coordinates, classes and the nearest painted line of every hit."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import inline, jit
from perception.data.synthetic.kernels.interp import interp_at, interp_index, interp_slopes

__all__ = ["ground_hits"]


@jit
def _road_coords(X, Y, xg, yg, slg, sg, s_y, s_sl, s_s, guess):
    """``Road.to_road`` for one point; also returns the grid bracket of ``X`` (the next guess).

    The three lookups share one bracket; the interpolation is written out (the common case),
    with :func:`interp_at` for the exact NumPy fallbacks when it gives NaN.
    """
    n = xg.shape[0]
    j = interp_index(X, xg, guess)
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


@jit
def _interp3_exact(j, X, xg, yg, slg, sg, s_y, s_sl, s_s):
    """NumPy's NaN fallbacks of the three lookups (out of line: never taken on finite data)."""
    if X != X:
        return X, X, X
    return interp_at(j, X, xg, yg, s_y), interp_at(j, X, xg, slg, s_sl), interp_at(j, X, xg, sg, s_s)


@inline
def _width_scale(s, amp, period, phase):
    """``Road.scale`` for one arc length."""
    if amp == 0.0:
        return 1.0
    return 1.0 + amp * np.sin(2 * np.pi * s / period + phase)


@jit
def _plane_hits(gi, dirs_w, o, z, xg, yg, slg, sg, amp, period, phase, T, X, Y, S, D, DN, M):
    """Hits of the rays ``gi`` with the plane at height ``z``: ray parameter, world X/Y, road
    ``s``, ``d``, the width modulation ``m(s)`` and the nominal offset ``d / m(s)``."""
    s_y = interp_slopes(xg, yg)
    s_sl = interp_slopes(xg, slg)
    s_s = interp_slopes(xg, sg)
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
        j = interp_index(x, xg, guess)
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


@jit
def _curbs(gi, dirs_w, o, hc, xg, yg, slg, sg, er, el, T, X, Y, Z, S, D, DN, surface,
           T1, X1, Y1, S1, D1, DN1):
    """Move the hits beyond the road edges onto the raised ground (height ``hc``, arrays ``*1``)
    or onto the curb face where the ray passes the edge between the two planes."""
    s_y = interp_slopes(xg, yg)
    s_sl = interp_slopes(xg, slg)
    s_s = interp_slopes(xg, sg)
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


@jit
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


@jit
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
