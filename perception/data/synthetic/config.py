"""Settings of the synthetic driving world: image size, ground-truth options and how widely the
scenes are randomised. Frozen dataclasses; bad values raise :class:`ConfigError`."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from perception.errors import ConfigError

__all__ = ["RandomizationConfig", "SynthConfig", "parse_size", "SIZE_MULTIPLE"]

# The encoder's stage-4 map is 1/32 of the input, so generated images are multiples of 32.
SIZE_MULTIPLE = 32


def _check_probability(owner: object) -> None:
    for f in fields(owner):  # type: ignore[arg-type]
        value = getattr(owner, f.name)
        if f.name.endswith("_prob") and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{type(owner).__name__}.{f.name} must be in [0, 1], got {value!r}")


@dataclass(frozen=True)
class RandomizationConfig:
    """Probabilities and ranges of the domain randomisation (per generated world)."""

    distortion_prob: float = 0.2  # plumb_bob lens distortion instead of an ideal pinhole
    night_prob: float = 0.15
    dusk_prob: float = 0.15
    overcast_prob: float = 0.25
    rain_prob: float = 0.12
    fog_prob: float = 0.07
    bonnet_prob: float = 0.75  # ego bonnet visible at the bottom
    curviness: float = 0.45  # fraction of road sections that are curves
    traffic_density: float = 1.0  # multiplies the number of vehicles
    camera_effects: bool = True  # sensor noise, blur, vignetting, JPEG artefacts

    def __post_init__(self) -> None:
        _check_probability(self)
        if not 0.0 <= self.curviness <= 1.0:
            raise ConfigError(f"RandomizationConfig.curviness must be in [0, 1], got {self.curviness!r}")
        if self.traffic_density < 0:
            raise ConfigError(
                f"RandomizationConfig.traffic_density must be >= 0, got {self.traffic_density!r}"
            )


@dataclass(frozen=True)
class SynthConfig:
    """What to generate.

    ``height`` and ``width`` are the image size in pixels (multiples of 32, the model's input
    stride). The default 256x512 is the default model input: a 1280x720-like dashcam scaled down.
    """

    height: int = 256
    width: int = 512
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    lane_label_min_px: float = 2.0  # lane-line masks are at least this wide (TuSimple-like)
    lane_range_m: float = 120.0  # lane lines and polylines end this far ahead of the camera
    view_range_m: float = 260.0  # objects farther ahead than this are not rendered
    # Depth labels beyond this are 0 (invalid): the flat ground runs to ~1e6 m at the horizon,
    # which is exact but no sensor or model cares about.
    max_depth_m: float = 300.0
    # Shade every n-th pixel and upsample edge-aware (labels and geometry stay full resolution and
    # exact). 2 makes generation ~2x faster at the cost of slightly softer textures.
    shading_step: int = 2

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or value % SIZE_MULTIPLE:
                raise ConfigError(
                    f"SynthConfig.{name} must be a positive multiple of {SIZE_MULTIPLE}, got {value!r} "
                    f"(e.g. 256x512 or 384x640)"
                )
        if self.shading_step not in (1, 2):
            raise ConfigError(f"SynthConfig.shading_step must be 1 or 2, got {self.shading_step!r}")
        if self.lane_label_min_px < 0 or self.lane_range_m <= 0 or self.view_range_m <= 0 or self.max_depth_m <= 0:
            raise ConfigError(
                "SynthConfig: lane_label_min_px must be >= 0 and lane_range_m, view_range_m, max_depth_m > 0, "
                f"got {self.lane_label_min_px!r}, {self.lane_range_m!r}, {self.view_range_m!r}, {self.max_depth_m!r}"
            )


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``"256x512"``) into ``(height, width)``.

    Raises:
        ConfigError: not two integers, not positive, or not multiples of 32.
    """
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        height, width = (int(p) for p in parts)
    except ValueError as err:
        raise ConfigError(f"size must be HxW with integers, e.g. 256x512; got {text!r}") from err
    for name, value in (("height", height), ("width", width)):
        if value <= 0 or value % SIZE_MULTIPLE:
            raise ConfigError(
                f"size {text!r}: {name} {value} must be a positive multiple of {SIZE_MULTIPLE} "
                f"(e.g. 256x512 or 384x640)"
            )
    return height, width
