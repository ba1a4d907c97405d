"""Bag replay (issue 8): camera frames from a bag through the engine, every output into a new bag,
metrics against the bag's ground truth.

Example:
    >>> engine = PerceptionEngine(load_model("model.safetensors"), "onnxruntime")
    >>> result = replay(engine, "drive.mcap", "drive_out.mcap", ReplayOptions(compression="zstd"))
    >>> result.metrics["segmentation/miou"], result.fps

What is written is what the node (``ros2_nodes/perception_node.py``) publishes, with the input
header on every message and the input header stamp as bag time:

=================================  ===============================  ===========================
topic (``output_ns`` = node name)  type                             content
=================================  ===============================  ===========================
``<ns>/<task>``                    sensor_msgs/msg/Image            mono8 ids / 32FC1 metres
``<ns>/<task>/color``              sensor_msgs/msg/Image            bgr8, for ``color_tasks``
``<ns>/lanes/path``                nav_msgs/msg/Path                ego-lane centre line in
                                                                    ``vehicle_frame`` (needs a
                                                                    mounting and CameraInfo)
=================================  ===============================  ===========================

Frames and ground truth. Predictions are ``engine.logits`` on the decoded uint8 frame (one frame
per call, as the node runs); outputs are the task kinds' post-processing resized to the frame, the
node's path; scoring is :func:`perception.evaluation.evaluate.score_outputs` on the same logits
with the ground truth as a sample (:func:`~perception.evaluation.bag_frames.frame_to_sample`), so
the metrics equal ``tadp eval --backend B --batch-size 1`` on a dataset of the same frames, bit for
bit.

Pipelining: reading/decoding runs one frame ahead in a thread and post-processing, scoring and
writing run in another, while the calling thread runs the engine; ``benchmarks/replay_throughput.py``
measures the result against the bare engine. Output order and content do not depend on timing.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from calibration.lanes import ego_lane_centre
from perception.errors import ConfigError, DataError
from perception.evaluation.bag_frames import (
    frame_camera,
    frame_to_sample,
    place_storage_file,
    samples_by_index,
)
from perception.evaluation.bag_io import (
    BagFrame,
    BagOutputWriter,
    make_header,
    make_image,
    make_path,
    open_camera_bag,
    stamp_to_ns,
)
from perception.evaluation.evaluate import metric_specs, score_outputs
from perception.evaluation.metrics import MetricSet
from perception.evaluation.report import DepthErrorByDistance, OverlayKeeper, frame_score
from perception.ros_format.outputs import colorize_output, output_encoding, published_array
from perception.runtime.frames import resize_output

__all__ = ["ReplayOptions", "FrameRecord", "ReplayResult", "replay", "output_topics", "uses_mounting",
           "ego_lane_centre", "path_msg"]

_IMAGE = "sensor_msgs/msg/Image"
_PATH = "nav_msgs/msg/Path"
_AHEAD = 2  # frames decoded ahead of the engine, and results waiting to be written


@dataclass(frozen=True)
class ReplayOptions:
    """How to read the input bag and what to write.

    Args:
        camera_topic: Image or CompressedImage topic; auto-detected when the bag has one.
        camera_info_topic: default ``<camera ns>/camera_info`` or the only CameraInfo topic.
        gt_prefix: ground-truth topics live below it (``/gt/segmentation`` ...).
        output_ns: output topics are ``<output_ns>/<task>``: the node's ``~/<task>`` when the
            node is called ``perception``.
        color_tasks: tasks that also get ``<task>/color`` (bgr8), as the node's parameter.
        compression: ``None`` or ``"zstd"`` (MCAP chunk compression).
        storage: ``"mcap"`` or ``"sqlite3"`` for a bag directory; a ``.mcap``/``.db3`` output
            path is a single storage file of that kind.
        mounting: ``calibration.Mounting``; with the bag's CameraInfo it enables ``lanes/path``.
        vehicle_frame: frame_id of ``lanes/path``.
        max_frames: stop after this many camera frames.
        evaluate: score against ground truth when the bag (or ``gt_samples``) has some.
        overlays: best and worst frames kept for the report's overlay grid (each).
        overwrite: replace an existing output bag (only once the new one is complete).
        progress: tqdm progress bar (frames/s).
    """

    camera_topic: str | None = None
    camera_info_topic: str | None = None
    gt_prefix: str = "/gt"
    output_ns: str = "/perception"
    color_tasks: tuple[str, ...] = ("segmentation",)
    compression: str | None = None
    storage: str = "mcap"
    mounting: Any = None
    vehicle_frame: str = "base_link"
    max_frames: int | None = None
    evaluate: bool = True
    overlays: int = 3
    overwrite: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        ns = self.output_ns
        if not ns.startswith("/") or (ns != "/" and ns.endswith("/")):
            raise ConfigError(f"output_ns must be an absolute namespace like /perception, got {ns!r}")
        if self.compression not in (None, "zstd"):
            raise ConfigError(f"compression must be None or 'zstd', got {self.compression!r}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {self.max_frames}")
        if self.overlays < 0:
            raise ConfigError(f"overlays must be >= 0, got {self.overlays}")
        object.__setattr__(self, "color_tasks", tuple(self.color_tasks))


@dataclass
class FrameRecord:
    """One replayed frame: stamp, timings (ms) and, with ground truth, its own metrics."""

    index: int
    stamp_ns: int
    engine_ms: float  # engine.logits: preprocessing, trunk and task slots
    post_ms: float  # post-processing to the frame's resolution, lane path, colour images
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    score: float | None = None  # mean headline metric (report.frame_score), None without labels

    @property
    def latency_ms(self) -> float:
        """What ``engine.infer`` would take for this frame."""
        return self.engine_ms + self.post_ms


@dataclass
class ReplayResult:
    input: Path
    output: Path
    camera_topic: str
    camera_msgtype: str
    backend: str
    tasks: list[str]
    topics: dict[str, str]  # output topic -> type
    frames: list[FrameRecord]
    seconds: float  # wall time of the frame loop (reading to writing)
    metrics: dict[str, float | int | None] = field(default_factory=dict)
    unlabelled: list[str] = field(default_factory=list)  # tasks without ground truth
    gt_source: str = ""  # "", "bag topics <prefix>/*" or the dataset spec
    depth_by_distance: list[dict[str, Any]] = field(default_factory=list)
    overlays: OverlayKeeper | None = None
    class_names: dict[str, list[str]] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return len(self.frames) / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------------------------
# output messages (the node's layout; ROS-free copies of ros2_nodes.perception_node's helpers)


def output_topics(tasks: Sequence[str], options: ReplayOptions, *, with_path: bool) -> dict[str, str]:
    """Output topic -> message type, in the order they are registered in the bag."""
    ns = options.output_ns.rstrip("/")
    out: dict[str, str] = {}
    for name in tasks:
        out[f"{ns}/{name}"] = _IMAGE
        if name in options.color_tasks:
            out[f"{ns}/{name}/color"] = _IMAGE
        if name == "lanes" and with_path:
            out[f"{ns}/lanes/path"] = _PATH
    return out


def path_msg(points: np.ndarray | None, header: Any, frame_id: str, typestore: Any) -> Any:
    """``nav_msgs/Path`` as the node publishes it: poses heading along the path, every pose with
    the path header; an empty path when ``points`` is None."""
    hdr = typestore.types["std_msgs/msg/Header"](stamp=header.stamp, frame_id=frame_id)
    pts = np.zeros((0, 3)) if points is None else points
    return make_path(pts, hdr, typestore, heading=True)


# --------------------------------------------------------------------------------------------
# scoring


class _RecordingMetrics(MetricSet):
    """A MetricSet that keeps the last per-frame row and what it was computed from."""

    def update(self, preds: Mapping[str, Any], targets: Mapping[str, Any]) -> dict[str, Any]:
        self.last = (super().update(preds, targets), dict(preds), dict(targets))
        return self.last[0]


# --------------------------------------------------------------------------------------------
# the pipeline


def _ahead(frames: Iterator[BagFrame], depth: int, stop: threading.Event) -> Iterator[BagFrame]:
    """Iterate ``frames`` in a thread, ``depth`` items ahead; errors re-raise in the consumer."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for frame in frames:
                if not put(("frame", frame)):
                    return
            put(("end", None))
        except BaseException as err:  # noqa: BLE001 - handed to the consumer thread
            put(("error", err))

    thread = threading.Thread(target=run, name="tadp-replay-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=10.0)


def uses_mounting(engine: Any) -> bool:
    """Whether the engine's outputs depend on a mounting: lanes/path, or depth with a height rule."""
    cfgs = [engine.model.tasks[n].cfg for n in engine.tasks]
    return "lanes" in engine.tasks or any(c.kind == "depth" and c.height_exponent > 0 for c in cfgs)


class _Sink:
    """Post-processing, scoring and writing of one frame (runs on the writer thread)."""

    def __init__(self, engine: Any, writer: BagOutputWriter, options: ReplayOptions,
                 topics: Mapping[str, str],
                 gt: Callable[[int, BagFrame], Mapping[str, Any] | None]) -> None:
        self.engine, self.writer, self.options = engine, writer, options
        self.ts = writer.typestore
        self.tasks = list(engine.tasks)
        heads = {n: engine.model.tasks[n] for n in self.tasks}
        self.kinds = {n: (h.kind, h.cfg) for n, h in heads.items()}
        self.cfgs = [h.cfg for h in heads.values()]
        self.metrics = _RecordingMetrics(metric_specs(self.cfgs)) if options.evaluate else None
        self.specs = metric_specs(self.cfgs)
        self.ns = options.output_ns.rstrip("/")
        self.with_path = any(t.endswith("/lanes/path") for t in topics)
        self.gt = gt
        self.seen: set[str] = set()
        self.depth_bins = DepthErrorByDistance()
        self.keeper = OverlayKeeper(options.overlays, self.kinds)
        self.records: list[FrameRecord] = []
        self._camera_key: Any = None
        self._net_camera: Any = None
        # Depth of a model with a height rule follows the mounting, as in the node.
        self.z_m = None if options.mounting is None else float(options.mounting.z_m)

    def _net_camera_for(self, info: Any, size_hw: tuple[int, int]) -> Any:
        """The camera model of the network's pixels, from the frame's CameraInfo (cached)."""
        camera = frame_camera(info, size_hw)
        if camera is None:
            return None
        key = (camera, size_hw)
        if key != self._camera_key:
            in_h, in_w = self.engine.input_size
            self._net_camera = camera.resized(in_w, in_h)
            self._camera_key = key
        return self._net_camera

    def __call__(self, index: int, frame: BagFrame, logits: dict[str, torch.Tensor],
                 engine_ms: float) -> None:
        record = FrameRecord(index, frame.stamp_ns, engine_ms, 0.0)
        sample = self.gt(index, frame) if self.metrics is not None else None
        scored: dict[str, np.ndarray] = {}
        if sample is not None:
            if self.z_m is not None:  # scored with the height the outputs are written with
                sample = {**sample, "meta": {**sample.get("meta", {}), "mounting": {"z_m": self.z_m}}}
            self.seen |= score_outputs(self.engine.model, logits, [sample], self.cfgs, self.metrics)
            row, preds, targets = self.metrics.last
            record.metrics = row
            record.score = frame_score(row, self.specs)
            if "depth" in preds and self.specs.get("depth", {}).get("kind") == "depth":
                self.depth_bins.update(preds["depth"], targets["depth"],
                                       self.specs["depth"].get("max_depth"))
            # Labels at the network resolution: score_outputs post-processed exactly what the
            # outputs need (same logits, same call); reuse it instead of a second argmax per task.
            merged = bool(sample.get("meta", {}).get("drivable_binary"))
            scored = {n: p for n, p in preds.items() if p.shape == tuple(self.engine.input_size)
                      and not (merged and self.kinds[n][1].kind == "drivable")}
        t0 = time.perf_counter()
        size = frame.image.shape[:2]
        # A Humble header with the input's stamp and frame_id (ROS 1 headers also carry a seq).
        header = make_header(stamp_to_ns(frame.header.stamp), frame.header.frame_id, self.ts)
        stamp_ns, ns = frame.stamp_ns, self.ns
        raws: dict[str, np.ndarray] = {}
        camera = self._net_camera_for(frame.camera_info, size)
        focal = None if camera is None else camera.fy  # depth follows it, as in the node
        for name in self.tasks:
            kind, cfg = self.kinds[name]
            raw = scored.get(name)
            if raw is None:  # network resolution
                raw = kind.postprocess(logits[name], cfg, focal_px=focal, height_m=self.z_m)[0].cpu().numpy()
            raws[name] = raw
            out = published_array(resize_output(raw, size, kind.output_type))
            self.writer.write_message(f"{ns}/{name}", stamp_ns,
                                      make_image(out, header, output_encoding(out) or "passthrough", self.ts))
            if name in self.options.color_tasks:
                color = colorize_output(kind, cfg, raw, out, size=size)
                self.writer.write_message(f"{ns}/{name}/color", stamp_ns,
                                          make_image(color, header, "bgr8", self.ts))
        if self.with_path and "lanes" in raws and camera is not None:
            from calibration.lanes import mask_to_polylines

            lines = mask_to_polylines(raws["lanes"] > 0, camera, self.options.mounting)
            self.writer.write_message(f"{ns}/lanes/path", stamp_ns, path_msg(
                ego_lane_centre(lines), header, self.options.vehicle_frame, self.ts))
        record.post_ms = (time.perf_counter() - t0) * 1e3
        self.keeper.offer(record, frame.image, raws, sample)
        self.records.append(record)


def replay(engine: Any, in_bag: str | Path, out_bag: str | Path,
           options: ReplayOptions | None = None, *, gt_samples: Any = None,
           gt_name: str = "") -> ReplayResult:
    """Replay a camera bag through ``engine`` into a new bag; score against ground truth.

    Args:
        engine: a :class:`~perception.runtime.engine.PerceptionEngine`.
        in_bag: rosbag2 directory, ``.mcap``/``.db3`` file or ROS 1 ``.bag``
            (see :func:`~perception.evaluation.bag_io.open_camera_bag`).
        out_bag: ``X.mcap`` (one MCAP file) or a directory (a rosbag2 bag); written to a
            temporary path and renamed when complete, so a failure leaves nothing.
        options: see :class:`ReplayOptions`.
        gt_samples: ground truth from a dataset instead of the bag's topics: sample ``i``
            (``dataset[i]``, the common sample format) labels camera frame ``i``.
        gt_name: how to name ``gt_samples`` in the report.

    Raises:
        DataError: the bag cannot be read (no/ambiguous camera topic, wrong type, corrupt or
            truncated storage), a frame cannot be decoded, or the output exists.
        ConfigError: bad options (e.g. colour for a task the engine does not run).
    """
    options = options or ReplayOptions()
    in_bag, out_bag = Path(in_bag), Path(out_bag)
    if in_bag.resolve() == out_bag.resolve():
        raise DataError(f"output bag {out_bag} is the input bag; choose another --out")
    if out_bag.exists() and not options.overwrite:
        raise DataError(f"output {out_bag} exists already; remove it or pass --overwrite")
    if options.mounting is not None and not uses_mounting(engine):
        raise ConfigError(f"a mounting was given, but the engine runs neither 'lanes' (for "
                          f"lanes/path) nor a depth task trained with a height rule "
                          f"(tasks: {engine.tasks})")
    state: dict[str, Any] = {}

    def build(bag_dir: Path, replace: bool) -> None:
        with open_camera_bag(in_bag, options.camera_topic, options.gt_prefix,
                             camera_info_topic=options.camera_info_topic) as bag, \
                BagOutputWriter(bag_dir, storage=options.storage, compression=options.compression,
                                overwrite=replace) as writer:
            state["camera"] = (bag.camera_topic, bag.camera_msgtype)
            with_path = options.mounting is not None and "lanes" in engine.tasks
            if with_path and not bag.camera_info_topic:
                import warnings

                warnings.warn(f"bag {bag.path} has no CameraInfo topic: lanes/path needs the "
                              "camera intrinsics and is not written", stacklevel=3)
                with_path = False
            topics = output_topics(engine.tasks, options, with_path=with_path)
            for topic, msgtype in topics.items():
                writer.add_connection(topic, msgtype)
            if gt_samples is not None and options.evaluate:
                by_index = samples_by_index(gt_samples)
                gt: Callable[[int, BagFrame], Any] = lambda i, _frame: by_index(i)  # noqa: E731
                state["gt_source"] = gt_name or "dataset"
            elif bag.gt_topics and options.evaluate:
                where = str(bag.path)
                gt = lambda _i, frame: frame_to_sample(frame, where) if frame.gt else None  # noqa: E731
                state["gt_source"] = f"bag topics {options.gt_prefix.rstrip('/')}/*"
            else:
                gt = lambda _i, _frame: None  # noqa: E731
                state["gt_source"] = ""
            sink = _Sink(engine, writer, options, topics, gt)
            state["sink"], state["topics"] = sink, topics
            state["seconds"] = _run(engine, bag, sink, options)

    place_storage_file(build, out_bag, options.overwrite)
    sink: _Sink = state["sink"]
    if (gt_samples is not None and options.evaluate and options.max_frames is None
            and len(gt_samples) != len(sink.records)):
        import warnings

        warnings.warn(f"the ground-truth dataset {gt_name or ''} has {len(gt_samples)} samples "
                      f"but the bag {len(sink.records)} frames; only the first "
                      f"{len(sink.records)} were used", stacklevel=2)
    metrics: dict[str, Any] = {}
    unlabelled: list[str] = []
    if sink.metrics is not None and state["gt_source"]:
        metrics = {k: v for k, v in sink.metrics.compute().items()
                   if k.split("/", 1)[0] in sink.seen}
        unlabelled = [n for n in sink.metrics.tasks if n not in sink.seen]
    class_names = {n: list(kind.class_names(cfg)) for n, (kind, cfg) in sink.kinds.items()}
    return ReplayResult(
        input=in_bag, output=out_bag, camera_topic=state["camera"][0],
        camera_msgtype=state["camera"][1], backend=engine.backend.describe(),
        tasks=list(engine.tasks), topics=dict(state["topics"]), frames=sink.records,
        seconds=state["seconds"], metrics=metrics, unlabelled=unlabelled,
        gt_source=state["gt_source"], depth_by_distance=sink.depth_bins.rows(),
        overlays=sink.keeper, class_names=class_names)


def _run(engine: Any, bag: Any, sink: _Sink, options: ReplayOptions) -> float:
    """The frame loop; returns its wall time in seconds."""
    total = len(bag) if options.max_frames is None else min(len(bag), options.max_frames)
    stop = threading.Event()
    frames = _ahead(iter(bag), _AHEAD, stop)
    bar = None
    if options.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="replay", unit="frame", dynamic_ncols=True)
    pending: deque[Future] = deque()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tadp-replay-write")
    start = time.perf_counter()
    try:
        for index, frame in enumerate(frames):
            if options.max_frames is not None and index >= options.max_frames:
                break
            t0 = time.perf_counter()
            logits = engine.logits([frame.image])
            engine_ms = (time.perf_counter() - t0) * 1e3
            pending.append(pool.submit(sink, index, frame, logits, engine_ms))
            while len(pending) > _AHEAD or (pending and pending[0].done()):
                pending.popleft().result()
                if bar is not None:
                    bar.update(1)
        while pending:
            pending.popleft().result()
            if bar is not None:
                bar.update(1)
        return time.perf_counter() - start
    finally:
        stop.set()
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)
        frames.close()  # stops and joins the reading thread
        if bar is not None:
            bar.close()


# --------------------------------------------------------------------------------------------
# live replay: parity of the node's recorded outputs with the offline outputs


# Same model and backend on both sides: class-id maps may differ on this fraction of pixels
# (argmax ties flipped by a different thread count), metres by this much.
PARITY_TOLERANCE = {"ids": 1e-3, "metres": 1e-3}


def live_parity(engine: Any, in_bag: str | Path, live_bag: str | Path, *,
                node_ns: str = "/perception", camera_topic: str | None = None,
                gt_prefix: str = "/gt", tolerance: Mapping[str, float] | None = None
                ) -> dict[str, dict[str, Any]]:
    """Compare the outputs a live node published (recorded by ``tadp replay --realtime``) with
    ``engine.infer`` on the same frames of ``in_bag``.

    Returns:
        Per task topic found in ``live_bag``: ``frames`` compared, ``max_mismatch`` (fraction of
        pixels whose class id differs, id maps) or ``max_abs`` (metres), and ``ok`` (within
        ``tolerance``, default :data:`PARITY_TOLERANCE`).

    Raises:
        DataError: a bag cannot be read.
    """
    from perception.evaluation.bag_io import BagReader
    from perception.ros_format import image_from_msg

    tol = {**PARITY_TOLERANCE, **(tolerance or {})}
    ns = node_ns.rstrip("/")
    kinds = {f"{ns}/{n}": engine.model.tasks[n].kind for n in engine.tasks}
    stats: dict[str, dict[str, Any]] = {}
    with BagReader(live_bag) as live, open_camera_bag(in_bag, camera_topic, gt_prefix) as cam:
        topics = [t for t in live.topics if t in kinds]
        frames = iter(cam)
        frame: BagFrame | None = None
        expected: dict[str, np.ndarray] = {}
        for topic, msgtype, stamp_ns, raw in live.messages(topics):
            while frame is None or frame.stamp_ns < stamp_ns:
                frame = next(frames, None)
                if frame is None:
                    raise DataError(f"live bag {live_bag}: output at {stamp_ns} ns has no "
                                    f"input frame in {in_bag}")
                expected = {}
            if frame.stamp_ns != stamp_ns:
                raise DataError(f"live bag {live_bag}: output at {stamp_ns} ns has no input "
                                f"frame in {in_bag} with that stamp")
            if not expected:  # with the frame's CameraInfo, as the node applies it
                own = engine.camera
                engine.camera = frame_camera(frame.camera_info, frame.image.shape[:2]) or own
                try:
                    outputs = engine.infer(frame.image).outputs
                finally:
                    engine.camera = own
                expected = {f"{ns}/{k}": v for k, v in outputs.items()}
            got = image_from_msg(live.deserialize(raw, msgtype, topic))
            want = expected[topic]
            row = stats.setdefault(topic, {"frames": 0, "kind": kinds[topic].output_type})
            row["frames"] += 1
            if got.shape != want.shape:
                row["shape_mismatch"] = [list(got.shape), list(want.shape)]
                continue
            if kinds[topic].output_type == "ids":
                value = float(np.mean(got != want))
                row["max_mismatch"] = max(row.get("max_mismatch", 0.0), value)
            else:
                value = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
                row["max_abs"] = max(row.get("max_abs", 0.0), value)
    for row in stats.values():
        limit = tol["ids"] if row["kind"] == "ids" else tol["metres"]
        worst = row.get("max_mismatch", row.get("max_abs", 0.0))
        row["ok"] = "shape_mismatch" not in row and worst <= limit
    return stats
