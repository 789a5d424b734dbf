"""What the proxy and its recording worker exchange over their socket pair, importable by both ends.

Kept apart from the channel (worker.py) so that the worker process never imports asyncio: with it come the ssl
module and OpenSSL's libssl, about 3 MB of the worker's memory for nothing it uses.

A frame is a 4-byte big-endian length, then a pickle of one message (kind, sequence number, payload).

Parent -> worker: ("batch", seq, batch_payload([Recording])), ("stats", seq), ("close", seq).
Worker -> parent: ("ready", 0, None), ("done", seq, ([Written], sink stats or None)), ("stats", seq, sink stats),
                  ("closed", seq, sink stats).
"""

from __future__ import annotations

import marshal
import pickle
import struct
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from proxy.pipeline import PipelineConfig
from proxy.recording import Recording, field_values

FRAME_LENGTH = struct.Struct("!I")
Message = tuple[str, int, Any]
Priority = Literal["idle", "low"]


def frame(message: Message) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_LENGTH.pack(len(payload)) + payload


@dataclass(frozen=True)
class WorkerConfig:
    pipeline: PipelineConfig
    priority: Priority = "idle"


# A batch of recordings crosses as marshal data, each recording the list of its fields: pickling the Recording
# objects took 3.9 us per recording on the event loop, marshal 1.7 (a batch of 32 plain exchanges). Both ends
# are the same interpreter (the worker is started with sys.executable), which is all marshal asks. Its types
# are the builtins only, so the two fields that are not go as an integer and a string.
_NAMES = [f.name for f in fields(Recording)]
_RECORDED_AT = _NAMES.index("recorded_at")  # microseconds since the epoch: exact, unlike a float timestamp
_DIRECTORY = _NAMES.index("directory")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def batch_payload(recordings: list[Recording]) -> bytes:
    rows = []
    for recording in recordings:
        values = list(field_values(recording))
        values[_RECORDED_AT] = (recording.recorded_at - _EPOCH) // _MICROSECOND
        values[_DIRECTORY] = str(recording.directory)
        rows.append(values)
    try:
        return marshal.dumps(rows)
    except ValueError:  # a str subclass somewhere (multidict's istr as a header name): as plain values
        return marshal.dumps([[_plain(value) for value in values] for values in rows])


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {_plain(key): _plain(item) for key, item in value.items()}
    return value


def recordings_of(payload: bytes) -> list[Recording]:
    recordings = []
    # One Path per directory, shared as before: the answers carry it back, and pickle sends a shared object once
    # per frame, where each Path of its own would be built again on the proxy's event loop.
    directories: dict[str, Path] = {}
    for values in marshal.loads(payload):
        values[_RECORDED_AT] = _EPOCH + values[_RECORDED_AT] * _MICROSECOND
        directory = values[_DIRECTORY]
        values[_DIRECTORY] = directories.get(directory) or directories.setdefault(directory, Path(directory))
        recordings.append(Recording(*values))
    return recordings
