"""``sensor_msgs/CameraInfo`` fields to a dict and from any message object (rclpy, rosbags or a
dict), without rclpy."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from calibration.camera import CameraModel
from calibration.formats._fields import (
    build_camera,
    distortion_model_name,
    field_error,
    finite_number,
    non_negative_int,
)
from perception.errors import CalibrationError

__all__ = ["camera_info_to_fields", "camera_info_from_msg"]


def camera_info_to_fields(
    camera: CameraModel, frame_id: str = "camera_optical_frame", stamp_ns: int = 0
) -> dict[str, Any]:
    """The fields of a ``sensor_msgs/msg/CameraInfo`` for this model, as plain Python values.

    ``d, k, r, p`` are flat row-major float lists; ``header`` is
    ``{"stamp": {"sec", "nanosec"}, "frame_id"}``; binning 0 and an empty ROI mean "full image".
    ``ros2_nodes`` turns this into a message; ``frame_id`` should name the *optical* frame.
    """
    return {
        "header": {
            "stamp": {
                "sec": int(stamp_ns // 1_000_000_000),
                "nanosec": int(stamp_ns % 1_000_000_000),
            },
            "frame_id": frame_id,
        },
        "height": camera.height,
        "width": camera.width,
        "distortion_model": camera.distortion_model,
        "d": [float(v) for v in camera.D],
        "k": [float(v) for v in camera.K.ravel()],
        "r": [float(v) for v in camera.R.ravel()],
        "p": [float(v) for v in camera.projection.ravel()],
        "binning_x": 0,
        "binning_y": 0,
        "roi": {"x_offset": 0, "y_offset": 0, "height": 0, "width": 0, "do_rectify": False},
    }


def _field(msg: Any, name: str, where: str) -> Any:
    """``msg.name`` (rclpy / rosbags objects), ``msg[name]`` (dicts) or ROS 1's upper-case D/K/R/P."""
    for key in (name, name.upper()):
        if isinstance(msg, Mapping):
            if key in msg:
                return msg[key]
        elif hasattr(msg, key):
            return getattr(msg, key)
    raise CalibrationError(f"{where}: missing field {name!r}")


def camera_info_from_msg(msg: Any, *, apply_roi_binning: bool = True) -> CameraModel:
    """A :class:`CameraModel` from a ``sensor_msgs/CameraInfo`` message (or its field dict).

    Works with rclpy messages, rosbags-deserialized messages and :func:`camera_info_to_fields`
    dicts: only attributes are read. When ``binning_x/y > 1`` or an ROI is set, the model
    describes the binned/cropped image actually published (K/P in CameraInfo refer to the full
    sensor), unless ``apply_roi_binning=False``.

    Raises:
        CalibrationError: a field is missing or malformed, or K is all zeros (uncalibrated).
    """
    where = f"CameraInfo({type(msg).__name__})"
    width = non_negative_int(_field(msg, "width", where), where, "width")
    height = non_negative_int(_field(msg, "height", where), where, "height")

    def flat(name: str, size: int | None) -> np.ndarray:
        raw = _field(msg, name, where)
        try:
            values = [finite_number(v, where, f"{name}[{i}]") for i, v in enumerate(list(raw))]
        except TypeError:
            raise field_error(where, name, f"expected a sequence of numbers, got {raw!r}") from None
        if size is not None and len(values) != size:
            raise field_error(where, name, f"expected {size} numbers, got {len(values)}")
        return np.array(values, dtype=np.float64)

    K = flat("k", 9).reshape(3, 3)
    if not np.any(K):
        raise field_error(where, "k", "all zeros: the camera is not calibrated")
    D = flat("d", None)
    R = flat("r", 9).reshape(3, 3)
    if not np.any(R):  # an uncalibrated driver may leave R zero; the identity is what it means
        R = np.eye(3)
    P = flat("p", 12).reshape(3, 4)
    name = _field(msg, "distortion_model", where) if D.size else "plumb_bob"
    model = distortion_model_name(name or "plumb_bob", D.size, where, "distortion_model")
    fields = {"K": "k", "D": "d", "R": "r", "P": "p"}
    camera = build_camera(
        where,
        fields,
        width=width,
        height=height,
        K=K,
        D=D,
        distortion_model=model,
        R=R,
        P=P if np.any(P) else None,
    )
    if not apply_roi_binning:
        return camera
    return _apply_roi_binning(camera, msg, where)


def _apply_roi_binning(camera: CameraModel, msg: Any, where: str) -> CameraModel:
    """CameraInfo semantics: width/height/K/P are the full calibrated resolution; the published
    image is the ROI (full-resolution pixels) binned by ``binning_x/y`` (0 and 1: none)."""

    def optional(obj: Any, name: str) -> int:
        try:
            return non_negative_int(_field(obj, name, where), where, name)
        except CalibrationError as err:
            if "missing field" in str(err):
                return 0
            raise

    bx, by = max(optional(msg, "binning_x"), 1), max(optional(msg, "binning_y"), 1)
    try:
        roi = _field(msg, "roi", where)
    except CalibrationError:
        roi = None
    if roi is not None:
        rw, rh = optional(roi, "width"), optional(roi, "height")
        if rw and rh and (rw, rh) != camera.size:
            x0, y0 = optional(roi, "x_offset"), optional(roi, "y_offset")
            try:
                camera = camera.cropped(x0, y0, rw, rh)
            except CalibrationError as err:
                raise field_error(where, "roi", str(err)) from err
    if bx > 1 or by > 1:
        camera = camera.resized(camera.width // bx, camera.height // by)
    return camera
