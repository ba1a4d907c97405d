"""``tadp bag-from-images``: a folder of real frames -> a camera bag for ``tadp replay``.

Examples::

    tadp bag-from-images 'frames/*.jpg' --out drive.mcap --fps 10
    tadp bag-from-images frames/ --out drive.mcap --fps 30 --camera-info camera.yaml --compressed
    tadp bag-from-images 'mixed/**/*.png' --out mixed.mcap --fps 5 --size 720x1280

Frames are taken in sorted file order, ``1/fps`` apart from a fixed start stamp (so the same files
give the same bag). ``--compressed`` stores JPEG files as they are (no re-encoding).
"""
from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bag-from-images", help="turn image files into a camera bag (MCAP)",
                       description="Write image files as a camera bag: sensor_msgs/Image (bgr8) "
                                   "or CompressedImage, plus CameraInfo from a calibration file.")
    p.add_argument("images", metavar="GLOB",
                   help="image files: a quoted glob ('frames/*.jpg', ** recurses) or a directory")
    p.add_argument("--out", required=True, metavar="BAG",
                   help="X.mcap (one MCAP file) or a directory (rosbag2 bag)")
    p.add_argument("--fps", type=float, required=True, help="frame rate of the stamps")
    p.add_argument("--camera-info", metavar="YAML",
                   help="calibration file (ROS camera_info YAML, OpenCV YAML/XML, INI): "
                        "publishes <ns>/camera_info with every frame")
    p.add_argument("--compressed", nargs="?", const="jpeg", choices=("jpeg", "png"),
                   help="CompressedImage on TOPIC/compressed (default format jpeg) instead of raw bgr8")
    p.add_argument("--topic", default="/camera/image_raw", help="image topic (default /camera/image_raw)")
    p.add_argument("--frame-id", default="camera_optical_frame", help="header frame_id")
    p.add_argument("--size", metavar="HxW", help="resize every frame to HxW (CameraInfo follows)")
    p.add_argument("--start-ns", type=int, default=None,
                   help="stamp of the first frame in ns (default 2024-01-01T00:00:00Z)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _size(text: str | None) -> tuple[int, int] | None:
    """``HxW`` -> (width, height)."""
    from perception.errors import ConfigError

    if text is None:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be HxW, e.g. 720x1280; got {text!r}") from None
    if h < 2 or w < 2:
        raise ConfigError(f"--size must be at least 2x2, got {text!r}")
    return w, h


def run(args: argparse.Namespace) -> int:
    from perception.commands.replay import warnings_to_stderr
    from perception.evaluation.bag_frames import DEFAULT_START_NS, image_files, write_image_bag

    with warnings_to_stderr("bag-from-images"):
        files = image_files(args.images)
        progress = None
        if not args.no_progress:
            from tqdm import tqdm

            def progress(items):  # noqa: ANN001, ANN202
                return tqdm(items, desc="bag-from-images", unit="frame")

        out = write_image_bag(files, args.out, args.fps, camera_info=args.camera_info,
                              compressed=args.compressed, topic=args.topic,
                              frame_id=args.frame_id, size=_size(args.size),
                              start_ns=DEFAULT_START_NS if args.start_ns is None else args.start_ns,
                              overwrite=args.overwrite, progress=progress)
    kind = f"{args.compressed} CompressedImage" if args.compressed else "bgr8 Image"
    print(f"wrote {len(files)} frames ({kind}{', CameraInfo' if args.camera_info else ''}) "
          f"at {args.fps:g} frames/s to {out}")
    return 0
