"""Lighting: irradiance from sky, sun, headlights and street lamps, then haze."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import jit

__all__ = ["light", "haze"]


@jit
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


@jit
def haze(radiance, keep, air):
    """``radiance * keep + air * (1 - keep)`` in place (float32; ``keep`` per pixel)."""
    one = np.float32(1.0)
    for p in range(radiance.shape[0]):
        k = keep[p]
        for c in range(3):
            radiance[p, c] = radiance[p, c] * k + air[c] * (one - k)
