"""Kinds used by the paper's PASCAL-Context configuration: saliency (balanced BCE, as MTLoRA) and
surface normals (L1 on unit vectors)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from perception.config import TaskConfig
from perception.tasks.base import IGNORE_INDEX, TaskKind

__all__ = ["Saliency", "Normals"]


class Saliency(TaskKind):
    name = "saliency"
    target_key = "saliency"

    def channels(self, cfg: TaskConfig) -> int:
        return 1

    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        valid = (target != IGNORE_INDEX).float()
        tgt = (target == 1).float()
        pos = (tgt * valid).sum().clamp(min=1)
        w_pos = 1 - pos / valid.sum().clamp(min=1)  # balanced BCE: weight by the other class
        weight = torch.where(tgt > 0, w_pos, 1 - w_pos) * valid
        return F.binary_cross_entropy_with_logits(raw[:, 0], tgt, weight=weight)

    def postprocess(self, raw: torch.Tensor, cfg: TaskConfig,
                    focal_px: float | torch.Tensor | None = None,
                    height_m: float | torch.Tensor | None = None) -> torch.Tensor:
        return (raw[:, 0] > 0).to(torch.uint8)


class Normals(TaskKind):
    name = "normals"
    target_key = "normals"
    output_type = "vectors"

    def channels(self, cfg: TaskConfig) -> int:
        return 3

    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        valid = (target.abs().sum(dim=1, keepdim=True) > 0).float()
        pred = F.normalize(raw, dim=1)
        return ((pred - target).abs() * valid).sum() / valid.sum().clamp(min=1)

    def postprocess(self, raw: torch.Tensor, cfg: TaskConfig,
                    focal_px: float | torch.Tensor | None = None,
                    height_m: float | torch.Tensor | None = None) -> torch.Tensor:
        return F.normalize(raw, dim=1)
