"""Surface colours before lighting: the ground's (asphalt, paint, sidewalk, curb, verge,
wetness) and the per-pixel frames and colours of object surfaces."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import fma64, inline, jit

__all__ = ["track_exponent", "ground_albedo", "object_frames"]


@inline
def _clip(x, lo, hi):
    """``np.clip`` for one value (NaN stays NaN)."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@inline
def _max(a, b):
    """``np.maximum`` for one pair (NaN wins)."""
    if a != a or b != b:
        return a + b
    return a if a >= b else b


@inline
def _min(a, b):
    """``np.minimum`` for one pair (NaN wins)."""
    if a != a or b != b:
        return a + b
    return a if a <= b else b


@inline
def _mod(a, b):
    """NumPy's floating ``np.mod`` (sign of the divisor) for one pair, ``b > 0``."""
    m = np.fmod(a, b)
    if m != 0:
        if (b < 0) != (m < 0):
            m = m + b
    else:
        m = m - m  # +0 (copysign(0, b) with b > 0)
    return m


@jit
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


@jit
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


@jit
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
