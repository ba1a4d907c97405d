"""Camera calibration files and ``sensor_msgs/CameraInfo`` fields <-> :class:`CameraModel`.

Formats:

* **ROS camera_info YAML** (read/write), the layout of ``camera_calibration`` /
  ``camera_calibration_parsers``: ``image_width``, ``image_height``, ``camera_name``,
  ``camera_matrix``, ``distortion_model``, ``distortion_coefficients``, ``rectification_matrix``,
  ``projection_matrix``; each matrix is ``{rows, cols, data: [row-major]}``. Numbers are written
  in their shortest exact form, so a file read and written back gives bit-identical values.
* **camera_calibration_parsers INI** (read): ``[image]`` width/height and a ``[<camera name>]``
  section with ``camera matrix``, ``distortion`` (5 -> plumb_bob, 8 -> rational_polynomial),
  ``rectification``, ``projection`` blocks.
* **OpenCV FileStorage YAML/XML** (read): ``camera_matrix``/``distortion_coefficients`` (or
  ``K``/``D``, ``M1``/``D1``...), ``image_width``/``image_height``.
* **sensor_msgs/CameraInfo** fields (to a dict / from any message object), without rclpy.
* **Mounting YAML** (read/write): ``x_m, y_m, z_m`` and ``roll/pitch/yaw`` as ``*_rad`` or
  ``*_deg``, at the top level or under ``mounting:``.

Every error is a :class:`CalibrationError` naming the file and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from calibration.camera import DISTORTION_MODELS, CameraModel, Mounting
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


# --------------------------------------------------------------------------- field helpers
def _fail(where: str, field: str, message: str) -> CalibrationError:
    return CalibrationError(f"{where}: field {field!r}: {message}")


def _number(value: Any, where: str, field: str) -> float:
    """A finite float from a YAML scalar; YAML 1.1 reads '1e-5' as a string, so parse those."""
    if isinstance(value, bool):
        raise _fail(where, field, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise _fail(where, field, f"expected a number, got {value!r}") from None
    else:
        raise _fail(where, field, f"expected a number, got {value!r}")
    if not math.isfinite(out):
        raise _fail(where, field, f"expected a finite number, got {value!r}")
    return out


def _integer(value: Any, where: str, field: str) -> int:
    number = _number(value, where, field)
    if number != int(number) or number < 0:
        raise _fail(where, field, f"expected a non-negative integer, got {value!r}")
    return int(number)


def _get(data: Mapping[str, Any], key: str, where: str, prefix: str = "") -> Any:
    if not isinstance(data, Mapping):
        raise CalibrationError(
            f"{where}: field {prefix.rstrip('.') or '<document>'!r}: expected a mapping, got {data!r}"
        )
    if key not in data:
        raise CalibrationError(f"{where}: missing field {prefix + key!r}")
    return data[key]


def _yaml_matrix(
    data: Mapping[str, Any], key: str, shape: tuple[int, int] | None, where: str
) -> np.ndarray:
    """Read ``{rows, cols, data}``; ``shape=None`` accepts any rows x cols (distortion)."""
    node = _get(data, key, where)
    rows = _integer(_get(node, "rows", where, key + "."), where, key + ".rows")
    cols = _integer(_get(node, "cols", where, key + "."), where, key + ".cols")
    if shape is not None and (rows, cols) != shape:
        raise _fail(
            where, key, f"expected a {shape[0]}x{shape[1]} matrix, got rows={rows}, cols={cols}"
        )
    values = _get(node, "data", where, key + ".")
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise _fail(where, key + ".data", f"expected a list of numbers, got {values!r}")
    if len(values) != rows * cols:
        raise _fail(
            where,
            key + ".data",
            f"expected {rows * cols} numbers (rows={rows} x cols={cols}), got {len(values)}",
        )
    flat = [_number(v, where, f"{key}.data[{i}]") for i, v in enumerate(values)]
    return np.array(flat, dtype=np.float64).reshape(rows, cols)


def _distortion_model(name: Any, n_coeffs: int, where: str, field: str) -> str:
    if not isinstance(name, str):
        raise _fail(where, field, f"expected a string, got {name!r}")
    model = _MODEL_ALIASES.get(name.strip().lower(), name.strip().lower())
    if model not in DISTORTION_MODELS:
        raise _fail(
            where,
            field,
            f"unknown distortion model {name!r}; valid: {', '.join(DISTORTION_MODELS)}",
        )
    if n_coeffs not in DISTORTION_MODELS[model]:
        allowed = " or ".join(map(str, DISTORTION_MODELS[model]))
        raise _fail(where, field, f"{model} takes {allowed} coefficients, the file has {n_coeffs}")
    return model


def _build(where: str, fields: Mapping[str, str], **kwargs: Any) -> CameraModel:
    """Construct the model; map its ``CameraModel.<attr>`` errors to the file's field names."""
    try:
        return CameraModel(**kwargs)
    except CalibrationError as err:
        text = str(err)
        for attr, field in fields.items():
            text = text.replace(f"CameraModel.{attr}:", f"field {field!r}:")
        raise CalibrationError(f"{where}: {text}") from err


# --------------------------------------------------------------------------- ROS YAML
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
    width = _integer(_get(data, "image_width", where), where, "image_width")
    height = _integer(_get(data, "image_height", where), where, "image_height")
    name = data.get("camera_name", "unknown")
    K = _yaml_matrix(data, "camera_matrix", (3, 3), where)
    D = _yaml_matrix(data, "distortion_coefficients", None, where).reshape(-1)
    # camera_calibration_parsers assumes plumb_bob when the model is missing (old files).
    model = _distortion_model(
        data.get("distortion_model", "plumb_bob"), D.size, where, "distortion_model"
    )
    R = _yaml_matrix(data, "rectification_matrix", (3, 3), where)
    P = _yaml_matrix(data, "projection_matrix", (3, 4), where)
    camera = _build(
        where, _ROS_FIELDS, width=width, height=height, K=K, D=D, distortion_model=model, R=R, P=P
    )
    return CalibrationFile(
        camera, str(name), None if where == "<string>" else Path(where), "ros_yaml"
    )


def _fmt(x: float) -> str:
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


def _flow(values: np.ndarray) -> str:
    return "[" + ", ".join(_fmt(v) for v in np.ravel(values)) + "]"


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


# --------------------------------------------------------------------------- INI
def parse_ini(text: str, where: str = "<string>") -> CalibrationFile:
    """Parse camera_calibration_parsers INI text (the same rules as its C++ reader)."""
    sections: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append([line])
        elif not sections:
            raise CalibrationError(f"{where}: text before the first [section]: {line!r}")
        else:
            sections[-1].append(line)

    def block(section: list[str], key: str, rows: int, cols: int | None, label: str) -> np.ndarray:
        if key not in section:
            raise CalibrationError(f"{where}: missing field {f'{label}.{key}'!r}")
        start = section.index(key) + 1
        lines = section[start : start + rows]
        values: list[list[float]] = []
        for r, line in enumerate(lines):
            if line.startswith("[") or line in _INI_KEYS:
                break
            tokens = line.split()
            values.append(
                [_number(t, where, f"{label}.{key}[{r}][{c}]") for c, t in enumerate(tokens)]
            )
        if len(values) != rows or (cols is not None and any(len(v) != cols for v in values)):
            got = "x".join(map(str, (len(values), *sorted({len(v) for v in values}))))
            raise _fail(
                where, f"{label}.{key}", f"expected {rows}x{cols or 'N'} numbers, got {got}"
            )
        return np.array(values, dtype=np.float64)

    image = next((s for s in sections if s[0] == "[image]"), None)
    cams = [s for s in sections if s[0] not in ("[image]", "[externals]")]
    if image is None:
        raise CalibrationError(f"{where}: missing section '[image]'")
    if not cams:
        raise CalibrationError(f"{where}: missing the camera section '[<camera name>]'")
    size = {}
    for key in ("width", "height"):
        if key not in image or image.index(key) + 1 >= len(image):
            raise CalibrationError(f"{where}: missing field {f'image.{key}'!r}")
        size[key] = _integer(image[image.index(key) + 1], where, f"image.{key}")
    cam = cams[-1]
    label = cam[0][1:-1]
    K = block(cam, "camera matrix", 3, 3, label)
    D = block(cam, "distortion", 1, None, label).reshape(-1)
    if D.size not in (5, 8):
        raise _fail(
            where,
            f"{label}.distortion",
            f"expected 5 (plumb_bob) or 8 (rational_polynomial) numbers, got {D.size}",
        )
    R = block(cam, "rectification", 3, 3, label)
    P = block(cam, "projection", 3, 4, label)
    fields = {
        "K": f"{label}.camera matrix",
        "D": f"{label}.distortion",
        "R": f"{label}.rectification",
        "P": f"{label}.projection",
    }
    model = "plumb_bob" if D.size == 5 else "rational_polynomial"
    camera = _build(
        where,
        fields,
        width=size["width"],
        height=size["height"],
        K=K,
        D=D,
        distortion_model=model,
        R=R,
        P=P,
    )
    return CalibrationFile(camera, label, None if where == "<string>" else Path(where), "ini")


_INI_KEYS = frozenset(
    {
        "camera matrix",
        "distortion",
        "rectification",
        "projection",
        "width",
        "height",
        "translation",
        "rotation",
    }
)


# --------------------------------------------------------------------------- OpenCV FileStorage
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
    K = _yaml_matrix(data, k_key, (3, 3), where)
    D = _yaml_matrix(data, d_key, None, where).reshape(-1)
    if image_size is not None:
        width, height = (int(v) for v in image_size)
    else:
        width = _integer(_get(data, "image_width", where), where, "image_width")
        height = _integer(_get(data, "image_height", where), where, "image_height")
    name = (
        distortion_model
        or data.get("distortion_model")
        or ("rational_polynomial" if D.size == 8 else "plumb_bob")
    )
    model = _distortion_model(name, D.size, where, d_key)
    fields = {"K": k_key, "D": d_key}
    camera = _build(where, fields, width=width, height=height, K=K, D=D, distortion_model=model)
    return CalibrationFile(
        camera,
        str(data.get("camera_name", "opencv")),
        None if where == "<string>" else Path(where),
        "opencv",
    )


# --------------------------------------------------------------------------- any file
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


# --------------------------------------------------------------------------- sensor_msgs/CameraInfo
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
    width = _integer(_field(msg, "width", where), where, "width")
    height = _integer(_field(msg, "height", where), where, "height")

    def flat(name: str, size: int | None) -> np.ndarray:
        raw = _field(msg, name, where)
        try:
            values = [_number(v, where, f"{name}[{i}]") for i, v in enumerate(list(raw))]
        except TypeError:
            raise _fail(where, name, f"expected a sequence of numbers, got {raw!r}") from None
        if size is not None and len(values) != size:
            raise _fail(where, name, f"expected {size} numbers, got {len(values)}")
        return np.array(values, dtype=np.float64)

    K = flat("k", 9).reshape(3, 3)
    if not np.any(K):
        raise _fail(where, "k", "all zeros: the camera is not calibrated")
    D = flat("d", None)
    R = flat("r", 9).reshape(3, 3)
    if not np.any(R):  # an uncalibrated driver may leave R zero; the identity is what it means
        R = np.eye(3)
    P = flat("p", 12).reshape(3, 4)
    name = _field(msg, "distortion_model", where) if D.size else "plumb_bob"
    model = _distortion_model(name or "plumb_bob", D.size, where, "distortion_model")
    fields = {"K": "k", "D": "d", "R": "r", "P": "p"}
    camera = _build(
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
            return _integer(_field(obj, name, where), where, name)
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
                raise _fail(where, "roi", str(err)) from err
    if bx > 1 or by > 1:
        camera = camera.resized(camera.width // bx, camera.height // by)
    return camera


# --------------------------------------------------------------------------- mounting YAML
_MOUNT_LINEAR = ("x_m", "y_m", "z_m")
_MOUNT_ANGLES = ("roll", "pitch", "yaw")


def load_mounting(path: str | Path) -> Mounting:
    """Read a camera mounting (pose in the vehicle frame) from YAML.

    Example file::

        mounting:          # optional wrapper key
          x_m: 1.60        # forward of the vehicle origin
          y_m: 0.0         # left
          z_m: 1.35        # height above the ground
          roll_deg: 0.0
          pitch_deg: 2.5   # positive = looking down
          yaw_deg: 0.0

    Raises:
        CalibrationError: missing/unknown/non-numeric key, or an angle given in both units.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise CalibrationError(f"{path}: cannot read mounting YAML: {err}") from err
    return mounting_from_dict(data, str(path))


def mounting_from_dict(data: Any, where: str = "<mounting>") -> Mounting:
    """:class:`Mounting` from a mapping (see :func:`load_mounting` for the keys)."""
    if isinstance(data, Mapping) and set(data) == {"mounting"}:
        data = data["mounting"]
        prefix = "mounting."
    else:
        prefix = ""
    if not isinstance(data, Mapping):
        raise CalibrationError(
            f"{where}: expected a mapping with x_m, y_m, z_m, roll/pitch/yaw, got {data!r}"
        )
    valid = [*_MOUNT_LINEAR, *(f"{a}_{u}" for a in _MOUNT_ANGLES for u in ("rad", "deg"))]
    if unknown := sorted(set(data) - set(valid)):
        raise CalibrationError(
            f"{where}: unknown fields {[prefix + k for k in unknown]}; valid: {valid}"
        )
    values = {k: _number(_get(data, k, where, prefix), where, prefix + k) for k in _MOUNT_LINEAR}
    for angle in _MOUNT_ANGLES:
        rad, deg = f"{angle}_rad", f"{angle}_deg"
        if rad in data and deg in data:
            raise CalibrationError(
                f"{where}: field {prefix + angle!r} given twice ({rad} and {deg}); keep one"
            )
        if rad in data:
            values[rad] = _number(data[rad], where, prefix + rad)
        elif deg in data:
            values[rad] = math.radians(_number(data[deg], where, prefix + deg))
    return Mounting(**values)


def mounting_yaml_text(mounting: Mounting) -> str:
    """YAML for :func:`load_mounting` (angles in radians, exact)."""
    keys = ("x_m", "y_m", "z_m", "roll_rad", "pitch_rad", "yaw_rad")
    body = "\n".join(f"  {k}: {_fmt(getattr(mounting, k))}" for k in keys)
    return (
        "# camera pose in the vehicle frame (x forward, y left, z up); positive pitch = down\nmounting:\n"
        + body
        + "\n"
    )


def save_mounting(path: str | Path, mounting: Mounting) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mounting_yaml_text(mounting), encoding="utf-8")
    return path
