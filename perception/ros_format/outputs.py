"""How an engine output goes on a topic, the same for the live node and bag replay (so a replayed
bag carries exactly what the node would have published): its array layout and ROS encoding, and
its colour image."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

__all__ = ["published_array", "output_encoding", "colorize_output"]


def published_array(out: np.ndarray) -> np.ndarray:
    """The array as published: [3, H, W] vectors (normals) become [H, W, 3] for 32FC3."""
    if out.ndim == 3 and out.shape[0] == 3 and out.shape[2] != 3:
        return out.transpose(1, 2, 0)
    return out


def output_encoding(array: np.ndarray) -> str | None:
    """ROS encoding of a published output (uint8 ids/masks, BGR colour, float32 maps); None for a
    layout these do not cover (the caller falls back to ``passthrough``)."""
    if array.dtype == np.uint8:
        return "mono8" if array.ndim == 2 else ("bgr8" if array.shape[2] == 3 else None)
    if array.dtype == np.float32:
        return "32FC1" if array.ndim == 2 else f"32FC{array.shape[2]}"
    return None


def colorize_output(kind: Any, cfg: Any, raw: np.ndarray | None, output: np.ndarray,
                    frame: np.ndarray | None = None, blend: float = 0.0,
                    size: tuple[int, int] | None = None) -> np.ndarray:
    """BGR uint8 colour image of one task's output at the frame's size (``frame``'s, else
    ``size`` as (H, W)), optionally blended over the frame.

    A 2-D ``raw`` (network resolution) is coloured first and then resized: the same pixels as
    colouring the nearest-resized ids, at a fraction of the cost."""
    h, w = frame.shape[:2] if frame is not None else size
    if raw is None or raw.ndim != 2:
        color = kind.colorize(output, cfg)
    else:
        color = kind.colorize(raw, cfg)
        interp = cv2.INTER_NEAREST if kind.output_type == "ids" else cv2.INTER_LINEAR
        color = cv2.resize(color, (w, h), interpolation=interp)
    if blend > 0 and frame is not None:
        color = cv2.addWeighted(frame, 1.0 - blend, color, blend, 0.0)
    return np.ascontiguousarray(color, dtype=np.uint8)
