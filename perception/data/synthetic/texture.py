"""Procedural textures: tileable noise sampled at world coordinates with ``cv2.remap``.

The tiles are built once per process from a fixed seed (so textures are deterministic and cost
nothing per frame); scenes vary them through random scales and offsets. Sampling at world
coordinates keeps textures glued to surfaces from frame to frame.
"""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np

__all__ = ["TILE", "noise_tile", "crack_tile", "sample", "sample_octaves"]

TILE = 256


def _tileable_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Smooth value noise with ``cells`` features per tile side, tileable, zero mean, unit std."""
    base = rng.standard_normal((cells, cells)).astype(np.float32)
    big = np.tile(base, (3, 3))
    up = cv2.resize(big, (3 * TILE, 3 * TILE), interpolation=cv2.INTER_CUBIC)
    out = up[TILE:2 * TILE, TILE:2 * TILE]
    out = (out - out.mean()) / (out.std() + 1e-6)
    return np.ascontiguousarray(out)


@cache
def noise_tile(cells: int, seed: int = 0) -> np.ndarray:
    """[TILE, TILE] float32 tileable noise (read-only)."""
    tile = _tileable_noise(np.random.default_rng(1000 + 97 * cells + seed), cells)
    tile.setflags(write=False)
    return tile


@cache
def crack_tile(seed: int = 0) -> np.ndarray:
    """[TILE, TILE] float32 in [0, 1]: thin meandering lines (asphalt cracks and tar seams)."""
    rng = np.random.default_rng(5000 + seed)
    img = np.zeros((TILE, TILE), np.float32)
    for _ in range(14):
        pts = [rng.uniform(0, TILE, 2)]
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(rng.integers(4, 12)):
            angle += rng.normal(0, 0.6)
            pts.append(pts[-1] + rng.uniform(4, 14) * np.array([np.cos(angle), np.sin(angle)]))
        poly = (np.array(pts) * 16).astype(np.int32)
        # Draw on a 3x3 wrap so the tile stays seamless.
        for dx in (-TILE, 0, TILE):
            for dy in (-TILE, 0, TILE):
                cv2.polylines(img, [poly + np.array([dx, dy]) * 16], False, 1.0, 1, cv2.LINE_AA, shift=4)
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    img.setflags(write=False)
    return img


def sample(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample a tile at texel coordinates ``(u, v)`` (any shape, wrapped), bilinear."""
    shape, n = u.shape, u.size
    if n == 0:
        return np.zeros(shape, np.float32)
    # remap wants a 2-D map narrower than 32767 columns: pad to [rows, 1024].
    cols = min(n, 1024)
    rows = -(-n // cols)
    # BORDER_WRAP wraps any coordinate, so no modulo is needed (float32 keeps ~1/100 texel).
    mu = np.zeros(rows * cols, np.float32)
    mv = np.zeros(rows * cols, np.float32)
    mu[:n] = u.ravel()
    mv[:n] = v.ravel()
    out = cv2.remap(tile, mu.reshape(rows, cols), mv.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_WRAP)
    return out.ravel()[:n].reshape(shape)


def sample_octaves(u: np.ndarray, v: np.ndarray, scales: tuple[float, ...], weights: tuple[float, ...],
                   footprint: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Sum of noise octaves at world coordinates ``(u, v)`` metres.

    ``scales`` are texels per metre; an octave fades out where ``footprint`` (metres per pixel)
    exceeds its feature size, a cheap stand-in for mip-mapping that avoids far-field sparkle.
    """
    out = np.zeros(u.shape, np.float32)
    for i, (scale, weight) in enumerate(zip(scales, weights, strict=True)):
        tile = noise_tile(16, seed + i)
        val = sample(tile, u * scale + 37.0 * i, v * scale + 71.0 * i)
        if footprint is not None:
            feature_m = TILE / 16 / scale
            val = val * np.clip(1.5 - footprint / feature_m * 2.0, 0.0, 1.0)
        out += weight * val
    return out
