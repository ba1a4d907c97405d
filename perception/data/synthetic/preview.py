"""Contact sheet of synthetic frames with their ground truth drawn over them, for eyeballing.

Each row is one frame: the image, the segmentation overlay, depth (turbo colour map, near = red),
and drivable area (direct red, alternative blue) with lane lines (yellow, one shade per line) and
the ego corridor (green).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from perception.data.classes import IGNORE_INDEX, class_colors_rgb
from perception.data.synthetic.config import SynthConfig
from perception.data.synthetic.renderer import Frame
from perception.data.synthetic.sequence import FrameJob, iter_frames
from perception.errors import ConfigError

__all__ = ["frame_panels", "write_preview", "preview_jobs"]


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def frame_panels(frame: Frame) -> np.ndarray:
    """[H, 4 W, 3] uint8 RGB: image | segmentation | depth | drivable + lanes + corridor."""
    img = frame.image
    palette = np.concatenate([class_colors_rgb(), np.zeros((256 - len(class_colors_rgb()), 3), np.uint8)])
    seg = palette[frame.segmentation]
    seg_overlay = (0.45 * img + 0.55 * seg).astype(np.uint8)
    d = frame.depth
    inv = np.where(d > 0, np.clip(1.0 / np.maximum(d, 1e-3) * 3.0, 0, 1), 0)
    depth_vis = cv2.applyColorMap((inv * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1].copy()
    depth_vis[d <= 0] = 0
    over = img.astype(np.float32).copy()
    colors = {1: (230, 40, 40), 2: (40, 120, 230)}
    for value, color in colors.items():
        m = frame.drivable == value
        over[m] = 0.5 * over[m] + 0.5 * np.array(color, np.float32)
    corr = frame.corridor == 1
    over[corr] = 0.5 * over[corr] + 0.5 * np.array((40, 220, 60), np.float32)
    inst = frame.lane_instances
    for i in range(1, int(inst[inst != IGNORE_INDEX].max(initial=0)) + 1):
        over[inst == i] = (255, 255 - 35 * (i % 5), 0)
    over[frame.segmentation == IGNORE_INDEX] *= 0.4
    meta = frame.meta
    title = f"{meta.get('scene', '')} {meta.get('time_of_day', '')}"
    return np.hstack([
        _label(img, title),
        _label(seg_overlay, "segmentation"),
        _label(depth_vis, f"depth (max {d.max():.0f} m)"),
        _label(over.astype(np.uint8), "drivable / lanes / corridor"),
    ])


def preview_jobs(seed: int, n: int, config: SynthConfig) -> list[FrameJob]:
    """One frame from each of ``n`` different worlds."""
    return [FrameJob(int(seed), i, 0.0, None, 0.0, i, 0, config) for i in range(n)]


def write_preview(out: str | Path, *, n: int = 8, seed: int = 0, config: SynthConfig | None = None,
                  workers: int = 1, scale: float = 1.0, progress: bool = False) -> Path:
    """Render ``n`` frames (one per world) and write the contact sheet as a PNG.

    Raises:
        ConfigError: ``n < 1``, a bad scale, or an output that cannot be written (nothing is left behind).
    """
    config = config or SynthConfig()
    if n < 1:
        raise ConfigError(f"preview needs at least 1 frame, got {n!r}")
    if not 0 < scale <= 4:
        raise ConfigError(f"preview scale must be in (0, 4], got {scale!r}")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"preview output must be a .png file, got {str(out)!r}")
    parent = out.absolute().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ConfigError(f"cannot write the preview to {str(out)!r}: {str(parent)!r} is not a writable directory")
    frames = iter_frames(preview_jobs(seed, n, config), workers)
    if progress:
        from tqdm import tqdm

        frames = tqdm(frames, total=n, desc="synth preview", unit="frame")
    rows = [frame_panels(f) for f in frames]
    sheet = np.vstack(rows)
    if scale != 1.0:
        sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", sheet[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ConfigError(f"OpenCV could not encode the preview sheet for {str(out)!r}")
    tmp = parent / f".{out.name}.partial-{os.getpid()}"
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
