"""The published form of engine outputs, shared by the node and bag replay."""
from __future__ import annotations

import cv2
import numpy as np

from perception.config import TaskConfig
from perception.ros_format.outputs import colorize_output, output_encoding, published_array
from perception.tasks import kind_of


def test_encodings_and_layout() -> None:
    assert output_encoding(np.zeros((4, 5), np.uint8)) == "mono8"
    assert output_encoding(np.zeros((4, 5, 3), np.uint8)) == "bgr8"
    assert output_encoding(np.zeros((4, 5, 4), np.uint8)) is None
    assert output_encoding(np.zeros((4, 5), np.float32)) == "32FC1"
    assert output_encoding(np.zeros((4, 5, 3), np.float32)) == "32FC3"
    assert output_encoding(np.zeros((4, 5), np.int64)) is None
    normals = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    hwc = published_array(normals)
    assert hwc.shape == (4, 5, 3) and hwc[2, 1, 0] == normals[0, 2, 1]
    image = np.zeros((4, 5, 3), np.float32)
    assert published_array(image) is image


def test_colour_at_network_resolution_equals_colouring_the_resized_ids() -> None:
    cfg = TaskConfig(name="segmentation", kind="segmentation")
    kind = kind_of(cfg)
    raw = np.random.default_rng(0).integers(0, 9, (16, 32)).astype(np.uint8)
    frame = np.full((64, 128, 3), 200, np.uint8)
    resized = cv2.resize(raw, (128, 64), interpolation=cv2.INTER_NEAREST)
    color = colorize_output(kind, cfg, raw, resized, frame)
    np.testing.assert_array_equal(color, kind.colorize(resized, cfg))
    blended = colorize_output(kind, cfg, raw, resized, frame, blend=0.5)
    np.testing.assert_array_equal(blended, cv2.addWeighted(frame, 0.5, color, 0.5, 0.0))
    assert colorize_output(kind, cfg, raw, resized, size=(64, 128)).shape == (64, 128, 3)
