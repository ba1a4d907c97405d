"""Metric monocular depth in metres. The head predicts log-depth around a reference of 10 m, so the
output is positive by construction; the loss is scale-aware SILog on valid pixels only
(label > 0), which also suits sparse LiDAR ground truth."""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from perception.config import TaskConfig
from perception.tasks.base import TaskKind

__all__ = ["Depth", "silog_loss"]

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

    def postprocess(self, raw: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        return torch.exp(log_depth(raw)).clamp(max=cfg.max_depth_m)

    def colorize(self, pred: np.ndarray, cfg: TaskConfig) -> np.ndarray:
        inv = 1.0 / np.clip(pred, 1.0, cfg.max_depth_m)  # near = bright
        norm = np.clip(255 * (inv - 1 / cfg.max_depth_m) / (1 - 1 / cfg.max_depth_m), 0, 255)
        return cv2.applyColorMap(norm.astype(np.uint8), cv2.COLORMAP_MAGMA)
