"""A binary region mask (e.g. the ``corridor`` task: ego lane free up to the first obstacle):
2-class CE + Dice on the foreground."""
from __future__ import annotations

import numpy as np
import torch

from perception.config import TaskConfig
from perception.tasks.base import IGNORE_INDEX, TaskKind, cross_entropy, dice_loss

__all__ = ["Mask"]


class Mask(TaskKind):
    name = "mask"
    target_key = ""  # the task's own name (e.g. "corridor")
    default_classes = ("background", "foreground")

    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        valid = (target != IGNORE_INDEX).float()
        fg = raw.softmax(dim=1)[:, 1]
        return cross_entropy(raw, target) + dice_loss(fg, (target == 1).float(), valid)

    def colorize(self, pred: np.ndarray, cfg: TaskConfig) -> np.ndarray:
        out = np.zeros(pred.shape + (3,), dtype=np.uint8)
        out[pred > 0] = (255, 0, 255)
        return out
