"""Lane-line mask (thin structures): 2-class softmax with focal loss + Dice on the lane class, so
the loss does not collapse to background; lane pixels are ~2 % of a frame."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from perception.config import TaskConfig
from perception.tasks.base import IGNORE_INDEX, TaskKind, dice_loss

__all__ = ["Lanes", "focal_dice_loss"]


def focal_dice_loss(raw: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
                    alpha: float = 0.75) -> torch.Tensor:
    """Focal CE (alpha weights the foreground) + soft Dice of class 1; ignores 255."""
    valid = (target != IGNORE_INDEX).float()
    tgt = torch.where(target == IGNORE_INDEX, torch.zeros_like(target), target).long()
    logp = F.log_softmax(raw, dim=1)
    logp_t = logp.gather(1, tgt.unsqueeze(1)).squeeze(1)
    weight = torch.where(tgt == 1, alpha, 1 - alpha)
    focal = -(weight * (1 - logp_t.exp()) ** gamma * logp_t * valid).sum() / valid.sum().clamp(min=1)
    return focal + dice_loss(logp[:, 1].exp(), tgt.float(), valid)


class Lanes(TaskKind):
    name = "lanes"
    target_key = "lanes"
    default_classes = ("background", "lane")

    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        return focal_dice_loss(raw, target)

    def colorize(self, pred: np.ndarray, cfg: TaskConfig) -> np.ndarray:
        out = np.zeros(pred.shape + (3,), dtype=np.uint8)
        out[pred > 0] = (0, 255, 255)
        return out
