"""TuSimple lane masks: LaneNet's rendered masks (``image/``, ``gt_binary_image/``,
``gt_instance_image/``) or the original TuSimple JSON polylines, rasterised like LaneNet does."""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.data.readers.base import SampleDataset, Transform
from perception.data.readers.image_file import read_label, read_rgb
from perception.errors import DataError

__all__ = ["TuSimpleDataset", "instances_from_values", "rasterize_tusimple"]

_LINE_PX_AT_720 = 5  # LaneNet draws 5 px lines on 1280x720 frames


def instances_from_values(instance: np.ndarray, binary: np.ndarray | None = None) -> np.ndarray:
    """Renumber an instance mask whose lanes have arbitrary grey values (LaneNet: 20, 70, 120...)
    into 1..n by ascending value; pixels off the binary mask (if given) become 0."""
    values = np.unique(instance[instance > 0])
    lut = np.zeros(256, np.uint8)
    lut[values] = np.arange(1, values.size + 1)
    out = lut[instance]
    if binary is not None:
        out[binary == 0] = 0
    return out


def rasterize_tusimple(record: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Lane instance mask (1..n, left to right as listed) from one TuSimple JSON record."""
    out = np.zeros((height, width), np.uint8)
    thickness = max(1, int(round(_LINE_PX_AT_720 * height / 720)))
    h_samples = np.asarray(record["h_samples"], float)
    for i, xs in enumerate(record["lanes"]):
        xs = np.asarray(xs, float)
        ok = xs >= 0  # TuSimple uses -2 for "no lane at this row"
        pts = np.stack([xs[ok], h_samples[ok]], axis=1)
        if len(pts) >= 2:
            cv2.polylines(out, [np.round(pts * 16).astype(np.int32)], False, i + 1, thickness, cv2.LINE_8, 4)
    return out


class TuSimpleDataset(SampleDataset):
    """Lane samples with ``lanes`` (0/1) and ``lane_instances`` (1..n).

    Args:
        root: LaneNet layout root (``image/``, ``gt_binary_image/``, ``gt_instance_image/``), or the
            TuSimple root that ``raw_file`` paths in ``json_files`` are relative to.
        json_files: TuSimple ``label_data_*.json`` files (one JSON object per line); when given,
            masks are rasterised from the polylines instead of read from PNGs.

    Raises:
        DataError: missing folders/files or no labelled image.
    """

    source = "tusimple"

    def __init__(self, root: str | Path, json_files: Iterable[str | Path] | None = None,
                 transform: Transform | None = None) -> None:
        self.root = Path(root)
        records: list[dict[str, Any]] = []
        if json_files is not None:
            for jf in json_files:
                path = Path(jf)
                if not path.is_file():
                    raise DataError(f"TuSimple label file not found: {str(path)!r}")
                for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        raw = rec["raw_file"]
                        rec["lanes"], rec["h_samples"]  # noqa: B018 - presence check
                    except (json.JSONDecodeError, KeyError) as err:
                        raise DataError(f"{str(path)!r} line {line_no}: not a TuSimple record ({err})") from err
                    records.append({"id": raw, "image": self.root / raw, "json": rec})
        else:
            img_dir = self.root / "image"
            bin_dir, inst_dir = self.root / "gt_binary_image", self.root / "gt_instance_image"
            if not img_dir.is_dir() or not bin_dir.is_dir():
                raise DataError(f"{str(self.root)!r} is not a LaneNet/TuSimple folder: need image/ and "
                                "gt_binary_image/ (or pass json_files)")
            for img in sorted(img_dir.glob("*.png")) + sorted(img_dir.glob("*.jpg")):
                binary = bin_dir / f"{img.stem}.png"
                if binary.is_file():
                    inst = inst_dir / f"{img.stem}.png"
                    records.append({"id": img.stem, "image": img, "binary": binary,
                                    "instance": inst if inst.is_file() else None})
        super().__init__(records, transform)

    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        image = read_rgb(record["image"])
        h, w = image.shape[:2]
        if "json" in record:
            inst = rasterize_tusimple(record["json"], h, w)
            lanes = (inst > 0).astype(np.uint8)
        else:
            binary = read_label(record["binary"])
            if binary.shape != (h, w):
                raise DataError(f"TuSimple {record['id']}: mask {binary.shape} does not match image {(h, w)}")
            lanes = (binary > 0).astype(np.uint8)
            inst = (instances_from_values(read_label(record["instance"]), binary) if record["instance"]
                    else lanes.copy())
        return {"image": image, "lanes": lanes, "lane_instances": inst,
                "meta": {"source": self.source, "id": record["id"]}}
