"""Drivable area, BDD100K convention with our ids: 0 background, 1 direct (the ego vehicle's own
area), 2 alternative (drivable but another lane). CE with ignore 255."""
from __future__ import annotations

import numpy as np
import torch

from perception.config import TaskConfig
from perception.tasks.base import TaskKind, cross_entropy

__all__ = ["Drivable"]

_PALETTE_BGR = np.array([[0, 0, 0], [0, 200, 0], [200, 120, 0]], dtype=np.uint8)


class Drivable(TaskKind):
    name = "drivable"
    target_key = "drivable"
    default_classes = ("background", "direct", "alternative")

    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        return cross_entropy(raw, target)

    def colorize(self, pred: np.ndarray, cfg: TaskConfig) -> np.ndarray:
        return _PALETTE_BGR[np.clip(pred, 0, 2)]
