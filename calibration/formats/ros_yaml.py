"""ROS camera_info YAML (read/write), the layout of ``camera_calibration`` /
``camera_calibration_parsers``: ``image_width``, ``image_height``, ``camera_name``,
``camera_matrix``, ``distortion_model``, ``distortion_coefficients``, ``rectification_matrix``,
``projection_matrix``; each matrix is ``{rows, cols, data: [row-major]}``. Numbers are written in
their shortest exact form, so a file read and written back gives bit-identical values."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import yaml

from calibration.camera import CameraModel
from calibration.formats._fields import (
    CalibrationFile,
    build_camera,
    distortion_model_name,
    exact_number,
    non_negative_int,
    required,
    yaml_matrix,
)
from perception.errors import CalibrationError

__all__ = ["parse_ros_yaml", "ros_yaml_text", "save_ros_yaml"]


_ROS_FIELDS = {
    "K": "camera_matrix",
    "D": "distortion_coefficients",
    "R": "rectification_matrix",
    "P": "projection_matrix",
    "distortion_model": "distortion_model",
}


def parse_ros_yaml(text: str, where: str = "<string>") -> CalibrationFile:
    """Parse camera_info YAML text (``where`` names the source in errors)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CalibrationError(f"{where}: not valid YAML: {err}") from err
    if not isinstance(data, Mapping):
        raise CalibrationError(
            f"{where}: expected a camera_info YAML mapping, got {type(data).__name__}"
        )
    width = non_negative_int(required(data, "image_width", where), where, "image_width")
    height = non_negative_int(required(data, "image_height", where), where, "image_height")
    name = data.get("camera_name", "unknown")
    K = yaml_matrix(data, "camera_matrix", (3, 3), where)
    D = yaml_matrix(data, "distortion_coefficients", None, where).reshape(-1)
    # camera_calibration_parsers assumes plumb_bob when the model is missing (old files).
    model = distortion_model_name(
        data.get("distortion_model", "plumb_bob"), D.size, where, "distortion_model"
    )
    R = yaml_matrix(data, "rectification_matrix", (3, 3), where)
    P = yaml_matrix(data, "projection_matrix", (3, 4), where)
    camera = build_camera(
        where, _ROS_FIELDS, width=width, height=height, K=K, D=D, distortion_model=model, R=R, P=P
    )
    return CalibrationFile(
        camera, str(name), None if where == "<string>" else Path(where), "ros_yaml"
    )


def _flow(values: np.ndarray) -> str:
    return "[" + ", ".join(exact_number(v) for v in np.ravel(values)) + "]"


def ros_yaml_text(camera: CameraModel, camera_name: str = "camera") -> str:
    """camera_info YAML text in the camera_calibration layout (keys in its order)."""
    if not re.fullmatch(r"[A-Za-z0-9_./-]+", camera_name):
        raise CalibrationError(f"camera_name {camera_name!r}: use letters, digits and _ . / - only")
    lines = [
        f"image_width: {camera.width}",
        f"image_height: {camera.height}",
        f"camera_name: {camera_name}",
    ]

    def matrix(key: str, value: np.ndarray, rows: int, cols: int) -> None:
        lines.extend([f"{key}:", f"  rows: {rows}", f"  cols: {cols}", f"  data: {_flow(value)}"])

    matrix("camera_matrix", camera.K, 3, 3)
    lines.append(f"distortion_model: {camera.distortion_model}")
    matrix("distortion_coefficients", camera.D, 1, camera.D.size)
    matrix("rectification_matrix", camera.R, 3, 3)
    matrix("projection_matrix", camera.projection, 3, 4)
    return "\n".join(lines) + "\n"


def save_ros_yaml(path: str | Path, camera: CameraModel, camera_name: str = "camera") -> Path:
    """Write camera_info YAML; creates the parent directory. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(ros_yaml_text(camera, camera_name), encoding="utf-8")
    return path
