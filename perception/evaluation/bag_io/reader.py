"""Reading one bag with ``rosbags`` only (:class:`BagReader`): rosbag2 directories (MCAP or
sqlite3), bare ``.mcap`` / ``.db3`` files and ROS 1 ``.bag`` files.

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
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores

from perception.errors import DataError
from perception.evaluation.bag_io.message import cached_typestore

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore

__all__ = ["BagMetadataWarning", "TopicSummary", "BagReader", "describe_topics"]


_STORAGE_SUFFIXES = (".mcap", ".db3")
_REPAIR_HINT = (
    "the file may be truncated or corrupt, e.g. by a killed recording: `mcap recover` repairs "
    "a truncated MCAP file, `ros2 bag reindex` rebuilds a missing metadata.yaml"
)


class BagMetadataWarning(UserWarning):
    """A bag's metadata disagrees with its storage; the storage's own records were used."""


@dataclass(frozen=True)
class TopicSummary:
    msgtype: str
    count: int  # messages as recorded by the source that is read (metadata or storage)


def describe_topics(topics: Mapping[str, TopicSummary]) -> str:
    """``"/a (type, N msgs), ..."`` for error messages."""
    if not topics:
        return "(no topics)"
    return ", ".join(f"{t} ({s.msgtype}, {s.count} msgs)" for t, s in sorted(topics.items()))


def _zstd_decompress(data: bytes) -> bytes:
    try:
        from compression import zstd  # Python >= 3.14
    except ImportError:
        from backports import zstd  # a rosbags dependency before 3.14
    return zstd.decompress(data)


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
        default = self._default_ts or cached_typestore(
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
                                f"{describe_topics(self.topics)}")
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
            default = self._default_ts or cached_typestore(
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
