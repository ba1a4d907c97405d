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
from typing import TYPE_CHECKING, Any

from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from perception.ros_format import (
    compressed_from_msg,
    image_from_msg,
    image_to_compressed_fields,
    image_to_fields,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "copy_header",
    "image_msg_from_fields",
    "compressed_msg_from_fields",
    "image_to_msg",
    "compressed_to_msg",
    "image_from_msg",
    "compressed_from_msg",
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
