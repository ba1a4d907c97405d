"""Flat-ground geometry: pixel <-> vehicle-frame ground point, and the ground-plane homography.

The ground is the plane ``z = ground_z_m`` (default 0) of the vehicle frame (x forward, y left,
z up, metres); the camera pose comes from :class:`calibration.camera.Mounting`. Pixels are raw
(distorted) image pixels of ``camera``; for an undistorted/rectified image pass
``camera.rectified()`` instead.
"""

from __future__ import annotations

import numpy as np

from calibration.camera import CameraModel, Mounting, _as_points
from perception.errors import CalibrationError

__all__ = ["pixel_to_ground", "ground_to_pixel", "ground_homography", "horizon_row"]


def pixel_to_ground(
    camera: CameraModel, mounting: Mounting, pixels: np.ndarray, *, ground_z_m: float = 0.0
) -> np.ndarray:
    """Intersect the viewing rays of raw pixels [N, 2] with the ground plane.

    Returns:
        [N, 3] vehicle-frame points with ``z = ground_z_m``; rows are NaN for pixels whose ray
        does not hit the ground in front of the camera (at or above the horizon).
    """
    rays = camera.pixel_rays(pixels)  # [N, 3] optical frame
    T = mounting.camera_to_vehicle()
    dirs = rays @ T[:3, :3].T  # [N, 3] vehicle frame
    origin = T[:3, 3]
    height = origin[2] - ground_z_m
    if height <= 0:
        raise CalibrationError(
            f"pixel_to_ground: camera z_m={mounting.z_m!r} is not above the ground plane z={ground_z_m!r}"
        )
    dz = dirs[:, 2]
    hits = dz < -1e-12
    s = np.where(hits, -height / np.where(hits, dz, -1.0), np.nan)
    out = origin + dirs * s[:, None]
    out[:, 2] = np.where(hits, ground_z_m, np.nan)
    return out


def ground_to_pixel(camera: CameraModel, mounting: Mounting, points: np.ndarray) -> np.ndarray:
    """Project vehicle-frame points [N, 3] (any z, not only ground) to raw pixels [N, 2].

    Points behind the camera give NaN; pixels may lie outside the image.
    """
    pts = _as_points(points, 3, "ground_to_pixel")
    T = mounting.vehicle_to_camera()
    cam = pts @ T[:3, :3].T + T[:3, 3]
    return camera.project(cam)


def ground_homography(
    camera: CameraModel, mounting: Mounting, *, ground_z_m: float = 0.0
) -> np.ndarray:
    """[3, 3] homography from ground coordinates ``(x, y, 1)`` (metres) to *undistorted* pixels.

    Exact for ``camera.rectified()`` images of a monocular camera; for raw images it ignores lens
    distortion (use :func:`pixel_to_ground` / :func:`ground_to_pixel` there). Its inverse maps
    pixels to the ground (``cv2.warpPerspective`` with it gives a bird's-eye view).
    """
    T = mounting.vehicle_to_camera()
    R, t = T[:3, :3], T[:3, 3]
    # p_cam = R @ (x, y, z0) + t = [r1 r2 (z0 r3 + t)] @ (x, y, 1)
    M = np.column_stack([R[:, 0], R[:, 1], ground_z_m * R[:, 2] + t])
    return camera.K @ M  # not normalised: H[2, 2] is 0 when the camera sits above x = 0


def horizon_row(camera: CameraModel, mounting: Mounting, u: float | None = None) -> float:
    """Image row of the (undistorted) horizon line at column ``u`` (default: the principal point).

    Rows below it (larger v) see the ground. Useful to skip the sky when scanning a mask.
    """
    R = mounting.camera_to_vehicle()[:3, :3]
    up = R.T @ np.array([0.0, 0.0, 1.0])  # vehicle z axis in the optical frame
    x = 0.0 if u is None else (u - camera.cx) / camera.fx
    # Horizon: rays (x, y, 1) with up . ray = 0  ->  y = -(up_x x + up_z) / up_y
    if abs(up[1]) < 1e-12:
        raise CalibrationError(
            "horizon_row: the camera is rolled 90 degrees; the horizon is vertical"
        )
    y = -(up[0] * x + up[2]) / up[1]
    return float(camera.fy * y + camera.cy)
