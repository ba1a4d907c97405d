"""Camera frames in, result topics out: ROS bag I/O for replay (issue 8), with ``rosbags`` only.

Reading: :class:`BagReader` (``reader.py``, one bag of any layout, with the handling of foreign
bags whose metadata disagrees with their storage) and :func:`open_camera_bag` (``camera.py``,
camera frames with their CameraInfo and ground truth). Writing: :class:`BagOutputWriter`
(``writer.py``, atomic) and the message builders (``message.py``).
"""
from __future__ import annotations

from perception.evaluation.bag_io.camera import (
    CAMERA_INFO_TYPE,
    IMAGE_TYPES,
    BagFrame,
    CameraBag,
    open_camera_bag,
)
from perception.evaluation.bag_io.message import (
    make_compressed_image,
    make_header,
    make_image,
    make_path,
    stamp_to_ns,
)
from perception.evaluation.bag_io.reader import BagMetadataWarning, BagReader, TopicSummary
from perception.evaluation.bag_io.writer import BagOutputWriter

__all__ = [
    "IMAGE_TYPES",
    "CAMERA_INFO_TYPE",
    "BagMetadataWarning",
    "TopicSummary",
    "BagReader",
    "BagFrame",
    "CameraBag",
    "open_camera_bag",
    "BagOutputWriter",
    "stamp_to_ns",
    "make_header",
    "make_image",
    "make_compressed_image",
    "make_path",
]
