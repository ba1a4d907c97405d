"""Metric monocular depth in metres. The head predicts log-depth around a reference of 10 m, so the
output is positive by construction; the loss is scale-aware SILog on valid pixels only
(label > 0), which also suits sparse LiDAR ground truth.

One image cannot tell a long lens far away from a wide one close by: the metric scale the network
learns is that of its training cameras. ``TaskConfig.focal_px`` records their focal length at the
network input (``tadp train`` measures it on the training set); given the focal length of the
camera that took a frame (``CameraInfo``, a calibration file, a dataset's ``K``), depth is scaled
by ``focal / focal_px``, the canonical-camera rule of Metric3D (Yin et al. 2023). The vertical
focal length is the one used: driving depth comes mostly from the ground plane, whose image
offsets scale with it, and a frame stretched to the network's aspect ratio keeps it right.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from perception.config import TaskConfig
from perception.tasks.base import TaskKind

__all__ = ["Depth", "silog_loss", "camera_scale"]

_REF_LOG = math.log(10.0)


def log_depth(raw: torch.Tensor) -> torch.Tensor:
    return raw[:, 0].clamp(-8.0, 8.0) + _REF_LOG


def silog_loss(pred_log: torch.Tensor, target_m: torch.Tensor, lam: float = 0.85) -> torch.Tensor:
    """sqrt(mean(d^2) - lam * mean(d)^2) of d = log(pred) - log(gt) over valid pixels, plus a
    small L1 on d so the absolute scale is learned (lam < 1 already keeps scale-awareness)."""
    valid = target_m > 0
    if not bool(valid.any()):
        return pred_log.sum() * 0.0
    d = pred_log[valid] - torch.log(target_m[valid])
    return torch.sqrt((d**2).mean() - lam * d.mean() ** 2 + 1e-8) + 0.1 * d.abs().mean()


def camera_scale(cfg: TaskConfig, focal_px: float | torch.Tensor | None
                 ) -> float | torch.Tensor:
    """The factor from the training cameras' metric scale to this camera's: ``focal_px /
    cfg.focal_px``, 1 when either is unknown. ``focal_px`` is a float or one value per frame."""
    if focal_px is None or cfg.focal_px is None:
        return 1.0
    if isinstance(focal_px, torch.Tensor):
        return (focal_px.float() / cfg.focal_px).reshape(-1, 1, 1)
    return float(focal_px) / cfg.focal_px


class Depth(TaskKind):
    name = "depth"
    target_key = "depth"
    output_type = "metres"

    def channels(self, cfg: TaskConfig) -> int:
        return 1

    def class_names(self, cfg: TaskConfig) -> tuple[str, ...]:
        return ("depth_m",)

    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        return silog_loss(log_depth(raw), target.float())

    def postprocess(self, raw: torch.Tensor, cfg: TaskConfig,
                    focal_px: float | torch.Tensor | None = None) -> torch.Tensor:
        return (torch.exp(log_depth(raw)) * camera_scale(cfg, focal_px)).clamp(max=cfg.max_depth_m)

    def colorize(self, pred: np.ndarray, cfg: TaskConfig) -> np.ndarray:
        inv = 1.0 / np.clip(pred, 1.0, cfg.max_depth_m)  # near = bright
        norm = np.clip(255 * (inv - 1 / cfg.max_depth_m) / (1 - 1 / cfg.max_depth_m), 0, 255)
        return cv2.applyColorMap(norm.astype(np.uint8), cv2.COLORMAP_MAGMA)
