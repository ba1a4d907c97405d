"""Geometry of the synthetic world: depth, ground plane and lane polylines against the analytic
camera model (issue 3 acceptance)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.ground import ground_to_pixel
from perception.data.classes import IGNORE_INDEX
from perception.data.synthetic import RandomizationConfig, SynthConfig, generate_world, render
from perception.data.synthetic.primitive import Cls

_NO_TRAFFIC = dict(traffic_density=0.0, bonnet_prob=0.0)


def _frame(seed: int, distorted: bool, **rand):
    rand = {"distortion_prob": 1.0 if distorted else 0.0, **rand}
    cfg = SynthConfig(height=256, width=512, randomization=RandomizationConfig(**rand))
    return render(generate_world(seed, cfg, duration_s=1.0), 0.5, frame_seed=3)


def _road_rays(frame):
    v, u = np.nonzero((frame.segmentation == Cls.ROAD) & (frame.depth > 0))
    rays = frame.camera.pixel_rays(np.stack([u, v], axis=1).astype(np.float64))  # z = 1
    return v, u, rays


@pytest.mark.parametrize("distorted", [False, True])
@pytest.mark.parametrize("seed", [1, 5])
def test_road_depth_is_the_ray_ground_intersection(seed: int, distorted: bool) -> None:
    frame = _frame(seed, distorted)
    v, u, rays = _road_rays(frame)
    assert v.size > 5000
    T = frame.mounting.camera_to_vehicle()
    dz = rays @ T[2, :3]  # vehicle-frame z of each ray
    analytic = -T[2, 3] / dz  # ray parameter = z-depth because rays have z = 1
    rel = np.abs(frame.depth[v, u] - analytic) / analytic
    assert rel.max() <= 1e-3, f"worst relative depth error {rel.max():.2e}"


@pytest.mark.parametrize("distorted", [False, True])
def test_road_pixels_backproject_onto_the_ground(distorted: bool) -> None:
    frame = _frame(2, distorted)
    v, u, rays = _road_rays(frame)
    T = frame.mounting.camera_to_vehicle()
    pts = (rays * frame.depth[v, u, None]) @ T[:3, :3].T + T[:3, 3]
    assert np.abs(pts[:, 2]).max() <= 0.01


def _rasterise_lines(frame, scale: int = 8) -> np.ndarray:
    """Lane polylines projected through the camera as strips of the labelled width (8x supersampled: cv2 fills edge pixels, which would widen 2 px strips)."""
    meta = frame.meta
    H, W = frame.segmentation.shape
    big = np.zeros((H * scale, W * scale), np.uint8)
    T_cv = frame.mounting.vehicle_to_camera()
    # Points far outside the field of view would fold back into the image through the distortion
    # polynomial: keep those whose normalized coordinates lie within the image's rays.
    border = np.array([[u, v] for u in np.linspace(0, W - 1, 9) for v in (0, H - 1)]
                      + [[u, v] for v in np.linspace(0, H - 1, 9) for u in (0, W - 1)])
    fov = frame.camera.pixel_rays(border)
    # The world keeps the distortion monotonic out to 1.5x the squared corner radius.
    r2_max = 1.4 * (fov[:, :2] ** 2).sum(1).max() if frame.camera.is_distorted else np.inf
    for line, half in zip(frame.lane_polylines, meta["lane_half_width_m"], strict=True):
        if len(line) < 2:
            continue
        tangent = np.gradient(line[:, :2], axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        normal = np.stack([-tangent[:, 1], tangent[:, 0], np.zeros(len(line))], axis=1)
        zc = line @ T_cv[2, :3] + T_cv[2, 3]
        h = np.maximum(half, 0.5 * meta["lane_label_min_px"] * zc / frame.camera.fx)[:, None]
        left = ground_to_pixel(frame.camera, frame.mounting, line + h * normal)
        right = ground_to_pixel(frame.camera, frame.mounting, line - h * normal)
        pc = line @ T_cv[:3, :3].T + T_cv[:3, 3]
        xn, yn = pc[:, 0] / pc[:, 2], pc[:, 1] / pc[:, 2]
        in_fov = (pc[:, 2] > 0) & (xn**2 + yn**2 <= r2_max)
        for i in range(len(line) - 1):
            quad = np.array([left[i], left[i + 1], right[i + 1], right[i]])
            if in_fov[i] and in_fov[i + 1] and np.all(np.isfinite(quad)):
                pts = np.round(((quad + 0.5) * scale - 0.5) * 16).astype(np.int32)
                cv2.fillConvexPoly(big, pts, 255, cv2.LINE_8, 4)
    small = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)
    return small >= 128


@pytest.mark.parametrize("distorted", [False, True])
@pytest.mark.parametrize("seed", [3, 8, 11])
def test_lane_polylines_land_on_the_lane_mask(seed: int, distorted: bool) -> None:
    frame = _frame(seed, distorted, **_NO_TRAFFIC)
    assert frame.lane_polylines, "the scene should have painted lines"
    mask = (frame.lane_instances > 0) & (frame.lane_instances != IGNORE_INDEX)
    drawn = _rasterise_lines(frame)
    # Compare where the road is visible and within the labelled range.
    valid = (frame.segmentation == Cls.ROAD) & (frame.depth < frame.meta["lane_range_m"] - 2.0)
    inter = (mask & drawn & valid).sum()
    union = ((mask | drawn) & valid).sum()
    assert union > 300
    assert inter / union >= 0.9, f"IoU {inter / union:.3f}"


def test_lane_instances_are_numbered_left_to_right() -> None:
    frame = _frame(3, False, **_NO_TRAFFIC)
    ys = [np.median(line[(line[:, 0] > 8) & (line[:, 0] < 20), 1]) for line in frame.lane_polylines]
    assert ys == sorted(ys, reverse=True)  # vehicle y points left
    cols = []
    row = frame.segmentation.shape[0] - 30
    for i in range(1, len(frame.lane_polylines) + 1):
        c = np.nonzero(frame.lane_instances[row] == i)[0]
        if c.size:
            cols.append(c.mean())
    assert cols == sorted(cols)


def test_ground_truth_layers_are_consistent() -> None:
    frame = _frame(4, False)
    seg, depth = frame.segmentation, frame.depth
    assert np.all(depth[seg == Cls.SKY] == 0)
    solid = (seg != Cls.SKY) & (seg != IGNORE_INDEX)
    assert (depth[solid] > 0).mean() > 0.99  # the rest is ground beyond max_depth_m (0 = invalid)
    assert 0 < depth.max() <= frame.meta.get("max_depth_m", 300.0)
    drivable = frame.drivable
    assert set(np.unique(drivable)) <= {0, 1, 2, IGNORE_INDEX}
    assert np.all(seg[(drivable == 1) | (drivable == 2)] == Cls.ROAD)
    assert np.all(drivable[frame.corridor == 1] == 1)  # the corridor is part of the ego lane
    assert (drivable == 1).sum() > 1000
