"""Multi-task loss: per-task losses of the task kinds, fixed weights from the config
(``TaskConfig.loss_weight``) and optional homoscedastic uncertainty weighting.

Uncertainty weighting follows Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to
Weigh Losses for Scene Geometry and Semantics", CVPR 2018, with ``s_t = log sigma_t^2`` learned:
``L = sum_t w_t * (c_t * exp(-s_t) * L_t + s_t / 2)``, ``c_t = 1/2`` for regression (depth,
normals: Gaussian likelihood) and 1 for classification (softmax likelihood). ``s_t`` starts at 0.

Depth with a recorded training focal length (``TaskConfig.focal_px``) is learned in that
canonical camera (Metric3D's rule, ``perception.tasks.depth``): each sample's depth label is
scaled by ``focal_px / f``, ``f`` the focal length its label is consistent with (``meta["K"]``'s
``fy`` at the batch's resolution, over ``meta["depth_zoom"]`` when a zoom already scaled the
label). The runtime multiplies by the camera's ``f / focal_px`` again, so the network never has
to guess the focal length from the image. Samples without ``K`` keep their metric label.
With a height rule (``TaskConfig.height_exponent`` > 0 and ``height_m``), the label is also
scaled by ``(height_m / z) ** beta``, ``z`` the sample's mounting height (``meta["mounting"]``);
samples without one keep that factor at 1.

A task whose label is absent from a batch contributes ``0 * output.sum()``: the graph still
reaches every trainable parameter, which keeps DistributedDataParallel's gradient reduction
identical on all ranks.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from perception.config import TaskConfig
from perception.tasks import kind_of
from perception.tasks.depth import camera_scale

__all__ = ["MultiTaskLoss", "target_key", "canonical_target", "label_focal_px", "label_height_m"]

_REGRESSION_KINDS = frozenset({"depth", "normals"})


def target_key(cfg: TaskConfig) -> str:
    """The sample key holding a task's label (the ``mask`` kind uses the task's own name)."""
    return kind_of(cfg).target_key or cfg.name


def label_focal_px(metas: Sequence[Mapping[str, Any] | None], default: float) -> torch.Tensor:
    """Per sample, the vertical focal length (px, at the sample's resolution) its depth label is
    consistent with: ``K``'s ``fy`` over ``depth_zoom`` (1 without a zoom); ``default`` (the
    canonical one: no scaling) for samples without ``K``."""
    out = []
    for meta in metas:
        K = (meta or {}).get("K")
        out.append(default if K is None else float(K[1][1]) / float(meta.get("depth_zoom", 1.0)))
    return torch.tensor(out, dtype=torch.float32)


def label_height_m(metas: Sequence[Mapping[str, Any] | None], default: float) -> torch.Tensor:
    """Per sample, its camera's mounting height (m); ``default`` (no scaling) without one."""
    out = []
    for meta in metas:
        mounting = (meta or {}).get("mounting") or {}
        out.append(default if mounting.get("z_m") is None else float(mounting["z_m"]))
    return torch.tensor(out, dtype=torch.float32)


def canonical_target(target: torch.Tensor, cfg: TaskConfig, batch: Mapping[str, Any]
                     ) -> torch.Tensor:
    """A depth label in the training cameras' focal length (``cfg.focal_px``) and, with a height
    rule, at their mean height (``cfg.height_m``), see above."""
    metas = batch.get("meta")
    use_height = cfg.height_m is not None and cfg.height_exponent > 0
    if not metas or (cfg.focal_px is None and not use_height):
        return target
    focal = None if cfg.focal_px is None else label_focal_px(metas, cfg.focal_px)
    height = label_height_m(metas, cfg.height_m) if use_height else None
    scale = camera_scale(cfg, focal, height)
    if isinstance(scale, torch.Tensor):
        scale = scale.to(target.device)
    return target / scale  # invalid pixels stay 0


class MultiTaskLoss(nn.Module):
    """Weighted sum of task losses.

    Args:
        tasks: the tasks to train (their ``loss_weight`` is the fixed weight ``w_t``).
        uncertainty: learn ``s_t`` per task (Kendall et al.); its parameters belong in the
            optimizer and the checkpoint (they are this module's parameters).

    ``forward`` returns ``(total, parts)``: the scalar to back-propagate and detached floats per
    task plus ``"loss"`` = sum of ``w_t * L_t`` (without uncertainty terms), comparable across
    epochs and runs whatever the weighting.
    """

    def __init__(self, tasks: Sequence[TaskConfig], uncertainty: bool = False) -> None:
        super().__init__()
        self.tasks = {t.name: t for t in tasks}
        self.uncertainty = uncertainty
        self.log_vars = nn.ParameterDict(
            {t.name: nn.Parameter(torch.zeros(())) for t in tasks} if uncertainty else {})

    def forward(self, raw: Mapping[str, torch.Tensor], batch: Mapping[str, Any],
                extra: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros((), device=next(iter(raw.values())).device)
        fixed = 0.0
        parts: dict[str, float] = {}
        for name, cfg in self.tasks.items():
            out = raw[name].float()
            key = target_key(cfg)
            if key not in batch:
                total = total + 0.0 * out.sum()
                continue
            target = batch[key].to(out.device)
            if cfg.kind == "depth":
                target = canonical_target(target, cfg, batch)
            loss = kind_of(cfg).loss(out, target, cfg)
            parts[name] = float(loss.detach())
            fixed += cfg.loss_weight * parts[name]
            if self.uncertainty:
                s = self.log_vars[name]
                c = 0.5 if cfg.kind in _REGRESSION_KINDS else 1.0
                loss = c * torch.exp(-s) * loss + 0.5 * s
            total = total + cfg.loss_weight * loss
        if extra is not None:
            total = total + extra
        parts["loss"] = fixed
        return total, parts

    def weights(self) -> dict[str, float]:
        """Effective weight of each task now (``w_t * c_t * exp(-s_t)``), for logs and curves."""
        out = {}
        for name, cfg in self.tasks.items():
            w = cfg.loss_weight
            if self.uncertainty:
                c = 0.5 if cfg.kind in _REGRESSION_KINDS else 1.0
                w *= c * float(torch.exp(-self.log_vars[name].detach()))
            out[name] = w
        return out
