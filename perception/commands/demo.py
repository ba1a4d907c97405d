"""``tadp demo``: the main job end to end, offline, in under a minute on a laptop CPU.

Makes a short synthetic drive (camera, CameraInfo and exact ground truth, fixed seed), replays it
through the shipped default model with the drive's camera mounting (as a robot's calibration
gives it to the node), and writes the output bag and a report::

    tadp demo                          # -> tadp_demo/{demo_input.mcap, demo_output.mcap, report/}
    tadp demo --out /tmp/demo --frames 80 --backend onnxruntime
    tadp demo --model runs/tiny/model.safetensors

The demo owns its three outputs in ``--out`` and replaces them on every run. The frames are
rendered at the model's input size, so nothing is resized on the way in.
"""
from __future__ import annotations

import argparse

__all__ = ["register"]

DEMO_SEED = 7  # daylight, traffic and lane lines on both sides in its first 40 frames


def register(sub: argparse._SubParsersAction) -> None:
    from perception.commands.replay import add_engine_arguments

    p = sub.add_parser("demo", help="synthetic drive -> default model -> output bag + report",
                       description="Render a short synthetic camera bag with ground truth, replay "
                                   "it through the default model, write the output bag and a "
                                   "report (metrics, plots, overlays).")
    p.add_argument("--out", default="tadp_demo", metavar="DIR",
                   help="output directory (default ./tadp_demo)")
    p.add_argument("--frames", type=int, default=40, help="frames in the drive (default 40)")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the drive (default 10)")
    p.add_argument("--seed", type=int, default=DEMO_SEED, help=f"world seed (default {DEMO_SEED})")
    # torch by default: an onnxruntime engine exports the trunk and slots on its first run
    # (25-45 s cold on 2 busy cores, docs/replay.md), which alone would blow the minute.
    add_engine_arguments(p, backend_default="torch")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from perception.commands.replay import warnings_to_stderr

    with warnings_to_stderr("demo"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from perception.commands.replay import build_engine, headline, model_path
    from perception.data.synthetic.bag_writer import write_bag
    from perception.data.synthetic.config import SynthConfig
    from perception.data.synthetic.sequence import default_workers, sequence_world
    from perception.errors import ConfigError
    from perception.evaluation.bag_frames import place_storage_file
    from perception.evaluation.replay import ReplayOptions, replay, uses_mounting
    from perception.evaluation.report import write_report

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if not args.fps > 0:
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    t_start = time.perf_counter()
    path = model_path(args.model)  # fails now, before rendering, when there is no model
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    in_bag, out_bag, report = out / "demo_input.mcap", out / "demo_output.mcap", out / "report"

    t0 = time.perf_counter()
    engine = build_engine(args)
    t_engine = time.perf_counter() - t0
    h, w = engine.input_size
    config = SynthConfig(height=h, width=w)
    t0 = time.perf_counter()
    place_storage_file(
        lambda bag_dir, _replace: write_bag(
            bag_dir, args.frames, args.fps, seed=args.seed, config=config,
            workers=min(default_workers(), 2), progress=not args.no_progress),
        in_bag, overwrite=True)
    t_synth = time.perf_counter() - t0
    # The drive's mounting, as a robot's calibration gives it to the node: lanes/path, and
    # depth of a model that follows the camera's height.
    mounting = sequence_world(args.seed, args.frames, args.fps, config).mounting
    mounting = mounting if uses_mounting(engine) else None  # e.g. --tasks segmentation
    result = replay(engine, in_bag, out_bag,
                    ReplayOptions(overwrite=True, progress=not args.no_progress, mounting=mounting))
    t0 = time.perf_counter()
    write_report(result, report, title=f"tadp demo: {args.frames} synthetic frames",
                 overwrite=True, extra={"command": "tadp demo", "model": str(path),
                                        "seed": args.seed, "fps": args.fps})
    t_report = time.perf_counter() - t0
    total = time.perf_counter() - t_start
    print(f"input bag:  {in_bag} ({args.frames} frames {w}x{h} at {args.fps:g} Hz, seed {args.seed}, "
          f"rendered in {t_synth:.1f} s)")
    print(f"output bag: {out_bag} ({len(result.topics)} topics, "
          f"{result.fps:.1f} frames/s on {result.backend}; engine ready in {t_engine:.1f} s)")
    print(f"report:     {report / 'report.md'} (+ metrics.json, plots, overlays; "
          f"{t_report:.1f} s)")
    print(headline(result.metrics))
    print(f"done in {total:.1f} s")
    return 0
