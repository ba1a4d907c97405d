"""Appearance of a synthetic world: time of day, light, sky, weather, surface colours and the
camera's image defects. Colours are linear RGB (albedo or radiance), converted to sRGB at the end
of rendering."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from perception.data.synthetic.config import RandomizationConfig

__all__ = ["TimeOfDay", "Look", "sample_look", "srgb_to_linear"]


class TimeOfDay(Enum):
    DAY = "day"
    OVERCAST = "overcast"
    DUSK = "dusk"
    NIGHT = "night"


def srgb_to_linear(rgb) -> np.ndarray:
    c = np.asarray(rgb, float) / 255.0
    if c.size <= 4:  # single colours (world building calls this thousands of times): plain floats
        return np.array([x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in c.ravel().tolist()],
                        float).reshape(c.shape)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


@dataclass
class Look:
    time: TimeOfDay
    sun_dir: np.ndarray  # [3] world, unit, towards the sun
    sun_rgb: np.ndarray  # [3] irradiance of the sun on a surface facing it
    ambient_rgb: np.ndarray  # [3] sky light on an upward surface
    sky_zenith: np.ndarray  # [3] radiance
    sky_horizon: np.ndarray  # [3] radiance
    cloud_cover: float  # 0..1
    haze_m: float  # aerial perspective distance
    fog_m: float  # visibility-like distance; inf = no fog
    rain: float  # 0..1 streak intensity
    wet: float  # 0..1 road wetness (darker, reflective)
    exposure: float
    white_balance: np.ndarray  # [3]
    saturation: float
    contrast: float
    asphalt_rgb: np.ndarray  # [3] albedo
    asphalt_var: float  # low-frequency patchiness
    crack_amount: float
    track_amount: float  # darker tyre tracks in the lane centres (negative: lighter)
    sidewalk_rgb: np.ndarray
    curb_rgb: np.ndarray
    grass_rgb: np.ndarray
    grass_var: float
    headlights: bool  # ego headlights on
    lit_windows: float  # probability a window is lit (night)
    # camera defects
    noise_sigma: float  # additive noise in 8-bit units
    blur_px: float  # optics softness (Gaussian sigma)
    motion_blur_px: float  # vertical/radial smear length
    jpeg_quality: int  # 0 = no JPEG round trip
    vignette: float  # 0..0.5 darkening at the corners
    chroma_shift: float  # colour noise
    bonnet: tuple[float, float, float] | None  # (height fraction, curvature, shade) or None
    bonnet_rgb: np.ndarray
    texture_seed: int


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


_ASPHALT = [(70, 70, 72), (85, 85, 88), (100, 98, 96), (115, 113, 110), (128, 126, 124), (60, 62, 66),
            (95, 92, 86)]
_GRASS = [(70, 95, 40), (88, 110, 50), (105, 115, 60), (125, 120, 75), (60, 80, 38), (140, 130, 90)]
_SIDEWALK = [(165, 160, 150), (150, 148, 145), (185, 180, 170), (135, 130, 128), (175, 165, 150)]


def sample_look(rng: np.random.Generator, cfg: RandomizationConfig, road_heading: float = 0.0) -> Look:
    """Draw the appearance of one world."""
    u = rng.random()
    if u < cfg.night_prob:
        time = TimeOfDay.NIGHT
    elif u < cfg.night_prob + cfg.dusk_prob:
        time = TimeOfDay.DUSK
    elif u < cfg.night_prob + cfg.dusk_prob + cfg.overcast_prob:
        time = TimeOfDay.OVERCAST
    else:
        time = TimeOfDay.DAY
    rain = rng.uniform(0.3, 1.0) if rng.random() < cfg.rain_prob else 0.0
    if rain and time is TimeOfDay.DAY:
        time = TimeOfDay.OVERCAST
    fog = rng.uniform(70.0, 400.0) if rng.random() < cfg.fog_prob else np.inf

    azimuth = rng.uniform(-np.pi, np.pi)
    if time is TimeOfDay.DAY:
        elevation = np.deg2rad(rng.uniform(15, 65))
        sun = rng.uniform(2.2, 3.4) * srgb_to_linear((255, 250, 240)) * 1.0
        ambient = rng.uniform(0.55, 0.9) * srgb_to_linear((212, 218, 232)) * 1.6
        zenith = srgb_to_linear((rng.uniform(60, 110), rng.uniform(120, 160), rng.uniform(200, 245))) * 1.6
        horizon = srgb_to_linear((rng.uniform(190, 225), rng.uniform(205, 230), rng.uniform(225, 250))) * 1.6
        clouds = rng.uniform(0.0, 0.7) if rng.random() < 0.6 else 0.0
        exposure = rng.uniform(0.75, 1.05)
    elif time is TimeOfDay.OVERCAST:
        elevation = np.deg2rad(rng.uniform(20, 60))
        sun = np.zeros(3) + rng.uniform(0.0, 0.3)
        grey = rng.uniform(170, 225)
        ambient = rng.uniform(1.0, 1.4) * srgb_to_linear((grey, grey, grey + 8))
        zenith = srgb_to_linear((grey, grey + 3, grey + 8)) * 1.25
        horizon = srgb_to_linear((grey + 15, grey + 15, grey + 18)) * 1.35
        clouds = 1.0
        exposure = rng.uniform(0.9, 1.25)
    elif time is TimeOfDay.DUSK:
        elevation = np.deg2rad(rng.uniform(1, 9))
        sun = rng.uniform(1.0, 2.0) * srgb_to_linear((255, 190, 130))
        ambient = rng.uniform(0.25, 0.5) * srgb_to_linear((190, 180, 220))
        zenith = srgb_to_linear((rng.uniform(40, 80), rng.uniform(60, 100), rng.uniform(120, 170)))
        horizon = srgb_to_linear((rng.uniform(220, 255), rng.uniform(140, 190), rng.uniform(90, 140)))
        clouds = rng.uniform(0.0, 0.8)
        exposure = rng.uniform(1.3, 2.0)
    else:
        elevation = np.deg2rad(-20.0)
        sun = np.zeros(3)
        ambient = rng.uniform(0.01, 0.04) * srgb_to_linear((150, 160, 200))
        zenith = srgb_to_linear((8, 10, 18)) * rng.uniform(0.5, 1.5)
        horizon = srgb_to_linear((rng.uniform(30, 60), rng.uniform(28, 45), rng.uniform(30, 50)))
        clouds = rng.uniform(0.0, 1.0)
        exposure = rng.uniform(5.0, 9.0)
    sun_dir = _unit([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                     np.sin(elevation)])
    if fog < np.inf:
        fog_grey = horizon.mean()
        horizon = 0.5 * horizon + 0.5 * fog_grey
        zenith = 0.4 * zenith + 0.6 * horizon
        sun = sun * 0.4
        clouds = 1.0
    wet = (rng.uniform(0.5, 1.0) if rain else (rng.uniform(0.0, 0.4) if rng.random() < 0.1 else 0.0))

    asphalt = srgb_to_linear(np.array(_ASPHALT[rng.integers(len(_ASPHALT))]) + rng.normal(0, 6, 3))
    grass = srgb_to_linear(np.array(_GRASS[rng.integers(len(_GRASS))]) + rng.normal(0, 8, 3))
    sidewalk = srgb_to_linear(np.array(_SIDEWALK[rng.integers(len(_SIDEWALK))]) + rng.normal(0, 5, 3))
    effects = cfg.camera_effects
    night = time is TimeOfDay.NIGHT
    bonnet = None
    if rng.random() < cfg.bonnet_prob:
        bonnet = (rng.uniform(0.04, 0.14), rng.uniform(0.02, 0.12), rng.uniform(0.2, 0.6))
    bonnet_rgb = srgb_to_linear(rng.choice(np.array([[20, 20, 24], [40, 40, 45], [120, 120, 125],
                                                       [200, 200, 205], [60, 20, 20], [20, 30, 60]]), 1)[0])
    return Look(
        time=time,
        sun_dir=sun_dir,
        sun_rgb=sun,
        ambient_rgb=ambient,
        sky_zenith=zenith,
        sky_horizon=horizon,
        cloud_cover=float(clouds),
        haze_m=float(rng.uniform(400, 2500)),
        fog_m=float(fog),
        rain=float(rain),
        wet=float(wet),
        exposure=float(exposure),
        white_balance=np.clip(1.0 + rng.normal(0, 0.04, 3), 0.85, 1.15),
        saturation=float(rng.uniform(0.7, 1.1)),
        contrast=round(float(rng.uniform(0.85, 1.15)), 2),  # rounded: one tone table per value
        asphalt_rgb=asphalt,
        asphalt_var=float(rng.uniform(0.05, 0.25)),
        crack_amount=float(rng.uniform(0.0, 0.6)),
        track_amount=float(rng.uniform(-0.15, 0.25)),
        sidewalk_rgb=sidewalk,
        curb_rgb=sidewalk * rng.uniform(0.9, 1.3),
        grass_rgb=grass,
        grass_var=float(rng.uniform(0.15, 0.4)),
        headlights=night or (time is TimeOfDay.DUSK and rng.random() < 0.5),
        lit_windows=float(rng.uniform(0.1, 0.5)),
        noise_sigma=float(rng.uniform(1.0, 4.0) * (2.5 if night else 1.0)) if effects else 0.0,
        blur_px=float(rng.uniform(0.35, 0.9)) if effects else 0.35,
        motion_blur_px=float(rng.uniform(0.0, 3.0) if rng.random() < 0.4 else 0.0) if effects else 0.0,
        jpeg_quality=int(rng.integers(35, 95)) if effects and rng.random() < 0.8 else 0,
        vignette=float(rng.uniform(0.0, 0.45)) if effects else 0.0,
        chroma_shift=float(rng.uniform(0.0, 0.03)) if effects else 0.0,
        bonnet=bonnet,
        bonnet_rgb=bonnet_rgb,
        texture_seed=int(rng.integers(0, 4)),
    )
