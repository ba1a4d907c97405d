"""Reading image and label files with clear errors (OpenCV underneath)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from perception.errors import DataError

__all__ = ["read_rgb", "read_label"]


def read_rgb(path: str | Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB from any image file (grey, palette and 16-bit files are converted).

    Raises:
        DataError: the file is missing or not a decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image file not found: {str(path)!r}")
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)  # palette ("P") PNGs come back as colour
    if img is None:
        raise DataError(f"cannot decode image file {str(path)!r}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path, channels: int = 1) -> np.ndarray:
    """A label map exactly as stored: [H, W] (``channels=1``) or [H, W, C] in file order (RGB[A]).

    Raises:
        DataError: the file is missing, undecodable or has the wrong number of channels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"label file not found: {str(path)!r}")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DataError(f"cannot decode label file {str(path)!r}")
    got = 1 if arr.ndim == 2 else arr.shape[2]
    if got != channels:
        raise DataError(f"label file {str(path)!r} has {got} channel(s); expected {channels}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if got == 4 else cv2.COLOR_BGR2RGB)
    return arr
