"""Model configuration: strict YAML -> frozen dataclasses. Imports no torch, so the node and the
CLIs can validate a config cheaply.

A config names the encoder (Swin), the adapter variant (TADFormer or the MTLoRA baseline), the
decoder family and the tasks. Unknown keys are errors: a typo must not silently change a model.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from perception.errors import ConfigError
from perception.yaml_io import safe_load

__all__ = [
    "EncoderConfig",
    "AdapterConfig",
    "DecoderConfig",
    "TaskConfig",
    "ModelConfig",
    "load_config",
    "find_config",
    "config_names",
    "from_dict",
]

T = TypeVar("T")
ADAPTER_VARIANTS = ("tadformer", "mtlora", "none")
DECODER_KINDS = ("fpn", "hrnet")


@dataclass(frozen=True)
class EncoderConfig:
    """Swin Transformer hyper-parameters (names follow timm)."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    patch_size: int = 4
    in_chans: int = 3
    qkv_bias: bool = True
    drop_path_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "depths", tuple(self.depths))
        object.__setattr__(self, "num_heads", tuple(self.num_heads))
        if len(self.depths) != 4 or len(self.num_heads) != 4:
            raise ConfigError(
                f"encoder: depths and num_heads need 4 stages, got {self.depths} / {self.num_heads}"
            )
        for i, heads in enumerate(self.num_heads):
            width = self.embed_dim * 2**i
            if width % heads:
                raise ConfigError(f"encoder: stage {i} width {width} not divisible by {heads} heads")
        if self.window_size < 1 or self.patch_size != 4:
            raise ConfigError("encoder: window_size must be >= 1 and patch_size must be 4")

    def stage_dims(self) -> tuple[int, int, int, int]:
        return tuple(self.embed_dim * 2**i for i in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class AdapterConfig:
    """Task adapters. ``tadformer``: shared LoRA + prompts + TPC + DTF (the paper);
    ``mtlora``: shared LoRA + per-task LoRA in the last block of each stage (the baseline);
    ``none``: a frozen/plain Swin with per-task decoders only."""

    variant: str = "tadformer"
    rank: int = 16
    scale: float = 4.0
    task_rank: int = 4
    dropout: float = 0.05
    dtf_kernel: int = 3
    fusion_key_dim: int = 32
    # TADFormer: the first stage whose last block gets a task branch. 0 (the paper) adapts all
    # four; 1 leaves the stride-4 stage shared, the largest per-task cost (about a third of a
    # task's slot at 256x512), and every task decodes the trunk's own stage-0 feature there.
    first_task_stage: int = 0

    def __post_init__(self) -> None:
        if self.variant not in ADAPTER_VARIANTS:
            raise ConfigError(f"adapter.variant {self.variant!r}; valid: {ADAPTER_VARIANTS}")
        if not 0 <= self.first_task_stage <= 3:
            raise ConfigError(f"adapter.first_task_stage {self.first_task_stage}; valid: 0-3")
        if self.first_task_stage and self.variant != "tadformer":
            raise ConfigError("adapter.first_task_stage applies to the tadformer variant only")
        if self.rank < 0 or self.task_rank < 1 or self.dtf_kernel % 2 == 0:
            raise ConfigError("adapter: rank >= 0, task_rank >= 1 and an odd dtf_kernel needed")
        if self.variant != "none" and self.rank == 0:
            raise ConfigError(f"adapter.variant {self.variant!r} needs rank >= 1")


@dataclass(frozen=True)
class DecoderConfig:
    """``fpn``: light multi-scale head at output stride 4 (lanes need it);
    ``hrnet``: the MTLoRA/TADFormer paper head on patch-merged features (stride 8)."""

    kind: str = "fpn"
    channels: int = 64
    hrnet_channels: tuple[int, ...] = (18, 36, 72, 144)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hrnet_channels", tuple(self.hrnet_channels))
        if self.kind not in DECODER_KINDS:
            raise ConfigError(f"decoder.kind {self.kind!r}; valid: {DECODER_KINDS}")
        if self.channels < 1 or len(self.hrnet_channels) != 4:
            raise ConfigError("decoder: channels >= 1 and four hrnet_channels needed")


@dataclass(frozen=True)
class TaskConfig:
    """One task: ``kind`` is a registered task kind (see ``perception.tasks``)."""

    name: str
    kind: str
    num_classes: int | None = None
    class_names: tuple[str, ...] = ()
    loss_weight: float = 1.0
    max_depth_m: float = 80.0
    # depth: focal length (px, at the model's input size) of the cameras the metric scale was
    # learned with; frames with known intrinsics are rescaled to their own (tasks/depth.py).
    focal_px: float | None = None
    # depth: mean mounting height (m) of the training cameras, and the exponent beta of the
    # height rule: depth is learned at that height and scaled by (height / height_m) ** beta
    # for a camera whose mounting is known (tasks/depth.py). beta 0 turns the rule off.
    height_m: float | None = None
    height_exponent: float = 0.0
    # depth: learned sub-pixel upsampling. The decoder also predicts, per output pixel, a
    # subpixel x subpixel block of log-depth residuals added to the bilinear upsampling (pixel
    # shuffle), so depth edges can be sharper than the decoder's stride. 0: bilinear only;
    # else the decoder's output stride (4 for "fpn").
    subpixel: int = 0
    # depth: weight of the multi-scale gradient-matching term added to SILog (MiDaS, Ranftl et
    # al. 2020): the log-depth error's differences between neighbouring pixels at strides 1, 2,
    # 4, 8, so depth edges are asked to sit where the labels' are. Training only; 0: SILog alone.
    grad_loss_weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if not self.name.replace("_", "").isalnum() or not self.name[:1].isalpha():
            raise ConfigError(f"task name {self.name!r} must be an identifier (letters, digits, _)")
        if self.focal_px is not None and not self.focal_px > 0:
            raise ConfigError(f"task {self.name!r}: focal_px must be > 0, got {self.focal_px}")
        if self.height_m is not None and not self.height_m > 0:
            raise ConfigError(f"task {self.name!r}: height_m must be > 0, got {self.height_m}")
        if not 0.0 <= self.height_exponent <= 2.0:
            raise ConfigError(f"task {self.name!r}: height_exponent must be in [0, 2], "
                              f"got {self.height_exponent}")
        if self.subpixel not in (0, 2, 4, 8):
            raise ConfigError(f"task {self.name!r}: subpixel must be 0, 2, 4 or 8, got {self.subpixel}")
        if self.subpixel and self.kind != "depth":
            raise ConfigError(f"task {self.name!r}: subpixel is for depth tasks, not {self.kind!r}")
        if not self.grad_loss_weight >= 0.0:
            raise ConfigError(f"task {self.name!r}: grad_loss_weight must be >= 0, "
                              f"got {self.grad_loss_weight}")
        if self.grad_loss_weight and self.kind != "depth":
            raise ConfigError(f"task {self.name!r}: grad_loss_weight is for depth tasks, "
                              f"not {self.kind!r}")
        if self.num_classes is not None and self.num_classes < 1:
            raise ConfigError(f"task {self.name!r}: num_classes must be >= 1")
        if self.class_names and self.num_classes and len(self.class_names) != self.num_classes:
            raise ConfigError(
                f"task {self.name!r}: {len(self.class_names)} class_names for "
                f"{self.num_classes} classes"
            )


@dataclass(frozen=True)
class ModelConfig:
    name: str
    input_size: tuple[int, int]  # (H, W) the engine resizes frames to
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    tasks: tuple[TaskConfig, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(self.input_size))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        h, w = self.input_size
        if h <= 0 or w <= 0 or h % 32 or w % 32:
            raise ConfigError(f"input_size must be positive multiples of 32, got {h}x{w}")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate task names in {names}")

    def task(self, name: str) -> TaskConfig:
        for t in self.tasks:
            if t.name == name:
                return t
        raise ConfigError(f"no task {name!r} in config {self.name!r}; tasks: {self.task_names()}")

    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` applied: ``SECTION.KEY``, a whole ``SECTION``, or one task's
        setting as ``tasks.NAME.KEY`` (e.g. ``tasks.depth.loss_weight``)."""
        data = self.to_dict()
        for key, value in changes.items():
            section, _, sub = key.partition(".")
            if section == "tasks" and sub:
                name, _, field = sub.partition(".")
                if not field:
                    raise ConfigError(f"{key!r}: expected tasks.NAME.KEY")
                self.task(name)  # an unknown name is refused with the config's task names
                data["tasks"][self.task_names().index(name)][field] = value
            elif sub:
                data[section][sub] = value
            else:
                data[section] = value
        return model_config_from_dict(data, where=f"{self.name} (modified)")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build a dataclass from a mapping, rejecting unknown keys with the valid ones listed."""
    data = dict(data or {})
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    if unknown := sorted(set(data) - names):
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {sorted(names)}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from err


def model_config_from_dict(data: Mapping[str, Any], where: str) -> ModelConfig:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    data = dict(data)
    known = {f.name for f in fields(ModelConfig)}
    if unknown := sorted(set(data) - known):
        raise ConfigError(f"{where}: unknown keys {unknown}; valid keys: {sorted(known)}")
    for key in ("name", "input_size"):
        if key not in data:
            raise ConfigError(f"{where}: missing required key {key!r}")
    tasks = data.get("tasks") or []
    if not isinstance(tasks, list):
        raise ConfigError(f"{where}: 'tasks' must be a list")
    return ModelConfig(
        name=str(data["name"]),
        input_size=tuple(data["input_size"]),  # type: ignore[arg-type]
        encoder=from_dict(EncoderConfig, data.get("encoder"), f"{where}: encoder"),
        adapter=from_dict(AdapterConfig, data.get("adapter"), f"{where}: adapter"),
        decoder=from_dict(DecoderConfig, data.get("decoder"), f"{where}: decoder"),
        tasks=tuple(
            from_dict(TaskConfig, t, f"{where}: tasks[{i}]") for i, t in enumerate(tasks)
        ),
    )


def _config_dirs() -> list[Path]:
    """Source checkout first (editable installs), then the ament/pip share directory."""
    repo = Path(__file__).resolve().parents[1] / "config"
    share = Path(sys.prefix) / "share" / "tad_perception" / "config"
    return [d for d in (repo, share) if d.is_dir()]


def config_names() -> list[str]:
    return sorted({p.stem for d in _config_dirs() for p in d.glob("*.yaml")})


def find_config(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the name of a shipped config (``tiny``, ``swin-t`` ...)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        return path
    for d in _config_dirs():
        candidate = d / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    raise ConfigError(f"unknown config {str(name_or_path)!r}; shipped configs: {config_names()}")


def load_config(name_or_path: str | Path) -> ModelConfig:
    path = find_config(name_or_path)
    try:
        data = safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    return model_config_from_dict(data, where=str(path))
