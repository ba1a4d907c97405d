"""Watch the adapters directory for task bundles by polling (no inotify, no extra dependencies).

A bundle is ``<name>.tadtask/`` (manifest + weights) or ``<name>.safetensors`` (single file), as
``perception.training.bundle`` writes them. Hidden entries and ``*.tmp`` are skipped:
``write_bundle`` writes to ``.<name>.tadtask.<random>.tmp`` and renames, so a bundle appears
complete in one step. Bundles copied in by other tools (``cp -r``, ``rsync``) appear piece by
piece; :class:`AdaptersWatcher` therefore reports an entry only once its signature (inode,
newest mtime, total size) was the same in two consecutive polls.

No ROS here: the node calls :meth:`AdaptersWatcher.poll` from its control thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BundleFile", "Changes", "scan_bundles", "AdaptersWatcher"]

BUNDLE_SUFFIXES = (".tadtask", ".safetensors")


@dataclass(frozen=True)
class BundleFile:
    """One bundle found on disk; ``name`` comes from the file name (the manifest must agree)."""

    name: str
    path: Path
    signature: tuple[int, int, int]  # (inode, newest mtime_ns, total size in bytes)


@dataclass
class Changes:
    added: list[BundleFile] = field(default_factory=list)
    changed: list[BundleFile] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
        if not path.is_dir():
            return (st.st_ino, st.st_mtime_ns, st.st_size)
        mtime, size = st.st_mtime_ns, 0
        for child in path.iterdir():
            cst = child.stat()
            mtime, size = max(mtime, cst.st_mtime_ns), size + cst.st_size
        return (st.st_ino, mtime, size)
    except OSError:  # removed while we looked: not there
        return None


def scan_bundles(directory: str | Path | None) -> dict[str, BundleFile]:
    """Bundles in ``directory`` by task name (a directory bundle wins over a same-named file).

    A missing or empty directory name gives ``{}``.
    """
    if not directory:
        return {}
    root = Path(directory).expanduser()
    if not root.is_dir():
        return {}
    found: dict[str, BundleFile] = {}
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return {}
    for entry in entries:
        if entry.name.startswith(".") or entry.suffix not in BUNDLE_SUFFIXES:
            continue
        if entry.suffix == ".tadtask" and not entry.is_dir():
            continue
        sig = _signature(entry)
        if sig is None:
            continue
        name = entry.name[: -len(entry.suffix)]
        if name in found and found[name].path.suffix == ".tadtask":
            continue
        found[name] = BundleFile(name, entry, sig)
    return found


class AdaptersWatcher:
    """Reports bundles that appeared, changed or disappeared since the last report.

    Example:
        >>> watcher = AdaptersWatcher("/var/lib/tadp/adapters")
        >>> changes = watcher.poll()      # every second, from the node's control thread
        >>> [b.name for b in changes.added]
    """

    def __init__(self, directory: str | Path | None) -> None:
        self.directory = directory
        self._previous = scan_bundles(directory)  # the last raw scan
        self._known = dict(self._previous)  # the state last reported (or adopted at start)

    @property
    def known(self) -> dict[str, BundleFile]:
        return dict(self._known)

    def adopt(self, bundles: dict[str, BundleFile]) -> None:
        """Take ``bundles`` (e.g. a fresh scan the node just acted on) as the reported state."""
        self._known = dict(bundles)

    def poll(self) -> Changes:
        now = scan_bundles(self.directory)
        out = Changes()
        for name, entry in now.items():
            stable = self._previous.get(name) == entry
            if not stable:
                continue  # appearing or being written: wait for one more poll
            old = self._known.get(name)
            if old is None:
                out.added.append(entry)
            elif old.signature != entry.signature or old.path != entry.path:
                out.changed.append(entry)
            self._known[name] = entry
        for name in list(self._known):
            if name not in now and name not in self._previous:  # gone for two polls
                out.removed.append(name)
                del self._known[name]
        self._previous = now
        return out
