"""KITTI object/raw frames: calibration files and Velodyne scans -> sparse metric depth.

Points go through ``P2 @ R0_rect @ Tr_velo_to_cam``; depth is the z of the rectified camera
frame (metres). Where several points land on one pixel the nearest wins. ``label_2`` boxes, when
present, are passed in ``meta["objects"]``. The recording car's cameras sit 1.65 m above the
ground (Geiger et al., "Vision meets Robotics: The KITTI Dataset", IJRR 2013, sensor setup), the
height ``meta["mounting"]`` gives, for depth models that follow the mounting height.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from perception.data.readers.base import SampleDataset, Transform
from perception.data.readers.image_file import read_rgb
from perception.errors import DataError

__all__ = ["KittiDepthDataset", "read_kitti_calib", "read_velodyne", "lidar_depth", "read_kitti_objects"]

_NEEDED = ("P2", "R0_rect", "Tr_velo_to_cam")
CAMERA_HEIGHT_M = 1.65  # the KITTI rig's camera height above the ground


def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """``KEY: numbers`` lines -> arrays (P0..P3 [3, 4], R0_rect [3, 3], Tr_* [3, 4]).

    Raises:
        DataError: missing file, unparsable numbers or missing P2/R0_rect/Tr_velo_to_cam.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"KITTI calib file not found: {str(path)!r}")
    out: dict[str, np.ndarray] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if ":" not in line:
            continue
        key, _, values = line.partition(":")
        try:
            arr = np.array(values.split(), dtype=np.float64)
        except ValueError as err:
            raise DataError(f"{str(path)!r}: {key.strip()} has non-numeric values") from err
        key = key.strip()
        if key.startswith("P") and arr.size == 12:
            arr = arr.reshape(3, 4)
        elif key.startswith("R0") and arr.size == 9:
            arr = arr.reshape(3, 3)
        elif key.startswith("Tr") and arr.size == 12:
            arr = arr.reshape(3, 4)
        out[key] = arr
    missing = [k for k in _NEEDED if k not in out]
    if missing:
        raise DataError(f"{str(path)!r}: missing {missing}; found {sorted(out)}")
    return out


def read_velodyne(path: str | Path) -> np.ndarray:
    """[N, 4] float32 (x, y, z, reflectance) from a KITTI ``.bin`` scan."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"KITTI velodyne file not found: {str(path)!r}")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % 4:
        raise DataError(f"{str(path)!r}: {raw.size} floats is not a multiple of 4 (x, y, z, r)")
    return raw.reshape(-1, 4)


def lidar_depth(points: np.ndarray, calib: dict[str, np.ndarray], height: int, width: int,
                ) -> tuple[np.ndarray, int]:
    """Sparse depth map ([H, W] float32 metres, 0 = no return) and the number of points in view."""
    R0 = np.eye(4)
    R0[:3, :3] = calib["R0_rect"]
    Tr = np.eye(4)
    Tr[:3, :] = calib["Tr_velo_to_cam"]
    X = np.concatenate([points[:, :3].astype(np.float64), np.ones((len(points), 1))], axis=1)
    cam = X @ (R0 @ Tr).T  # rectified camera frame
    uvw = cam @ calib["P2"].T
    z = cam[:, 2]
    front = uvw[:, 2] > 0
    u = np.where(front, uvw[:, 0] / np.where(front, uvw[:, 2], 1.0), -1.0)
    v = np.where(front, uvw[:, 1] / np.where(front, uvw[:, 2], 1.0), -1.0)
    inside = front & (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    ui = np.clip(np.floor(u[inside]).astype(np.int64), 0, width - 1)
    vi = np.clip(np.floor(v[inside]).astype(np.int64), 0, height - 1)
    zi = z[inside]
    depth = np.zeros((height, width), np.float32)
    order = np.argsort(-zi, kind="stable")  # far first, so the nearest point is written last
    depth[vi[order], ui[order]] = zi[order]
    return depth, int(inside.sum())


def read_kitti_objects(path: str | Path) -> list[dict[str, Any]]:
    """KITTI ``label_2`` lines as dicts (type, truncated, occluded, alpha, bbox, dimensions, location, rotation_y)."""
    objects = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        f = line.split()
        if len(f) < 15:
            continue
        vals = [float(x) for x in f[1:15]]
        objects.append({"type": f[0], "truncated": vals[0], "occluded": int(vals[1]), "alpha": vals[2],
                        "bbox": vals[3:7], "dimensions_hwl": vals[7:10], "location": vals[10:13],
                        "rotation_y": vals[13]})
    return objects


class KittiDepthDataset(SampleDataset):
    """Frames of a KITTI object ``training`` folder that have a Velodyne scan.

    Samples: ``image`` (``image_2``), ``depth`` (sparse, metres) and ``meta`` with ``K`` (from
    ``P2``), ``mounting`` (the rig's camera height, ``z_m``), ``lidar_points`` (points in view)
    and ``objects`` (from ``label_2`` if present).

    Raises:
        DataError: missing folders or no frame with image, calib and scan.
    """

    source = "kitti"

    def __init__(self, root: str | Path, transform: Transform | None = None) -> None:
        root = Path(root)
        velo = root / "velodyne"
        if not velo.is_dir():
            raise DataError(f"KITTI velodyne folder not found: {str(velo)!r}")
        records = []
        for scan in sorted(velo.glob("*.bin")):
            image = root / "image_2" / f"{scan.stem}.png"
            calib = root / "calib" / f"{scan.stem}.txt"
            if image.is_file() and calib.is_file():
                label = root / "label_2" / f"{scan.stem}.txt"
                records.append({"id": scan.stem, "image": image, "calib": calib, "scan": scan,
                                "label": label if label.is_file() else None})
        super().__init__(records, transform)

    def load(self, record: dict[str, Any]) -> dict[str, Any]:
        image = read_rgb(record["image"])
        calib = read_kitti_calib(record["calib"])
        depth, count = lidar_depth(read_velodyne(record["scan"]), calib, *image.shape[:2])
        meta: dict[str, Any] = {"source": self.source, "id": record["id"], "K": calib["P2"][:, :3].tolist(),
                                "mounting": {"z_m": CAMERA_HEIGHT_M}, "lidar_points": count}
        if record["label"] is not None:
            meta["objects"] = read_kitti_objects(record["label"])
        return {"image": image, "depth": depth, "meta": meta}
