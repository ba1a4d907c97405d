"""Surface colours before lighting: the ground's (asphalt, paint, sidewalk, curb, verge,
wetness) and the objects' (normals, procedural details per material, emission)."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import fma64, inline, jit

__all__ = ["track_exponent", "ground_albedo", "object_albedo"]


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


# Materials (``primitive.Material``) and rows of :func:`object_albedo`'s ``palette``.
_BODY, _GLASS, _TIRE, _FACADE, _FOLIAGE, _SIGN, _LAMP, _SIGNAL = 1, 2, 3, 4, 5, 6, 7, 8
(_RED, _HEAD, _SODIUM, _WINDOW, _PLATE, _SIGN_RED, _SIGN_DARK, _SIGN_RIM, _SIGN_WHITE, _SIGN_BACK,
 _SIGNAL_RGB) = range(11)


@jit
def object_albedo(idx, pid, face, kind, material, planes_c, R_wc, frame, color, params, Pw, noise, leaf, palette,
                  night, dusk, headlights, lit_windows, normal, albedo, emissive, spec):
    """``shading._object_albedo`` after its texture look-ups, pixel by pixel, for the object pixels
    ``idx`` of primitives ``pid`` at world points ``Pw`` ([K, 3] float64): writes their world
    normals, clipped albedo, emission and specular weight into ``normal``, ``albedo``,
    ``emissive`` ([N, 3] float32) and ``spec`` ([N] float32).

    Normals: convex faces take the face plane's normal ``@ R_wc.T`` as dgemm computes it,
    ellipsoids the gradient at the hit. Materials that paint details (facades: windows; bodies:
    lights, plate, grille; signs; traffic lights) work in the primitive's local frame (a rotation
    about z plus an offset). ``noise`` ([K] float32) is the albedo noise, ``leaf`` ([F, 3] float32)
    the three planar leaf-texture samples (xy, yz, xz) of the foliage pixels in pixel order,
    ``palette`` the fixed colours (rows ``_RED`` ... ``_SIGNAL_RGB + 2``). Float32 stays float32
    and float64 float64 where the NumPy code mixed them (NumPy 2 promotion rules).
    """
    f0 = np.float32(0.0)
    f1 = np.float32(1.0)
    k_foliage = 0
    for q in range(idx.shape[0]):
        i = pid[q]
        m = material[i]
        # World normal, float64 and float32.
        if kind[i] == 0:
            f = face[q]
            a0, a1, a2 = planes_c[i, f, 0], planes_c[i, f, 1], planes_c[i, f, 2]
            n0 = fma64(a2, R_wc[0, 2], fma64(a1, R_wc[0, 1], a0 * R_wc[0, 0])) + 0.0
            n1 = fma64(a2, R_wc[1, 2], fma64(a1, R_wc[1, 1], a0 * R_wc[1, 0])) + 0.0
            n2 = fma64(a2, R_wc[2, 2], fma64(a1, R_wc[2, 1], a0 * R_wc[2, 0])) + 0.0
        else:
            d0 = Pw[q, 0] - frame[i, 0, 3]
            d1 = Pw[q, 1] - frame[i, 1, 3]
            d2 = Pw[q, 2] - frame[i, 2, 3]
            l0 = (frame[i, 0, 0] * d0 + frame[i, 1, 0] * d1 + frame[i, 2, 0] * d2) / params[i, 0] ** 2
            l1 = (frame[i, 0, 1] * d0 + frame[i, 1, 1] * d1 + frame[i, 2, 1] * d2) / params[i, 1] ** 2
            l2 = (frame[i, 0, 2] * d0 + frame[i, 1, 2] * d1 + frame[i, 2, 2] * d2) / params[i, 2] ** 2
            g0 = frame[i, 0, 0] * l0 + frame[i, 0, 1] * l1 + frame[i, 0, 2] * l2
            g1 = frame[i, 1, 0] * l0 + frame[i, 1, 1] * l1 + frame[i, 1, 2] * l2
            g2 = frame[i, 2, 0] * l0 + frame[i, 2, 1] * l1 + frame[i, 2, 2] * l2
            norm = np.sqrt(g0 * g0 + g1 * g1 + g2 * g2) + 1e-12
            n0, n1, n2 = g0 / norm, g1 / norm, g2 / norm
        m0, m1, m2 = np.float32(n0), np.float32(n1), np.float32(n2)
        p = idx[q]
        normal[p, 0], normal[p, 1], normal[p, 2] = m0, m1, m2
        # Local coordinates and normal (detailed materials only).
        x0 = x1 = x2 = f0
        nl0 = nl1 = nl2 = f0
        if m == _FACADE or m == _BODY or m == _SIGN or m == _SIGNAL:
            cs = frame[i, 0, 0]
            sn = frame[i, 1, 0]
            d0 = Pw[q, 0] - frame[i, 0, 3]
            d1 = Pw[q, 1] - frame[i, 1, 3]
            x0 = np.float32(cs * d0 + sn * d1)
            x1 = np.float32(-sn * d0 + cs * d1)
            x2 = np.float32(Pw[q, 2] - frame[i, 2, 3])
            nl0 = np.float32(cs * np.float64(m0) + sn * np.float64(m1))
            nl1 = np.float32(-sn * np.float64(m0) + cs * np.float64(m1))
            nl2 = m2
        g = f1 + np.float32(0.05) * noise[q]
        b0 = np.float32(color[i, 0]) * g
        b1 = np.float32(color[i, 1]) * g
        b2 = np.float32(color[i, 2]) * g
        c0, c1, c2 = b0, b1, b2
        e0 = e1 = e2 = f0
        sp = f0
        if m == _FOLIAGE:
            # Triplanar leaf texture (blended by the normal), clumps, darker underneath; hedges
            # (boxes) finer and softer than free-standing crowns.
            w0 = abs(m0) + np.float32(1e-3)
            w1 = abs(m1) + np.float32(1e-3)
            w2 = abs(m2) + np.float32(1e-3)
            ws = (w0 + w1) + w2
            lf = ((w2 / ws) * leaf[k_foliage, 0] + (w0 / ws) * leaf[k_foliage, 1]
                  + (w1 / ws) * leaf[k_foliage, 2]) * np.float32(1.1)
            k_foliage += 1
            under = _clip(np.float32(0.75) + np.float32(0.35) * m2, np.float32(0.45), f1)
            flat = f1 if kind[i] == 0 else f0
            clumps = _clip(np.float32(0.6) + (np.float32(0.8) - np.float32(0.45) * flat) * lf, np.float32(0.08),
                           np.float32(1.8)) ** np.float32(1.3)
            k = clumps * under
            c0 = np.float32(color[i, 0]) * k
            c1 = np.float32(color[i, 1]) * k
            c2 = np.float32(color[i, 2]) * k
        elif m == _GLASS or m == _TIRE:
            c0, c1, c2 = np.float32(color[i, 0]), np.float32(color[i, 1]), np.float32(color[i, 2])
            if m == _GLASS:
                sp = np.float32(0.35)
        elif m == _FACADE:
            floor, pitch, frac, has_win = params[i, 0], params[i, 1], params[i, 2], params[i, 3]
            along = x0 if abs(nl1) > np.float32(0.5) else x1
            fu = _mod(np.float64(along), pitch) / pitch
            fz = _mod(np.float64(x2), floor) / floor
            window = (fu < frac and fz > 0.3 and fz < 0.82 and x2 > np.float32(1.0) and has_win > 0
                      and abs(nl2) < np.float32(0.5))
            cell_u = np.floor(np.float64(along) / pitch)
            cell_z = np.floor(np.float64(x2) / floor)
            if window and (fu < 0.04 or fu > frac - 0.04):  # window frame: a thin light border
                c0, c1, c2 = b0 * np.float32(0.8), b1 * np.float32(0.8), b2 * np.float32(0.8)
            elif window:
                tint = _mod(np.sin(cell_u * 12.9 + cell_z * 78.2) * 437.5, 1.0)
                c0 = np.float32(palette[_WINDOW, 0] * (0.7 + 0.9 * tint))
                c1 = np.float32(palette[_WINDOW, 1] * (0.7 + 0.9 * tint))
                c2 = np.float32(palette[_WINDOW, 2] * (0.7 + 0.9 * tint))
                sp = np.float32(0.12 + 0.15 * tint)
            else:
                h = f1 + np.float32(0.12) * noise[q]
                c0, c1, c2 = b0 * h, b1 * h, b2 * h
                if nl2 > np.float32(0.5):  # roof
                    c0, c1, c2 = c0 * np.float32(0.55), c1 * np.float32(0.55), c2 * np.float32(0.55)
                if x2 < np.float32(0.5):  # ground floor
                    c0, c1, c2 = c0 * np.float32(0.8), c1 * np.float32(0.8), c2 * np.float32(0.8)
            if (night or dusk) and window:
                cell = cell_u * 7.31 + cell_z * 3.17 + i * 0.917
                if _mod(np.sin(cell) * 43758.5453, 1.0) < lit_windows:
                    k = np.float32(0.25) if night else np.float32(0.08)
                    e0, e1, e2 = k, np.float32(0.8) * k, np.float32(0.5) * k
        elif m == _BODY:
            Wd, top, variant = params[i, 1], params[i, 2], params[i, 3]
            z = np.float64(x2)
            side_y = np.float64(abs(x1))
            rear = nl0 < np.float32(-0.5)
            front = nl0 > np.float32(0.5)
            band = z > top - 0.32 and z < top - 0.08
            tail = rear and side_y > 0.5 * Wd - 0.38 and band
            head = front and side_y > 0.5 * Wd - 0.42 and band and variant != 3
            plate = rear and side_y < 0.26 and z > top - 0.55 and z < top - 0.38
            grille = front and side_y < 0.5 * Wd - 0.45 and band
            if x2 < np.float32(0.42):  # lower body
                c0, c1, c2 = c0 * np.float32(0.6), c1 * np.float32(0.6), c2 * np.float32(0.6)
            if grille:
                c0 = c1 = c2 = np.float32(0.02)
            if tail:
                c0, c1, c2 = palette[_RED, 0], palette[_RED, 1], palette[_RED, 2]
            if plate:
                c0, c1, c2 = palette[_PLATE, 0], palette[_PLATE, 1], palette[_PLATE, 2]
            if head:
                c0 = c1 = c2 = np.float32(0.6)
            if night or dusk or headlights:
                k = np.float32(1.0) if night else np.float32(0.35)
                if tail:
                    e0 = palette[_RED, 0] * np.float32(3.0) * k
                    e1 = palette[_RED, 1] * np.float32(3.0) * k
                    e2 = palette[_RED, 2] * np.float32(3.0) * k
                if head:
                    e0 = palette[_HEAD, 0] * np.float32(6.0) * k
                    e1 = palette[_HEAD, 1] * np.float32(6.0) * k
                    e2 = palette[_HEAD, 2] * np.float32(6.0) * k
            elif tail and _mod(i * 0.618, 1.0) < 0.15:  # braking
                e0 = palette[_RED, 0] * np.float32(1.2)
                e1 = palette[_RED, 1] * np.float32(1.2)
                e2 = palette[_RED, 2] * np.float32(1.2)
            sp = np.float32(0.12) if nl2 > np.float32(0.5) else np.float32(0.06)
        elif m == _SIGN:
            shape, w, size, height = params[i, 0], params[i, 1], params[i, 2], params[i, 3]
            yy = np.float64(x1) / (0.5 * w)
            zz = (np.float64(x2) - height - 0.5 * size) / (0.5 * size)
            r = np.hypot(yy, zz)
            row = -1
            if nl0 < np.float32(-0.5):  # the face (towards traffic)
                if shape == 0 and r > 0.7 and r < 1.0:
                    row = _SIGN_RED  # ring
                if shape == 0 and r >= 1.0:
                    row = _SIGN_RIM  # the plate is square, the sign is round
                if (shape == 4 or shape == 2) and (abs(yy) > 0.85 or abs(zz) > 0.85):
                    row = _SIGN_RED if shape == 4 else _SIGN_DARK  # rim
                if shape == 2 and abs(yy) < 0.6 and _mod(zz * 3.0, 1.0) < 0.35 and abs(zz) < 0.6:
                    row = _SIGN_DARK  # text
                if (shape == 1 or shape == 3) and abs(yy) + abs(zz) < 0.45:
                    row = _SIGN_WHITE if shape == 1 else _SIGN_DARK  # symbol
                if row >= 0:
                    c0, c1, c2 = palette[row, 0], palette[row, 1], palette[row, 2]
                if night and headlights:  # retro-reflective faces light up
                    e0, e1, e2 = c0 * np.float32(0.08), c1 * np.float32(0.08), c2 * np.float32(0.08)
            else:
                c0, c1, c2 = palette[_SIGN_BACK, 0], palette[_SIGN_BACK, 1], palette[_SIGN_BACK, 2]
        elif m == _SIGNAL:
            state, yc, base = params[i, 0], params[i, 1], params[i, 3]
            rel = np.float64(x2) - base  # 0 bottom .. 1 m top of the housing
            fl = np.floor(rel * 3.0)
            slot = _clip(2.0 - fl, 0.0, 2.0)  # 0 red (top), 1 amber, 2 green
            cy = (fl + 0.5) / 3.0
            lamp = nl0 < np.float32(-0.5) and np.hypot(rel - cy, np.float64(x1) - yc) < 0.12
            if lamp and slot == state:
                k = np.float32(3.0) if night else np.float32(1.2)
                row = _SIGNAL_RGB + int(state)
                e0, e1, e2 = palette[row, 0] * k, palette[row, 1] * k, palette[row, 2] * k
            elif lamp:
                c0 = c1 = c2 = np.float32(0.04)
        elif m == _LAMP:
            if (night or dusk) and m2 < np.float32(-0.5):
                k = np.float32(8.0) if night else np.float32(2.0)
                e0, e1, e2 = palette[_SODIUM, 0] * k, palette[_SODIUM, 1] * k, palette[_SODIUM, 2] * k
        albedo[p, 0] = _clip(c0, f0, f1)
        albedo[p, 1] = _clip(c1, f0, f1)
        albedo[p, 2] = _clip(c2, f0, f1)
        emissive[p, 0], emissive[p, 1], emissive[p, 2] = e0, e1, e2
        spec[p] = sp
