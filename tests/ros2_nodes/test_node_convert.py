"""ros2_nodes.convert with real rclpy messages, and rosbags-serialized messages decoding the same.

The CDR bytes rclpy puts on the wire are read back by rosbags (ROS2_HUMBLE typestore) and the
other way round, so the node (rclpy) and bag replay (rosbags) share one converter.
"""
from __future__ import annotations

import array
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from perception.ros_format import decode_compressed, image_to_fields, to_bgr8  # noqa: E402
from ros2_nodes.convert import (  # noqa: E402
    compressed_from_msg,
    compressed_to_msg,
    copy_header,
    image_from_msg,
    image_msg_from_fields,
    image_to_msg,
)

pytestmark = pytest.mark.ros

BDD = "yolop_bdd100k/inference/images/3c0e7240-96e390d2.jpg"
INSTANCE_IDS = (
    "mmseg_cityscapes/tests/data/pseudo_cityscapes_dataset/gtFine/val/frankfurt/"
    "frankfurt_000000_000294_gtFine_instanceIds.png"
)


@pytest.fixture(scope="module")
def frame(real_data: Path) -> np.ndarray:
    image = cv2.imread(str(real_data / BDD), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (720, 1280, 3)
    return image


@pytest.fixture(scope="module")
def typestore():
    return get_typestore(Stores.ROS2_HUMBLE)


@pytest.fixture
def header() -> Header:
    h = Header(frame_id="camera_front")
    h.stamp.sec, h.stamp.nanosec = 1_700_000_123, 456_789_000
    return h


def test_image_msg_roundtrip_keeps_pixels_and_header(frame, header):
    msg = image_to_msg(frame, "bgr8", header=header)
    assert isinstance(msg, Image) and isinstance(msg.data, array.array)
    assert (msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian) == (720, 1280, "bgr8", 3840, 0)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1_700_000_123, 456_789_000, "camera_front")
    assert msg.header is not header  # a copy: the node may reuse the input message
    np.testing.assert_array_equal(image_from_msg(msg), frame)
    wire = deserialize_message(serialize_message(msg), Image)  # through the CDR the DDS sends
    np.testing.assert_array_equal(image_from_msg(wire), frame)
    assert wire.header == msg.header


@pytest.mark.parametrize("encoding", ["rgb8", "mono8", "32FC1", "16UC1", "bgra8"])
def test_output_encodings_roundtrip(frame, encoding):
    """The node's outputs: coloured masks (bgr8/rgb8), ids (mono8), depth (32FC1), 16-bit depth."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    arr = {
        "rgb8": np.ascontiguousarray(frame[:, :, ::-1]),
        "mono8": gray,
        "32FC1": gray.astype(np.float32) / 7.5,
        "16UC1": gray.astype(np.uint16) * 200,
        "bgra8": np.dstack([frame, gray]),
    }[encoding]
    msg = deserialize_message(serialize_message(image_to_msg(arr, encoding)), Image)
    np.testing.assert_array_equal(image_from_msg(msg), arr)


def test_compressed_msg_roundtrip(frame, header):
    msg = compressed_to_msg(frame, header=header, fmt="jpeg", quality=90)
    assert isinstance(msg, CompressedImage) and msg.format == "bgr8; jpeg compressed bgr8"
    wire = deserialize_message(serialize_message(msg), CompressedImage)
    out = compressed_from_msg(wire)
    assert out.shape == frame.shape and cv2.PSNR(out, frame) > 35.0
    assert wire.header.frame_id == "camera_front"
    png = deserialize_message(serialize_message(compressed_to_msg(frame, fmt="png")), CompressedImage)
    np.testing.assert_array_equal(compressed_from_msg(png), frame)


def test_copy_header_none_is_empty():
    h = copy_header(None)
    assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (0, 0, "")


def _rosbags_image(typestore, fields: dict, stamp=(1_700_000_123, 456_789_000), frame_id="camera_front"):
    types = typestore.types
    header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=stamp[0], nanosec=stamp[1]), frame_id=frame_id)
    return types["sensor_msgs/msg/Image"](
        header=header, height=fields["height"], width=fields["width"], encoding=fields["encoding"],
        is_bigendian=fields["is_bigendian"], step=fields["step"], data=np.frombuffer(fields["data"], np.uint8),
    )


def test_rclpy_cdr_decodes_identically_with_rosbags(frame, header, typestore):
    msg = image_to_msg(frame, "bgr8", header=header)
    bag_msg = typestore.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/Image")
    assert isinstance(bag_msg.data, np.ndarray) and bag_msg.data.dtype == np.uint8
    assert (bag_msg.header.stamp.sec, bag_msg.header.stamp.nanosec, bag_msg.header.frame_id) == (1_700_000_123, 456_789_000, "camera_front")
    np.testing.assert_array_equal(image_from_msg(bag_msg), image_from_msg(msg))


@pytest.mark.parametrize("big", [False, True], ids=["little", "big"])
def test_rosbags_cdr_decodes_identically_with_rclpy(real_data, typestore, big):
    """A 16-bit frame written by rosbags (both byte orders, padded rows) reads the same in rclpy."""
    ids = cv2.imread(str(real_data / INSTANCE_IDS), cv2.IMREAD_UNCHANGED)
    fields = image_to_fields(ids.astype(">u2" if big else "<u2"), "mono16")
    rows = np.frombuffer(fields["data"], np.uint8).reshape(fields["height"], -1)
    padded = np.pad(rows, ((0, 0), (0, 6)))
    fields = {**fields, "step": fields["step"] + 6, "data": padded.tobytes()}
    raw = typestore.serialize_cdr(_rosbags_image(typestore, fields), "sensor_msgs/msg/Image")
    rclpy_msg = deserialize_message(bytes(raw), Image)
    bag_msg = typestore.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    assert rclpy_msg.is_bigendian == int(big) and rclpy_msg.step == ids.shape[1] * 2 + 6
    np.testing.assert_array_equal(image_from_msg(rclpy_msg), ids)
    np.testing.assert_array_equal(image_from_msg(bag_msg), ids)
    np.testing.assert_array_equal(to_bgr8(image_from_msg(rclpy_msg), "mono16"), to_bgr8(image_from_msg(bag_msg), "mono16"))


def test_compressed_identical_in_rosbags_and_rclpy(frame, typestore):
    msg = compressed_to_msg(frame, fmt="jpeg", quality=80)
    bag_msg = typestore.deserialize_cdr(serialize_message(msg), "sensor_msgs/msg/CompressedImage")
    assert bag_msg.format == msg.format
    np.testing.assert_array_equal(compressed_from_msg(bag_msg), compressed_from_msg(msg))
    raw = typestore.serialize_cdr(bag_msg, "sensor_msgs/msg/CompressedImage")
    back = deserialize_message(bytes(raw), CompressedImage)
    np.testing.assert_array_equal(decode_compressed(back.data, back.format)[0], compressed_from_msg(msg))


def test_image_msg_from_fields_accepts_uint8_array_data(frame):
    fields = image_to_fields(frame, "bgr8")
    msg = image_msg_from_fields({**fields, "data": np.frombuffer(fields["data"], np.uint8)})
    np.testing.assert_array_equal(image_from_msg(msg), frame)
