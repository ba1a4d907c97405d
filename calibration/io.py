"""Calibration files and CameraInfo fields <-> :class:`CameraModel`: the entry points.

:func:`load_calibration` / :func:`load_camera` read any supported file, the format detected from
its content. The formats, one module each in ``calibration.formats`` and re-exported here: ROS
camera_info YAML (read/write), camera_calibration_parsers INI (read), OpenCV FileStorage YAML/XML
(read), ``sensor_msgs/CameraInfo`` fields (to a dict / from any message object, without rclpy)
and the camera mounting YAML (read/write).

Every error is a :class:`CalibrationError` naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibration.camera import CameraModel
from calibration.formats._fields import CalibrationFile
from calibration.formats.camera_info import camera_info_from_msg, camera_info_to_fields
from calibration.formats.ini import parse_ini
from calibration.formats.mounting import (
    load_mounting,
    mounting_from_dict,
    mounting_yaml_text,
    save_mounting,
)
from calibration.formats.opencv import parse_opencv_yaml
from calibration.formats.ros_yaml import parse_ros_yaml, ros_yaml_text, save_ros_yaml
from perception.errors import CalibrationError

__all__ = [
    "CalibrationFile",
    "load_calibration",
    "load_camera",
    "parse_ros_yaml",
    "ros_yaml_text",
    "save_ros_yaml",
    "parse_ini",
    "parse_opencv_yaml",
    "camera_info_to_fields",
    "camera_info_from_msg",
    "load_mounting",
    "mounting_from_dict",
    "mounting_yaml_text",
    "save_mounting",
]


def _detect_format(path: Path, text: str) -> str:
    head = text.lstrip("\ufeff").lstrip()
    if path.suffix.lower() == ".ini" or head.startswith("["):
        return "ini"
    if head.startswith("%YAML:") or head.startswith("<?xml") or "!!opencv-matrix" in text:
        return "opencv"
    if "camera_matrix:" in text and "projection_matrix" in text:
        return "ros_yaml"
    return "opencv" if path.suffix.lower() in (".xml", ".yml") else "ros_yaml"


def load_calibration(path: str | Path, **opencv_options: Any) -> CalibrationFile:
    """Read any supported calibration file (format detected from its content).

    Raises:
        CalibrationError: unreadable file, unknown format, or a missing/malformed field
            (the message names the file and the field).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise CalibrationError(f"{path}: cannot read calibration file: {err}") from err
    fmt = _detect_format(path, text)
    if fmt == "ini":
        return parse_ini(text, str(path))
    if fmt == "opencv":
        return parse_opencv_yaml(text, str(path), **opencv_options)
    return parse_ros_yaml(text, str(path))


def load_camera(path: str | Path, **opencv_options: Any) -> CameraModel:
    """The :class:`CameraModel` of a calibration file; see :func:`load_calibration`."""
    return load_calibration(path, **opencv_options).camera
