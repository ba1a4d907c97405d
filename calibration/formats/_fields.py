"""What every calibration format shares: the result of reading a file, and reading its fields
into numbers, matrices and a checked :class:`CameraModel`, with a :class:`CalibrationError` that
names the file and the field."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibration.camera import DISTORTION_MODELS, CameraModel
from perception.errors import CalibrationError

__all__ = [
    "CalibrationFile",
    "field_error",
    "finite_number",
    "non_negative_int",
    "required",
    "yaml_matrix",
    "distortion_model_name",
    "build_camera",
    "exact_number",
]


# Spellings other tools use for the three ROS distortion models.
_MODEL_ALIASES = {
    "fisheye": "equidistant",
    "kannala_brandt": "equidistant",
    "rational": "rational_polynomial",
}


@dataclass(frozen=True)
class CalibrationFile:
    """A camera model read from a file, with what the file says about itself."""

    camera: CameraModel
    camera_name: str
    path: Path | None
    format: str  # "ros_yaml" | "ini" | "opencv"


def field_error(where: str, field: str, message: str) -> CalibrationError:
    """The error to raise for a bad ``field`` of ``where``."""
    return CalibrationError(f"{where}: field {field!r}: {message}")


def finite_number(value: Any, where: str, field: str) -> float:
    """A finite float from a YAML scalar; YAML 1.1 reads '1e-5' as a string, so parse those."""
    if isinstance(value, bool):
        raise field_error(where, field, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise field_error(where, field, f"expected a number, got {value!r}") from None
    else:
        raise field_error(where, field, f"expected a number, got {value!r}")
    if not math.isfinite(out):
        raise field_error(where, field, f"expected a finite number, got {value!r}")
    return out


def non_negative_int(value: Any, where: str, field: str) -> int:
    """A non-negative integer from a YAML scalar (``2.0`` and ``"2"`` count)."""
    number = finite_number(value, where, field)
    if number != int(number) or number < 0:
        raise field_error(where, field, f"expected a non-negative integer, got {value!r}")
    return int(number)


def required(data: Mapping[str, Any], key: str, where: str, prefix: str = "") -> Any:
    """``data[key]``, or an error naming the field (``prefix``: the keys enclosing ``data``)."""
    if not isinstance(data, Mapping):
        raise CalibrationError(
            f"{where}: field {prefix.rstrip('.') or '<document>'!r}: expected a mapping, got {data!r}"
        )
    if key not in data:
        raise CalibrationError(f"{where}: missing field {prefix + key!r}")
    return data[key]


def yaml_matrix(
    data: Mapping[str, Any], key: str, shape: tuple[int, int] | None, where: str
) -> np.ndarray:
    """Read ``{rows, cols, data}``; ``shape=None`` accepts any rows x cols (distortion)."""
    node = required(data, key, where)
    rows = non_negative_int(required(node, "rows", where, key + "."), where, key + ".rows")
    cols = non_negative_int(required(node, "cols", where, key + "."), where, key + ".cols")
    if shape is not None and (rows, cols) != shape:
        raise field_error(
            where, key, f"expected a {shape[0]}x{shape[1]} matrix, got rows={rows}, cols={cols}"
        )
    values = required(node, "data", where, key + ".")
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise field_error(where, key + ".data", f"expected a list of numbers, got {values!r}")
    if len(values) != rows * cols:
        raise field_error(
            where,
            key + ".data",
            f"expected {rows * cols} numbers (rows={rows} x cols={cols}), got {len(values)}",
        )
    flat = [finite_number(v, where, f"{key}.data[{i}]") for i, v in enumerate(values)]
    return np.array(flat, dtype=np.float64).reshape(rows, cols)


def distortion_model_name(name: Any, n_coeffs: int, where: str, field: str) -> str:
    """The ROS name of a distortion model (other tools' spellings accepted), checked against the
    number of coefficients."""
    if not isinstance(name, str):
        raise field_error(where, field, f"expected a string, got {name!r}")
    model = _MODEL_ALIASES.get(name.strip().lower(), name.strip().lower())
    if model not in DISTORTION_MODELS:
        raise field_error(
            where,
            field,
            f"unknown distortion model {name!r}; valid: {', '.join(DISTORTION_MODELS)}",
        )
    if n_coeffs not in DISTORTION_MODELS[model]:
        allowed = " or ".join(map(str, DISTORTION_MODELS[model]))
        raise field_error(where, field, f"{model} takes {allowed} coefficients, the file has {n_coeffs}")
    return model


def build_camera(where: str, fields: Mapping[str, str], **kwargs: Any) -> CameraModel:
    """Construct the model; map its ``CameraModel.<attr>`` errors to the file's field names."""
    try:
        return CameraModel(**kwargs)
    except CalibrationError as err:
        text = str(err)
        for attr, field in fields.items():
            text = text.replace(f"CameraModel.{attr}:", f"field {field!r}:")
        raise CalibrationError(f"{where}: {text}") from err


def exact_number(x: float) -> str:
    """Shortest text that reads back as exactly ``x`` and that YAML 1.1 parsers read as a number
    (``0`` not ``0.0``, like yaml-cpp; a dot in the mantissa of exponent forms)."""
    x = float(x)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x)) if x != 0 or math.copysign(1.0, x) > 0 else "-0.0"
    text = repr(x)
    if "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"
    return text
