"""Frame pre- and post-processing shared by the engine, the node and replay.

Preprocessing: optional undistortion, resize to the network input (area filter when shrinking),
BGR -> RGB, ImageNet normalisation, NCHW. The camera model follows every step, so intrinsics stay
consistent with the pixels the network sees. Post-processing brings each task back to the frame's
resolution: nearest for class ids (no invented classes on edges), linear for depth.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from perception.errors import InputError

__all__ = ["MEAN_RGB", "STD_RGB", "check_frame", "normalize", "resize_output", "Preprocessor"]

MEAN_RGB = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255.0
STD_RGB = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255.0


def check_frame(frame: np.ndarray) -> None:
    """A frame is uint8 [H, W, 3] (BGR unless stated); anything else is an :class:`InputError`."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"expected a numpy uint8 [H, W, 3] frame, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InputError(f"expected a uint8 frame, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"expected a [H, W, 3] colour frame, got shape {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise InputError(f"frame is too small: {frame.shape}")


def normalize(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> float32 [3, H, W] with ImageNet mean/std."""
    return np.ascontiguousarray(((rgb.astype(np.float32) - MEAN_RGB) / STD_RGB).transpose(2, 0, 1))


@dataclass
class Preprocessor:
    """Frame -> network input for one input size; ``undistorter`` is a calibration.Undistorter."""

    input_size: tuple[int, int]  # (H, W)
    undistorter: object | None = None

    def __call__(self, frame: np.ndarray, rgb: bool = False) -> np.ndarray:
        check_frame(frame)
        if self.undistorter is not None:
            frame = self.undistorter(frame)
        h, w = self.input_size
        if frame.shape[:2] != (h, w):
            shrink = frame.shape[0] > h or frame.shape[1] > w
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink
                               else cv2.INTER_LINEAR)
        if not rgb:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return normalize(frame)

    def batch(self, frames: list[np.ndarray], rgb: bool = False) -> torch.Tensor:
        return torch.from_numpy(np.stack([self(f, rgb) for f in frames]))


def resize_output(pred: np.ndarray, size: tuple[int, int], output_type: str) -> np.ndarray:
    """[h, w] prediction -> (H, W) frame resolution."""
    h, w = size
    if pred.shape[:2] == (h, w):
        return pred
    interp = cv2.INTER_LINEAR if output_type == "metres" else cv2.INTER_NEAREST
    return cv2.resize(pred, (w, h), interpolation=interp)
