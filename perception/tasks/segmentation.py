"""Semantic segmentation: N classes, cross-entropy with ignore index 255, argmax ids."""
from __future__ import annotations

import numpy as np
import torch

from perception.config import TaskConfig
from perception.data.classes import SYNTH_CLASSES
from perception.tasks.base import TaskKind, cross_entropy

__all__ = ["Segmentation"]


class Segmentation(TaskKind):
    name = "segmentation"
    target_key = "segmentation"
    default_classes = tuple(c.name for c in SYNTH_CLASSES)

    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        return cross_entropy(raw, target)

    def colorize(self, pred: np.ndarray, cfg: TaskConfig) -> np.ndarray:
        if self.class_names(cfg) == self.default_classes:
            palette = np.array([c.color_rgb[::-1] for c in SYNTH_CLASSES], dtype=np.uint8)
            return palette[np.clip(pred, 0, len(palette) - 1)]
        return super().colorize(pred, cfg)
