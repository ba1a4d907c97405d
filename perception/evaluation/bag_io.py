"""Camera frames in, result topics out: ROS bag I/O for replay (issue 8), with ``rosbags`` only.

Reading (:func:`open_camera_bag`) takes rosbag2 directories (MCAP or sqlite3), bare ``.mcap`` /
``.db3`` files and ROS 1 ``.bag`` files, picks the camera topic, its CameraInfo and the
ground-truth topics under a prefix, and yields :class:`BagFrame` tuples in bag order with the
ground truth paired by header stamp. Writing (:class:`BagOutputWriter`) creates a rosbag2 bag in a
temporary directory beside the target and renames it into place only on success.

Foreign bags (issue 8, item 6). rosbags' ``DirectoryReader`` hands out the connections listed in
``metadata.yaml`` and, when reading, keeps only storage connections whose topic, type *and*
``offered_qos_profiles`` equal a metadata entry. The ros2/rosbag2 test bags in
``shared/data/real/ros2_rosbag2_fixtures/*/talker`` list ``deadline``/``lifespan``/
``liveliness_lease_duration`` as ``{sec: 0, nsec: 0}`` in metadata.yaml but as
``{sec: 2147483647, nsec: 4294967295}`` inside the .mcap/.db3, so ``AnyReader`` lists 3 topics and
silently yields 0 of their 20 messages. :class:`BagReader` compares both sides when it opens a
directory; on a disagreement it warns (:class:`BagMetadataWarning`) and reads the storage files'
own records (nothing is written, the input is never modified), or raises with ``strict=True``.
The sqlite3 talker bag also embeds a placeholder definition of ``rcl_interfaces/msg/Log`` that
does not match its data; a message whose embedded definition fails is decoded with the default
typestore's definition instead (with a warning).
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import uuid
import warnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from perception.errors import DataError
from perception.ros_format.image import (
    compressed_from_msg,
    decode_compressed,
    image_from_msg,
    image_to_compressed_fields,
    image_to_fields,
    to_bgr8,
)

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore

__all__ = [
    "IMAGE_TYPES",
    "CAMERA_INFO_TYPE",
    "BagMetadataWarning",
    "TopicSummary",
    "BagReader",
    "BagFrame",
    "CameraBag",
    "open_camera_bag",
    "BagOutputWriter",
    "stamp_to_ns",
    "make_header",
    "make_image",
    "make_compressed_image",
    "make_path",
]

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
_STORAGE_SUFFIXES = (".mcap", ".db3")
_REPAIR_HINT = (
    "the file may be truncated or corrupt, e.g. by a killed recording: `mcap recover` repairs "
    "a truncated MCAP file, `ros2 bag reindex` rebuilds a missing metadata.yaml"
)


class BagMetadataWarning(UserWarning):
    """A bag's metadata disagrees with its storage; the storage's own records were used."""


@functools.cache
def _typestore(store: Stores) -> Typestore:
    return get_typestore(store)


def _humble() -> Typestore:
    return _typestore(Stores.ROS2_HUMBLE)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (ROS 2, and ROS 1 as rosbags represents it) -> int ns."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


@dataclass(frozen=True)
class TopicSummary:
    msgtype: str
    count: int  # messages as recorded by the source that is read (metadata or storage)


def _describe_topics(topics: Mapping[str, TopicSummary]) -> str:
    if not topics:
        return "(no topics)"
    return ", ".join(f"{t} ({s.msgtype}, {s.count} msgs)" for t, s in sorted(topics.items()))


def _zstd_decompress(data: bytes) -> bytes:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:
        from backports import zstd  # a rosbags dependency before 3.14
    return zstd.decompress(data)


# --------------------------------------------------------------------------------------------
# low-level reader


def _short(value: Any) -> str:
    if hasattr(value, "sec") and hasattr(value, "nsec"):  # QosTime
        return f"{value.sec}s+{value.nsec}ns"
    return str(getattr(value, "name", value))  # enums by name


def _qos_difference(meta: Connection, storage: Connection) -> str:
    """What differs between a metadata.yaml connection and the storage's, in a few words."""
    m_ext, s_ext = meta.ext, storage.ext
    if getattr(m_ext, "serialization_format", None) != getattr(s_ext, "serialization_format", None):
        return f"serialization format {m_ext.serialization_format!r} vs {s_ext.serialization_format!r}"
    m_qos = list(getattr(m_ext, "offered_qos_profiles", []))
    s_qos = list(getattr(s_ext, "offered_qos_profiles", []))
    if len(m_qos) != len(s_qos):
        return f"{len(m_qos)} QoS profiles in metadata.yaml vs {len(s_qos)} in the storage"
    diffs = [
        f"{name} {_short(a)} vs {_short(b)}"
        for mq, sq in zip(m_qos, s_qos, strict=True)
        for name, a, b in zip(mq._fields, mq, sq, strict=True)
        if a != b
    ]
    if diffs:
        return "QoS in metadata.yaml vs storage: " + ", ".join(diffs)
    return f"type hash {meta.digest!r} vs {storage.digest!r}"


def _metadata_mismatches(directory_reader: Any) -> list[str]:
    """Storage connections that rosbags' DirectoryReader would not match to a metadata entry."""
    problems = []
    meta = directory_reader.connections
    for storage in directory_reader.storages:
        for sc in storage.connections:
            same = [m for m in meta if m.topic == sc.topic and m.msgtype == sc.msgtype]
            if any(m.ext == sc.ext and (not m.digest or not sc.digest or m.digest == sc.digest)
                   for m in same):
                continue
            if not same:
                problems.append(f"topic {sc.topic!r} ({sc.msgtype}, {sc.msgcount} msgs in the "
                                "storage) is missing from metadata.yaml")
            else:
                problems.append(f"topic {sc.topic!r} ({sc.msgcount} msgs): "
                                + _qos_difference(same[0], sc))
    return problems


class BagReader:
    """One bag opened with rosbags' ``AnyReader``, with the foreign-bag handling described in the
    module docstring. Use as a context manager.

    Args:
        path: rosbag2 directory, ``.mcap`` / ``.db3`` file, ROS 1 ``.bag`` file, or a directory of
            storage files without metadata.yaml (read directly, with a warning).
        strict: Raise instead of falling back when metadata.yaml disagrees with the storage.
        default_typestore: Definitions for types the bag does not embed; ROS2_HUMBLE (rosbag2)
            or ROS1_NOETIC (ROS 1) by default.

    Raises:
        DataError: Missing path, unsupported file, unreadable/corrupt bag, or (strict)
            inconsistent metadata. Messages name the bag and what was found.
    """

    def __init__(self, path: str | os.PathLike[str], *, strict: bool = False,
                 default_typestore: Typestore | None = None) -> None:
        self.path = Path(path)
        self.strict = strict
        self._default_ts = default_typestore
        self._stack = contextlib.ExitStack()
        self._reader: AnyReader | None = None
        self._decompress = False
        self.source = ""  # "metadata", "storage" or "rosbag1": what the topic list comes from
        self._warned_types: set[str] = set()

    # -- opening -----------------------------------------------------------------------------

    def __enter__(self) -> BagReader:
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._reader = None
        self._stack.close()

    def _any_reader(self, paths: Sequence[Path]) -> AnyReader:
        default = self._default_ts or _typestore(
            Stores.ROS1_NOETIC if paths[0].suffix == ".bag" else Stores.ROS2_HUMBLE)
        try:
            reader = AnyReader(list(paths), default_typestore=default)
            self._stack.enter_context(reader)
        except Exception as err:  # rosbags raises AnyReaderError, FileNotFoundError, apsw errors
            raise DataError(f"cannot read bag {self.path}: {str(err).rstrip('.')}; {_REPAIR_HINT}") from err
        return reader

    def _open(self) -> None:
        path = self.path
        if not path.exists():
            raise DataError(f"bag {path} does not exist")
        if path.is_file():
            if path.suffix not in (*_STORAGE_SUFFIXES, ".bag"):
                raise DataError(f"bag {path}: unsupported file type {path.suffix!r}; expected a "
                                "rosbag2 directory, a .mcap or .db3 file, or a ROS 1 .bag file")
            self.source = "rosbag1" if path.suffix == ".bag" else "storage"
            self._reader = self._any_reader([path])
            return
        storage_files = sorted(p for p in path.iterdir() if p.suffix in _STORAGE_SUFFIXES)
        ros1_files = sorted(p for p in path.iterdir() if p.suffix == ".bag")
        if not (path / "metadata.yaml").exists():
            if ros1_files and not storage_files:
                self.source = "rosbag1"
                self._reader = self._any_reader(ros1_files)
                return
            if not storage_files:
                found = sorted(p.name for p in path.iterdir())[:20]
                raise DataError(f"bag {path}: not a bag directory (no metadata.yaml and no "
                                f".mcap/.db3/.bag files); found: {found}")
            warnings.warn(f"bag {path} has no metadata.yaml; reading its storage files "
                          f"{[p.name for p in storage_files]} directly", BagMetadataWarning,
                          stacklevel=3)
            self.source = "storage"
            self._reader = self._any_reader(storage_files)
            return
        self.source = "metadata"
        reader = self._any_reader([path])
        directory_reader = reader.readers[0].storage
        problems = _metadata_mismatches(directory_reader)
        if not problems:
            self._reader = reader
            return
        detail = "; ".join(problems)
        if self.strict:
            raise DataError(f"bag {path}: metadata.yaml disagrees with the storage: {detail}. "
                            "rosbags would skip these messages; open with strict=False to read "
                            "the storage's own records")
        warnings.warn(f"bag {path}: metadata.yaml disagrees with the storage ({detail}); reading "
                      "the storage's own records instead", BagMetadataWarning, stacklevel=3)
        # The DirectoryReader stays open: with file compression its storages are decompressed
        # temporary files that live as long as it does.
        self.source = "storage"
        self._decompress = directory_reader.metadata.compression_mode == "message"
        self._reader = self._any_reader([Path(s.path) for s in directory_reader.storages])

    # -- topics and messages --------------------------------------------------------------------

    @property
    def reader(self) -> AnyReader:
        if self._reader is None:
            raise DataError(f"bag {self.path} is not open; use `with BagReader(path) as bag:`")
        return self._reader

    @property
    def topics(self) -> dict[str, TopicSummary]:
        """Topic -> type and message count, in topic order."""
        out = {}
        for topic, info in self.reader.topics.items():
            msgtype = info.msgtype or "/".join(sorted({c.msgtype for c in info.connections}))
            out[topic] = TopicSummary(msgtype, int(info.msgcount))
        return out

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
        """Yield ``(topic, msgtype, log_time_ns, raw)`` in log-time order.

        Raises:
            DataError: A topic is not in the bag, or the storage fails mid-way (corrupt data).
        """
        reader = self.reader
        conns = reader.connections
        if topics is not None:
            wanted = set(topics)
            if missing := sorted(wanted - {c.topic for c in conns}):
                raise DataError(f"bag {self.path}: topics {missing} not found; topics found: "
                                f"{_describe_topics(self.topics)}")
            conns = [c for c in conns if c.topic in wanted]
            if not conns:
                return
        topic = "?"
        try:
            for conn, log_time_ns, raw in reader.messages(connections=conns):
                topic = conn.topic
                if self._decompress:
                    raw = _zstd_decompress(raw)
                yield conn.topic, conn.msgtype, log_time_ns, raw
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"bag {self.path}: reading failed after topic {topic!r}: "
                            f"{str(err).rstrip('.')}; {_REPAIR_HINT}") from err

    def deserialize(self, raw: bytes, msgtype: str, topic: str = "?") -> Any:
        """Decode one message; fall back to the default typestore when the bag's own definition
        is missing or does not fit the data.

        Raises:
            DataError: Neither definition decodes the message.
        """
        reader = self.reader
        try:
            return reader.deserialize(raw, msgtype)
        except Exception as first:  # AnyReaderError, or KeyError/TypesysError for unknown types
            default = self._default_ts or _typestore(
                Stores.ROS2_HUMBLE if reader.is2 else Stores.ROS1_NOETIC)
            try:
                if reader.is2:
                    msg = default.deserialize_cdr(raw, msgtype)
                else:
                    msg = default.deserialize_ros1(raw, msgtype)
            except Exception:
                raise DataError(f"bag {self.path}: cannot decode a {msgtype} message on topic "
                                f"{topic!r}: {first}") from first
            if msgtype not in self._warned_types:
                self._warned_types.add(msgtype)
                warnings.warn(f"bag {self.path}: the bag's definition of {msgtype} does not "
                              f"decode its data ({first}); used the default typestore's",
                              BagMetadataWarning, stacklevel=2)
            return msg


# --------------------------------------------------------------------------------------------
# camera frames


class BagFrame(NamedTuple):
    """One camera frame. ``image`` is ``[H, W, 3]`` uint8 BGR when decoding, else the message.
    ``gt`` maps the topic name below the prefix (``"/gt/depth"`` -> ``"depth"``) to a decoded
    array for Image/CompressedImage topics and to the message for other types."""

    stamp_ns: int
    header: Any
    image: Any
    camera_info: Any
    gt: dict[str, Any]


@dataclass
class _Pending:
    stamp_ns: int
    log_time_ns: int
    msg: Any
    gt: dict[str, Any] = field(default_factory=dict)
    info: Any = None


def _sibling_info_topic(camera_topic: str) -> str:
    base = camera_topic.removesuffix("/compressed")
    return base.rsplit("/", 1)[0] + "/camera_info"


class CameraBag:
    """A bag with its camera, CameraInfo and ground-truth topics resolved; iterate for frames.
    Build with :func:`open_camera_bag`."""

    def __init__(self, reader: BagReader, camera_topic: str, camera_info_topic: str | None,
                 gt_topics: Mapping[str, str], *, decode: bool, sync_window_ns: int) -> None:
        self.bag = reader
        self.path = reader.path
        self.camera_topic = camera_topic
        self.camera_msgtype = reader.topics[camera_topic].msgtype
        self.camera_info_topic = camera_info_topic
        self.gt_topics = dict(gt_topics)  # name below the prefix -> topic
        self.decode = decode
        self.sync_window_ns = sync_window_ns

    def __enter__(self) -> CameraBag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.bag.close()

    def __len__(self) -> int:
        return self.bag.topics[self.camera_topic].count

    def __iter__(self) -> Iterator[BagFrame]:
        return self.frames()

    def _stamp(self, msg: Any, log_time_ns: int) -> int:
        header = getattr(msg, "header", None)
        stamp = stamp_to_ns(header.stamp) if header is not None else 0
        return stamp or log_time_ns  # drivers that leave the stamp at 0: use the bag time

    def frames(self) -> Iterator[BagFrame]:
        """Frames in bag order. Ground truth and CameraInfo are paired by header stamp; a frame
        waits at most ``sync_window_ns`` of bag time for missing partners, then is yielded with
        what it has (CameraInfo: the latest one seen)."""
        gt_names = {topic: name for name, topic in self.gt_topics.items()}
        topics = [self.camera_topic, *gt_names]
        if self.camera_info_topic:
            topics.append(self.camera_info_topic)
        pending: deque[_Pending] = deque()
        by_stamp: dict[int, _Pending] = {}
        orphans: dict[int, tuple[int, dict[str, Any]]] = {}  # stamp -> (log time, gt so far)
        infos: dict[int, tuple[int, Any]] = {}
        latest_info = None
        for topic, msgtype, log_ns, raw in self.bag.messages(topics):
            msg = self.bag.deserialize(raw, msgtype, topic)
            stamp = self._stamp(msg, log_ns)
            if topic == self.camera_topic:
                frame = _Pending(stamp, log_ns, msg, orphans.pop(stamp, (0, {}))[1],
                                 infos.get(stamp, (0, None))[1])
                pending.append(frame)
                by_stamp[stamp] = frame
            elif topic == self.camera_info_topic:
                latest_info = msg
                infos[stamp] = (log_ns, msg)
                if stamp in by_stamp and by_stamp[stamp].info is None:
                    by_stamp[stamp].info = msg
            else:
                if stamp in by_stamp:
                    by_stamp[stamp].gt[gt_names[topic]] = msg
                else:
                    orphans.setdefault(stamp, (log_ns, {}))[1][gt_names[topic]] = msg
            while pending and (self._complete(pending[0])
                               or log_ns - pending[0].log_time_ns > self.sync_window_ns):
                yield self._release(pending.popleft(), by_stamp, latest_info)
            horizon = log_ns - self.sync_window_ns
            for buf in (orphans, infos):
                for key in [k for k, (t, _) in buf.items() if t < horizon]:
                    del buf[key]
        while pending:
            yield self._release(pending.popleft(), by_stamp, latest_info)

    def _complete(self, frame: _Pending) -> bool:
        return len(frame.gt) == len(self.gt_topics) and (
            frame.info is not None or not self.camera_info_topic)

    def _release(self, frame: _Pending, by_stamp: dict[int, _Pending], latest_info: Any) -> BagFrame:
        if by_stamp.get(frame.stamp_ns) is frame:
            del by_stamp[frame.stamp_ns]
        image = self._decode_camera(frame) if self.decode else frame.msg
        gt = {name: self._decode_gt(name, msg) if self.decode else msg
              for name, msg in sorted(frame.gt.items())}
        return BagFrame(frame.stamp_ns, frame.msg.header, image,
                        frame.info if frame.info is not None else latest_info, gt)

    def _decode_camera(self, frame: _Pending) -> np.ndarray:
        msg = frame.msg
        try:
            if hasattr(msg, "format"):  # CompressedImage
                array, encoding = decode_compressed(msg.data, msg.format)
            else:
                array, encoding = image_from_msg(msg), msg.encoding
            return to_bgr8(array, encoding)
        except ValueError as err:  # InputError from the converters
            raise DataError(f"bag {self.path}: topic {self.camera_topic!r}, frame at "
                            f"{frame.stamp_ns} ns: {err}") from err

    def _decode_gt(self, name: str, msg: Any) -> Any:
        msgtype = getattr(msg, "__msgtype__", "")
        try:
            if msgtype == "sensor_msgs/msg/Image":
                return image_from_msg(msg)
            if msgtype == "sensor_msgs/msg/CompressedImage":
                return compressed_from_msg(msg)
        except ValueError as err:
            raise DataError(f"bag {self.path}: topic {self.gt_topics[name]!r}: {err}") from err
        return msg


def open_camera_bag(path: str | os.PathLike[str], camera_topic: str | None = None,
                    gt_prefix: str = "/gt", *, camera_info_topic: str | None = None,
                    decode: bool = True, strict: bool = False,
                    sync_window_ns: int = 1_000_000_000) -> CameraBag:
    """Open a bag for replay: resolve the camera, CameraInfo and ground-truth topics.

    Example:
        >>> with open_camera_bag("drive_01/") as bag:
        ...     for stamp_ns, header, bgr, info, gt in bag:
        ...         result = engine(bgr)

    Args:
        path: See :class:`BagReader`.
        camera_topic: An Image or CompressedImage topic; auto-detected when the bag has exactly
            one (topics under ``gt_prefix`` do not count).
        gt_prefix: Topics below it are ground truth, keyed by the rest of their name.
        camera_info_topic: Default: ``<camera namespace>/camera_info`` if present, else the only
            CameraInfo topic, else none.
        decode: Decode the camera image to BGR and ground-truth images to arrays.
        strict: See :class:`BagReader`.
        sync_window_ns: Bag time a frame waits for ground truth with its stamp.

    Raises:
        DataError: The bag cannot be read, has no (or several) camera topics, or the requested
            topic is missing or has another type. The message lists the topics found.
    """
    reader = BagReader(path, strict=strict).__enter__()
    try:
        topics = reader.topics
        prefix = gt_prefix.rstrip("/") + "/"
        gt_topics = {t[len(prefix):]: t for t in topics if t.startswith(prefix)}
        camera_topic = _pick_camera(reader.path, topics, camera_topic, prefix)
        if camera_info_topic is None:
            infos = [t for t, s in topics.items()
                     if s.msgtype == CAMERA_INFO_TYPE and not t.startswith(prefix)]
            sibling = _sibling_info_topic(camera_topic)
            camera_info_topic = sibling if sibling in infos else (infos[0] if len(infos) == 1 else None)
            if camera_info_topic is None and len(infos) > 1:
                warnings.warn(f"bag {reader.path}: several CameraInfo topics {infos} and none is "
                              f"{sibling!r}; pass camera_info_topic= to use one", stacklevel=2)
        elif camera_info_topic not in topics or topics[camera_info_topic].msgtype != CAMERA_INFO_TYPE:
            found = topics[camera_info_topic].msgtype if camera_info_topic in topics else "missing"
            raise DataError(f"bag {reader.path}: camera_info_topic {camera_info_topic!r} is "
                            f"{found}, expected {CAMERA_INFO_TYPE}; topics found: "
                            f"{_describe_topics(topics)}")
        return CameraBag(reader, camera_topic, camera_info_topic, gt_topics, decode=decode,
                         sync_window_ns=sync_window_ns)
    except BaseException:
        reader.close()
        raise


def _pick_camera(path: Path, topics: Mapping[str, TopicSummary], requested: str | None,
                 gt_prefix: str) -> str:
    expected = " or ".join(IMAGE_TYPES)
    if requested is not None:
        if requested not in topics:
            raise DataError(f"bag {path}: camera topic {requested!r} not found; topics found: "
                            f"{_describe_topics(topics)}")
        if topics[requested].msgtype not in IMAGE_TYPES:
            raise DataError(f"bag {path}: topic {requested!r} has type "
                            f"{topics[requested].msgtype}, expected {expected}")
        return requested
    candidates = [t for t, s in topics.items()
                  if s.msgtype in IMAGE_TYPES and not t.startswith(gt_prefix)]
    if not candidates:
        raise DataError(f"bag {path}: no camera topic ({expected}) outside {gt_prefix!r}; "
                        f"topics found: {_describe_topics(topics)}")
    if len(candidates) > 1:
        listed = ", ".join(f"{t} ({topics[t].msgtype})" for t in candidates)
        raise DataError(f"bag {path}: {len(candidates)} camera topics found: {listed}; pass "
                        "camera_topic= to choose one")
    return candidates[0]


# --------------------------------------------------------------------------------------------
# writing


class BagOutputWriter:
    """Write a new rosbag2 bag atomically: built in a hidden temporary directory beside ``path``
    and renamed to ``path`` when the ``with`` block succeeds; on any exception nothing is left.

    Example:
        >>> with BagOutputWriter(out_dir, compression="zstd") as out:
        ...     out.add_connection("/perception/segmentation", "sensor_msgs/msg/Image")
        ...     out.write_message("/perception/segmentation", stamp_ns, make_image(mask, header))

    Args:
        path: The bag directory to create; must not exist unless ``overwrite``.
        storage: ``"mcap"`` (default) or ``"sqlite3"``.
        compression: ``None`` or ``"zstd"``: MCAP chunk compression (readable by any MCAP
            reader), or per-message compression for sqlite3.
        typestore: Message definitions for connections and serialization (ROS2_HUMBLE).
        overwrite: Replace an existing bag at ``path`` (only after the new one is complete).

    Raises:
        DataError: Bad options, existing target, unknown type, duplicate or unknown topic.
    """

    def __init__(self, path: str | os.PathLike[str], *, storage: str = "mcap",
                 compression: str | None = None, typestore: Typestore | None = None,
                 overwrite: bool = False) -> None:
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise DataError(f"storage must be one of {sorted(plugins)}, got {storage!r}")
        if compression not in (None, "zstd"):
            raise DataError(f"compression must be None or 'zstd', got {compression!r}")
        self.path = Path(path)
        self.storage = storage
        self.compression = compression
        self.typestore = typestore or _humble()
        self.overwrite = overwrite
        self._plugin = plugins[storage]
        self._tmp_root: Path | None = None
        self._writer: Writer | None = None
        self._connections: dict[str, Connection] = {}

    def __enter__(self) -> BagOutputWriter:
        if self.path.exists() and not self.overwrite:
            raise DataError(f"output bag {self.path} exists already; remove it or pass overwrite=True")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp_root = self.path.parent / f".{self.path.name}.partial-{uuid.uuid4().hex[:12]}"
        self._tmp_root.mkdir()
        try:
            writer = Writer(self._tmp_root / self.path.name, version=9, storage_plugin=self._plugin)
            if self.compression == "zstd":
                mode = CompressionMode.STORAGE if self.storage == "mcap" else CompressionMode.MESSAGE
                writer.set_compression(mode, CompressionFormat.ZSTD)
            writer.open()
        except BaseException:
            shutil.rmtree(self._tmp_root, ignore_errors=True)
            raise
        self._writer = writer
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        writer, self._writer = self._writer, None
        tmp_root, self._tmp_root = self._tmp_root, None
        assert writer is not None and tmp_root is not None
        try:
            if exc_type is not None:
                with contextlib.suppress(Exception):
                    writer.abort()
                return
            writer.close()
            self._move_into_place(tmp_root / self.path.name)
        finally:
            shutil.rmtree(tmp_root, ignore_errors=True)

    def _move_into_place(self, built: Path) -> None:
        if not self.path.exists():
            os.rename(built, self.path)
            return
        backup = self.path.parent / f".{self.path.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(self.path, backup)
        try:
            os.rename(built, self.path)
        except BaseException:
            os.rename(backup, self.path)
            raise
        if backup.is_dir():
            shutil.rmtree(backup)
        else:
            backup.unlink()

    @property
    def _open_writer(self) -> Writer:
        if self._writer is None:
            raise DataError(f"output bag {self.path} is not open; use `with BagOutputWriter(...)`")
        return self._writer

    def add_connection(self, topic: str, msgtype: str, *,
                       offered_qos_profiles: Sequence[Any] = ()) -> Connection:
        """Register a topic with its type (definition from the typestore)."""
        writer = self._open_writer
        if topic in self._connections:
            raise DataError(f"output bag {self.path}: topic {topic!r} was added already "
                            f"as {self._connections[topic].msgtype}")
        if msgtype not in self.typestore.fielddefs:
            raise DataError(f"output bag {self.path}: message type {msgtype!r} for topic {topic!r} "
                            "is not in the typestore; register it or pass typestore=")
        conn = writer.add_connection(topic, msgtype, typestore=self.typestore,
                                     offered_qos_profiles=offered_qos_profiles)
        self._connections[topic] = conn
        return conn

    def write(self, topic: str, stamp_ns: int, data: bytes | memoryview) -> None:
        """Write one serialized (CDR) message at bag time ``stamp_ns``."""
        writer = self._open_writer
        if topic not in self._connections:
            raise DataError(f"output bag {self.path}: topic {topic!r} has no connection; call "
                            f"add_connection first (known: {sorted(self._connections)})")
        writer.write(self._connections[topic], int(stamp_ns), data)

    def write_message(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Serialize and write a rosbags message object; adds the connection on first use."""
        msgtype = msg.__msgtype__
        if topic not in self._connections:
            self.add_connection(topic, msgtype)
        elif self._connections[topic].msgtype != msgtype:
            raise DataError(f"output bag {self.path}: topic {topic!r} is "
                            f"{self._connections[topic].msgtype}, got a {msgtype}")
        self.write(topic, stamp_ns, self.typestore.serialize_cdr(msg, msgtype))


# --------------------------------------------------------------------------------------------
# message builders (rosbags message classes; the node builds rclpy ones in ros2_nodes/)


def make_header(stamp_ns: int, frame_id: str = "", typestore: Typestore | None = None) -> Any:
    """``std_msgs/msg/Header`` with ``stamp_ns`` split into sec/nanosec."""
    ts = typestore or _humble()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    time = ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return ts.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def make_image(array: np.ndarray, header: Any, encoding: str = "passthrough",
               typestore: Typestore | None = None) -> Any:
    """``sensor_msgs/msg/Image`` from an array (e.g. ``mono8`` ids, ``32FC1`` metres)."""
    fields = image_to_fields(array, encoding)
    fields["data"] = np.frombuffer(fields["data"], dtype=np.uint8)
    return (typestore or _humble()).types["sensor_msgs/msg/Image"](header=header, **fields)


def make_compressed_image(array: np.ndarray, header: Any, fmt: str = "jpeg", quality: int = 90,
                          typestore: Typestore | None = None) -> Any:
    """``sensor_msgs/msg/CompressedImage`` (BGR colour or mono) encoded as image_transport does."""
    fields = image_to_compressed_fields(array, fmt, quality)
    return (typestore or _humble()).types["sensor_msgs/msg/CompressedImage"](
        header=header, format=fields["format"], data=np.frombuffer(fields["data"], np.uint8))


def make_path(points_m: np.ndarray, header: Any, typestore: Typestore | None = None, *,
              heading: bool = False) -> Any:
    """``nav_msgs/msg/Path`` through ``[N, 2]`` or ``[N, 3]`` points (metres, in
    ``header.frame_id``); each pose carries ``header``. Orientations are the identity, or with
    ``heading`` the yaw along the path (as the node publishes ``~/lanes/path``)."""
    from calibration.lanes import path_headings

    ts = typestore or _humble()
    points = np.asarray(points_m, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise DataError(f"path points must be [N, 2] or [N, 3], got shape {points.shape}")
    if points.shape[1] == 2:
        points = np.column_stack([points, np.zeros(len(points))])
    point_t, quat_t = ts.types["geometry_msgs/msg/Point"], ts.types["geometry_msgs/msg/Quaternion"]
    pose_t, stamped_t = ts.types["geometry_msgs/msg/Pose"], ts.types["geometry_msgs/msg/PoseStamped"]
    yaw = path_headings(points) if heading else np.zeros(len(points))
    poses = [
        stamped_t(header=header, pose=pose_t(
            position=point_t(x=float(x), y=float(y), z=float(z)),
            orientation=quat_t(x=0.0, y=0.0, z=float(np.sin(a / 2)), w=float(np.cos(a / 2)))))
        for (x, y, z), a in zip(points, yaw, strict=True)
    ]
    return ts.types["nav_msgs/msg/Path"](header=header, poses=poses)
