"""The semantic class set of the synthetic world and the default model, with mappings from
Cityscapes trainIds and CamVid (SegNet 11-class order) for evaluation on real labels.

Colours are the Cityscapes palette (RGB) so overlays look familiar.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ClassInfo", "SYNTH_CLASSES", "IGNORE_INDEX", "class_names", "class_colors_rgb",
           "cityscapes_trainid_to_synth", "camvid_to_synth"]

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassInfo:
    name: str
    color_rgb: tuple[int, int, int]
    cityscapes_train_ids: tuple[int, ...]
    camvid_ids: tuple[int, ...]


SYNTH_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo("road", (128, 64, 128), (0,), (3,)),
    ClassInfo("sidewalk", (244, 35, 232), (1,), (4,)),
    ClassInfo("building", (70, 70, 70), (2, 3), (1,)),
    ClassInfo("pole", (153, 153, 153), (5,), (2,)),
    ClassInfo("traffic_sign", (220, 220, 0), (6, 7), (6,)),
    ClassInfo("vegetation", (107, 142, 35), (8,), (5,)),
    ClassInfo("terrain", (152, 251, 152), (9,), ()),
    ClassInfo("sky", (70, 130, 180), (10,), (0,)),
    ClassInfo("vehicle", (0, 0, 142), (13, 14, 15, 16), (8,)),
)


def class_names() -> list[str]:
    return [c.name for c in SYNTH_CLASSES]


def class_colors_rgb() -> np.ndarray:
    """[N, 3] uint8 palette in class-id order."""
    return np.array([c.color_rgb for c in SYNTH_CLASSES], dtype=np.uint8)


def _lut(attr: str) -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for idx, info in enumerate(SYNTH_CLASSES):
        for src in getattr(info, attr):
            lut[src] = idx
    return lut


def cityscapes_trainid_to_synth(label: np.ndarray) -> np.ndarray:
    """Map a Cityscapes trainId map (255 = ignore) to synthetic class ids; unmapped -> 255."""
    return _lut("cityscapes_train_ids")[label]


def camvid_to_synth(label: np.ndarray) -> np.ndarray:
    """Map a CamVid 11-class map (11 = void) to synthetic class ids; unmapped -> 255."""
    return _lut("camvid_ids")[label]
