"""``tadp replay`` and ``tadp bag-from-images`` (issue 8): the CLI's metrics equal ``tadp eval``'s on
the same frames, real frames (BDD100K, TuSimple, Cityscapes) become a bag that replays, and every
foreign-bag case ends with one clear line, exit status 2, no traceback and no output left."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import test_replay_world as world
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from test_replay_world import FRAMES, ReplayWorld

from perception.cli import main as tadp
from perception.evaluation.bag_io import stamp_to_ns

# The shared session fixtures (test_replay_world.py), found by pytest as module attributes.
replay_world, one_thread = world.replay_world, world.one_thread
TS = get_typestore(Stores.ROS2_HUMBLE)
REPO = Path(__file__).resolve().parents[2]
FIXTURES = "ros2_rosbag2_fixtures"


def run_tadp(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = tadp(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def engine_args(world: ReplayWorld) -> list[str]:
    return ["--model", str(world.model), "--backend", "torch", "--threads", "1", "--no-progress"]


def read_messages(path: Path) -> list[tuple[str, int, object]]:
    with AnyReader([path], default_typestore=TS) as reader:
        return [(c.topic, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages()]


def nothing_left(tmp_path: Path, keep: set[str]) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


# --------------------------------------------------------------------------------------------
# metrics parity with `tadp eval`


def test_cli_metrics_equal_tadp_eval(replay_world: ReplayWorld, tmp_path: Path, capsys,
                                     one_thread) -> None:
    code, out, err = run_tadp(capsys, "eval", "--data", str(replay_world.dataset), "--batch-size",
                              "1", "--out", str(tmp_path / "eval"), "--model",
                              str(replay_world.model), "--backend", "torch", "--threads", "1",
                              "--no-progress")
    assert code == 0, err
    expected = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    for storage in ("mcap", "sqlite3"):
        code, out, err = run_tadp(capsys, "replay", str(replay_world.bags[storage]), "--out",
                                  str(tmp_path / f"{storage}.mcap"), "--report",
                                  str(tmp_path / f"report_{storage}"), *engine_args(replay_world))
        assert code == 0, err
        assert f"replayed {FRAMES} of {FRAMES} frames" in out and "metrics: segmentation/miou" in out
        got = json.loads((tmp_path / f"report_{storage}" / "metrics.json").read_text())
        assert got["metrics"] == expected, storage
        assert got["model"] == str(replay_world.model) and got["ground_truth"] == "bag topics /gt/*"


def test_cli_options(replay_world: ReplayWorld, tmp_path: Path, capsys, one_thread) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run_tadp(capsys, "replay", str(replay_world.bags["mcap"]), "--out",
                              str(out_dir), "--zstd", "--tasks", "segmentation,lanes",
                              "--color-tasks", "", "--output-ns", "/p", "--max-frames", "2",
                              "--no-eval", *engine_args(replay_world))
    assert code == 0, err
    assert "replayed 2 of 6 frames" in out and "metrics" not in out
    topics = {topic for topic, _, _ in read_messages(out_dir)}
    assert topics == {"/p/segmentation", "/p/lanes"}
    code, _, err = run_tadp(capsys, "replay", str(replay_world.bags["mcap"]), "--out",
                            str(out_dir), *engine_args(replay_world))
    assert code == 2 and "exists already; remove it or pass --overwrite" in err
    code, _, err = run_tadp(capsys, "replay", str(replay_world.bags["mcap"]), "--out",
                            str(tmp_path / "x.mcap"), "--tasks", "nope", *engine_args(replay_world))
    assert code == 2 and "--tasks: unknown ['nope']" in err
    code, _, err = run_tadp(capsys, "replay", str(replay_world.bags["mcap"]), "--out",
                            str(tmp_path / "x.mcap"), "--color-tasks", "depth,corridor",
                            *engine_args(replay_world))
    assert code == 2 and "--color-tasks: ['corridor'] are not running" in err
    nothing_left(tmp_path, {"out"})


# --------------------------------------------------------------------------------------------
# foreign bags


def _truncated(tmp_path: Path, world: ReplayWorld) -> Path:
    import shutil

    bag = tmp_path / "truncated"
    shutil.copytree(world.bags["mcap"], bag)
    storage = next(bag.glob("*.mcap"))
    data = storage.read_bytes()
    storage.write_bytes(data[: len(data) // 3])
    return bag


def _bad_frame_bag(tmp_path: Path) -> Path:
    """Three frames; the second has a 'bgr8' image whose data is too short (a broken driver)."""
    path = tmp_path / "bad_frame"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conn = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=TS)
        for i in range(3):
            sec = 1_700_000_000 + i
            hdr = TS.types["std_msgs/msg/Header"](
                stamp=TS.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=0), frame_id="cam")
            data = np.zeros(64 * 128 * 3 if i != 1 else 100, np.uint8)
            msg = TS.types["sensor_msgs/msg/Image"](header=hdr, height=64, width=128,
                                                    encoding="bgr8", is_bigendian=0, step=384,
                                                    data=data)
            w.write(conn, sec * 1_000_000_000, TS.serialize_cdr(msg, conn.msgtype))
    return path


@pytest.mark.parametrize("case", ["no_camera", "talker_metadata_mismatch", "wrong_type",
                                  "missing_topic", "truncated", "not_a_bag", "missing",
                                  "bad_frame"])
def test_foreign_bags_fail_cleanly(case: str, replay_world: ReplayWorld, real_data: Path,
                                   tmp_path: Path, capsys, one_thread) -> None:
    fixtures = real_data / FIXTURES
    extra: list[str] = []
    if case == "no_camera":
        bag = fixtures / "rosbag2_tests/resources/mcap/cdr_test"
        want = (r"cdr_test: no camera topic \(sensor_msgs/msg/Image or sensor_msgs/msg/"
                r"CompressedImage\) outside '/gt/'; topics found: /array_topic "
                r"\(test_msgs/msg/Arrays, 4 msgs\), /test_topic \(test_msgs/msg/BasicTypes, 3 msgs\)")
    elif case == "talker_metadata_mismatch":
        # metadata.yaml disagrees with the storage (QoS): the storage's own records are read
        # (10 messages each, which rosbags alone would not yield), then: no camera.
        bag = fixtures / "rosbag2_py/test/resources/sqlite3/talker"
        want = (r"no camera topic .* topics found: /parameter_events .*0 msgs\), /rosout "
                r"\(rcl_interfaces/msg/Log, 10 msgs\), /topic \(std_msgs/msg/String, 10 msgs\)")
    elif case == "wrong_type":
        bag = replay_world.bags["mcap"]
        extra = ["--camera-topic", "/camera/camera_info"]
        want = (r"topic '/camera/camera_info' has type sensor_msgs/msg/CameraInfo, expected "
                r"sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage")
    elif case == "missing_topic":
        bag = replay_world.bags["mcap"]
        extra = ["--camera-topic", "/front/image"]
        want = r"camera topic '/front/image' not found; topics found: /camera/camera_info"
    elif case == "truncated":
        bag = _truncated(tmp_path, replay_world)
        want = r"cannot read bag .*truncated.*; the file may be truncated or corrupt"
    elif case == "not_a_bag":
        bag = tmp_path / "notes"
        bag.mkdir()
        (bag / "notes.txt").write_text("x")
        want = r"not a bag directory \(no metadata.yaml and no .mcap/.db3/.bag files\)"
    elif case == "missing":
        bag = tmp_path / "nope.mcap"
        want = r"bag .*nope.mcap does not exist"
    else:
        bag = _bad_frame_bag(tmp_path)
        want = r"topic '/camera/image_raw', frame at 1700000001000000000 ns: .*data"
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_tadp(capsys, "replay", str(bag), "--out", str(tmp_path / "out.mcap"),
                              "--report", str(tmp_path / "report"), *extra,
                              *engine_args(replay_world))
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("tadp replay: error: ")]
    assert len(lines) == 1, err
    import re

    assert re.search(want, lines[0]), lines[0]
    assert "Traceback" not in err
    nothing_left(tmp_path, set(before))
    if case == "talker_metadata_mismatch":
        assert "tadp replay: warning: bag " in err and "metadata.yaml disagrees" in err


def test_metadata_missing_the_camera_is_read_from_the_storage(replay_world: ReplayWorld,
                                                              tmp_path: Path, capsys,
                                                              one_thread) -> None:
    import shutil

    import yaml

    bag = tmp_path / "bag"
    shutil.copytree(replay_world.bags["sqlite3"], bag)
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())
    info = meta["rosbag2_bagfile_information"]
    info["topics_with_message_count"] = [t for t in info["topics_with_message_count"]
                                         if t["topic_metadata"]["name"] != "/camera/image_raw"]
    (bag / "metadata.yaml").write_text(yaml.safe_dump(meta))
    code, out, err = run_tadp(capsys, "replay", str(bag), "--out", str(tmp_path / "out.mcap"),
                              *engine_args(replay_world))
    assert code == 0, err
    assert f"replayed {FRAMES} of {FRAMES} frames" in out
    assert ("tadp replay: warning: bag " in err and "'/camera/image_raw' (sensor_msgs/msg/Image, "
            "6 msgs in the storage) is missing from metadata.yaml" in err)


def test_subprocess_error_has_no_traceback(real_data: Path, tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: one line on stderr, exit status 2."""
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    bag = real_data / FIXTURES / "rosbag2_tests/resources/sqlite3/cdr_test"
    proc = subprocess.run([sys.executable, "-m", "perception.cli", "replay", str(bag), "--out",
                           str(tmp_path / "out.mcap")], capture_output=True, text=True, env=env,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.startswith("tadp replay: error: bag ") and "no camera topic" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# bag-from-images


def _real_frames(real_data: Path) -> list[Path]:
    return [*sorted((real_data / "yolop_bdd100k/inference/images").glob("*.jpg"))[:2],
            *sorted((real_data / "lanenet_tusimple/data/tusimple_test_image").glob("*.jpg"))[:2],
            real_data / "mmseg_cityscapes/demo/demo.png"]


def test_real_frames_bag_replays(real_data: Path, replay_world: ReplayWorld, tmp_path: Path,
                                 capsys, one_thread) -> None:
    """BDD100K (1280x720 JPEG), TuSimple (1280x720 JPEG) and Cityscapes (1024x512 PNG) frames
    in one compressed bag: replays, and the output opens with rosbags, stamped like the input."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, src in enumerate(_real_frames(real_data)):  # sorted order = this order
        (frames / f"{i:02d}_{src.name}").symlink_to(src)
    code, out, err = run_tadp(capsys, "bag-from-images", str(frames / "*"), "--out",
                              str(tmp_path / "real.mcap"), "--fps", "5", "--compressed",
                              "--no-progress")
    assert code == 0, err
    assert "wrote 5 frames (jpeg CompressedImage) at 5 frames/s" in out
    inputs = read_messages(tmp_path / "real.mcap")
    assert [m[0] for m in inputs] == ["/camera/image_raw/compressed"] * 5
    # JPEG files are stored as they are (no generation loss).
    assert bytes(inputs[0][2].data) == _real_frames(real_data)[0].read_bytes()
    code, out, err = run_tadp(capsys, "replay", str(tmp_path / "real.mcap"), "--out",
                              str(tmp_path / "out.mcap"), "--report", str(tmp_path / "report"),
                              *engine_args(replay_world))
    assert code == 0, err
    in_stamps = [t for _, t, _ in inputs]
    assert in_stamps == [1_704_067_200_000_000_000 + i * 200_000_000 for i in range(5)]
    sizes = [(720, 1280)] * 4 + [(512, 1024)]
    outputs: dict[str, list[tuple[int, tuple[int, int]]]] = {}
    for topic, t, msg in read_messages(tmp_path / "out.mcap"):
        assert stamp_to_ns(msg.header.stamp) == t and msg.header.frame_id == "camera_optical_frame"
        outputs.setdefault(topic, []).append((t, (msg.height, msg.width)))
    assert len(outputs) == 5
    for topic, recs in outputs.items():
        assert recs == list(zip(in_stamps, sizes, strict=True)), topic
    data = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert data["metrics"] == {} and data["ground_truth"] is None
    assert (tmp_path / "report" / "overlays.png").is_file()


def test_real_frames_with_dataset_ground_truth(real_data: Path, replay_world: ReplayWorld,
                                               tmp_path: Path, capsys, one_thread) -> None:
    """TuSimple frames as a bag, scored against the TuSimple lane labels (--gt-data)."""
    root = real_data / "lanenet_tusimple/data/training_data_example"
    code, _, err = run_tadp(capsys, "bag-from-images", str(root / "image" / "*.png"), "--out",
                            str(tmp_path / "tusimple.mcap"), "--fps", "10", "--no-progress")
    assert code == 0, err
    code, out, err = run_tadp(capsys, "replay", str(tmp_path / "tusimple.mcap"), "--out",
                              str(tmp_path / "out.mcap"), "--gt-data", f"tusimple:{root}",
                              "--report", str(tmp_path / "report"), *engine_args(replay_world))
    assert code == 0, err
    data = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert data["ground_truth"] == f"tusimple:{root}"
    assert set(data["unlabelled"]) == {"segmentation", "depth", "drivable"}
    assert data["metrics"]["lanes/iou"] is not None and len(data["frames"]) == 3
    assert "metrics: lanes/iou" in out


def test_camera_info_and_size_checks(real_data: Path, tmp_path: Path, capsys) -> None:
    calib = real_data / "opencv_samples_calib/samples/data"
    images = str(calib / "left0*.jpg")
    code, out, err = run_tadp(capsys, "bag-from-images", images, "--out", str(tmp_path / "a"),
                              "--fps", "2", "--camera-info", str(calib / "left_intrinsics.yml"),
                              "--topic", "/stereo/left/image_raw", "--no-progress")
    assert code == 0, err
    msgs = read_messages(tmp_path / "a")
    topics = [m[0] for m in msgs]
    assert topics.count("/stereo/left/image_raw") == topics.count("/stereo/left/camera_info") == 9
    info = next(m[2] for m in msgs if m[0].endswith("camera_info"))
    assert (info.width, info.height) == (640, 480) and abs(info.k[0] - 535.9157) < 1e-3
    # Resized frames: the intrinsics follow (fx halves).
    code, _, err = run_tadp(capsys, "bag-from-images", images, "--out", str(tmp_path / "b.mcap"),
                            "--fps", "2", "--camera-info", str(calib / "left_intrinsics.yml"),
                            "--size", "240x320", "--no-progress")
    assert code == 0, err
    info = next(m[2] for m in read_messages(tmp_path / "b.mcap") if m[0].endswith("camera_info"))
    assert (info.width, info.height) == (320, 240) and abs(info.k[0] - 535.9157 / 2) < 1e-3
    # Frames of another camera: refused, nothing left behind.
    before = sorted(p.name for p in tmp_path.iterdir())
    bdd = str(real_data / "yolop_bdd100k/inference/images/*.jpg")
    code, _, err = run_tadp(capsys, "bag-from-images", bdd, "--out", str(tmp_path / "c.mcap"),
                            "--fps", "2", "--camera-info", str(calib / "left_intrinsics.yml"))
    assert code == 2 and "frame is 1280x720 but the camera calibration" in err
    assert "pass --size HxW" in err or "--size" in err
    code, _, err = run_tadp(capsys, "bag-from-images", str(tmp_path / "none*.png"), "--out",
                            str(tmp_path / "d.mcap"), "--fps", "2")
    assert code == 2 and "no image files match" in err
    code, _, err = run_tadp(capsys, "bag-from-images", images, "--out", str(tmp_path / "a"),
                            "--fps", "2")
    assert code == 2 and "exists already" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
