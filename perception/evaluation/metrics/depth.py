"""Metric depth: the monodepth2 / Eigen error and accuracy measures on valid pixels."""
from __future__ import annotations

from typing import Any

import numpy as np

from perception.errors import ConfigError, InputError
from perception.evaluation.metrics._array import MetricDict, check_shapes, nan_to_none, to_numpy

__all__ = ["DepthMetrics", "DEPTH_KEYS"]


# Column order of DepthMetrics' per-image sums.
_DEPTH_SUMS = ("n", "abs_rel", "sq_rel", "sq", "sq_log", "d1", "d2", "d3")
DEPTH_KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta1", "delta2", "delta3")


class DepthMetrics:
    """Metric-depth errors on valid pixels, per the monodepth2 / Eigen et al. protocol.

    Valid pixels: finite ground truth with ``min_depth < gt < max_depth`` (0 = invalid in our
    labels, so it always drops out). Predictions are clipped to ``[min_depth, max_depth]``
    (monodepth2 ``evaluate_depth.py``). Then, over the N valid pixels of an image:
    AbsRel = mean |p-g|/g, SqRel = mean (p-g)^2/g, RMSE = sqrt(mean (p-g)^2),
    RMSE-log = sqrt(mean (ln p - ln g)^2), delta_k = fraction with max(p/g, g/p) < 1.25^k.

    ``reduction="image"`` (default, the KITTI/Eigen convention) computes these per image and
    averages over images that have valid pixels; ``"pixel"`` pools all valid pixels of the
    dataset. Both are exact under streaming. Depth maps may be [H, W], [B, H, W] or [B, 1, H, W],
    in metres. Non-finite predictions propagate NaN. Extra key ``valid_px``: valid pixels counted.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float | None = 80.0,
                 reduction: str = "image") -> None:
        if min_depth <= 0:
            raise ConfigError(f"min_depth must be > 0 (log and ratios need it), got {min_depth!r}")
        if max_depth is not None and max_depth <= min_depth:
            raise ConfigError(f"max_depth {max_depth!r} must exceed min_depth {min_depth!r}")
        if reduction not in ("image", "pixel"):
            raise ConfigError(f"reduction must be 'image' or 'pixel', got {reduction!r}")
        self.min_depth = float(min_depth)
        self.max_depth = None if max_depth is None else float(max_depth)
        self.reduction = reduction
        self._rows: list[np.ndarray] = []  # one [len(_DEPTH_SUMS)] row per image

    def update(self, pred: Any, target: Any) -> MetricDict:
        rows = self._image_sums(pred, target)
        self._rows.extend(rows)
        return self._metrics(np.stack(rows))

    def compute(self) -> MetricDict:
        rows = np.stack(self._rows) if self._rows else np.zeros((0, len(_DEPTH_SUMS)))
        return self._metrics(rows)

    def reset(self) -> None:
        self._rows.clear()

    def _image_sums(self, pred: Any, target: Any) -> list[np.ndarray]:
        p_all = to_numpy(pred).astype(np.float64, copy=False)
        g_all = to_numpy(target).astype(np.float64, copy=False)
        check_shapes(p_all.shape, g_all.shape, "DepthMetrics.update")
        if p_all.ndim == 2:
            p_all, g_all = p_all[None], g_all[None]
        elif p_all.ndim == 4 and p_all.shape[1] == 1:
            p_all, g_all = p_all[:, 0], g_all[:, 0]
        elif p_all.ndim != 3:
            raise InputError(
                f"depth maps must be [H, W], [B, H, W] or [B, 1, H, W], got shape {p_all.shape}"
            )
        rows = []
        for p, g in zip(p_all, g_all, strict=True):
            valid = np.isfinite(g) & (g > self.min_depth)
            if self.max_depth is not None:
                valid &= g < self.max_depth
            g = g[valid]
            p = np.clip(p[valid], self.min_depth, self.max_depth)
            err = p - g
            ratio = np.maximum(p / g, g / p)
            rows.append(np.array([
                g.size,
                np.sum(np.abs(err) / g),
                np.sum(err**2 / g),
                np.sum(err**2),
                np.sum((np.log(p) - np.log(g)) ** 2),
                np.sum(ratio < 1.25),
                np.sum(ratio < 1.25**2),
                np.sum(ratio < 1.25**3),
            ], dtype=np.float64))
        return rows

    def _metrics(self, rows: np.ndarray) -> MetricDict:
        valid_px = int(rows[:, 0].sum())
        if self.reduction == "pixel":
            rows = rows.sum(axis=0, keepdims=True)
        rows = rows[rows[:, 0] > 0]  # images without valid pixels are skipped
        if rows.shape[0]:
            mean = rows[:, 1:] / rows[:, :1]  # [I, 7]: abs_rel, sq_rel, mse, msle, d1, d2, d3
            mean[:, 2:4] = np.sqrt(mean[:, 2:4])  # root per image (or once when pooled)
            values = mean.mean(axis=0)
        else:
            values = np.full(len(DEPTH_KEYS), np.nan)
        out: MetricDict = {k: nan_to_none(float(v)) for k, v in zip(DEPTH_KEYS, values, strict=True)}
        out["valid_px"] = valid_px
        return out
