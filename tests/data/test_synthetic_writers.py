"""Synthetic dataset and rosbag2 writers: determinism, layout, readability (issue 3)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from perception.data.readers import SyntheticDataset
from perception.data.sample import validate_sample
from perception.data.synthetic import SynthConfig, iter_sequence, write_bag, write_dataset
from perception.data.synthetic.bag_writer import (
    CAMERA_TOPIC,
    COMPRESSED_TOPIC,
    GT_TOPICS,
    INFO_TOPIC,
)
from perception.errors import ConfigError
from perception.ros_format.image import compressed_from_msg, image_from_msg

SMALL = SynthConfig(height=96, width=192)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_datasets(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", 5, seed=7, config=SMALL, frames_per_world=2)
    b = write_dataset(tmp_path / "b", 5, seed=7, config=SMALL, frames_per_world=2, workers=2)
    c = write_dataset(tmp_path / "c", 5, seed=8, config=SMALL, frames_per_world=2)
    files_a, files_b = _tree_bytes(a), _tree_bytes(b)
    assert files_a.keys() == files_b.keys()
    assert all(files_a[k] == files_b[k] for k in files_a)
    assert _tree_bytes(c)["image/000000.png"] != files_a["image/000000.png"]
    assert not list(tmp_path.glob(".*partial*"))


def test_dataset_reads_back_in_the_common_format(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", 3, seed=1, config=SMALL)
    info = json.loads((root / "dataset.json").read_text())
    assert info["count"] == 3 and [c["name"] for c in info["classes"]][0] == "road"
    ds = SyntheticDataset(root)
    assert len(ds) == 3
    sample = ds[1]
    validate_sample(sample)
    assert sample["image"].shape == (96, 192, 3)
    assert set(sample) >= {"segmentation", "depth", "drivable", "lanes", "lane_instances", "corridor"}
    assert sample["meta"]["source"] == "synthetic" and len(sample["meta"]["K"]) == 3
    depth = sample["depth"]
    assert depth.dtype == np.float32 and 0 < depth.max() <= 65.535
    only = SyntheticDataset(root, tasks=("depth",))[0]
    assert set(only) == {"image", "depth", "meta"}


def test_dataset_depth_npy_keeps_full_range(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ds", 1, seed=2, config=SMALL, depth_format="npy")
    assert SyntheticDataset(root, tasks=("depth",))[0]["depth"].max() > 65.535


def test_existing_output_is_refused_and_untouched(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        write_dataset(out, 1, config=SMALL)
    assert (out / "keep.txt").read_text() == "x"


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("compressed", [False, True])
def test_bag_topics_types_counts_stamps(tmp_path: Path, storage: str, compressed: bool) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    frames, fps = 4, 5.0
    bag = write_bag(tmp_path / "bag", frames, fps, storage=storage, compressed=compressed, seed=3, config=SMALL)
    cam_topic = COMPRESSED_TOPIC if compressed else CAMERA_TOPIC
    want = {cam_topic: "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image",
            INFO_TOPIC: "sensor_msgs/msg/CameraInfo", **{t: "sensor_msgs/msg/Image" for t in GT_TOPICS}}
    rendered = list(iter_sequence(3, frames, fps, SMALL))
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == want
        assert all(c.msgcount == frames for c in reader.connections)
        stamps: dict[str, list[int]] = {}
        for conn, t_ns, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert stamp == t_ns and msg.header.frame_id == "camera_optical_frame"
            stamps.setdefault(conn.topic, []).append(stamp)
            k = len(stamps[conn.topic]) - 1
            if conn.topic == CAMERA_TOPIC:
                assert np.array_equal(image_from_msg(msg)[..., ::-1], rendered[k].image)
            elif conn.topic == COMPRESSED_TOPIC:
                decoded = compressed_from_msg(msg)[..., ::-1].astype(float)
                assert np.abs(decoded - rendered[k].image).mean() < 4.0
            elif conn.topic == "/gt/depth":
                assert np.array_equal(image_from_msg(msg), rendered[k].depth)
            elif conn.topic == "/gt/segmentation":
                assert np.array_equal(image_from_msg(msg), rendered[k].segmentation)
            elif conn.topic == INFO_TOPIC:
                assert np.allclose(np.reshape(msg.k, (3, 3)), rendered[k].camera.K)
    period = round(1e9 / fps)
    for topic, values in stamps.items():
        assert values == [values[0] + i * period for i in range(frames)], topic


def test_bag_camera_message_equals_the_dataset_image(tmp_path: Path) -> None:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    ds = SyntheticDataset(write_dataset(tmp_path / "ds", 3, seed=9, config=SMALL, fps=10.0))
    bag = write_bag(tmp_path / "bag", 3, 10.0, storage="sqlite3", seed=9, config=SMALL)
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE)) as reader:
        conns = [c for c in reader.connections if c.topic in (CAMERA_TOPIC, "/gt/lanes")]
        seen = 0
        for conn, t_ns, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            k = [i for i in range(len(ds)) if ds[i]["meta"]["stamp_ns"] == t_ns]
            assert len(k) == 1
            sample = ds[k[0]]
            if conn.topic == CAMERA_TOPIC:
                assert np.array_equal(image_from_msg(msg)[..., ::-1], sample["image"])
            else:
                assert np.array_equal(image_from_msg(msg), sample["lane_instances"])
            seen += 1
    assert seen == 6


def test_mcap_bag_opens_with_the_mcap_reader(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    bag = write_bag(tmp_path / "bag", 3, 10.0, storage="mcap", seed=4, config=SMALL)
    (mcap_file,) = bag.glob("*.mcap")
    counts: dict[str, int] = {}
    with open(mcap_file, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        schemas = {s.name for s in summary.schemas.values()}
        assert {"sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"} <= schemas
        for _schema, channel, message in reader.iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            assert message.log_time >= 1_704_067_200 * 10**9
    assert counts == {CAMERA_TOPIC: 3, INFO_TOPIC: 3, **{t: 3 for t in GT_TOPICS}}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_same_seed_gives_byte_identical_bags(tmp_path: Path, storage: str, monkeypatch) -> None:
    a = write_bag(tmp_path / "a" / "bag", 3, 10.0, storage=storage, seed=5, config=SMALL)
    # Another process writes the same bag (the temporary folder is named after the process id).
    monkeypatch.setattr("perception.data.synthetic.dataset_writer.os.getpid", lambda: 4242)
    b = write_bag(tmp_path / "b" / "bag", 3, 10.0, storage=storage, seed=5, config=SMALL, workers=2)
    assert _tree_bytes(a) == _tree_bytes(b)
    assert not list(tmp_path.glob("*/.*partial*"))


def test_bad_storage_is_refused_before_writing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mcap, sqlite3"):
        write_bag(tmp_path / "bag", 2, 10.0, storage="rosbag1")
    assert not any(tmp_path.iterdir())
