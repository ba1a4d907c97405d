"""rosbags message classes for replay: typestores, header stamps, and builders for the messages
replay writes (the node builds rclpy ones in ``ros2_nodes/``)."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from perception.errors import DataError
from perception.ros_format.image import image_to_compressed_fields, image_to_fields

if TYPE_CHECKING:
    from rosbags.typesys.store import Typestore

__all__ = ["cached_typestore", "humble_typestore", "stamp_to_ns", "make_header", "make_image",
           "make_compressed_image", "make_path"]


@functools.cache
def cached_typestore(store: Stores) -> Typestore:
    """One typestore per store for the whole process (building one takes a while)."""
    return get_typestore(store)


def humble_typestore() -> Typestore:
    """ROS 2 Humble's definitions, the default for the bags replay writes."""
    return cached_typestore(Stores.ROS2_HUMBLE)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (ROS 2, and ROS 1 as rosbags represents it) -> int ns."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str = "", typestore: Typestore | None = None) -> Any:
    """``std_msgs/msg/Header`` with ``stamp_ns`` split into sec/nanosec."""
    ts = typestore or humble_typestore()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    time = ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return ts.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def make_image(array: np.ndarray, header: Any, encoding: str = "passthrough",
               typestore: Typestore | None = None) -> Any:
    """``sensor_msgs/msg/Image`` from an array (e.g. ``mono8`` ids, ``32FC1`` metres)."""
    fields = image_to_fields(array, encoding)
    fields["data"] = np.frombuffer(fields["data"], dtype=np.uint8)
    return (typestore or humble_typestore()).types["sensor_msgs/msg/Image"](header=header, **fields)


def make_compressed_image(array: np.ndarray, header: Any, fmt: str = "jpeg", quality: int = 90,
                          typestore: Typestore | None = None) -> Any:
    """``sensor_msgs/msg/CompressedImage`` (BGR colour or mono) encoded as image_transport does."""
    fields = image_to_compressed_fields(array, fmt, quality)
    return (typestore or humble_typestore()).types["sensor_msgs/msg/CompressedImage"](
        header=header, format=fields["format"], data=np.frombuffer(fields["data"], np.uint8))


def make_path(points_m: np.ndarray, header: Any, typestore: Typestore | None = None, *,
              heading: bool = False) -> Any:
    """``nav_msgs/msg/Path`` through ``[N, 2]`` or ``[N, 3]`` points (metres, in
    ``header.frame_id``); each pose carries ``header``. Orientations are the identity, or with
    ``heading`` the yaw along the path (as the node publishes ``~/lanes/path``)."""
    from calibration.lanes import path_headings

    ts = typestore or humble_typestore()
    points = np.asarray(points_m, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise DataError(f"path points must be [N, 2] or [N, 3], got shape {points.shape}")
    if points.shape[1] == 2:
        points = np.column_stack([points, np.zeros(len(points))])
    point_t, quat_t = ts.types["geometry_msgs/msg/Point"], ts.types["geometry_msgs/msg/Quaternion"]
    pose_t, stamped_t = ts.types["geometry_msgs/msg/Pose"], ts.types["geometry_msgs/msg/PoseStamped"]
    yaw = path_headings(points) if heading else np.zeros(len(points))
    poses = [
        stamped_t(header=header, pose=pose_t(
            position=point_t(x=float(x), y=float(y), z=float(z)),
            orientation=quat_t(x=0.0, y=0.0, z=float(np.sin(a / 2)), w=float(np.cos(a / 2)))))
        for (x, y, z), a in zip(points, yaw, strict=True)
    ]
    return ts.types["nav_msgs/msg/Path"](header=header, poses=poses)
