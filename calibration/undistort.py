"""Undistortion / rectification with maps computed once per camera model.

``Undistorter(camera)`` builds the ``cv2.initUndistortRectifyMap`` (or ``cv2.fisheye``) maps
once, in the fixed-point ``CV_16SC2`` form that ``cv2.remap`` runs fastest with; each frame is
then one remap (about 1 ms for 640x480 on one core). :func:`undistort` keeps a small LRU cache of
undistorters keyed by the (hashable) camera model, so calling it on every frame is cheap.

Output geometry follows ROS ``image_proc``: the rectified image uses ``P`` (or ``K`` when the
model has none) and ``R``; ``output_camera`` is the pinhole model of the result
(:meth:`CameraModel.rectified`). ``alpha`` (0..1) instead picks a new camera matrix with
``cv2.getOptimalNewCameraMatrix`` (0: only valid pixels, 1: keep every source pixel).
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

import numpy as np

from calibration.camera import CameraModel
from perception.errors import CalibrationError, InputError

__all__ = ["Undistorter", "undistort"]

_CACHE_SIZE = 8


class Undistorter:
    """Undistorts/rectifies images of one camera; maps are built in ``__init__``.

    Example:
        >>> und = Undistorter(camera)           # once
        >>> rect = und(frame)                   # per frame, [H, W] or [H, W, C]
        >>> und.output_camera                   # pinhole model of ``rect``
    """

    def __init__(
        self,
        camera: CameraModel,
        *,
        alpha: float | None = None,
        output_size: tuple[int, int] | None = None,
        interpolation: int | None = None,
    ) -> None:
        import cv2

        self.camera = camera
        width, height = output_size or camera.size
        if alpha is None:
            self.output_camera = camera.rectified()
            if output_size is not None:
                self.output_camera = self.output_camera.resized(width, height)
        else:
            if not 0.0 <= alpha <= 1.0:
                raise CalibrationError(
                    f"Undistorter: alpha must be in [0, 1] or None, got {alpha!r}"
                )
            new_K = _pinhole_k(self._optimal_matrix(camera, alpha, (width, height)))
            self.output_camera = CameraModel(width, height, new_K)
        new_K = self.output_camera.projection[:, :3]
        self._interpolation = cv2.INTER_LINEAR if interpolation is None else interpolation
        D = (
            camera.D
            if camera.D.size
            else np.zeros(4 if camera.distortion_model == "equidistant" else 5)
        )
        if camera.distortion_model == "equidistant":
            self._map1, self._map2 = cv2.fisheye.initUndistortRectifyMap(
                camera.K, D.reshape(-1, 1), camera.R, new_K, (width, height), cv2.CV_16SC2
            )
        else:
            self._map1, self._map2 = cv2.initUndistortRectifyMap(
                camera.K, D, camera.R, new_K, (width, height), cv2.CV_16SC2
            )

    @staticmethod
    def _optimal_matrix(camera: CameraModel, alpha: float, size: tuple[int, int]) -> np.ndarray:
        import cv2

        if camera.distortion_model == "equidistant":
            D = camera.D if camera.D.size else np.zeros(4)
            return cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
                camera.K, D.reshape(-1, 1), camera.size, camera.R, balance=alpha, new_size=size
            )
        new_K, _ = cv2.getOptimalNewCameraMatrix(camera.K, camera.D, camera.size, alpha, size)
        return new_K

    @property
    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``cv2.remap`` maps (``CV_16SC2`` + ``CV_16UC1``)."""
        return self._map1, self._map2

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Rectify one raw frame of the camera's size ([H, W] or [H, W, C], any cv2 dtype)."""
        import cv2

        if image.shape[:2] != (self.camera.height, self.camera.width):
            raise InputError(
                f"undistort: image is {image.shape[1]}x{image.shape[0]}, the camera model is "
                f"{self.camera.width}x{self.camera.height}; use camera.resized(...) for resized frames"
            )
        return cv2.remap(
            image, self._map1, self._map2, self._interpolation, borderMode=cv2.BORDER_CONSTANT
        )

    undistort = __call__


def _pinhole_k(K: np.ndarray) -> np.ndarray:
    K = np.array(K, dtype=np.float64)
    K[1, 0] = K[2, 0] = K[2, 1] = 0.0
    K[2, 2] = 1.0
    return K


_cache: OrderedDict[CameraModel, Undistorter] = OrderedDict()
_cache_lock = Lock()


def undistort(image: np.ndarray, camera: CameraModel) -> np.ndarray:
    """Rectify ``image`` with a cached :class:`Undistorter` for ``camera`` (ROS image_proc geometry)."""
    with _cache_lock:
        und = _cache.get(camera)
        if und is None:
            und = _cache[camera] = Undistorter(camera)
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
        else:
            _cache.move_to_end(camera)
    return und(image)
