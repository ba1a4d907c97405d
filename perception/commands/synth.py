"""``tadp synth``: synthetic driving world -> image datasets, rosbag2 bags and preview sheets.

Examples::

    tadp synth dataset --out synth_train --n 2000 --size 256x512 --seed 0
    tadp synth bag --out drive_bag --frames 100 --fps 10 --storage sqlite3 --compressed
    tadp synth preview --out preview.png
"""
from __future__ import annotations

import argparse

__all__ = ["register"]


def _common(p: argparse.ArgumentParser, seed_help: str) -> None:
    p.add_argument("--size", default="256x512", metavar="HxW",
                   help="image size, multiples of 32 (default 256x512, the model input)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--workers", type=int, default=None,
                   help="rendering processes (default: one per available core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="synthetic driving world: datasets, bags, previews",
                       description="Render the procedural driving world with exact ground truth.")
    what = p.add_subparsers(dest="synth_command", metavar="WHAT")
    what.required = True

    d = what.add_parser("dataset", help="write an image dataset (PNG images and labels, index.jsonl)")
    d.add_argument("--out", required=True, help="dataset directory to create")
    d.add_argument("--n", type=int, required=True, help="number of frames")
    d.add_argument("--frames-per-world", type=int, default=8, help="frames per generated world (default 8)")
    d.add_argument("--depth", choices=("png_mm", "npy"), default="png_mm",
                   help="depth files: uint16 PNG in mm (<= 65.5 m) or float32 .npy in m")
    d.add_argument("--fps", type=float, default=None,
                   help="write one continuous drive at this rate (the frames of `synth bag` with the same seed)")
    d.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _common(d, "the same seed gives a byte-identical dataset")
    d.set_defaults(func=run_dataset)

    b = what.add_parser("bag", help="write a rosbag2 drive with camera, camera_info and /gt/* topics")
    b.add_argument("--out", required=True, help="bag directory to create")
    b.add_argument("--frames", type=int, required=True, help="number of frames")
    b.add_argument("--fps", type=float, required=True, help="frame rate (header stamps 1/fps apart)")
    b.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    b.add_argument("--compressed", action="store_true",
                   help="publish /camera/image_raw/compressed (JPEG) instead of /camera/image_raw (bgr8)")
    b.add_argument("--speed", type=float, default=None, help="ego speed in m/s (default: from the scene type)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _common(b, "the same seed gives a byte-identical bag")
    b.set_defaults(func=run_bag)

    v = what.add_parser("preview", help="contact sheet of frames with ground-truth overlays")
    v.add_argument("--out", required=True, help="PNG file to write")
    v.add_argument("--n", type=int, default=8, help="frames, one per world (default 8)")
    v.add_argument("--scale", type=float, default=1.0, help="scale the sheet (default 1)")
    _common(v, "first world seed")
    v.set_defaults(func=run_preview)


def _config(args: argparse.Namespace):
    from perception.data.synthetic.config import SynthConfig, parse_size

    height, width = parse_size(args.size)
    return SynthConfig(height=height, width=width)


def _workers(args: argparse.Namespace) -> int:
    from perception.data.synthetic.sequence import default_workers
    from perception.errors import ConfigError

    if args.workers is None:
        return default_workers()
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    return args.workers


def run_dataset(args: argparse.Namespace) -> int:
    from perception.data.synthetic.dataset_writer import write_dataset

    out = write_dataset(args.out, args.n, seed=args.seed, config=_config(args), frames_per_world=args.frames_per_world,
                        depth_format=args.depth, fps=args.fps, workers=_workers(args), overwrite=args.overwrite,
                        progress=not args.no_progress)
    print(f"wrote {args.n} frames to {out}")
    return 0


def run_bag(args: argparse.Namespace) -> int:
    from perception.data.synthetic.bag_writer import write_bag

    out = write_bag(args.out, args.frames, args.fps, storage=args.storage, compressed=args.compressed,
                    seed=args.seed, config=_config(args), speed_mps=args.speed, workers=_workers(args),
                    overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {args.frames} frames ({args.storage}) to {out}")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from perception.data.synthetic.preview import write_preview

    out = write_preview(args.out, n=args.n, seed=args.seed, config=_config(args), workers=_workers(args),
                        scale=args.scale, progress=not args.no_progress)
    print(f"wrote {out}")
    return 0
