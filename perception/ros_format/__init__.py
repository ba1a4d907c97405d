"""ROS message formats as plain numpy: no rclpy, shared by the node and bag replay."""
from __future__ import annotations

from perception.ros_format.image import (
    ImageEncoding,
    compressed_from_msg,
    decode_compressed,
    image_from_fields,
    image_from_msg,
    image_to_compressed_fields,
    image_to_fields,
    parse_encoding,
    to_bgr8,
    to_display_bgr8,
)

__all__ = [
    "ImageEncoding",
    "parse_encoding",
    "image_from_msg",
    "image_from_fields",
    "image_to_fields",
    "compressed_from_msg",
    "decode_compressed",
    "image_to_compressed_fields",
    "to_bgr8",
    "to_display_bgr8",
]
