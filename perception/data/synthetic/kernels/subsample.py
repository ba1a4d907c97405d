"""Half-resolution shading: picking the grid pixels and upsampling the shaded grid edge-aware
(``renderer._shade_subsampled``)."""
from __future__ import annotations

import numpy as np

from perception.data.synthetic.kernels._jit import jit

__all__ = ["grid_select", "sorted_intersect", "lonely2", "upsample2"]


@jit
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


@jit
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


@jit
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


@jit
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
