"""From linear radiance to the 8-bit image a dashcam would record: the ego bonnet, exposure and
white balance, bloom around lights, motion and lens blur, tone curve, vignetting, rain streaks,
sensor noise and JPEG artefacts. Labels are untouched except where the bonnet hides the road."""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from perception.data.synthetic import kernels
from perception.data.synthetic.look import TimeOfDay

if TYPE_CHECKING:
    from perception.data.synthetic.renderer import Context

__all__ = ["finish", "bonnet_mask", "linear_to_srgb8"]

_LUT_SIZE = 4096
_SRGB_LUT = np.round(255.0 * np.where(
    np.linspace(0, 1, _LUT_SIZE) <= 0.0031308,
    12.92 * np.linspace(0, 1, _LUT_SIZE),
    1.055 * np.linspace(0, 1, _LUT_SIZE) ** (1 / 2.4) - 0.055,
)).astype(np.uint8)


_TONE_SIZE, _TONE_SCALE = 16384, 1024.0  # linear radiance 0..16 in 1/1024 steps


@lru_cache(maxsize=64)
def _tone_lut(contrast: float) -> np.ndarray:
    """Linear radiance index -> sRGB uint8 through the tone curve and a contrast pivot at 0.18."""
    x = np.arange(_TONE_SIZE, dtype=np.float64) / _TONE_SCALE
    y = x * (1.0 + x / 6.0) / (1.0 + x)
    y = 0.18 + (y - 0.18) * contrast
    return linear_to_srgb8(y.astype(np.float32))


def linear_to_srgb8(img: np.ndarray) -> np.ndarray:
    """Linear [0, 1] floats -> sRGB uint8 through a lookup table (fast, deterministic)."""
    idx = np.clip(img * (_LUT_SIZE - 1) + 0.5, 0, _LUT_SIZE - 1).astype(np.int32)
    return _SRGB_LUT[idx]


@lru_cache(maxsize=4)
def _noise_bank(height: int, width: int) -> np.ndarray:
    """Unit Gaussian noise twice the image size; frames read a random window of it (drawing fresh
    normals costs ~10 ms a frame)."""
    bank = np.random.default_rng(12345).standard_normal((2 * height, 2 * width, 3), np.float32)
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=4)
def _radius2(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return ((xx - width / 2) / (width / 2)) ** 2 * 0.6 + ((yy - height / 2) / (height / 2)) ** 2 * 0.4


@lru_cache(maxsize=64)
def _vignette(height: int, width: int, amount: float) -> np.ndarray:
    """[H, W] float32 gain of the vignetting (1 at the centre)."""
    out = (1.0 - np.float32(amount) * _radius2(height, width)).astype(np.float32)
    out.setflags(write=False)
    return out


def bonnet_mask(height: int, width: int, bonnet: tuple[float, float, float] | None) -> np.ndarray | None:
    """[H, W] bool: the ego bonnet, a shallow arch along the bottom edge."""
    if bonnet is None:
        return None
    frac, curve, _ = bonnet
    u = (np.arange(width) - (width - 1) / 2) / (width / 2)
    top = height * (1.0 - frac) + curve * height * u**2 * 2.0
    v = np.arange(height)[:, None]
    mask = v >= top[None, :]
    return mask if mask.any() else None


# Full-resolution rows kept above the first row the mirror reads, so that the band's blur and
# upsampling see the same neighbours as the whole image would (blur radius 6 half-res rows + the
# bilinear upsampling's row): the band's mirror is then bit-identical to the whole image's.
_BAND_MARGIN = 16


@lru_cache(maxsize=16)
def _bonnet_geometry(height: int, width: int, bonnet: tuple[float, float, float]):
    """What the bonnet of a world needs every frame: its mask, the first image row it reaches,
    the first row of the band of the image its mirror reads (even), the mirror maps of the rows
    below ``row0`` into that band, and its per-pixel shade and reflectivity."""
    mask = bonnet_mask(height, width, bonnet)
    if mask is None:
        return None
    H, W = mask.shape
    top = np.argmax(mask, axis=0).astype(np.float32)  # first bonnet row per column
    top[~mask.any(axis=0)] = H
    v = np.arange(H, dtype=np.float32)[:, None]
    # The bonnet mirrors the scene above its edge, blurred (paint is not a perfect mirror).
    map_y = np.clip(2 * top[None, :] - v - 2, 0, H - 1).astype(np.float32)
    band0 = max(0, int(np.floor(map_y[mask].min())) - _BAND_MARGIN) // 2 * 2
    map_x = np.broadcast_to(np.arange(W, dtype=np.float32)[None, :], (H, W)).astype(np.float32)
    depth_in = np.clip((v - top[None, :]) / max(H * 0.15, 1.0), 0, 1)
    shade = (1.0 - 0.5 * depth_in)[mask]
    reflectivity = (bonnet[2] * (1.0 - 0.6 * depth_in))[mask]
    row0 = int(np.flatnonzero(mask.any(axis=1))[0])
    band_y = np.ascontiguousarray(map_y[row0:] - np.float32(band0))
    band_x = np.ascontiguousarray(map_x[row0:])
    for a in (mask, band_x, band_y, shade, reflectivity):
        a.setflags(write=False)
    return mask, row0, band0, band_x, band_y, shade, reflectivity


def _bonnet(img: np.ndarray, geometry: tuple, ctx: Context) -> None:
    look = ctx.world.look
    H, W = img.shape[:2]
    mask, row0, band0, map_x, map_y, shade, reflectivity = geometry
    # Blur only the band of rows the mirror reads (a fifth of the image or less).
    band = img[band0:]
    small = cv2.resize(band, (W // 2, (H - band0) // 2), interpolation=cv2.INTER_AREA)
    blurred = cv2.resize(cv2.GaussianBlur(small, (0, 0), 1.5), (W, H - band0), interpolation=cv2.INTER_LINEAR)
    # Only the rows the bonnet covers (remap is per pixel).
    refl = cv2.remap(blurred, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[mask[row0:]]
    base = look.bonnet_rgb.astype(np.float32) * (look.ambient_rgb.mean() * 0.8 + look.sun_rgb.mean() * 0.3)
    img[mask] = base[None] * shade[:, None] + refl * reflectivity[:, None]


def finish(ctx: Context, radiance: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Image ([H, W, 3] uint8 RGB) and the flat bonnet mask ([H * W] bool or None)."""
    look = ctx.world.look
    rng = ctx.rng
    H, W = ctx.H, ctx.W
    img = kernels.scale_rgb(radiance.reshape(H, W, 3), np.float32(look.exposure * rng.uniform(0.92, 1.08)),
                            look.white_balance.astype(np.float32))
    geometry = _bonnet_geometry(H, W, look.bonnet) if look.bonnet is not None else None
    mask = None
    if geometry is not None:
        _bonnet(img, geometry, ctx)
        mask = geometry[0]
    # Bloom: light spilling around bright sources (strong at night).
    if look.time in (TimeOfDay.NIGHT, TimeOfDay.DUSK):
        bright = np.maximum(img - 0.9, 0.0)
        small = cv2.resize(bright, (W // 4, H // 4), interpolation=cv2.INTER_AREA)
        glow = cv2.GaussianBlur(small, (0, 0), 2.5) + 0.5 * cv2.GaussianBlur(small, (0, 0), 8.0)
        k = 0.35 if look.time is TimeOfDay.NIGHT else 0.15
        img += k * cv2.resize(glow, (W, H), interpolation=cv2.INTER_LINEAR)
    if look.motion_blur_px >= 1.0:
        n = int(round(look.motion_blur_px)) * 2 + 1
        kernel = np.zeros((n, n), np.float32)
        angle = rng.uniform(0, np.pi)
        c = n // 2
        dx, dy = np.cos(angle) * c, np.sin(angle) * c
        cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1)
        kernel /= kernel.sum()
        img = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
    if look.blur_px > 0.2:
        img = cv2.GaussianBlur(img, (0, 0), look.blur_px)
    # Saturation and vignetting in linear light, then one lookup table for the tone curve (soft
    # shoulder), contrast and the sRGB encoding.
    if look.saturation != 1.0:
        mean = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None]
        img *= np.float32(look.saturation)
        img += np.float32(1.0 - look.saturation) * mean
    rain = np.zeros((1, 1), np.float32)
    if look.rain > 0:
        layer = np.zeros((H, W), np.float32)
        count = int(look.rain * W * 0.6)
        x0 = rng.uniform(0, W, count)
        y0 = rng.uniform(-20, H, count)
        length = rng.uniform(6, 22, count) * H / 256
        ang = np.deg2rad(rng.normal(100, 6, count))
        for a, b, ln, an in zip(x0, y0, length, ang, strict=True):
            cv2.line(layer, (int(a), int(b)), (int(a + ln * np.cos(an)), int(b + ln * np.sin(an))), 1.0, 1,
                     cv2.LINE_AA)
        layer = cv2.GaussianBlur(layer, (3, 3), 0.7)
        rain = np.ascontiguousarray(layer * 60.0 * look.rain, np.float32)
    # Shot-like noise (stronger in the shadows after the tone curve), colour noise, 8 bits.
    bank, dy, dx, chroma = _noise_bank(H, W), 0, 0, np.ones(3, np.float32)
    if look.noise_sigma > 0:
        dy, dx = int(rng.integers(0, H)), int(rng.integers(0, W))
        if look.chroma_shift > 0:
            chroma = (1.0 + rng.normal(0, look.chroma_shift, 3)).astype(np.float32)
    image = kernels.tone_and_noise(img, _vignette(H, W, float(look.vignette)), look.vignette > 0,
                                   _tone_lut(float(look.contrast)), np.float32(_TONE_SCALE), rain, look.rain > 0,
                                   look.noise_sigma > 0, np.float32(look.noise_sigma), bank, dy, dx,
                                   look.noise_sigma > 0 and look.chroma_shift > 0, chroma)
    if look.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(look.jpeg_quality)])
        if ok:
            image = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return image, (mask.reshape(-1) if mask is not None else None)
