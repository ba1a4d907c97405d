"""Bag reading and writing for replay (issue 8). Bags are written in tmp_path with rosbags' own
writers (no ROS install); the real ros2/rosbag2 fixture bags cover foreign metadata."""
from __future__ import annotations

import re
import sqlite3
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from perception.errors import DataError
from perception.evaluation.bag_io import (
    BagMetadataWarning,
    BagOutputWriter,
    BagReader,
    make_compressed_image,
    make_header,
    make_image,
    make_path,
    open_camera_bag,
    stamp_to_ns,
)

TS = get_typestore(Stores.ROS2_HUMBLE)
T0 = 1_700_000_000_000_000_000  # first header stamp, ns
PERIOD = 100_000_000  # 10 Hz
H, W = 24, 32
N_FRAMES = 4
NO_DEPTH_FRAME = 2  # this frame has no /gt/depth message

FIXTURES = "ros2_rosbag2_fixtures"
# (bag directory, storage file, {topic: messages}) -- counts read from the storage itself in
# test_real_fixture_counts (sqlite3 `SELECT topic_id, count(*)` / the MCAP summary statistics).
REAL_BAGS = {
    "rosbag2_py/test/resources/mcap/talker": {"/topic": 10, "/rosout": 10, "/parameter_events": 0},
    "rosbag2_py/test/resources/sqlite3/talker": {"/topic": 10, "/rosout": 10, "/parameter_events": 0},
    "rosbag2_tests/resources/mcap/cdr_test": {"/test_topic": 3, "/array_topic": 4},
    "rosbag2_tests/resources/sqlite3/cdr_test": {"/test_topic": 3, "/array_topic": 4},
}


# --------------------------------------------------------------------------------------------
# synthetic bags, built from typestore classes directly (independent of bag_io's builders)


def _bgr(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 0] = np.arange(W, dtype=np.uint8)[None, :] * 4
    img[..., 1] = 10 * i
    img[..., 2] = np.arange(H, dtype=np.uint8)[:, None] * 5
    return img


def _seg(i: int) -> np.ndarray:
    return ((np.arange(H * W).reshape(H, W) + i) % 9).astype(np.uint8)


def _depth(i: int) -> np.ndarray:
    return np.full((H, W), 1.5 + i, np.float32)


def _header(stamp_ns: int, frame_id: str = "cam"):
    sec, nsec = divmod(stamp_ns, 1_000_000_000)
    return TS.types["std_msgs/msg/Header"](
        stamp=TS.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id)


def _image(array: np.ndarray, encoding: str, header) -> object:
    channels = 1 if array.ndim == 2 else array.shape[2]
    return TS.types["sensor_msgs/msg/Image"](
        header=header, height=array.shape[0], width=array.shape[1], encoding=encoding,
        is_bigendian=0, step=array.shape[1] * array.dtype.itemsize * channels,
        data=np.frombuffer(array.tobytes(), np.uint8))


def _camera_info(header) -> object:
    roi = TS.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return TS.types["sensor_msgs/msg/CameraInfo"](
        header=header, height=H, width=W, distortion_model="plumb_bob", d=np.zeros(5),
        k=np.array([30.0, 0, 16, 0, 30, 12, 0, 0, 1]), r=np.eye(3).ravel(),
        p=np.array([30.0, 0, 16, 0, 0, 30, 12, 0, 0, 0, 1, 0]), binning_x=0, binning_y=0, roi=roi)


def _compressed_png(array: np.ndarray, header) -> object:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return TS.types["sensor_msgs/msg/CompressedImage"](
        header=header, format="bgr8; png compressed bgr8", data=buf.ravel())


def write_camera_bag(path: Path, storage: str = "mcap", *, compressed: bool = False,
                     second_camera: bool = False, zstd_mode: str | None = None) -> Path:
    """N_FRAMES camera frames at 10 Hz with CameraInfo and ground truth.

    Per frame (bag time = stamp + 5 ms): /gt/segmentation *before* the image, then the image,
    /cam/camera_info, /gt/depth (missing for frame NO_DEPTH_FRAME), /gt/lanes/path and /other
    (std_msgs/String).
    """
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    cam_topic = "/cam/image_raw/compressed" if compressed else "/cam/image_raw"
    cam_type = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
    w = Writer(path, version=9, storage_plugin=plugin)
    if zstd_mode:  # rosbag2 "file" or "message" compression
        w.set_compression(CompressionMode[zstd_mode.upper()], CompressionFormat.ZSTD)
    with w:
        cam = w.add_connection(cam_topic, cam_type, typestore=TS)
        info = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=TS)
        seg = w.add_connection("/gt/segmentation", "sensor_msgs/msg/Image", typestore=TS)
        depth = w.add_connection("/gt/depth", "sensor_msgs/msg/Image", typestore=TS)
        lanes = w.add_connection("/gt/lanes/path", "nav_msgs/msg/Path", typestore=TS)
        other = w.add_connection("/other", "std_msgs/msg/String", typestore=TS)
        cam2 = w.add_connection("/cam2/image_raw", "sensor_msgs/msg/Image",
                                typestore=TS) if second_camera else None

        def put(conn, t, msg) -> None:
            w.write(conn, t, TS.serialize_cdr(msg, conn.msgtype))

        for i in range(N_FRAMES):
            stamp = T0 + i * PERIOD
            log = stamp + 5_000_000
            hdr = _header(stamp)
            put(seg, log - 1_000, _image(_seg(i), "mono8", hdr))
            cam_msg = _compressed_png(_bgr(i), hdr) if compressed else _image(_bgr(i), "bgr8", hdr)
            put(cam, log, cam_msg)
            put(info, log + 1_000, _camera_info(hdr))
            if i != NO_DEPTH_FRAME:
                put(depth, log + 2_000, _image(_depth(i), "32FC1", hdr))
            put(lanes, log + 3_000, TS.types["nav_msgs/msg/Path"](header=hdr, poses=[]))
            put(other, log + 4_000, TS.types["std_msgs/msg/String"](data=f"frame {i}"))
            if cam2 is not None:
                put(cam2, log + 5_000, _image(_bgr(i), "bgr8", hdr))
    return path


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def _check_frames(frames: list, *, with_depth_gap: bool = True) -> None:
    assert [f.stamp_ns for f in frames] == [T0 + i * PERIOD for i in range(N_FRAMES)]
    for i, (stamp_ns, header, image, info, gt) in enumerate(frames):
        assert stamp_to_ns(header.stamp) == stamp_ns and header.frame_id == "cam"
        np.testing.assert_array_equal(image, _bgr(i))
        assert stamp_to_ns(info.header.stamp) == stamp_ns  # paired by stamp, not "latest"
        np.testing.assert_array_equal(gt["segmentation"], _seg(i))  # written before the image
        assert gt["lanes/path"].__msgtype__ == "nav_msgs/msg/Path"
        if with_depth_gap and i == NO_DEPTH_FRAME:
            assert "depth" not in gt
        else:
            assert gt["depth"].dtype == np.float32
            np.testing.assert_array_equal(gt["depth"], _depth(i))


# --------------------------------------------------------------------------------------------
# reading


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_camera_frames_with_gt_paired_by_stamp(tmp_path: Path, storage: str) -> None:
    bag = write_camera_bag(tmp_path / "bag", storage)
    with open_camera_bag(bag) as cam:
        assert cam.camera_topic == "/cam/image_raw"
        assert cam.camera_info_topic == "/cam/camera_info"
        assert cam.gt_topics == {"segmentation": "/gt/segmentation", "depth": "/gt/depth",
                                 "lanes/path": "/gt/lanes/path"}
        assert len(cam) == N_FRAMES
        frames = list(cam)
    _check_frames(frames)


def test_short_sync_window_still_yields_in_order(tmp_path: Path) -> None:
    # With a 150 ms window the frame without depth is released while later frames are pending.
    bag = write_camera_bag(tmp_path / "bag")
    with open_camera_bag(bag, sync_window_ns=150_000_000) as cam:
        _check_frames(list(cam))


def test_single_storage_file_and_compressed_camera(tmp_path: Path) -> None:
    bag = write_camera_bag(tmp_path / "bag", "sqlite3", compressed=True)
    with open_camera_bag(_storage_file(bag)) as cam:  # a bare .db3 file
        assert cam.camera_topic == "/cam/image_raw/compressed"
        assert cam.camera_info_topic == "/cam/camera_info"  # sibling of the image namespace
        _check_frames(list(cam))  # PNG is lossless


def test_decode_false_gives_messages(tmp_path: Path) -> None:
    bag = write_camera_bag(tmp_path / "bag")
    with open_camera_bag(bag, decode=False) as cam:
        frame = next(iter(cam))
    assert frame.image.__msgtype__ == "sensor_msgs/msg/Image" and frame.image.encoding == "bgr8"
    assert frame.gt["depth"].encoding == "32FC1"


def test_ros1_bag(tmp_path: Path) -> None:
    ts1 = get_typestore(Stores.ROS1_NOETIC)
    path = tmp_path / "cam.bag"
    with Writer1(path) as w:
        cam = w.add_connection("/camera/image", "sensor_msgs/msg/Image", typestore=ts1)
        seg = w.add_connection("/gt/segmentation", "sensor_msgs/msg/Image", typestore=ts1)
        for i in range(N_FRAMES):
            stamp = T0 + i * PERIOD
            sec, nsec = divmod(stamp, 1_000_000_000)
            hdr = ts1.types["std_msgs/msg/Header"](
                seq=i, stamp=ts1.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec),
                frame_id="cam")
            for conn, arr, enc in ((cam, _bgr(i), "bgr8"), (seg, _seg(i), "mono8")):
                msg = ts1.types["sensor_msgs/msg/Image"](
                    header=hdr, height=H, width=W, encoding=enc, is_bigendian=0,
                    step=arr.strides[0], data=np.frombuffer(arr.tobytes(), np.uint8))
                w.write(conn, stamp, ts1.serialize_ros1(msg, conn.msgtype))
    with open_camera_bag(path) as bag:
        assert bag.bag.source == "rosbag1" and bag.camera_info_topic is None
        frames = list(bag)
    assert [f.stamp_ns for f in frames] == [T0 + i * PERIOD for i in range(N_FRAMES)]
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame.image, _bgr(i))
        np.testing.assert_array_equal(frame.gt["segmentation"], _seg(i))
        assert frame.camera_info is None


# --------------------------------------------------------------------------------------------
# the real rosbag2 fixtures


def _storage_counts(storage_file: Path) -> dict[str, int]:
    """Messages per topic read from the storage file itself, without rosbags."""
    if storage_file.suffix == ".db3":
        con = sqlite3.connect(f"file:{storage_file}?immutable=1&mode=ro", uri=True)
        try:
            names = dict(con.execute("SELECT id, name FROM topics"))
            counts = dict(con.execute("SELECT topic_id, count(*) FROM messages GROUP BY topic_id"))
        finally:
            con.close()
        return {name: counts.get(tid, 0) for tid, name in names.items()}
    from mcap.reader import make_reader

    with storage_file.open("rb") as f:
        summary = make_reader(f).get_summary()
    stats = summary.statistics.channel_message_counts
    return {ch.topic: stats.get(cid, 0) for cid, ch in summary.channels.items()}


def _snapshot(root: Path) -> list[tuple[str, int, float]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*"))


@pytest.mark.parametrize("name", sorted(REAL_BAGS))
def test_real_fixture_counts(real_data: Path, name: str) -> None:
    bag_dir = real_data / FIXTURES / name
    before = _snapshot(bag_dir)
    expected = REAL_BAGS[name]
    assert _storage_counts(_storage_file(bag_dir)) == expected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with BagReader(bag_dir) as bag:
            assert {t: s.count for t, s in bag.topics.items()} == expected
            counts = dict.fromkeys(expected, 0)
            decoded = {}
            for topic, msgtype, _, raw in bag.messages():
                counts[topic] += 1
                decoded.setdefault(topic, []).append(bag.deserialize(raw, msgtype, topic))
    assert counts == expected
    if "talker" in name:
        assert any(issubclass(w.category, BagMetadataWarning) and "QoS in metadata.yaml" in
                   str(w.message) for w in caught)
        assert [m.data for m in decoded["/topic"]] == [f"Hello, world! {i}" for i in range(10)]
        # The sqlite3 copy embeds a placeholder Log definition; the Humble one decodes it.
        assert decoded["/rosout"][0].msg == "Publishing: 'Hello, world! 0'"
    else:
        assert not [w for w in caught if issubclass(w.category, BagMetadataWarning)]
        assert [len(m.string_values) for m in decoded["/array_topic"]] == [3] * 4
    assert _snapshot(bag_dir) == before  # the input is never modified (no -wal/-shm either)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_why_talker_fixtures_need_the_fallback(real_data: Path, storage: str) -> None:
    """rosbags' DirectoryReader matches storage connections to metadata.yaml including the QoS
    text, which differs in these bags (deadline 0 vs 2147483647 s), so it yields nothing."""
    bag_dir = real_data / FIXTURES / f"rosbag2_py/test/resources/{storage}/talker"
    with AnyReader([bag_dir], default_typestore=TS) as reader:
        assert len(reader.connections) == 3
        assert sum(1 for _ in reader.messages()) == 0
    with pytest.raises(DataError, match=r"talker: metadata.yaml disagrees with the storage: "
                       r"topic '/rosout' \(10 msgs\): QoS in metadata.yaml vs storage: deadline "
                       r"0s\+0ns vs 2147483647s\+4294967295ns"):
        BagReader(bag_dir, strict=True).__enter__()


def test_real_fixture_has_no_camera(real_data: Path) -> None:
    bag_dir = real_data / FIXTURES / "rosbag2_tests/resources/mcap/cdr_test"
    with pytest.raises(DataError, match=(
            r"cdr_test: no camera topic \(sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"
            r"\) outside '/gt/'; topics found: /array_topic \(test_msgs/msg/Arrays, 4 msgs\), "
            r"/test_topic \(test_msgs/msg/BasicTypes, 3 msgs\)")):
        open_camera_bag(bag_dir)


# --------------------------------------------------------------------------------------------
# foreign and broken bags


def test_camera_topic_errors(tmp_path: Path) -> None:
    bag = write_camera_bag(tmp_path / "bag", second_camera=True)
    with pytest.raises(DataError, match=r"2 camera topics found: /cam/image_raw "
                       r"\(sensor_msgs/msg/Image\), /cam2/image_raw \(sensor_msgs/msg/Image\); "
                       r"pass camera_topic="):
        open_camera_bag(bag)
    with pytest.raises(DataError, match=r"topic '/other' has type std_msgs/msg/String, expected "
                       r"sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"):
        open_camera_bag(bag, camera_topic="/other")
    with pytest.raises(DataError, match=r"camera topic '/nope' not found; topics found: .*"
                       r"/cam/image_raw \(sensor_msgs/msg/Image, 4 msgs\)"):
        open_camera_bag(bag, camera_topic="/nope")
    with open_camera_bag(bag, camera_topic="/cam2/image_raw") as cam:
        assert cam.camera_info_topic == "/cam/camera_info"  # the only CameraInfo topic
        assert len(list(cam)) == N_FRAMES


@pytest.mark.parametrize(("storage", "reason"), [
    ("mcap", "File end magic is invalid"),
    ("sqlite3", "database disk image is malformed"),
])
def test_truncated_storage(tmp_path: Path, storage: str, reason: str) -> None:
    bag = write_camera_bag(tmp_path / "bag", storage)
    storage_file = _storage_file(bag)
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: len(data) // 2])
    for path in (bag, storage_file):
        with pytest.raises(DataError, match=rf"cannot read bag {re.escape(str(path))}: .*{reason}; the file may be truncated"):
            open_camera_bag(path)


@pytest.mark.parametrize(("storage", "zstd_mode"), [("mcap", None), ("sqlite3", "message"),
                                                    ("mcap", "file")])
def test_metadata_missing_a_topic(tmp_path: Path, storage: str, zstd_mode: str | None) -> None:
    # metadata.yaml that lost the camera topic: rosbags alone would not see the camera at all.
    # The fallback must also undo rosbag2's per-message or per-file zstd compression.
    bag = write_camera_bag(tmp_path / "bag", storage, zstd_mode=zstd_mode)
    meta_path = bag / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    info = meta["rosbag2_bagfile_information"]
    info["topics_with_message_count"] = [
        t for t in info["topics_with_message_count"]
        if t["topic_metadata"]["name"] != "/cam/image_raw"]
    meta_path.write_text(yaml.safe_dump(meta))
    with pytest.raises(DataError, match=r"metadata.yaml disagrees with the storage: topic "
                       r"'/cam/image_raw' \(sensor_msgs/msg/Image, 4 msgs in the storage\) is "
                       r"missing from metadata.yaml"):
        open_camera_bag(bag, strict=True)
    with pytest.warns(BagMetadataWarning, match="reading the storage's own records"):
        cam = open_camera_bag(bag)
    with cam:
        _check_frames(list(cam))


def test_missing_metadata_reads_storage(tmp_path: Path) -> None:
    bag = write_camera_bag(tmp_path / "bag", "sqlite3")
    (bag / "metadata.yaml").unlink()  # a recording killed before rosbag2 wrote it
    with pytest.warns(BagMetadataWarning, match="has no metadata.yaml"):
        cam = open_camera_bag(bag)
    with cam:
        _check_frames(list(cam))


def test_not_a_bag(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        BagReader(tmp_path / "missing").__enter__()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"not a bag directory .*found: \['notes.txt'\]"):
        BagReader(tmp_path / "empty").__enter__()
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        BagReader(tmp_path / "empty" / "notes.txt").__enter__()
    (tmp_path / "bad.bag").write_bytes(b"#ROSBAG V2.0\n" + b"x" * 64)
    with pytest.raises(DataError, match="cannot read bag .*bad.bag"):
        BagReader(tmp_path / "bad.bag").__enter__()


# --------------------------------------------------------------------------------------------
# writing


@pytest.mark.parametrize(("storage", "compression"), [("mcap", "zstd"), ("mcap", None),
                                                      ("sqlite3", "zstd")])
def test_writer_roundtrip(tmp_path: Path, storage: str, compression: str | None) -> None:
    out = tmp_path / "out" / "result"
    mask = _seg(1)
    with BagOutputWriter(out, storage=storage, compression=compression) as w:
        w.add_connection("/perception/segmentation", "sensor_msgs/msg/Image")
        for i in range(3):
            hdr = make_header(T0 + i * PERIOD, "cam")
            w.write_message("/perception/segmentation", T0 + i * PERIOD, make_image(mask, hdr, "mono8"))
            w.write_message("/perception/lanes/path", T0 + i * PERIOD,
                            make_path(np.array([[1.0, 0.5], [2.0, 0.25]]), make_header(0, "base_link")))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["result"]  # no temp left
    with BagReader(out) as bag:
        assert {t: s.count for t, s in bag.topics.items()} == {
            "/perception/lanes/path": 3, "/perception/segmentation": 3}
        msgs = [(t, stamp, bag.deserialize(raw, mt)) for t, mt, stamp, raw in bag.messages()]
    seg = [m for t, _, m in msgs if t == "/perception/segmentation"]
    assert [stamp_to_ns(m.header.stamp) for m in seg] == [T0 + i * PERIOD for i in range(3)]
    assert seg[0].encoding == "mono8"
    np.testing.assert_array_equal(seg[0].data.reshape(H, W), mask)
    path_msg = next(m for t, _, m in msgs if t == "/perception/lanes/path")
    assert path_msg.header.frame_id == "base_link"
    assert [(p.pose.position.x, p.pose.position.y, p.pose.position.z, p.pose.orientation.w)
            for p in path_msg.poses] == [(1.0, 0.5, 0.0, 1.0), (2.0, 0.25, 0.0, 1.0)]


def test_writer_mcap_opens_with_mcap_package(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    out = tmp_path / "result"
    with BagOutputWriter(out, compression="zstd") as w:
        for i in range(5):
            w.write_message("/perception/depth", T0 + i, make_image(_depth(i), make_header(T0 + i)))
    files = sorted(p.name for p in out.iterdir())
    assert files == ["metadata.yaml", "result.mcap"]
    with (out / "result.mcap").open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert {c.compression for c in summary.chunk_indexes} == {"zstd"}
        assert [s.name for s in summary.schemas.values()] == ["sensor_msgs/msg/Image"]
        got = [(ch.topic, msg.log_time) for _, ch, msg in reader.iter_messages()]
    assert got == [("/perception/depth", T0 + i) for i in range(5)]


def test_writer_leaves_nothing_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "result"
    with pytest.raises(RuntimeError, match="boom"), BagOutputWriter(out) as w:
        w.write_message("/x", T0, make_image(_seg(0), make_header(T0)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_overwrite_only_after_success(tmp_path: Path) -> None:
    out = tmp_path / "result"
    with BagOutputWriter(out) as w:
        w.write_message("/old", T0, make_image(_seg(0), make_header(T0)))
    with pytest.raises(DataError, match="exists already; remove it or pass overwrite=True"):
        BagOutputWriter(out).__enter__()
    with pytest.raises(RuntimeError, match="boom"), BagOutputWriter(out, overwrite=True) as w:
        w.write_message("/new", T0, make_image(_seg(0), make_header(T0)))
        raise RuntimeError("boom")
    with BagReader(out) as bag:
        assert list(bag.topics) == ["/old"]  # the old bag survived the failed overwrite
    with BagOutputWriter(out, overwrite=True) as w:
        w.write_message("/new", T0, make_image(_seg(0), make_header(T0)))
    with BagReader(out) as bag:
        assert list(bag.topics) == ["/new"]
    assert [p.name for p in tmp_path.iterdir()] == ["result"]


def test_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="storage must be one of"):
        BagOutputWriter(tmp_path / "a", storage="rosbag1")
    with pytest.raises(DataError, match="compression must be None or 'zstd'"):
        BagOutputWriter(tmp_path / "a", compression="lz4")
    with pytest.raises(DataError, match="checked"), BagOutputWriter(tmp_path / "a") as w:
        w.add_connection("/a", "sensor_msgs/msg/Image")
        with pytest.raises(DataError, match="topic '/a' was added already"):
            w.add_connection("/a", "sensor_msgs/msg/Image")
        with pytest.raises(DataError, match="'my_msgs/msg/Thing' for topic '/b' is not in the typestore"):
            w.add_connection("/b", "my_msgs/msg/Thing")
        with pytest.raises(DataError, match=r"topic '/c' has no connection; .*known: \['/a'\]"):
            w.write("/c", T0, b"")
        with pytest.raises(DataError, match="topic '/a' is sensor_msgs/msg/Image, got a"):
            w.write_message("/a", T0, make_path(np.zeros((1, 3)), make_header(T0)))
        raise DataError("topic errors checked")
    assert not (tmp_path / "a").exists()


def test_builders() -> None:
    hdr = make_header(1_500_000_123, "cam")
    assert (hdr.stamp.sec, hdr.stamp.nanosec, hdr.frame_id) == (1, 500_000_123, "cam")
    img = make_image(_depth(0), hdr)
    assert (img.encoding, img.step, img.height, img.width) == ("32FC1", W * 4, H, W)
    with pytest.raises(DataError, match=r"path points must be \[N, 2\] or \[N, 3\]"):
        make_path(np.zeros((3, 4)), hdr)
    png = make_compressed_image(_bgr(1), hdr, "png")
    assert png.format == "bgr8; png compressed bgr8" and png.header.frame_id == "cam"
    np.testing.assert_array_equal(cv2.imdecode(png.data, cv2.IMREAD_UNCHANGED), _bgr(1))

