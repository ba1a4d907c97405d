"""Writing a new rosbag2 bag atomically (:class:`BagOutputWriter`): built in a temporary directory
beside the target and renamed into place only on success."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

from perception.errors import DataError
from perception.evaluation.bag_io.message import humble_typestore

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.typesys.store import Typestore

__all__ = ["BagOutputWriter"]


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
        self.typestore = typestore or humble_typestore()
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
