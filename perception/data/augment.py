"""Training-time augmentation and domain randomisation on the common sample format (numpy + cv2).

Why here and not in the synthetic world: the world already randomises scenes, weather and camera;
this module adds the cheap per-epoch variation every dataset benefits from (real ones included),
so one rendered frame gives many training views.

- **Photometric** (image only): brightness, contrast, saturation and hue jitter, Gaussian blur,
  Gaussian sensor noise and JPEG re-encoding, each with its own probability.
- **Geometric** (image and every label, via :mod:`perception.data.sample`): resize to the model
  input, a random zoom by ``s`` in ``[1, max_scale]`` and a random crop back to the input size,
  then a horizontal flip. Labels use nearest-neighbour; ``hflip_sample`` renumbers lane instances
  left to right and mirrors polylines. Drivable's direct/alternative and the lane mask stay valid
  under a flip (a mirrored right-hand-traffic scene is a left-hand-traffic scene).
- **Depth under zoom**: a zoom by ``s`` makes every object look ``s`` times larger, as if it were
  ``s`` times closer, so depth is divided by ``s`` by default (``zoom_scales_depth``). Without it
  the network would see the same object size with different metric depths and learn blur.
  ``meta["K"]`` follows the zoom (its focal length is ``s`` times longer) and
  ``meta["depth_zoom"] = s`` says that the depth label is the unzoomed camera's.

Example:
    >>> aug = Augment(AugmentConfig(), size=(256, 512), seed=0)
    >>> out = aug(sample)  # a new dict; ``sample`` is untouched
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from perception.data.sample import crop_sample, hflip_sample, resize_sample
from perception.errors import ConfigError

__all__ = ["AugmentConfig", "Augment", "Resize", "NO_AUGMENT"]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of every augmentation (0 / 1.0 switches one off)."""

    hflip_prob: float = 0.5
    scale_prob: float = 0.5
    max_scale: float = 1.3  # zoom factor range [1, max_scale]; zooming out would need padding
    zoom_scales_depth: bool = True
    color_prob: float = 0.8
    brightness: float = 0.25  # additive, fraction of full range
    contrast: float = 0.25  # multiplicative around the mean: 1 +- contrast
    saturation: float = 0.3  # multiplicative: 1 +- saturation
    hue_deg: float = 8.0  # hue shift +- degrees
    blur_prob: float = 0.15
    max_blur_sigma_px: float = 1.2
    noise_prob: float = 0.2
    max_noise_std: float = 6.0  # in 0..255 grey levels
    jpeg_prob: float = 0.2
    jpeg_quality: tuple[int, int] = (40, 90)

    def __post_init__(self) -> None:
        object.__setattr__(self, "jpeg_quality", tuple(self.jpeg_quality))
        for name in ("hflip_prob", "scale_prob", "color_prob", "blur_prob", "noise_prob", "jpeg_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"AugmentConfig.{name} must be in [0, 1], got {value!r}")
        if self.max_scale < 1.0:
            raise ConfigError(f"AugmentConfig.max_scale must be >= 1 (zoom in only), got {self.max_scale!r}")
        lo, hi = self.jpeg_quality
        if not 1 <= lo <= hi <= 100:
            raise ConfigError(f"AugmentConfig.jpeg_quality must be (lo, hi) within 1..100, got {self.jpeg_quality!r}")
        for name in ("brightness", "contrast", "saturation", "hue_deg", "max_blur_sigma_px", "max_noise_std"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AugmentConfig.{name} must be >= 0, got {getattr(self, name)!r}")


#: Geometric resize only (validation).
NO_AUGMENT = AugmentConfig(hflip_prob=0.0, scale_prob=0.0, color_prob=0.0, blur_prob=0.0, noise_prob=0.0,
                           jpeg_prob=0.0)


class Resize:
    """Resize a sample to the model input ``(height, width)`` (no-op when it already fits)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if sample["image"].shape[:2] == self.size:
            return sample
        return resize_sample(sample, *self.size)


class Augment:
    """Random augmentation of one sample; output is always ``size``.

    The random stream comes from ``seed``; data-loader workers call :meth:`reseed` with their own
    seed (``torch.utils.data.get_worker_info().seed``) so workers and ranks do not repeat each other.
    """

    def __init__(self, cfg: AugmentConfig, size: tuple[int, int], seed: int = 0) -> None:
        self.cfg = cfg
        self.size = (int(size[0]), int(size[1]))
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = Resize(self.size)(sample)
        out = self._zoom(out)
        if self.rng.random() < self.cfg.hflip_prob:
            out = hflip_sample(out)
        else:
            out = dict(out)
        out["image"] = self._photometric(out["image"])
        return out

    # -- geometric ---------------------------------------------------------------------------
    def _zoom(self, sample: dict[str, Any]) -> dict[str, Any]:
        if self.cfg.max_scale <= 1.0 or self.rng.random() >= self.cfg.scale_prob:
            return sample
        h, w = self.size
        s = float(self.rng.uniform(1.0, self.cfg.max_scale))
        zh, zw = max(h, round(h * s)), max(w, round(w * s))
        zoomed = resize_sample(sample, zh, zw)
        top = int(self.rng.integers(0, zh - h + 1))
        left = int(self.rng.integers(0, zw - w + 1))
        out = crop_sample(zoomed, top, left, h, w)
        if self.cfg.zoom_scales_depth and "depth" in out:
            zoom = 0.5 * (zh / h + zw / w)  # the realised zoom (sizes are rounded to pixels)
            out["depth"] = (out["depth"] / np.float32(zoom)).astype(np.float32)
            # ``K`` follows the zoom; the depth label stays that of the unzoomed camera: training
            # that knows the focal length (``focal_px``) must use fy / depth_zoom.
            out["meta"]["depth_zoom"] = zoom
        return out

    # -- photometric -------------------------------------------------------------------------
    def _photometric(self, image: np.ndarray) -> np.ndarray:
        """[H, W, 3] uint8 RGB -> jittered copy of the same shape and dtype."""
        cfg, rng = self.cfg, self.rng
        img = image
        if rng.random() < cfg.color_prob:
            img = self._color(img)
        if rng.random() < cfg.blur_prob and cfg.max_blur_sigma_px > 0:
            sigma = float(rng.uniform(0.3, max(0.3, cfg.max_blur_sigma_px)))
            img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
        if rng.random() < cfg.noise_prob and cfg.max_noise_std > 0:
            std = float(rng.uniform(0.0, cfg.max_noise_std))
            noisy = img.astype(np.float32) + rng.normal(0.0, std, img.shape).astype(np.float32)
            img = np.clip(noisy, 0, 255).astype(np.uint8)
        if rng.random() < cfg.jpeg_prob:
            quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok:
                img = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return np.ascontiguousarray(img)

    def _color(self, image: np.ndarray) -> np.ndarray:
        """Brightness, contrast, saturation and hue, applied in a random order (as torchvision)."""
        cfg, rng = self.cfg, self.rng
        img = image.astype(np.float32)
        for op in rng.permutation(4):
            if op == 0 and cfg.brightness > 0:
                img = img + 255.0 * float(rng.uniform(-cfg.brightness, cfg.brightness))
            elif op == 1 and cfg.contrast > 0:
                mean = float(img.mean())
                img = (img - mean) * float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)) + mean
            elif op == 2 and cfg.saturation > 0:
                grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
                factor = float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation))
                img = (img - grey[..., None]) * factor + grey[..., None]
            elif op == 3 and cfg.hue_deg > 0:
                img = _shift_hue(np.clip(img, 0, 255), float(rng.uniform(-cfg.hue_deg, cfg.hue_deg)))
            img = np.clip(img, 0, 255)
        return img.astype(np.uint8)


def _shift_hue(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """Hue rotation of a float32 RGB image in 0..255 (OpenCV's float HSV has hue in 0..360)."""
    hsv = cv2.cvtColor(rgb / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + degrees) % 360.0
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
