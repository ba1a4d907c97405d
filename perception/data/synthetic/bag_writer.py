"""Write a synthetic drive as a rosbag2 bag (MCAP or sqlite3) with ``rosbags``; no ROS needed.

Topics (all stamped with the frame's time, ``frame_id = camera_optical_frame``):

=================================  ===============================  ===============================
topic                              type                             content
=================================  ===============================  ===============================
/camera/image_raw                  sensor_msgs/msg/Image            bgr8 (default)
/camera/image_raw/compressed       sensor_msgs/msg/CompressedImage  jpeg (with ``compressed=True``)
/camera/camera_info                sensor_msgs/msg/CameraInfo       the calibrated camera
/gt/segmentation                   sensor_msgs/msg/Image            mono8 class ids, 255 ignore
/gt/depth                          sensor_msgs/msg/Image            32FC1 metres, 0 invalid
/gt/drivable                       sensor_msgs/msg/Image            mono8 0/1/2, 255 ignore
/gt/lanes                          sensor_msgs/msg/Image            mono8 lane instance ids, 255 ignore
/gt/corridor                       sensor_msgs/msg/Image            mono8 0/1, 255 ignore
=================================  ===============================  ===============================

The bag directory appears atomically (written to a hidden sibling, renamed at the end).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from calibration.io import camera_info_to_fields
from perception.data.synthetic.config import SynthConfig
from perception.data.synthetic.dataset_writer import _missing_parents, prepare_output
from perception.data.synthetic.renderer import Frame
from perception.data.synthetic.sequence import iter_frames, sequence_jobs
from perception.errors import ConfigError
from perception.ros_format.image import image_to_compressed_fields, image_to_fields

__all__ = ["write_bag", "STORAGES", "FRAME_ID", "CAMERA_TOPIC", "COMPRESSED_TOPIC", "INFO_TOPIC", "GT_TOPICS"]

STORAGES = ("mcap", "sqlite3")
FRAME_ID = "camera_optical_frame"
CAMERA_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
INFO_TOPIC = "/camera/camera_info"
# topic -> (Frame attribute, encoding)
GT_TOPICS: dict[str, tuple[str, str]] = {
    "/gt/segmentation": ("segmentation", "mono8"),
    "/gt/depth": ("depth", "32FC1"),
    "/gt/drivable": ("drivable", "mono8"),
    "/gt/lanes": ("lane_instances", "mono8"),
    "/gt/corridor": ("corridor", "mono8"),
}
_IMAGE = "sensor_msgs/msg/Image"
_COMPRESSED = "sensor_msgs/msg/CompressedImage"
_INFO = "sensor_msgs/msg/CameraInfo"


class _Messages:
    """Builds rosbags message objects for one typestore."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.store = get_typestore(Stores.ROS2_HUMBLE)
        types = self.store.types
        self.Image = types[_IMAGE]
        self.Compressed = types[_COMPRESSED]
        self.Info = types[_INFO]
        self.Header = types["std_msgs/msg/Header"]
        self.Time = types["builtin_interfaces/msg/Time"]
        self.Roi = types["sensor_msgs/msg/RegionOfInterest"]

    def header(self, stamp_ns: int) -> Any:
        return self.Header(stamp=self.Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)),
                           frame_id=FRAME_ID)

    def image(self, array: np.ndarray, encoding: str, stamp_ns: int) -> bytes:
        f = image_to_fields(array, encoding)
        msg = self.Image(header=self.header(stamp_ns), height=f["height"], width=f["width"], encoding=f["encoding"],
                         is_bigendian=f["is_bigendian"], step=f["step"], data=np.frombuffer(f["data"], np.uint8))
        return self.store.serialize_cdr(msg, _IMAGE)

    def compressed(self, bgr: np.ndarray, stamp_ns: int) -> bytes:
        f = image_to_compressed_fields(bgr, "jpeg", 90)
        msg = self.Compressed(header=self.header(stamp_ns), format=f["format"],
                              data=np.frombuffer(f["data"], np.uint8))
        return self.store.serialize_cdr(msg, _COMPRESSED)

    def info(self, frame: Frame) -> bytes:
        f = camera_info_to_fields(frame.camera, frame_id=FRAME_ID, stamp_ns=frame.stamp_ns)
        roi = f["roi"]
        msg = self.Info(
            header=self.header(frame.stamp_ns), height=f["height"], width=f["width"],
            distortion_model=f["distortion_model"], d=np.array(f["d"], np.float64), k=np.array(f["k"], np.float64),
            r=np.array(f["r"], np.float64), p=np.array(f["p"], np.float64), binning_x=f["binning_x"],
            binning_y=f["binning_y"],
            roi=self.Roi(x_offset=roi["x_offset"], y_offset=roi["y_offset"], height=roi["height"], width=roi["width"],
                         do_rectify=roi["do_rectify"]),
        )
        return self.store.serialize_cdr(msg, _INFO)


def write_bag(out: str | Path, frames: int, fps: float, *, storage: str = "mcap", compressed: bool = False,
              seed: int = 0, config: SynthConfig | None = None, speed_mps: float | None = None, workers: int = 1,
              overwrite: bool = False, progress: bool = False) -> Path:
    """Render a drive of ``frames`` frames at ``fps`` and write it as a rosbag2 bag.

    Args:
        out: bag directory to create.
        frames, fps: length and rate of the drive (header stamps are ``1e9 / fps`` ns apart).
        storage: ``"mcap"`` or ``"sqlite3"``.
        compressed: publish ``/camera/image_raw/compressed`` (JPEG) instead of raw bgr8.
        seed: the same seed (and arguments) give a byte-identical bag.
        config, speed_mps, workers, overwrite, progress: as for :func:`write_dataset`.

    Raises:
        ConfigError: unknown storage, bad counts, or an output that cannot be written; nothing is
            left behind.

    Example:
        >>> write_bag("drive_bag", frames=50, fps=10.0, storage="mcap")
    """
    if storage not in STORAGES:
        raise ConfigError(f"unknown bag storage {storage!r}; valid: {', '.join(STORAGES)}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers!r}")
    config = config or SynthConfig()
    jobs = sequence_jobs(seed, frames, fps, config, speed_mps)
    from rosbags.rosbag2 import StoragePlugin, Writer

    out = Path(out)
    tmp = prepare_output(out, overwrite, "bag")
    created = _missing_parents(out)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    msgs = _Messages()
    try:
        # The bag is written under its final name inside the hidden temporary folder: rosbags names
        # the storage file after the bag directory and records that name inside the storage too
        # (MCAP metadata), so a temporary bag name (with the process id) would leak into the bytes.
        tmp.mkdir(parents=True)
        bag = tmp / out.name
        with Writer(bag, version=8, storage_plugin=plugin) as writer:
            cam_topic = COMPRESSED_TOPIC if compressed else CAMERA_TOPIC
            conns = {cam_topic: writer.add_connection(cam_topic, _COMPRESSED if compressed else _IMAGE,
                                                      typestore=msgs.store),
                     INFO_TOPIC: writer.add_connection(INFO_TOPIC, _INFO, typestore=msgs.store)}
            for topic in GT_TOPICS:
                conns[topic] = writer.add_connection(topic, _IMAGE, typestore=msgs.store)
            stream = iter_frames(jobs, workers)
            if progress:
                from tqdm import tqdm

                stream = tqdm(stream, total=len(jobs), desc=f"synth bag ({storage})", unit="frame")
            for frame in stream:
                stamp = frame.stamp_ns
                bgr = np.ascontiguousarray(frame.image[:, :, ::-1])
                if compressed:
                    writer.write(conns[cam_topic], stamp, msgs.compressed(bgr, stamp))
                else:
                    writer.write(conns[cam_topic], stamp, msgs.image(bgr, "bgr8", stamp))
                writer.write(conns[INFO_TOPIC], stamp, msgs.info(frame))
                for topic, (attr, encoding) in GT_TOPICS.items():
                    writer.write(conns[topic], stamp, msgs.image(getattr(frame, attr), encoding, stamp))
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(bag, out)
        tmp.rmdir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for path in reversed(created):
            shutil.rmtree(path, ignore_errors=True)
        raise
    return out
