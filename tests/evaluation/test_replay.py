"""Bag replay (issue 8): metrics equal ``evaluate``'s on the same frames (one code path), the output
bag has the node's topics and types with every message stamped like its input, outputs equal
``engine.infer``, two replays give byte-identical message data, and a failure leaves nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import test_replay_world as world
from rosbags.highlevel import AnyReader
from rosbags.rosbag1 import Writer as Writer1
from rosbags.typesys import Stores, get_typestore
from test_replay_world import FRAMES, SIZE, ReplayWorld

from calibration.camera import Mounting
from calibration.io import camera_info_from_msg
from perception.data.readers import SyntheticDataset
from perception.errors import ConfigError, DataError
from perception.evaluation.bag_frames import bag_samples
from perception.evaluation.bag_io import open_camera_bag, stamp_to_ns
from perception.evaluation.evaluate import evaluate
from perception.evaluation.replay import ReplayOptions, replay
from perception.evaluation.report import write_report
from perception.runtime.engine import PerceptionEngine
from perception.training.model_file import load_model

# The shared session fixtures (test_replay_world.py), found by pytest as module attributes.
replay_world, one_thread = world.replay_world, world.one_thread
TS = get_typestore(Stores.ROS2_HUMBLE)
NODE_TOPICS = {  # the node's ~/<task>, ~/segmentation/color (default color_tasks)
    "/perception/segmentation": "sensor_msgs/msg/Image",
    "/perception/segmentation/color": "sensor_msgs/msg/Image",
    "/perception/depth": "sensor_msgs/msg/Image",
    "/perception/drivable": "sensor_msgs/msg/Image",
    "/perception/lanes": "sensor_msgs/msg/Image",
}
ENCODINGS = {"segmentation": "mono8", "segmentation/color": "bgr8", "depth": "32FC1",
             "drivable": "mono8", "lanes": "mono8"}


@pytest.fixture(scope="module")
def engine(replay_world: ReplayWorld) -> PerceptionEngine:
    return PerceptionEngine(load_model(replay_world.model), "torch", threads=1)


def read_bag(path: Path) -> list[tuple[str, int, bytes, object]]:
    """(topic, bag time, raw CDR, message) of every message, in bag order."""
    out = []
    with AnyReader([path], default_typestore=TS) as reader:
        for conn, t, raw in reader.messages():
            out.append((conn.topic, t, bytes(raw), reader.deserialize(raw, conn.msgtype)))
    return out


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or p.name.startswith("out"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_metrics_equal_evaluate_on_the_same_frames(replay_world: ReplayWorld, engine, storage: str,
                                                   tmp_path: Path, one_thread) -> None:
    result = replay(engine, replay_world.bags[storage], tmp_path / "out.mcap")
    assert len(result.frames) == FRAMES and result.gt_source == "bag topics /gt/*"
    assert result.unlabelled == []
    # The dataset `tadp synth dataset --fps` writes for the same seed, and a dataset built from
    # the bag's own frames: evaluate() through the same engine, one frame per call like replay.
    from_files = evaluate(engine.model, SyntheticDataset(replay_world.dataset), engine=engine,
                          batch_size=1)
    from_bag = evaluate(engine.model, bag_samples(replay_world.bags[storage]), engine=engine,
                        batch_size=1)
    assert result.metrics == from_files.metrics == from_bag.metrics
    # ... and all three followed the frames' camera (the model records focal_px).
    fixed_scale = evaluate(engine.model, bag_samples(replay_world.bags[storage]), engine=engine,
                           batch_size=1, intrinsics=False)
    assert fixed_scale.metrics["depth/abs_rel"] != result.metrics["depth/abs_rel"]
    assert {"segmentation/miou", "depth/abs_rel", "drivable/miou", "lanes/iou",
            "segmentation/iou/road"} <= set(result.metrics)
    # Per-frame rows are MetricSet.update's, one per frame, for every scored task.
    assert [f.index for f in result.frames] == list(range(FRAMES))
    assert all(f.metrics["lanes/iou"] is not None and f.score is not None for f in result.frames)


def test_output_bag_is_the_nodes_layout_stamped_like_the_input(replay_world: ReplayWorld, engine,
                                                               tmp_path: Path, one_thread) -> None:
    bag = replay_world.bags["mcap"]
    out = tmp_path / "out.mcap"
    result = replay(engine, bag, out)
    assert result.topics == NODE_TOPICS
    with open_camera_bag(bag) as cam:
        inputs = list(cam)
    messages = read_bag(out)
    with AnyReader([out], default_typestore=TS) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == NODE_TOPICS
    assert len(messages) == FRAMES * len(NODE_TOPICS)
    by_stamp: dict[int, dict[str, object]] = {}
    for topic, t, _, msg in messages:
        assert stamp_to_ns(msg.header.stamp) == t  # bag time = header stamp = the input's
        by_stamp.setdefault(t, {})[topic.removeprefix("/perception/")] = msg
    assert sorted(by_stamp) == [f.stamp_ns for f in inputs]
    for frame in inputs:
        outs = by_stamp[frame.stamp_ns]
        assert set(outs) == set(ENCODINGS)
        engine.camera = camera_info_from_msg(frame.camera_info)  # as the node, from CameraInfo
        try:
            expected = engine.infer(frame.image).outputs  # what the node publishes for this frame
        finally:
            engine.camera = None
        for name, msg in outs.items():
            assert msg.header.frame_id == frame.header.frame_id == "camera_optical_frame"
            assert (msg.height, msg.width) == SIZE and msg.encoding == ENCODINGS[name]
            assert msg.is_bigendian == 0
            if name in expected:
                arr = expected[name]
                assert msg.step == arr.strides[0]
                np.testing.assert_array_equal(
                    np.frombuffer(msg.data, arr.dtype).reshape(arr.shape), arr, err_msg=name)


def test_two_replays_give_identical_message_data(replay_world: ReplayWorld, engine, tmp_path: Path,
                                                 one_thread) -> None:
    """Plain bag directory vs zstd-compressed MCAP file: the same bytes in every message."""
    first = replay(engine, replay_world.bags["sqlite3"], tmp_path / "a")
    second = replay(engine, replay_world.bags["sqlite3"], tmp_path / "b.mcap",
                    ReplayOptions(compression="zstd"))
    assert (tmp_path / "a" / "metadata.yaml").is_file() and (tmp_path / "b.mcap").is_file()
    a = [(topic, t, raw) for topic, t, raw, _ in read_bag(tmp_path / "a")]
    b = [(topic, t, raw) for topic, t, raw, _ in read_bag(tmp_path / "b.mcap")]
    assert len(a) == FRAMES * len(NODE_TOPICS) and a == b
    assert first.metrics == second.metrics


def test_compressed_camera_and_lanes_path(replay_world: ReplayWorld, engine, tmp_path: Path,
                                          one_thread) -> None:
    mounting = Mounting(x_m=1.5, y_m=0.0, z_m=1.4, roll_rad=0.0, pitch_rad=0.05, yaw_rad=0.0)
    options = ReplayOptions(mounting=mounting, vehicle_frame="base_link", color_tasks=(),
                            output_ns="/cam/perception")
    result = replay(engine, replay_world.bags["compressed"], tmp_path / "out.mcap", options)
    assert result.camera_topic == "/camera/image_raw/compressed"
    assert result.camera_msgtype == "sensor_msgs/msg/CompressedImage"
    assert result.topics["/cam/perception/lanes/path"] == "nav_msgs/msg/Path"
    assert "/cam/perception/segmentation/color" not in result.topics
    paths = [(t, msg) for topic, t, _, msg in read_bag(tmp_path / "out.mcap")
             if topic.endswith("/lanes/path")]
    assert len(paths) == FRAMES
    for t, msg in paths:
        assert msg.header.frame_id == "base_link" and stamp_to_ns(msg.header.stamp) == t
        for pose in msg.poses:
            q = pose.pose.orientation
            assert pose.header.frame_id == "base_link"
            assert q.x == q.y == 0.0 and abs(q.z**2 + q.w**2 - 1) < 1e-9
    # JPEG frames: scored against the exact ground truth all the same.
    assert result.metrics["segmentation/miou"] is not None


def test_depth_follows_the_mounting_height(replay_world: ReplayWorld, tmp_path: Path,
                                          one_thread) -> None:
    """A mounting also serves depth of a model trained with a height rule: written and scored
    depth are scaled by z_m / height_m (beta 1), with no lanes task needed. A mounting that
    nothing uses is refused before any output exists."""
    def depth_engine(rule: bool) -> PerceptionEngine:
        model = load_model(replay_world.model)
        model.update_task("depth", height_m=1.2, height_exponent=1.0 if rule else 0.0)
        return PerceptionEngine(model, "torch", tasks=["depth"], threads=1)

    def depths(path: Path) -> list[np.ndarray]:
        return [np.frombuffer(msg.data, np.float32) for topic, _, _, msg in read_bag(path)
                if topic == "/perception/depth"]

    engine = depth_engine(rule=True)
    mounting = Mounting(x_m=1.5, y_m=0.0, z_m=1.8, roll_rad=0.0, pitch_rad=0.0, yaw_rad=0.0)
    plain = replay(engine, replay_world.bags["mcap"], tmp_path / "plain.mcap",
                   ReplayOptions(max_frames=2, color_tasks=()))
    high = replay(engine, replay_world.bags["mcap"], tmp_path / "high.mcap",
                  ReplayOptions(max_frames=2, color_tasks=(), mounting=mounting))
    pairs = list(zip(depths(tmp_path / "plain.mcap"), depths(tmp_path / "high.mcap"), strict=True))
    assert len(pairs) == 2
    max_m = engine.model.cfg.task("depth").max_depth_m
    for a, b in pairs:
        inside = a * 1.5 < 0.99 * max_m
        assert inside.mean() > 0.5
        np.testing.assert_allclose(b[inside], a[inside] * 1.5, rtol=1e-5)
    assert high.metrics["depth/abs_rel"] != plain.metrics["depth/abs_rel"]
    with pytest.raises(ConfigError, match="a mounting was given, but the engine runs neither 'lanes'"):
        replay(depth_engine(rule=False), replay_world.bags["mcap"], tmp_path / "none.mcap",
               ReplayOptions(max_frames=2, mounting=mounting))
    assert not (tmp_path / "none.mcap").exists()


def test_ground_truth_from_a_dataset(replay_world: ReplayWorld, engine, tmp_path: Path,
                                     one_thread) -> None:
    from_topics = replay(engine, replay_world.bags["mcap"], tmp_path / "a.mcap")
    # The dataset's labels take precedence over the bag's /gt topics.
    from_dataset = replay(engine, replay_world.bags["mcap"], tmp_path / "b.mcap",
                          gt_samples=SyntheticDataset(replay_world.dataset), gt_name="synth")
    assert from_dataset.gt_source == "synth" and from_dataset.metrics == from_topics.metrics
    short = [SyntheticDataset(replay_world.dataset)[0]]
    with pytest.raises(DataError, match="ground-truth dataset has 1 samples but the bag has more"):
        replay(engine, replay_world.bags["mcap"], tmp_path / "c.mcap", gt_samples=short)
    assert not (tmp_path / "c.mcap").exists()


def test_ros1_bag_without_ground_truth(engine, tmp_path: Path, one_thread) -> None:
    ts1 = get_typestore(Stores.ROS1_NOETIC)
    path = tmp_path / "cam.bag"
    t0, period = 1_600_000_000_000_000_000, 50_000_000
    rng = np.random.default_rng(0)
    with Writer1(path) as w:
        conn = w.add_connection("/front/image_raw", "sensor_msgs/msg/Image", typestore=ts1)
        for i in range(3):
            sec, nsec = divmod(t0 + i * period, 1_000_000_000)
            hdr = ts1.types["std_msgs/msg/Header"](
                seq=i, stamp=ts1.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                frame_id="front")
            img = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)  # not the model's size
            msg = ts1.types["sensor_msgs/msg/Image"](
                header=hdr, height=48, width=80, encoding="rgb8", is_bigendian=0, step=240,
                data=img.reshape(-1))
            w.write(conn, t0 + i * period + 1_000, ts1.serialize_ros1(msg, conn.msgtype))
    result = replay(engine, path, tmp_path / "out.mcap")
    assert result.metrics == {} and result.gt_source == ""
    stamps = {topic: [] for topic in NODE_TOPICS}
    for topic, t, _, msg in read_bag(tmp_path / "out.mcap"):
        assert (msg.height, msg.width, msg.header.frame_id) == (48, 80, "front")
        stamps[topic].append(t)
    assert all(v == [t0 + i * period for i in range(3)] for v in stamps.values())


class _FailingEngine:
    """The real engine, failing on the third frame (a stand-in for a mid-bag error)."""

    def __init__(self, engine: PerceptionEngine) -> None:
        self._engine, self.calls = engine, 0

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def logits(self, frames, **kwargs):
        self.calls += 1
        if self.calls == 3:
            raise DataError("frame 3 is broken")
        return self._engine.logits(frames, **kwargs)


@pytest.mark.parametrize("out_name", ["out.mcap", "out_dir"])
def test_failure_leaves_no_output(replay_world: ReplayWorld, engine, tmp_path: Path, out_name: str,
                                  one_thread) -> None:
    with pytest.raises(DataError, match="frame 3 is broken"):
        replay(_FailingEngine(engine), replay_world.bags["mcap"], tmp_path / out_name)
    assert leftovers(tmp_path) == []
    # An existing output is refused up front, and replaced only by a complete new one.
    (tmp_path / "out.mcap").write_bytes(b"previous")
    with pytest.raises(DataError, match="exists already"):
        replay(engine, replay_world.bags["mcap"], tmp_path / "out.mcap")
    with pytest.raises(DataError, match="frame 3 is broken"):
        replay(_FailingEngine(engine), replay_world.bags["mcap"], tmp_path / "out.mcap",
               ReplayOptions(overwrite=True))
    assert (tmp_path / "out.mcap").read_bytes() == b"previous"
    assert leftovers(tmp_path) == ["out.mcap"]


def test_report_files(replay_world: ReplayWorld, engine, tmp_path: Path, one_thread) -> None:
    result = replay(engine, replay_world.bags["mcap"], tmp_path / "out.mcap",
                    ReplayOptions(overlays=2, max_frames=5))
    report = write_report(result, tmp_path / "report", extra={"model": "tiny"})
    names = sorted(p.name for p in report.iterdir())
    assert names == ["depth_error.png", "latency.png", "metrics.json", "overlays.png",
                     "per_class_iou.png", "report.md"]
    data = json.loads((report / "metrics.json").read_text())
    assert data["schema_version"] == 1 and data["model"] == "tiny"
    assert data["metrics"] == json.loads(json.dumps(result.metrics))
    assert len(data["frames"]) == 5 and data["throughput"]["frames"] == 5
    assert [f["index"] for f in data["best_frames"]] == [f.index for f in sorted(
        result.frames, key=lambda f: -f.score)[:2]]
    assert len(data["worst_frames"]) == 2
    assert data["depth_by_distance"] and all(r["pixels"] > 0 for r in data["depth_by_distance"])
    text = (report / "report.md").read_text()
    for needle in ("## Throughput and latency", "## Metrics", "| segmentation | miou |",
                   "## Best frames", "![per-class IoU](per_class_iou.png)", "overlays.png"):
        assert needle in text
    import cv2

    grid = cv2.imread(str(report / "overlays.png"))
    assert grid.shape[0] > 4 * SIZE[0] and grid.shape[1] > 9 * 256  # 4 rows; input + 4 x 2 tiles
    with pytest.raises(DataError, match="exists already"):
        write_report(result, report)
    # Without ground truth: no metric figures, evenly spaced overlays of input and prediction.
    plain = replay(engine, replay_world.bags["mcap"], tmp_path / "plain.mcap",
                   ReplayOptions(evaluate=False))
    report2 = write_report(plain, tmp_path / "report2")
    assert sorted(p.name for p in report2.iterdir()) == ["latency.png", "metrics.json",
                                                        "overlays.png", "report.md"]
    assert "ground truth: none" in (report2 / "report.md").read_text()


@pytest.mark.slow  # exports the trunk and slots to ONNX (~20 s cold on 2 busy cores)
def test_onnxruntime_metrics_equal_evaluate(replay_world: ReplayWorld, tmp_path: Path,
                                            one_thread) -> None:
    pytest.importorskip("onnxruntime")
    ort = PerceptionEngine(load_model(replay_world.model), "onnxruntime", threads=1,
                           cache_dir=tmp_path / "cache")
    result = replay(ort, replay_world.bags["sqlite3"], tmp_path / "out.mcap")
    expected = evaluate(ort.model, SyntheticDataset(replay_world.dataset), engine=ort, batch_size=1)
    assert result.metrics == expected.metrics and result.metrics["lanes/iou"] is not None


@pytest.mark.ros
def test_lane_path_is_the_nodes() -> None:
    """Replay's ROS-free copies of the node's ego-lane centre line and Path builder agree with
    ``ros2_nodes.perception_node`` (the node's module imports rclpy; replay must not)."""
    pytest.importorskip("rclpy")
    from perception.evaluation.bag_io import make_header
    from perception.evaluation.replay import ego_lane_centre, path_msg
    from ros2_nodes import convert
    from ros2_nodes import perception_node as node

    xs = np.linspace(3.0, 30.0, 12)
    right = np.column_stack([xs, -1.8 + 0.01 * xs**1.5, np.zeros_like(xs)])
    left = np.column_stack([xs[2:], 1.7 + 0.012 * xs[2:] ** 1.5, np.zeros(10)])
    far_left = left + [0.0, 3.5, 0.0]
    for lines in ([right, left, far_left], [right], [], None, [left, right[::-1][:0]]):
        ours, theirs = ego_lane_centre(lines), node.ego_lane_centre(lines)
        assert (ours is None) == (theirs is None)
        if ours is not None:
            np.testing.assert_array_equal(ours, theirs)
    points = ego_lane_centre([right, left])
    header = make_header(1_700_000_000_123_456_789, "cam")
    ours = path_msg(points, header, "base_link", TS)
    theirs = convert.path_msg(points, header, "base_link")
    assert len(ours.poses) == len(theirs.poses) > 5
    assert (ours.header.frame_id, ours.header.stamp.sec, ours.header.stamp.nanosec) == (
        theirs.header.frame_id, theirs.header.stamp.sec, theirs.header.stamp.nanosec)
    for a, b in zip(ours.poses, theirs.poses, strict=True):
        assert a.header.frame_id == b.header.frame_id == "base_link"
        for field in ("x", "y", "z"):
            assert getattr(a.pose.position, field) == getattr(b.pose.position, field)
        for field in ("x", "y", "z", "w"):
            assert getattr(a.pose.orientation, field) == getattr(b.pose.orientation, field)
