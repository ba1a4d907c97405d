"""What every task kind provides: output channels, loss, post-processing and colouring.

A kind is registered once in ``perception/tasks/__init__.py``; the network, trainer, engine and
node look kinds up by the ``kind`` field of a :class:`~perception.config.TaskConfig`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from perception.config import TaskConfig
from perception.errors import ConfigError

__all__ = ["TaskKind", "dice_loss"]

IGNORE_INDEX = 255


class TaskKind(ABC):
    """One kind of dense task. ``target_key`` names the sample field holding its label."""

    name: str = ""
    target_key: str = ""
    #: "ids" (uint8 class ids, mono8), "metres" (float32, 32FC1) or "vectors".
    output_type: str = "ids"
    default_classes: tuple[str, ...] = ()

    def channels(self, cfg: TaskConfig) -> int:
        """Number of raw output channels of the decoder."""
        n = cfg.num_classes or len(cfg.class_names) or len(self.default_classes)
        if not n:
            raise ConfigError(f"task {cfg.name!r} ({self.name}) needs num_classes or class_names")
        return n

    def upsample(self, raw: torch.Tensor, size: tuple[int, int] | None, cfg: TaskConfig
                 ) -> torch.Tensor:
        """The decoder's output (at its stride) -> raw output at ``size`` (the input's), the
        network's last step and the engine's after a compiled slot (in the slot worker, next to
        the task's post-processing: about the cost of ORT's Resize, ~2 ms at one thread);
        bilinear by default. ``size`` None returns ``raw`` as it is."""
        if size is None:
            return raw
        return F.interpolate(raw, size=size, mode="bilinear", align_corners=False)

    def class_names(self, cfg: TaskConfig) -> tuple[str, ...]:
        if cfg.class_names:
            return cfg.class_names
        if self.default_classes and self.channels(cfg) == len(self.default_classes):
            return self.default_classes
        return tuple(f"class_{i}" for i in range(self.channels(cfg)))

    @abstractmethod
    def loss(self, raw: torch.Tensor, target: torch.Tensor, cfg: TaskConfig) -> torch.Tensor:
        """Training loss of raw decoder output [B, K, H, W] against the sample's label."""

    def postprocess(self, raw: torch.Tensor, cfg: TaskConfig,
                    focal_px: float | torch.Tensor | None = None,
                    height_m: float | torch.Tensor | None = None) -> torch.Tensor:
        """Raw output -> what consumers use: class ids [B, H, W] uint8 (this default, for every
        per-pixel classification kind) or e.g. depth [B, H, W] metres (kinds override it).

        ``focal_px``: the vertical focal length (px) of the camera that took the frame, at the
        network input (a float, or one per frame [B]); None when unknown. ``height_m``: the
        camera's mounting height above the ground (m), likewise. Only metric kinds use them
        (depth scales with both, see ``perception.tasks.depth``); every caller passes them, so
        one call serves every kind."""
        return argmax_ids(raw)

    def colorize(self, pred: np.ndarray, cfg: TaskConfig) -> np.ndarray:
        """Post-processed prediction [H, W] -> BGR uint8 [H, W, 3] for overlays."""
        palette = _default_palette(self.channels(cfg))
        return palette[np.clip(pred, 0, len(palette) - 1)]


def _default_palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    pal = rng.integers(40, 255, size=(max(n, 1), 3), dtype=np.uint8)
    pal[0] = 0
    return pal


def argmax_ids(raw: torch.Tensor) -> torch.Tensor:
    """Class ids [B, H, W] uint8, equal to ``raw.argmax(dim=1)`` (first maximum wins).

    Computed as a running maximum over channels: torch's argmax over the channel axis of an NCHW
    map is a strided reduction, 15-35 ms for a 256x512 map on one core, more than a task's whole
    network slot; this loop takes ~0.15 ms per channel."""
    if raw.shape[1] > 256:  # ids past 255 do not fit uint8 either way
        return raw.argmax(dim=1).to(torch.uint8)
    best = raw[:, 0]
    ids = torch.zeros(best.shape, dtype=torch.uint8, device=raw.device)
    for c in range(1, raw.shape[1]):
        channel = raw[:, c]
        ids = ids + (channel > best) * (c - ids)  # uint8: c where the channel is strictly larger
        best = torch.maximum(best, channel)  # propagates NaN
    if bool(best.isnan().any()):
        return raw.argmax(dim=1).to(torch.uint8)  # argmax ranks NaN highest; keep its answer
    return ids


def dice_loss(prob: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Soft Dice on one foreground probability map; ``valid`` excludes ignored pixels."""
    p, t = prob * valid, target * valid
    inter = (p * t).sum(dim=(1, 2))
    denom = p.sum(dim=(1, 2)) + t.sum(dim=(1, 2))
    return (1 - (2 * inter + 1.0) / (denom + 1.0)).mean()


def cross_entropy(raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE with ignore index; 0 (not NaN) when a batch has no labelled pixel."""
    valid = target != IGNORE_INDEX
    if not bool(valid.any()):
        return raw.sum() * 0.0
    return F.cross_entropy(raw, target.long(), ignore_index=IGNORE_INDEX)
