"""``np.interp`` for one value, bit for bit; the ground pass looks road coordinates up with it."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import inline, jit

__all__ = ["interp_slopes", "interp_index", "interp_at", "interp"]


@jit
def interp_slopes(xp, fp):
    """The slope of every interval of ``(xp, fp)``, as :func:`interp` needs them."""
    out = np.empty(max(xp.shape[0] - 1, 0))
    for i in range(xp.shape[0] - 1):
        out[i] = (fp[i + 1] - fp[i]) / (xp[i + 1] - xp[i])
    return out


@inline
def interp_index(x, xp, guess):
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


@inline
def interp_at(j, x, xp, fp, slopes):
    """``np.interp`` at ``x`` given its bracket ``j`` (:func:`interp_index`), bit for bit."""
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


@jit
def interp(x, xp, fp, slopes):
    """``np.interp(x, xp, fp)`` for one float64 ``x``, bit for bit (``slopes`` from
    :func:`interp_slopes`)."""
    if x != x:
        return x
    return interp_at(interp_index(x, xp, -1), x, xp, fp, slopes)
