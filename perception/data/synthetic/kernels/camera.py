"""The camera: lens undistortion (plumb_bob) and the sensor effects that end a frame (exposure,
vignetting, tone curve, rain, noise)."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import inline, jit

__all__ = ["undistort_plumb_bob", "scale_rgb", "tone_and_noise"]


@inline
def _plumb_bob(x, y, k):
    """``calibration.camera._distort_normalized`` (plumb_bob, ``k`` = D padded to 8) for one point."""
    r2 = x * x + y * y
    radial = (1 + r2 * (k[0] + r2 * (k[1] + r2 * k[4]))) / (1 + r2 * (k[5] + r2 * (k[6] + r2 * k[7])))
    xd = x * radial + 2 * k[2] * x * y + k[3] * (r2 + 2 * x * x)
    yd = y * radial + k[2] * (r2 + 2 * y * y) + 2 * k[3] * x * y
    return xd, yd


@jit
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


@jit
def scale_rgb(img, k, rgb):
    """``(img * k) * rgb`` (float32 ``[H, W, 3]``, scalar ``k``, per-channel ``rgb``), a new array."""
    out = np.empty_like(img)
    H, W = img.shape[0], img.shape[1]
    for y in range(H):
        for x in range(W):
            for c in range(3):
                out[y, x, c] = (img[y, x, c] * k) * rgb[c]
    return out


@jit
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
