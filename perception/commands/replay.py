"""``tadp replay``: a camera bag through the engine into a new bag, with metrics and a report.

Examples::

    tadp replay drive_bag --out drive_out.mcap --report reports/drive
    tadp replay drive.mcap --out out.mcap --camera-topic /cam/front/image_raw/compressed --zstd
    tadp replay real.mcap --out real_out.mcap --gt-data tusimple:/data/lanenet --report rep
    tadp replay drive.bag --out out --model runs/tiny --backend torch --tasks segmentation,depth

Inputs: rosbag2 directories (MCAP or sqlite3), bare ``.mcap``/``.db3`` files and ROS 1 ``.bag``
files; raw or compressed camera topics; CameraInfo. Outputs: the node's topics, stamped like
their inputs, in one MCAP file (``--out X.mcap``) or a rosbag2 directory, written to a temporary
path and renamed on success (docs/replay.md).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["register", "add_engine_arguments", "build_engine", "model_path", "warnings_to_stderr"]


def add_engine_arguments(p: argparse.ArgumentParser, *, backend_default: str = "auto") -> None:
    """``--model --bundle --backend --precision --threads --tasks`` (shared with ``tadp demo``)."""
    p.add_argument("--model", metavar="MODEL",
                   help="save_model .safetensors, `tadp train` run directory or checkpoint "
                        "directory (default: the shipped model perception/assets/default/)")
    p.add_argument("--bundle", action="append", default=[], metavar="PATH",
                   help="task bundle to add to the model (repeatable)")
    p.add_argument("--backend", default=backend_default,
                   choices=("auto", "torch", "onnxruntime", "tensorrt"),
                   help=f"inference backend (default {backend_default})")
    p.add_argument("--precision", default="fp32", help="backend precision (default fp32)")
    p.add_argument("--threads", type=int, default=2, help="backend CPU threads (default 2)")
    p.add_argument("--tasks", metavar="A,B", help="tasks to run (default: every task of the model)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="replay a camera bag through the engine into a new bag (+ metrics, report)",
        description="Read a camera bag (rosbag2 MCAP/sqlite3 or ROS 1), run the engine on every "
                    "frame, write the node's output topics with the input stamps into a new "
                    "bag, and score against ground truth when there is some.")
    p.add_argument("bag", metavar="IN_BAG", help="rosbag2 directory, .mcap/.db3 file or ROS 1 .bag")
    p.add_argument("--out", required=True, metavar="OUT_BAG",
                   help="output: X.mcap (one MCAP file) or a directory (rosbag2 bag)")
    p.add_argument("--camera-topic", metavar="T", help="camera Image/CompressedImage topic "
                   "(default: the bag's only one)")
    p.add_argument("--camera-info-topic", metavar="T",
                   help="CameraInfo topic (default: beside the camera topic, or the only one)")
    p.add_argument("--gt-prefix", default="/gt", metavar="NS",
                   help="ground-truth topics live below this namespace (default /gt)")
    p.add_argument("--gt-data", metavar="SPEC",
                   help="ground truth from a dataset instead ([KIND:]PATH[,k=v]; sample i labels "
                        "camera frame i)")
    p.add_argument("--no-eval", action="store_true", help="do not score, even with ground truth")
    p.add_argument("--report", metavar="DIR", help="write report.md, metrics.json and plots here")
    p.add_argument("--overlays", type=int, default=3,
                   help="best and worst frames in the report's overlay grid (default 3 each)")
    add_engine_arguments(p)
    p.add_argument("--zstd", action="store_true", help="zstd-compress the output (MCAP chunks)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap",
                   help="storage of a directory output (default mcap)")
    p.add_argument("--output-ns", default="/perception", metavar="NS",
                   help="output topics are NS/<task> (default /perception, the node's name)")
    p.add_argument("--color-tasks", default="segmentation", metavar="A,B",
                   help="tasks that also get NS/<task>/color (default segmentation; '' for none)")
    p.add_argument("--mounting", metavar="YAML",
                   help="camera mounting (calibration YAML): enables NS/lanes/path, using the "
                        "bag's CameraInfo, and depth follows its height (models trained with a "
                        "height rule), as in the node")
    p.add_argument("--vehicle-frame", default="base_link", help="frame_id of lanes/path")
    p.add_argument("--max-frames", type=int, metavar="N", help="replay the first N frames only")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output bag / report (once the new one is complete)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    live = p.add_argument_group(
        "live replay (--realtime)",
        "Play the bag into a running perception node (rclpy) at the recorded rate, record its "
        "outputs into OUT_BAG, and compare them with the offline replay of the same frames "
        "(--model/--backend describe the offline reference: use the node's). Exit status 1 when "
        "outputs differ beyond the backend tolerance.")
    live.add_argument("--realtime", action="store_true", help="live replay into a running node")
    live.add_argument("--node-ns", default="/perception", metavar="NS",
                      help="the node's namespace/name: its outputs are NS/<task> (default /perception)")
    live.add_argument("--input-topic", metavar="T",
                      help="topic the node subscribes to (default: the bag's camera topic)")
    live.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    live.add_argument("--wait-node", type=float, default=30.0, metavar="S",
                      help="seconds to wait for the node to appear (default 30)")
    p.set_defaults(func=run)


def model_path(arg: str | None) -> Path:
    """The model to load: ``--model`` or the shipped default.

    Raises:
        ConfigError: no ``--model`` and no default model in this checkout.
    """
    from perception.errors import ConfigError
    from perception.runtime.default_model import DEFAULT_MODEL, default_model_path

    if arg:
        return Path(arg)
    default = default_model_path()
    if default is None:
        raise ConfigError(f"no --model given and the shipped default model {DEFAULT_MODEL} is "
                          "missing from this checkout; pass --model MODEL (a save_model "
                          ".safetensors or a `tadp train` run directory)")
    return default


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def build_engine(args: argparse.Namespace) -> Any:
    """Load the model (+ bundles) and build the engine the arguments describe.

    Raises:
        ConfigError / CheckpointError / BundleError / BackendError: as the steps do.
    """
    import torch

    from perception.errors import ConfigError
    from perception.runtime.engine import PerceptionEngine
    from perception.training.bundle import load_bundle_into, read_bundle
    from perception.training.run_dir import load_model_from

    if args.threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    model = load_model_from(model_path(args.model))
    for path in args.bundle:
        load_bundle_into(model, read_bundle(path))
    tasks = _names(args.tasks)
    if tasks is not None and (unknown := [t for t in tasks if t not in model.tasks]):
        raise ConfigError(f"--tasks: unknown {unknown}; the model has {list(model.tasks)}")
    return PerceptionEngine(model.eval(), args.backend, tasks=tasks, precision=args.precision,
                            threads=args.threads)


@contextlib.contextmanager
def warnings_to_stderr(command: str) -> Iterator[None]:
    """Print library warnings as one ``tadp COMMAND: warning: ...`` line each (no source lines)."""
    import warnings

    def show(message: Any, category: Any, *_: Any, **__: Any) -> None:
        print(f"tadp {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def run(args: argparse.Namespace) -> int:
    with warnings_to_stderr("replay"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from perception.errors import ConfigError, DataError
    from perception.evaluation.bag_io import open_camera_bag
    from perception.evaluation.replay import ReplayOptions, replay
    from perception.evaluation.report import write_report

    out, report = Path(args.out), Path(args.report) if args.report else None
    for path, what in ((out, "output bag"), (report, "report directory")):
        if path is not None and path.exists() and not args.overwrite:
            raise DataError(f"{what} {path} exists already; remove it or pass --overwrite")
    if args.overlays < 0:
        raise ConfigError(f"--overlays must be >= 0, got {args.overlays}")
    # Check the bag before the (possibly slow) engine build: foreign bags fail in a second.
    with open_camera_bag(args.bag, args.camera_topic, args.gt_prefix,
                         camera_info_topic=args.camera_info_topic) as bag:
        n_frames, has_gt = len(bag), bool(bag.gt_topics)
    if args.realtime:
        unused = [flag for flag, given in (
            ("--gt-data", args.gt_data), ("--mounting", args.mounting),
            ("--output-ns", args.output_ns != "/perception"),
            ("--color-tasks", args.color_tasks != "segmentation"),
            ("--vehicle-frame", args.vehicle_frame != "base_link"),
            ("--storage", args.storage != "mcap"), ("--no-eval", args.no_eval)) if given]
        if unused:
            raise ConfigError(f"{', '.join(unused)} have no effect with --realtime: the running "
                              "node decides its outputs (set its parameters instead)")
        return _run_live(args, out, report)
    mounting = None
    if args.mounting:
        from calibration.io import load_mounting

        mounting = load_mounting(args.mounting)
    gt_samples = None
    if args.gt_data and not args.no_eval:
        from perception.evaluation.evaluate import open_dataset

        gt_samples = open_dataset(args.gt_data)
    options = ReplayOptions(
        camera_topic=args.camera_topic, camera_info_topic=args.camera_info_topic,
        gt_prefix=args.gt_prefix, output_ns=args.output_ns,
        color_tasks=tuple(_names(args.color_tasks) or ()),
        compression="zstd" if args.zstd else None, storage=args.storage, mounting=mounting,
        vehicle_frame=args.vehicle_frame, max_frames=args.max_frames,
        evaluate=not args.no_eval, overlays=args.overlays, overwrite=args.overwrite,
        progress=not args.no_progress)
    engine = build_engine(args)
    if unknown := [t for t in options.color_tasks if t not in engine.tasks]:
        raise ConfigError(f"--color-tasks: {unknown} are not running; tasks: {engine.tasks}")
    try:
        result = replay(engine, args.bag, out, options, gt_samples=gt_samples,
                        gt_name=args.gt_data or "")
    except OSError as err:  # disk full, permissions: the writer removed its temporary files
        raise DataError(f"replay failed writing {out}: {err}") from err
    print(f"replayed {len(result.frames)} of {n_frames} frames from {args.bag} "
          f"({result.camera_topic}) -> {out}: {result.fps:.2f} frames/s, "
          f"{len(result.topics)} topics, backend {result.backend}")
    if result.metrics:
        print(headline(result.metrics))
    elif not args.no_eval and (has_gt or gt_samples is not None):
        print("no metrics: the ground truth labels none of the running tasks")
    if report is not None:
        write_report(result, report, overwrite=args.overwrite,
                     extra={"command": "tadp replay", "model": str(model_path(args.model))})
        print(f"report: {report / 'report.md'}")
    return 0


def _run_live(args: argparse.Namespace, out: Path, report: Path | None) -> int:
    """``--realtime``: play into the running node, record, then compare with offline outputs."""
    from perception.errors import MissingDependencyError
    from perception.evaluation.replay import PARITY_TOLERANCE, live_parity
    from perception.evaluation.report import write_live_report

    try:
        from ros2_nodes.bag_player import play_into_node
    except ImportError as err:
        raise MissingDependencyError(
            f"tadp replay --realtime needs 'rclpy' and the ROS 2 message packages ({err}). "
            "Install them with: pip install 'tad_perception[ros]', or on a ROS machine run: "
            "source /opt/ros/<distro>/setup.bash") from err
    model_path(args.model)  # the offline reference must exist before the node is bothered
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(desc="live", unit="frame")
    try:
        rec = play_into_node(
            args.bag, out, node_ns=args.node_ns, input_topic=args.input_topic,
            camera_info_topic=args.camera_info_topic, camera_topic=args.camera_topic,
            gt_prefix=args.gt_prefix, rate=args.rate, wait_s=args.wait_node,
            max_frames=args.max_frames, overwrite=args.overwrite,
            compression="zstd" if args.zstd else None,
            progress=(lambda n: bar.update(n - bar.n)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    lat = sorted(rec.latency_ms())
    dropped = rec.dropped()
    incomplete = [s for s in rec.sent if s not in dropped and not rec.complete(s)]
    silent = rec.silent()
    print(f"live: sent {len(rec.sent)} frames to {rec.camera_topic} in {rec.seconds:.1f} s, "
          f"{len(lat)} answered, {len(dropped)} dropped, {len(incomplete)} incomplete; "
          f"recorded {len(rec.topics) - len(silent)} topics -> {out}"
          + (f" (advertised but silent: {', '.join(silent)})" if silent else ""))
    if lat:
        import numpy as np

        print(f"live latency: p50 {np.percentile(lat, 50):.1f} ms, p95 "
              f"{np.percentile(lat, 95):.1f} ms, max {lat[-1]:.1f} ms")
    # The offline reference is built only now: it must not compete with the node for the CPU.
    engine = build_engine(args)
    parity = live_parity(engine, args.bag, out, node_ns=args.node_ns,
                         camera_topic=args.camera_topic, gt_prefix=args.gt_prefix)
    ok = bool(parity) and all(row["ok"] for row in parity.values())
    for topic, row in parity.items():
        worst = row.get("max_mismatch", row.get("max_abs"))
        print(f"parity {topic}: {row['frames']} frames, worst {worst!r} "
              f"({'ok' if row['ok'] else 'OUTSIDE TOLERANCE'})")
    if not parity:
        print("parity: no task outputs were recorded to compare")
    if report is not None:
        write_live_report({
            "input": str(args.bag), "output": str(out), "node_ns": args.node_ns,
            "rate": args.rate, "backend": engine.backend.describe(), "sent": len(rec.sent),
            "answered": len(lat), "dropped": dropped, "incomplete": incomplete,
            "latency_ms": rec.latency_ms(), "topics": rec.topics, "silent_topics": silent,
            "parity": parity, "tolerance": PARITY_TOLERANCE}, report, overwrite=args.overwrite)
        print(f"report: {report / 'report.md'}")
    return 0 if ok else 1


def headline(metrics: dict[str, Any]) -> str:
    """One line of the main numbers (those present)."""
    keys = ("segmentation/miou", "drivable/miou", "lanes/iou", "depth/abs_rel", "depth/delta1",
            "corridor/miou")
    parts = [f"{k} {metrics[k]:.4f}" for k in keys if metrics.get(k) is not None]
    return "metrics: " + (", ".join(parts) if parts else "(see the report)")
