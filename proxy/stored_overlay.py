"""Updates and deletes of stored completions, kept in one small JSON file beside the cassettes.

Cassettes are never rewritten: `<cassettes>/.stored-overlay.json` holds the metadata set through the API
(by completion id) and the ids deleted through it, and the stored-completions index applies it on top at every
read. Deleting the file undoes every update and delete (a running proxy notices at its next request).

    {"version": 1, "metadata": {"chatcmpl-...": {"team": "b"}}, "deleted": ["chatcmpl-..."]}

Each change is a read-modify-write under an exclusive `flock` on `.stored-overlay.lock`, so two proxies over
one directory never lose each other's changes, and the file is replaced atomically (temporary file, fsync,
rename), so a reader never sees half of it. A proxy re-reads the file when its inode, size or mtime changed,
which costs one `stat` per request. The name starts with a dot, so replay never takes it for a cassette.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from proxy.stored import NO_CHANGES, Changes

__all__ = ["LOCK_NAME", "OVERLAY_NAME", "Overlay"]

log = logging.getLogger("proxy.stored")

OVERLAY_NAME = ".stored-overlay.json"
LOCK_NAME = ".stored-overlay.lock"
VERSION = 1
_NOTE = (
    "Updates and deletes made through the stored Chat Completions API; the cassettes are never rewritten. "
    "Delete this file to undo them all."
)

_Signature = tuple[int, int, int]  # inode, size, mtime in ns


class Overlay:
    def __init__(self, directory: Path) -> None:
        self.path = directory / OVERLAY_NAME
        self.lock_path = directory / LOCK_NAME
        self._changes = NO_CHANGES
        self._signature: _Signature | None = None

    def changes(self) -> Changes:
        """The changes as the file holds them now (read again only when the file changed)."""
        signature = self._stat()
        if signature != self._signature:
            self._changes = _parse(self._read(), self.path) if signature is not None else NO_CHANGES
            self._signature = signature
        return self._changes

    def set_metadata(self, completion_id: str, metadata: dict[str, str]) -> bool:
        """Record new metadata; False (and nothing written) when the completion was deleted meanwhile."""

        def change(data: dict[str, Any]) -> bool:
            if completion_id in data["deleted"]:
                return False
            data["metadata"][completion_id] = metadata
            return True

        return self._modify(change)

    def delete(self, completion_id: str) -> bool:
        """Record a deletion; False when it was deleted already (by us or another proxy)."""

        def change(data: dict[str, Any]) -> bool:
            if completion_id in data["deleted"]:
                return False
            data["deleted"].append(completion_id)
            data["metadata"].pop(completion_id, None)
            return True

        return self._modify(change)

    # --- the file ---

    def _stat(self) -> _Signature | None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _read(self) -> Any:
        try:
            return json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s, which cannot be read: %s", self.path, exc)
            return None

    def _modify(self, change: Callable[[dict[str, Any]], bool]) -> bool:
        """Read the file afresh under the lock, apply `change`, write it back if it says so. Blocking."""
        with self._locked():
            current = _parse(self._read(), self.path)
            data: dict[str, Any] = {
                "version": VERSION,
                "metadata": {key: dict(value) for key, value in current.metadata.items()},
                "deleted": sorted(current.deleted),
            }
            if not change(data):
                return False
            self._write(data)
            self._changes = _parse(data, self.path)
            self._signature = self._stat()
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write(self, data: dict[str, Any]) -> None:
        document = {"version": VERSION, "note": _NOTE, "metadata": data["metadata"], "deleted": sorted(data["deleted"])}
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-overlay-", suffix=".part", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a crash once the directory is synced
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


def _parse(data: Any, path: Path) -> Changes:
    """The changes a file's JSON holds; anything malformed in it is skipped (with a warning), not fatal."""
    if data is None:
        return NO_CHANGES
    if not isinstance(data, dict) or data.get("version") != VERSION:
        log.warning("ignoring %s: not a version-%d stored-completions overlay", path, VERSION)
        return NO_CHANGES
    metadata: dict[str, dict[str, str]] = {}
    raw_metadata = data.get("metadata")
    for key, value in raw_metadata.items() if isinstance(raw_metadata, dict) else ():
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            metadata[key] = value
    raw_deleted = data.get("deleted")
    deleted = frozenset(
        item for item in (raw_deleted if isinstance(raw_deleted, list) else ()) if isinstance(item, str)
    )
    return Changes(metadata=metadata, deleted=deleted)
