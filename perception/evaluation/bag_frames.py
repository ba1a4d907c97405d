"""Bag frames <-> the common sample format (issue 8): ground truth from bags, bags from images.

:func:`frame_to_sample` turns a :class:`~perception.evaluation.bag_io.BagFrame` into a sample of
:mod:`perception.data.sample` (RGB image, labels keyed like the dataset readers), so a replayed
frame is scored exactly as ``tadp eval`` scores the same frame from a dataset directory. Ground
truth topic ``<prefix>/<name>`` becomes ``sample[<name>]``, with one conversion the dataset reader
also makes: ``/gt/lanes`` holds lane *instance* ids (0 background, 1..n lines, 255 ignore), so
``lanes`` becomes the 0/1 mask (255 kept) and ``lane_instances`` the ids.

:func:`write_image_bag` is the other direction (``tadp bag-from-images``): image files -> a camera
bag (raw ``bgr8`` or JPEG/PNG ``CompressedImage``) with optional CameraInfo, stamped at a fixed
rate.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from perception.data.classes import IGNORE_INDEX
from perception.errors import DataError

if TYPE_CHECKING:
    from perception.evaluation.bag_io import BagFrame

__all__ = [
    "DEFAULT_START_NS",
    "frame_to_sample",
    "bag_samples",
    "image_files",
    "write_image_bag",
    "place_storage_file",
    "samples_by_index",
]

# 2024-01-01T00:00:00Z, the synthetic world's first stamp: deterministic, and never 0 (a zero
# stamp means "no stamp" to bag readers, which then fall back to the bag time).
DEFAULT_START_NS = 1_704_067_200_000_000_000
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


# --------------------------------------------------------------------------------------------
# bag frame -> sample


def _label(name: str, value: Any, where: str) -> np.ndarray:
    """A decoded ground-truth image as a label map: uint8 ids / float32 metres, [H, W]."""
    arr = value[:, :, 0] if value.ndim == 3 and value.shape[2] == 1 else value
    if arr.ndim != 2:
        raise DataError(f"{where}: ground truth {name!r} has shape {value.shape}; labels are "
                        "single-channel images (mono8 ids, 32FC1 depth in metres)")
    if name == "depth":
        if arr.dtype == np.uint16:  # REP 118: 16UC1 depth is millimetres
            return arr.astype(np.float32) * np.float32(0.001)
        if arr.dtype != np.float32:
            return arr.astype(np.float32)
        return arr
    if arr.dtype != np.uint8:
        raise DataError(f"{where}: ground truth {name!r} is {arr.dtype}; class-id labels are "
                        "mono8 (uint8, 255 = ignore)")
    return arr


def frame_to_sample(frame: BagFrame, where: str = "bag") -> dict[str, Any]:
    """A sample (``image`` RGB plus one label per ground-truth image topic) from a decoded bag
    frame. Ground-truth topics that are not images (e.g. a ``nav_msgs/Path``) are left out.

    Raises:
        DataError: a ground-truth image is not single-channel or has a dtype labels cannot have.
    """
    bgr = frame.image
    sample: dict[str, Any] = {"image": np.ascontiguousarray(bgr[:, :, ::-1])}
    place = f"{where}, frame at {frame.stamp_ns} ns"
    for name, value in frame.gt.items():
        if not isinstance(value, np.ndarray):
            continue
        label = _label(name, value, place)
        if name == "lanes":  # instance ids -> the 0/1 lane mask, as SyntheticDataset does
            lanes = (label > 0).astype(np.uint8)
            lanes[label == IGNORE_INDEX] = IGNORE_INDEX
            sample["lanes"], sample["lane_instances"] = lanes, label
        else:
            sample[name] = label
    sample["meta"] = {"source": "bag", "id": str(frame.stamp_ns), "stamp_ns": int(frame.stamp_ns)}
    camera = frame_camera(frame.camera_info, bgr.shape[:2])
    if camera is not None:  # the intrinsics of this image, as datasets give ``K``
        sample["meta"]["K"] = camera.K.tolist()
    return sample


def frame_camera(info: Any, size_hw: tuple[int, int]) -> Any:
    """The ``calibration.CameraModel`` of a frame of ``size_hw`` from its CameraInfo message (None
    without one), scaled to the frame when the message describes another size, as the node does."""
    if info is None:
        return None
    from calibration.io import camera_info_from_msg

    camera = camera_info_from_msg(info)
    h, w = size_hw
    return camera if camera.size == (w, h) else camera.resized(w, h)


def bag_samples(path: str | os.PathLike[str], camera_topic: str | None = None,
                gt_prefix: str = "/gt", max_frames: int | None = None) -> list[dict[str, Any]]:
    """Every frame of a bag as a sample (in memory: for short bags, tests and ``evaluate``).

    Raises:
        DataError: see :func:`~perception.evaluation.bag_io.open_camera_bag`.
    """
    from perception.evaluation.bag_io import open_camera_bag

    out = []
    with open_camera_bag(path, camera_topic, gt_prefix) as bag:
        for frame in bag:
            out.append(frame_to_sample(frame, str(bag.path)))
            if max_frames is not None and len(out) >= max_frames:
                break
    return out


# --------------------------------------------------------------------------------------------
# images -> camera bag


def image_files(pattern: str | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Sorted image files of a glob pattern, a directory or an explicit list."""
    import glob

    if isinstance(pattern, (str, os.PathLike)):
        text = str(pattern)
        if Path(text).is_dir():
            files = [p for p in sorted(Path(text).iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES]
        else:
            files = [Path(p) for p in sorted(glob.glob(os.path.expanduser(text), recursive=True))]
    else:
        files = [Path(p) for p in pattern]
    files = [p for p in files if p.is_file()]
    if not files:
        raise DataError(f"no image files match {str(pattern)!r}; give a glob such as "
                        "'frames/*.jpg' (quoted, so the shell does not expand it) or a directory")
    if bad := [p.name for p in files if p.suffix.lower() not in _IMAGE_SUFFIXES]:
        raise DataError(f"{len(bad)} matched files are not images ({', '.join(bad[:5])}); image "
                        f"suffixes: {', '.join(_IMAGE_SUFFIXES)}")
    return files


def _read_bgr(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"cannot decode image file {str(path)!r}")
    return img


def _camera_info_msg(camera: Any, header: Any, typestore: Any) -> Any:
    from calibration.io import camera_info_to_fields

    f = camera_info_to_fields(camera, frame_id=header.frame_id)
    types = typestore.types
    roi = types["sensor_msgs/msg/RegionOfInterest"](**f["roi"])
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=f["height"], width=f["width"],
        distortion_model=f["distortion_model"], d=np.array(f["d"], np.float64),
        k=np.array(f["k"], np.float64), r=np.array(f["r"], np.float64),
        p=np.array(f["p"], np.float64), binning_x=f["binning_x"], binning_y=f["binning_y"], roi=roi)


def place_storage_file(build: Callable[[Path, bool], None], out: Path, overwrite: bool) -> Path:
    """Write a rosbag2 bag with ``build(bag_dir, overwrite)`` and place it at ``out`` atomically: a bare
    storage file when ``out`` ends in ``.mcap`` / ``.db3`` (its metadata.yaml is dropped; readers
    take the file's own records), else the bag directory itself.

    Raises:
        DataError: ``out`` exists and not ``overwrite``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"output {out} exists already; remove it or pass --overwrite")
    if out.suffix not in (".mcap", ".db3"):
        build(out, overwrite)  # BagOutputWriter renames the finished directory into place
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        bag_dir = tmp / "bag"
        build(bag_dir, False)
        storage = [p for p in bag_dir.iterdir() if p.suffix == out.suffix]
        if len(storage) != 1:
            raise DataError(f"output {out}: expected one {out.suffix} storage file, built "
                            f"{sorted(p.name for p in bag_dir.iterdir())}; use a directory "
                            "name (no suffix) for split bags")
        os.replace(storage[0], out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def write_image_bag(images: str | Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                    fps: float, *, camera_info: str | os.PathLike[str] | None = None,
                    compressed: str | None = None, topic: str = "/camera/image_raw",
                    frame_id: str = "camera_optical_frame", start_ns: int = DEFAULT_START_NS,
                    size: tuple[int, int] | None = None, quality: int = 95,
                    storage: str = "mcap", overwrite: bool = False,
                    progress: Callable[[Iterable[Path]], Iterable[Path]] | None = None) -> Path:
    """Turn image files into a camera bag: one frame per file, in sorted order, ``1/fps`` apart.

    Example:
        >>> write_image_bag("drive/*.jpg", "drive.mcap", fps=10, camera_info="camera.yaml")

    Args:
        images: glob pattern, directory, or list of files.
        out: ``X.mcap`` / ``X.db3`` for a single storage file, else a rosbag2 directory.
        fps: frame rate; header stamps are ``start_ns + i * 1e9 / fps``.
        camera_info: calibration file (ROS YAML, OpenCV YAML/XML, INI) -> ``<ns>/camera_info``
            on every frame. Every frame must then have the calibrated size (after ``size``).
        compressed: ``None`` (raw ``bgr8`` Image on ``topic``), ``"jpeg"`` or ``"png"``
            (CompressedImage on ``topic/compressed``). JPEG files are stored as they are, not
            re-encoded, when no resizing is asked for.
        size: ``(width, height)`` to resize every frame to (area filter); CameraInfo follows.
        storage: ``"mcap"`` or ``"sqlite3"`` for a bag directory.

    Raises:
        DataError: no images, undecodable files, frames whose size differs from the camera
            calibration, bad options, or an existing output. Nothing is left behind on failure.
    """
    from perception.evaluation.bag_io import (
        BagOutputWriter,
        make_compressed_image,
        make_header,
        make_image,
    )

    if not fps > 0:
        raise DataError(f"fps must be > 0, got {fps!r}")
    if compressed not in (None, "jpeg", "png"):
        raise DataError(f"compressed must be None, 'jpeg' or 'png', got {compressed!r}")
    if not topic.startswith("/") or topic.endswith("/"):
        raise DataError(f"topic must be absolute, like /camera/image_raw; got {topic!r}")
    files = image_files(images)
    out = Path(out)
    camera = None
    if camera_info is not None:
        from calibration.io import load_camera

        camera = load_camera(camera_info)
        if size is not None and camera.size != size:
            camera = camera.resized(*size)
    image_topic = f"{topic}/compressed" if compressed else topic
    info_topic = topic.rsplit("/", 1)[0] + "/camera_info"
    period_ns = 1e9 / fps
    if storage == "mcap" and out.suffix == ".db3":
        storage = "sqlite3"

    def build(bag_dir: Path, replace: bool) -> None:
        with BagOutputWriter(bag_dir, storage=storage, overwrite=replace) as writer:
            ts = writer.typestore
            items: Iterable[Path] = progress(files) if progress else files
            for i, path in enumerate(items):
                stamp_ns = int(start_ns + round(i * period_ns))
                header = make_header(stamp_ns, frame_id)
                bgr = _read_bgr(path)
                resized = size is not None and (bgr.shape[1], bgr.shape[0]) != tuple(size)
                if resized:
                    bgr = cv2.resize(bgr, tuple(size), interpolation=cv2.INTER_AREA)
                if camera is not None and (bgr.shape[1], bgr.shape[0]) != camera.size:
                    raise DataError(
                        f"{path}: frame is {bgr.shape[1]}x{bgr.shape[0]} but the camera "
                        f"calibration {camera_info} is {camera.width}x{camera.height}; pass "
                        "--size HxW to resize every frame (the intrinsics follow), or drop "
                        "--camera-info for frames of mixed cameras")
                if compressed == "jpeg" and not resized and path.suffix.lower() in (".jpg", ".jpeg"):
                    data = np.frombuffer(path.read_bytes(), np.uint8)  # no generation loss
                    msg = ts.types["sensor_msgs/msg/CompressedImage"](
                        header=header, format="bgr8; jpeg compressed bgr8", data=data)
                elif compressed:
                    msg = make_compressed_image(bgr, header, compressed, quality, typestore=ts)
                else:
                    msg = make_image(bgr, header, "bgr8", typestore=ts)
                writer.write_message(image_topic, stamp_ns, msg)
                if camera is not None:
                    writer.write_message(info_topic, stamp_ns, _camera_info_msg(camera, header, ts))

    return place_storage_file(build, out, overwrite)


def samples_by_index(dataset: Any) -> Callable[[int], Mapping[str, Any]]:
    """``i -> dataset[i]`` with a clear error past the end (ground-truth datasets for replay)."""
    n = len(dataset)

    def get(i: int) -> Mapping[str, Any]:
        if i >= n:
            raise DataError(f"the ground-truth dataset has {n} samples but the bag has more "
                            "frames; it must hold one sample per camera frame, in bag order")
        return dataset[i]

    return get
