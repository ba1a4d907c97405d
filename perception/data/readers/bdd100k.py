"""BDD100K: drivable-area maps, lane-mark masks, semantic and panoptic segmentation masks.

Label encodings (bdd100k toolkit, ``bdd100k/label/label.py`` and ``bdd100k/eval/lane.py``):

* drivable ``*_drivable_id.png`` / ``drivable/masks/*.png``: 0 direct, 1 alternative,
  2 background -> our 1, 2, 0 (anything else -> 255).
* lane marks ``lane/masks/*.png``: 255 background; otherwise bits ``--dsbccc``: category in
  bits 0-2 (0 crosswalk, 1 double other, 2 double white, 3 double yellow, 4 road curb,
  5 single other, 6 single white, 7 single yellow), bit 3 background flag, bit 4 style
  (0 solid, 1 dashed), bit 5 direction (0 parallel, 1 vertical).
* semantic ``sem_seg/masks/*.png``: Cityscapes-compatible trainIds, 255 ignore.
* panoptic ``pan_seg/bitmasks/*.png``: RGBA, R = BDD100K label id (0..40), A/B instance id.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from perception.data.classes import IGNORE_INDEX, cityscapes_trainid_to_synth
from perception.data.readers.base import SampleDataset, Transform
from perception.data.readers.image_file import read_label, read_rgb
from perception.errors import DataError

__all__ = ["BDD100KDataset", "decode_bdd100k_lanes", "bdd100k_drivable_to_ours", "bdd100k_panseg_to_synth",
           "LANE_CATEGORIES", "DEFAULT_LANE_CATEGORIES"]

LANE_CATEGORIES = ("crosswalk", "double other", "double white", "double yellow", "road curb", "single other",
                   "single white", "single yellow")
# Painted longitudinal lines: what our lane task predicts. Crosswalks and curbs become "ignore".
DEFAULT_LANE_CATEGORIES = (1, 2, 3, 5, 6, 7)
# BDD100K label id -> trainId (Cityscapes-compatible), from the toolkit's label table.
_PANSEG_TRAIN_ID = {7: 0, 8: 1, 10: 2, 11: 4, 15: 3, 19: 255, 20: 5, 25: 6, 26: 7, 28: 9, 29: 8, 30: 10,
                    31: 11, 32: 12, 33: 18, 34: 15, 35: 13, 37: 17, 39: 16, 40: 14}
_IMAGE_EXT = (".jpg", ".jpeg", ".png")


def bdd100k_drivable_to_ours(label: np.ndarray) -> np.ndarray:
    """BDD100K drivable ids (0 direct, 1 alternative, 2 background) -> ours (1, 2, 0); else 255."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    lut[0], lut[1], lut[2] = 1, 2, 0
    return lut[label]


def decode_bdd100k_lanes(mask: np.ndarray, categories: Iterable[int] = DEFAULT_LANE_CATEGORIES) -> dict[str, np.ndarray]:
    """Split a BDD100K lane-mark mask into its fields.

    Returns:
        ``lanes`` (uint8: 1 on marks of ``categories``, 255 on other marks, 0 background) and the
        raw per-pixel ``category``, ``style`` (0 solid, 1 dashed) and ``direction`` (0 parallel,
        1 vertical), each 255 on background.
    """
    mask = np.asarray(mask)
    fg = (mask != 255) & ((mask & 8) == 0)
    category = np.where(fg, mask & 7, 255).astype(np.uint8)
    style = np.where(fg, (mask >> 4) & 1, 255).astype(np.uint8)
    direction = np.where(fg, (mask >> 5) & 1, 255).astype(np.uint8)
    keep = np.isin(category, np.fromiter(categories, dtype=np.uint8)) & fg
    lanes = np.zeros(mask.shape, np.uint8)
    lanes[fg] = IGNORE_INDEX
    lanes[keep] = 1
    return {"lanes": lanes, "category": category, "style": style, "direction": direction}


def bdd100k_panseg_to_synth(bitmask_rgba: np.ndarray) -> np.ndarray:
    """Our class ids from a BDD100K panoptic bitmask ([H, W, 4] RGBA, R = label id)."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    for label_id, train_id in _PANSEG_TRAIN_ID.items():
        lut[label_id] = train_id
    return cityscapes_trainid_to_synth(lut[bitmask_rgba[..., 0]])


def _index(folder: Path | None, suffixes: tuple[str, ...]) -> dict[str, Path]:
    if folder is None:
        return {}
    if not folder.is_dir():
        raise DataError(f"BDD100K label folder not found: {str(folder)!r}")
    out = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() != ".png":
            continue
        stem = path.stem
        for suffix in suffixes:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
        out[stem] = path
    return out


class BDD100KDataset(SampleDataset):
    """BDD100K images with any of their drivable / lane / semantic / panoptic labels.

    Folders are given separately because BDD100K releases lay them out differently
    (``images/100k/val`` with ``labels/drivable/masks/val`` or ``drivable_maps/labels/val``...);
    labels are matched to images by file stem (a ``_drivable_id`` suffix is ignored).

    Args:
        images: folder of ``*.jpg`` frames.
        drivable, lanes, semseg, panseg: label folders (each optional).
        lane_categories: lane-mark categories that count as lane lines (others are ignored).
        require_labels: keep only images that have at least one label.

    Raises:
        DataError: missing folders, or no image with labels.
    """

    source = "bdd100k"

    def __init__(self, images: str | Path, *, drivable: str | Path | None = None, lanes: str | Path | None = None,
                 semseg: str | Path | None = None, panseg: str | Path | None = None,
                 lane_categories: Iterable[int] = DEFAULT_LANE_CATEGORIES, require_labels: bool = True,
                 transform: Transform | None = None) -> None:
        images = Path(images)
        if not images.is_dir():
            raise DataError(f"BDD100K image folder not found: {str(images)!r}")
        self.lane_categories = tuple(lane_categories)
        labels = {
            "drivable": _index(Path(drivable) if drivable else None, ("_drivable_id", "_drivable")),
            "lanes": _index(Path(lanes) if lanes else None, ("_lane",)),
            "semseg": _index(Path(semseg) if semseg else None, ("_train_id", "_semseg")),
            "panseg": _index(Path(panseg) if panseg else None, ("_panseg",)),
        }
        records = []
        for path in sorted(images.iterdir()):
            if path.suffix.lower() not in _IMAGE_EXT:
                continue
            rec = {"id": path.stem, "image": path}
            rec.update({k: v[path.stem] for k, v in labels.items() if path.stem in v})
            if len(rec) > 2 or not require_labels:
                records.append(rec)
        super().__init__(records, transform)

    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        sample: dict[str, Any] = {"image": read_rgb(record["image"])}
        meta: dict[str, Any] = {"source": self.source, "id": record["id"]}
        if "drivable" in record:
            sample["drivable"] = bdd100k_drivable_to_ours(read_label(record["drivable"]))
        if "lanes" in record:
            sample["lanes"] = decode_bdd100k_lanes(read_label(record["lanes"]), self.lane_categories)["lanes"]
        if "semseg" in record:
            sample["segmentation"] = cityscapes_trainid_to_synth(read_label(record["semseg"]))
        elif "panseg" in record:
            sample["segmentation"] = bdd100k_panseg_to_synth(read_label(record["panseg"], channels=4))
        shape = sample["image"].shape[:2]
        for key, value in sample.items():
            if key != "image" and value.shape != shape:
                raise DataError(f"BDD100K {record['id']}: {key} label is {value.shape}, image is {shape}")
        sample["meta"] = meta
        return sample
