"""Build rclpy ``sensor_msgs`` image messages from the field dicts of ``perception.ros_format``.

This is the only image-conversion code that touches ROS types. Decoding needs no ROS code at all:
``perception.ros_format.image_from_msg`` / ``compressed_from_msg`` read the fields of an rclpy
message directly (they are re-exported here for the node's convenience).

Example:
    >>> out = image_to_msg(mask, "mono8", header=msg.header)      # keeps stamp and frame_id
    >>> jpeg = compressed_to_msg(bgr, header=msg.header, fmt="jpeg", quality=80)
"""
from __future__ import annotations

import array
import sys
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path as PathMsg
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from calibration.lanes import path_headings
from perception.ros_format import (
    compressed_from_msg,
    image_from_msg,
    image_to_compressed_fields,
    image_to_fields,
)

__all__ = [
    "copy_header",
    "image_msg_from_fields",
    "compressed_msg_from_fields",
    "image_to_msg",
    "compressed_to_msg",
    "image_from_msg",
    "compressed_from_msg",
    "output_msg",
    "path_msg",
]


def _byte_array(data: Any) -> array.array:
    # rclpy's uint8[] setter checks a bytes/list argument element by element (~0.1 s for a 720p
    # frame); an array.array('B') is taken as is, and building one from bytes is a memcpy.
    if isinstance(data, array.array) and data.typecode == "B":
        return data
    return array.array("B", bytes(data) if not isinstance(data, bytes) else data)


def copy_header(header: Any | None) -> Header:
    """A new ``std_msgs/Header`` with the same stamp and frame_id (an empty one for None)."""
    out = Header()
    if header is not None:
        out.stamp.sec = int(header.stamp.sec)
        out.stamp.nanosec = int(header.stamp.nanosec)
        out.frame_id = str(header.frame_id)
    return out


def image_msg_from_fields(fields: dict[str, Any], header: Any | None = None) -> Image:
    """Fill a ``sensor_msgs/Image`` from :func:`perception.ros_format.image_to_fields` output."""
    msg = Image()
    msg.header = copy_header(header)
    msg.height = fields["height"]
    msg.width = fields["width"]
    msg.encoding = fields["encoding"]
    msg.is_bigendian = fields["is_bigendian"]
    msg.step = fields["step"]
    msg.data = _byte_array(fields["data"])
    return msg


def compressed_msg_from_fields(fields: dict[str, Any], header: Any | None = None) -> CompressedImage:
    """Fill a ``sensor_msgs/CompressedImage`` from ``image_to_compressed_fields`` output."""
    msg = CompressedImage()
    msg.header = copy_header(header)
    msg.format = fields["format"]
    msg.data = _byte_array(fields["data"])
    return msg


def image_to_msg(array_: np.ndarray, encoding: str = "passthrough", header: Any | None = None) -> Image:
    """Encode an array as ``sensor_msgs/Image``; ``header`` (stamp, frame_id) is copied.

    Raises:
        InputError: the array does not match ``encoding`` (see ``image_to_fields``).
    """
    return image_msg_from_fields(image_to_fields(array_, encoding), header)


def compressed_to_msg(
    array_: np.ndarray,
    header: Any | None = None,
    fmt: str = "jpeg",
    quality: int = 90,
    encoding: str | None = None,
) -> CompressedImage:
    """Encode an array as ``sensor_msgs/CompressedImage`` (image_transport format strings).

    Raises:
        InputError: unsupported format/encoding (see ``image_to_compressed_fields``).
    """
    fields = image_to_compressed_fields(array_, fmt, quality, encoding=encoding)
    return compressed_msg_from_fields(fields, header)


def output_msg(array_: np.ndarray, encoding: str, header: Any) -> Image:
    """``sensor_msgs/Image`` of one of the node's own outputs, with a single copy of the pixels.

    ``image_to_msg`` copies twice (``tobytes`` then ``array('B', bytes)``): 6-8 ms for the five
    720p outputs of a frame here. The outputs are C-ordered uint8/float32 arrays in host byte
    order, so the fields are known and the pixels go straight into the message buffer.
    """
    array_ = np.ascontiguousarray(array_)
    data = array.array("B")
    data.frombytes(array_.data.cast("B"))
    fields = {"height": int(array_.shape[0]), "width": int(array_.shape[1]), "encoding": encoding,
              "is_bigendian": int(sys.byteorder == "big" and array_.dtype.itemsize > 1),
              "step": int(array_.strides[0]), "data": data}
    return image_msg_from_fields(fields, header)


def path_msg(points: np.ndarray | None, header: Any, frame_id: str) -> PathMsg:
    """``nav_msgs/Path`` of metric points in ``frame_id`` with the input's stamp; each pose's yaw
    follows the path. None gives an empty path (no ego lane this frame: still one message per
    input)."""
    msg = PathMsg()
    msg.header = copy_header(header)
    msg.header.frame_id = frame_id
    if points is None:
        return msg
    for (x, y, z), a in zip(points, path_headings(points), strict=True):
        pose = PoseStamped()
        pose.header = msg.header
        pos, rot = pose.pose.position, pose.pose.orientation
        pos.x, pos.y, pos.z = float(x), float(y), float(z)
        rot.z, rot.w = float(np.sin(a / 2)), float(np.cos(a / 2))  # yaw along the path
        msg.poses.append(pose)
    return msg
