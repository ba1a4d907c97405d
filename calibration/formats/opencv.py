"""OpenCV FileStorage YAML/XML (read): ``camera_matrix``/``distortion_coefficients`` (or
``K``/``D``, ``M1``/``D1``...), ``image_width``/``image_height``."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from calibration.formats._fields import (
    CalibrationFile,
    build_camera,
    distortion_model_name,
    non_negative_int,
    required,
    yaml_matrix,
)
from perception.errors import CalibrationError

__all__ = ["parse_opencv_yaml"]


class _OpenCvLoader(yaml.SafeLoader):
    """SafeLoader that accepts OpenCV's ``!!opencv-matrix`` nodes as plain mappings."""


def _opencv_matrix(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    return dict(loader.construct_mapping(node, deep=True))  # type: ignore[arg-type]


_OpenCvLoader.add_constructor("tag:yaml.org,2002:opencv-matrix", _opencv_matrix)

_CV_K_KEYS = ("camera_matrix", "cameraMatrix", "K", "intrinsic_matrix", "M")
_CV_D_KEYS = ("distortion_coefficients", "dist_coeffs", "distCoeffs", "distortion", "D")


def _opencv_mapping(text: str, where: str) -> Mapping[str, Any]:
    if text.lstrip().startswith("<?xml") or "<opencv_storage>" in text[:200]:
        return _opencv_xml(where)
    # OpenCV writes a "%YAML:1.0" directive, which is not YAML; drop it.
    body = re.sub(r"^%YAML[: ]\d\.\d\s*\n", "", text.lstrip("\ufeff"), count=1)
    try:
        data = yaml.load(body, Loader=_OpenCvLoader)  # a SafeLoader subclass: no object tags
    except yaml.YAMLError as err:
        raise CalibrationError(f"{where}: not valid OpenCV YAML: {err}") from err
    if not isinstance(data, Mapping):
        raise CalibrationError(
            f"{where}: expected an OpenCV FileStorage mapping, got {type(data).__name__}"
        )
    return data


def _opencv_xml(where: str) -> Mapping[str, Any]:
    """Read the top-level matrices/scalars of an OpenCV XML file through cv2.FileStorage."""
    import cv2

    fs = cv2.FileStorage(where, cv2.FILE_STORAGE_READ)
    if not fs.isOpened():
        raise CalibrationError(f"{where}: cv2.FileStorage cannot open it")
    try:
        root = fs.root()
        out: dict[str, Any] = {}
        for key in root.keys():
            node = root.getNode(key)
            if node.isMap():
                mat = node.mat()
                if mat is not None:
                    out[key] = {
                        "rows": mat.shape[0],
                        "cols": mat.shape[1] if mat.ndim > 1 else 1,
                        "data": mat.ravel().tolist(),
                    }
            elif node.isReal() or node.isInt():
                out[key] = node.real()
            elif node.isString():
                out[key] = node.string()
        return out
    finally:
        fs.release()


def parse_opencv_yaml(
    text: str,
    where: str = "<string>",
    *,
    index: int | None = None,
    image_size: tuple[int, int] | None = None,
    distortion_model: str | None = None,
) -> CalibrationFile:
    """Parse an OpenCV FileStorage calibration (YAML text; XML is read from ``where``).

    Args:
        index: for stereo files (``M1/D1/M2/D2``), which camera (1 or 2) to read.
        image_size: ``(width, height)`` when the file does not store ``image_width/height``.
        distortion_model: overrides the model implied by the coefficient count (4/5 ->
            plumb_bob, 8 -> rational_polynomial); pass ``"equidistant"`` for cv2.fisheye results.
    """
    data = _opencv_mapping(text, where)
    suffix = "" if index is None else str(index)
    k_keys = [k + suffix for k in _CV_K_KEYS]
    d_keys = [k + suffix for k in _CV_D_KEYS]
    k_key = next((k for k in k_keys if k in data), None)
    d_key = next((k for k in d_keys if k in data), None)
    if k_key is None:
        raise CalibrationError(f"{where}: missing field {k_keys[0]!r} (also tried {k_keys[1:]})")
    if d_key is None:
        raise CalibrationError(f"{where}: missing field {d_keys[0]!r} (also tried {d_keys[1:]})")
    K = yaml_matrix(data, k_key, (3, 3), where)
    D = yaml_matrix(data, d_key, None, where).reshape(-1)
    if image_size is not None:
        width, height = (int(v) for v in image_size)
    else:
        width = non_negative_int(required(data, "image_width", where), where, "image_width")
        height = non_negative_int(required(data, "image_height", where), where, "image_height")
    name = (
        distortion_model
        or data.get("distortion_model")
        or ("rational_polynomial" if D.size == 8 else "plumb_bob")
    )
    model = distortion_model_name(name, D.size, where, d_key)
    fields = {"K": k_key, "D": d_key}
    camera = build_camera(where, fields, width=width, height=height, K=K, D=D, distortion_model=model)
    return CalibrationFile(
        camera,
        str(data.get("camera_name", "opencv")),
        None if where == "<string>" else Path(where),
        "opencv",
    )
