"""Parameters of the perception node: declared once from frozen dataclasses, validated on set.

Every parameter is a dataclass field with a description and a read-only flag; nested sections
(``input.*``, ``qos.*``, ``mounting.*``) are sub-dataclasses, as in ``perception.config``.
:class:`ParamBinding` declares them all with a ``ParameterDescriptor`` (description,
``read_only``, ranges, the allowed values as ``additional_constraints``), builds the dataclass
from the values the node got (params file, launch, command line), and validates every later
change in an on-set callback (the change is refused with the reason, nothing is half-applied).
Listeners run after a change was accepted (``add_post_set_parameters_callback``).

The dataclasses import no rclpy: ``tests`` and the launch-file check read the parameter names
and defaults from :func:`parameter_defaults` without ROS.

Example params file (``launch/params/default.yaml``)::

    /**:
      ros__parameters:
        model: /opt/models/tiny.safetensors
        tasks: ["*"]
        input: {topic: /camera/image_raw, transport: compressed}
"""
from __future__ import annotations

import math
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import perception
from perception.errors import ConfigError

__all__ = [
    "InputParams",
    "QosParams",
    "MountingParams",
    "NodeParams",
    "ALL_TASKS",
    "DEFAULT_MODEL_PATH",
    "parameter_defaults",
    "params_from_flat",
    "params_to_flat",
    "check_task_list",
    "ParamBinding",
]


ALL_TASKS = "*"  # ``tasks: ["*"]``: every task of the model and every bundle in adapters_dir
DEFAULT_MODEL_PATH = (Path(perception.__file__).resolve().parent / "assets" / "default"
                      / "model.safetensors")
BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
TRANSPORTS = ("raw", "compressed")
RELIABILITIES = ("reliable", "best_effort", "auto")  # == qos.CAMERA_RELIABILITY_CHOICES
_TASK_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _param(default: Any, description: str, *, read_only: bool = True, choices: tuple[str, ...] = (),
           min_value: float | None = None, max_value: float | None = None,
           constraints: str = "") -> Any:
    """A dataclass field that is also a ROS parameter (see :class:`ParamBinding`)."""
    if choices:
        constraints = (constraints + "; " if constraints else "") + "one of: " + ", ".join(choices)
    meta = {"description": description, "read_only": read_only, "choices": choices,
            "min": min_value, "max": max_value, "constraints": constraints}
    return field(default=default, metadata=meta)


def _choice(value: str, choices: tuple[str, ...], name: str) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not allowed; valid values: {', '.join(choices)}")


@dataclass(frozen=True)
class InputParams:
    topic: str = _param("image", "Camera image topic (relative names resolve in the node's "
                        "namespace; remap it). With transport 'compressed' the node subscribes to "
                        "'<topic>/compressed', as image_transport names it.")
    transport: str = _param("raw", "'raw' (sensor_msgs/Image) or 'compressed' "
                            "(sensor_msgs/CompressedImage, JPEG/PNG)", choices=TRANSPORTS)
    camera_info_topic: str = _param("camera_info", "sensor_msgs/CameraInfo topic: the "
                                    "intrinsics depth follows (metric scale by focal length) and "
                                    "lanes/path uses with a mounting. Empty: none.")

    def __post_init__(self) -> None:
        _choice(self.transport, TRANSPORTS, "input.transport")
        if not self.topic.strip():
            raise ConfigError("input.topic must not be empty; give the camera image topic")

    @property
    def resolved_topic(self) -> str:
        if self.transport == "compressed":
            return f"{self.topic.rstrip('/')}/compressed"
        return self.topic


@dataclass(frozen=True)
class QosParams:
    reliability: str = _param("reliable", "Camera subscription reliability: 'reliable' (the "
                              "measured default, docs/ros_qos.md), 'best_effort', or 'auto' "
                              "(match the publishers found on the topic)", choices=RELIABILITIES)
    depth: int = _param(3, "Camera subscription KEEP_LAST depth (3: repaired raw frames arrive "
                        "in bursts; the node itself keeps only the latest frame)", min_value=1,
                        max_value=100)
    output_depth: int = _param(2, "KEEP_LAST depth of every published topic (reliable)",
                               min_value=1, max_value=100)

    def __post_init__(self) -> None:
        _choice(self.reliability, RELIABILITIES, "qos.reliability")
        if self.depth < 1 or self.output_depth < 1:
            raise ConfigError(f"qos.depth and qos.output_depth must be >= 1, got "
                              f"{self.depth} and {self.output_depth}")


@dataclass(frozen=True)
class MountingParams:
    file: str = _param("", "Mounting YAML (calibration.load_mounting); when set, the numbers "
                       "below are ignored")
    x_m: float = _param(0.0, "Camera optical centre, metres forward of the vehicle origin")
    y_m: float = _param(0.0, "Camera optical centre, metres left of the vehicle origin")
    z_m: float = _param(0.0, "Camera height above the ground, metres (depth of a model trained "
                        "with a height rule scales with it); 0 with no file means 'no mounting': "
                        "lanes/path is not published and depth keeps the training cameras' "
                        "height", min_value=0.0, max_value=20.0)
    roll_deg: float = _param(0.0, "Camera roll, degrees", min_value=-180.0, max_value=180.0)
    pitch_deg: float = _param(0.0, "Camera pitch, degrees, positive looks down",
                              min_value=-90.0, max_value=90.0)
    yaw_deg: float = _param(0.0, "Camera yaw, degrees, positive looks left",
                            min_value=-180.0, max_value=180.0)

    def mounting(self):  # -> calibration.Mounting | None
        """The camera pose, or None when not configured (no file and z_m == 0)."""
        from calibration.camera import Mounting
        from calibration.io import load_mounting

        if self.file:
            return load_mounting(self.file)
        if self.z_m <= 0.0:
            return None
        return Mounting(x_m=self.x_m, y_m=self.y_m, z_m=self.z_m,
                        roll_rad=math.radians(self.roll_deg),
                        pitch_rad=math.radians(self.pitch_deg), yaw_rad=math.radians(self.yaw_deg))


@dataclass(frozen=True)
class NodeParams:
    model: str = _param("", "Full-model file (save_model: X.safetensors + X.yaml). Empty: the "
                        "shipped default model perception/assets/default/model.safetensors")
    backend: str = _param("auto", "Inference backend; 'auto' picks the fastest usable one",
                          choices=BACKENDS)
    precision: str = _param("fp32", "Backend precision (torch: fp32 only; onnxruntime: fp32 "
                            "or int8; tensorrt: fp32/fp16/int8)", choices=PRECISIONS)
    input_size: tuple[int, ...] = _param((0, 0), "Network input [H, W]; [0, 0] = the model's")
    threads: int = _param(1, "CPU threads of the backend (more rarely helps on a shared CPU)",
                          min_value=1, max_value=64)
    cache_dir: str = _param("", "Export/engine cache; empty: $TADP_CACHE_DIR or "
                            "~/.cache/tad_perception")
    tasks: tuple[str, ...] = _param(
        (ALL_TASKS,), "Tasks to run: task names of the model and bundle names in adapters_dir. "
        "['*'] = every model task plus every bundle in adapters_dir (dropping a bundle there "
        "adds it). Changing it hot-swaps tasks while frames flow.", read_only=False)
    adapters_dir: str = _param("", "Directory of task bundles (<name>.tadtask or "
                               "<name>.safetensors), polled for new/changed/removed bundles")
    adapters_poll_s: float = _param(1.0, "Polling period of adapters_dir, seconds",
                                    min_value=0.1, max_value=60.0)
    publish_color: bool = _param(True, "Publish colour images '~/<task>/color' (bgr8) for "
                                 "color_tasks", read_only=False)
    color_tasks: tuple[str, ...] = _param(("segmentation",), "Tasks that get a '~/<task>/color' "
                                          "topic", read_only=False)
    color_blend: float = _param(0.0, "0: colours only; >0: colours blended over the camera "
                                "image with this weight", read_only=False, min_value=0.0,
                                max_value=1.0)
    vehicle_frame: str = _param("base_link", "frame_id of lanes/path (the vehicle frame of the "
                                "mounting)")
    diagnostics_period_s: float = _param(1.0, "Period of /diagnostics, seconds",
                                         min_value=0.1, max_value=60.0)
    latency_window: int = _param(300, "Frames kept for the latency percentiles",
                                 min_value=10, max_value=100000)
    input: InputParams = field(default_factory=InputParams)
    qos: QosParams = field(default_factory=QosParams)
    mounting: MountingParams = field(default_factory=MountingParams)

    def __post_init__(self) -> None:
        _choice(self.backend, BACKENDS, "backend")
        _choice(self.precision, PRECISIONS, "precision")
        size = tuple(int(v) for v in self.input_size)
        if len(size) != 2 or any(v < 0 for v in size) or (0 in size and size != (0, 0)):
            raise ConfigError(f"input_size must be [H, W] with H, W >= 1, or [0, 0] for the "
                              f"model's size; got {list(self.input_size)}")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "color_tasks", tuple(self.color_tasks))
        check_task_list(self.tasks)
        if bad := [t for t in self.color_tasks if not _TASK_NAME.fullmatch(t)]:
            raise ConfigError(f"color_tasks: invalid task names {bad}; names are lower_snake_case")
        if not 0.0 <= self.color_blend <= 1.0:
            raise ConfigError(f"color_blend must be in [0, 1], got {self.color_blend}")

    @property
    def network_size(self) -> tuple[int, int] | None:
        return None if self.input_size == (0, 0) else self.input_size  # type: ignore[return-value]

    def model_path(self) -> Path:
        """The model file to load.

        Raises:
            ConfigError: no ``model`` given and no shipped default model, or the file is missing.
        """
        if not self.model:
            if DEFAULT_MODEL_PATH.is_file():
                return DEFAULT_MODEL_PATH
            raise ConfigError(
                f"parameter 'model' is empty and the shipped default model {DEFAULT_MODEL_PATH} "
                "does not exist (not installed yet); set 'model' to a full-model file written by "
                "save_model / tadp train (X.safetensors with X.yaml beside it)")
        path = Path(self.model).expanduser()
        if not path.exists():
            raise ConfigError(f"parameter 'model': {str(path)!r} does not exist; give a "
                              "full-model .safetensors (with its .yaml beside it)")
        return path


def check_task_list(tasks: tuple[str, ...]) -> None:
    """Syntax of the ``tasks`` parameter: ``["*"]`` alone or distinct lower_snake_case names."""
    if ALL_TASKS in tasks:
        if len(tasks) != 1:
            raise ConfigError(f"tasks: '*' means every task and must stand alone, "
                              f"got {list(tasks)}")
        return
    if bad := [t for t in tasks if not _TASK_NAME.fullmatch(t)]:
        raise ConfigError(f"tasks: invalid task names {bad}; names are lower_snake_case "
                          "(or use ['*'] for every task)")
    if len(set(tasks)) != len(tasks):
        raise ConfigError(f"tasks: duplicate names in {list(tasks)}")


# -- flat names <-> dataclasses ---------------------------------------------------------------
def _walk(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted name, dataclass field, resolved type) of every leaf parameter."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = hints[f.name]
        if is_dataclass(tp):
            yield from _walk(tp, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, tp


def _default(f: Any) -> Any:
    return f.default_factory() if f.default_factory is not MISSING else f.default


def parameter_defaults(cls: type = NodeParams) -> dict[str, Any]:
    """``{dotted name: default}`` of every parameter (no ROS needed)."""
    return {name: _default(f) for name, f, _ in _walk(cls)}


def _coerce(name: str, value: Any, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"parameter {name!r} must be a number, got {value!r}")
        return float(value)
    if tp is bool or tp is int or tp is str:
        if type(value) is not tp:
            raise ConfigError(f"parameter {name!r} must be {tp.__name__}, got {value!r}")
        return value
    if origin is tuple:
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        wrong = ConfigError(f"parameter {name!r} must be a list of {item.__name__}, got {value!r}")
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise wrong
        out = tuple(value)
        if any(type(v) is not item for v in out):
            raise wrong
        return out
    raise TypeError(f"unsupported parameter type {tp!r} for {name!r}")  # internal: a new field


def params_from_flat(values: Mapping[str, Any], cls: type = NodeParams) -> Any:
    """Build ``cls`` from ``{dotted name: value}``; missing names take their defaults.

    Raises:
        ConfigError: unknown name, wrong type, or a value its dataclass refuses.
    """
    known = {name: tp for name, _, tp in _walk(cls)}
    if unknown := sorted(set(values) - set(known)):
        raise ConfigError(f"unknown parameters {unknown}; valid: {sorted(known)}")

    def build(c: type, prefix: str) -> Any:
        hints = typing.get_type_hints(c)
        kwargs = {}
        for f in fields(c):
            name = f"{prefix}{f.name}"
            if is_dataclass(hints[f.name]):
                kwargs[f.name] = build(hints[f.name], name + ".")
            elif name in values:
                kwargs[f.name] = _coerce(name, values[name], hints[f.name])
        return c(**kwargs)

    return build(cls, "")


def params_to_flat(params: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(params):
        value = getattr(params, f.name)
        if is_dataclass(value):
            out.update(params_to_flat(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


# -- ROS binding ------------------------------------------------------------------------------
class ParamBinding:
    """Declares the parameters of ``cls`` on ``node`` and keeps ``current`` valid.

    Args:
        node: an ``rclpy.node.Node``.
        cls: the parameter dataclass (:class:`NodeParams`).
        check: extra validation of a candidate value set (e.g. task names the node knows);
            raises :class:`ConfigError` to refuse a change.

    Raises:
        ConfigError: a value from the params file / overrides is invalid (at construction).
    """

    def __init__(self, node: Any, cls: type = NodeParams,
                 check: Callable[[Any], None] | None = None) -> None:
        from rcl_interfaces.msg import ParameterDescriptor

        self._node, self._cls, self._check = node, cls, check
        self._types: dict[str, Any] = {}
        self._ranges: dict[str, tuple[float, float]] = {}
        self._listeners: list[Callable[[set[str], Any], None]] = []
        values: dict[str, Any] = {}
        for name, f, tp in _walk(cls):
            self._types[name] = tp
            if f.metadata["min"] is not None:
                self._ranges[name] = (f.metadata["min"], f.metadata["max"])
            desc = ParameterDescriptor(name=name, description=f.metadata["description"],
                                       read_only=f.metadata["read_only"],
                                       additional_constraints=f.metadata["constraints"])
            default = _default(f)
            self._add_range(desc, f, tp)
            if tp is float:
                desc.dynamic_typing = True  # accept `0` for a double in YAML; coerced below
            try:
                param = node.declare_parameter(name, list(default) if isinstance(default, tuple)
                                               else default, desc)
            except Exception as err:  # rclpy: InvalidParameterValueException & co.
                raise ConfigError(f"parameter {name!r}: {err}") from err
            values[name] = param.value
        self.current = self._build(values)
        node.add_on_set_parameters_callback(self._on_set)
        node.add_post_set_parameters_callback(self._post_set)

    @staticmethod
    def _add_range(desc: Any, f: Any, tp: Any) -> None:
        from rcl_interfaces.msg import IntegerRange

        lo, hi = f.metadata["min"], f.metadata["max"]
        if lo is None or hi is None:
            return
        if tp is int:
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
        # doubles are dynamically typed (see above), so rclpy would not apply a range; the
        # dataclass and _build check them instead

    def _build(self, values: Mapping[str, Any]) -> Any:
        for name, value in values.items():
            lo, hi = self._ranges.get(name, (None, None))
            if lo is not None and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and not lo <= value <= hi:
                raise ConfigError(f"parameter {name!r} = {value} is outside [{lo}, {hi}]")
        params = params_from_flat(values, self._cls)
        if self._check is not None:
            self._check(params)
        return params

    def names(self) -> list[str]:
        return list(self._types)

    def add_listener(self, listener: Callable[[set[str], Any], None]) -> None:
        """``listener(changed_names, new_params)`` after an accepted change (executor thread)."""
        self._listeners.append(listener)

    def _on_set(self, parameters: list[Any]) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        ours = {p.name: p.value for p in parameters if p.name in self._types}
        if not ours:
            return SetParametersResult(successful=True)
        flat = params_to_flat(self.current)
        flat.update(ours)
        try:
            self._build(flat)
        except ConfigError as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _post_set(self, parameters: list[Any]) -> None:
        changed = {p.name for p in parameters if p.name in self._types}
        if not changed:
            return
        flat = params_to_flat(self.current)
        flat.update({p.name: p.value for p in parameters if p.name in self._types})
        self.current = params_from_flat(flat, self._cls)  # validated in _on_set
        for listener in self._listeners:
            listener(changed, self.current)
