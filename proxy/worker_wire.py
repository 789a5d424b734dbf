"""What the proxy and its recording worker exchange over their socket pair, importable by both ends.

Kept apart from the channel (worker.py) so that the worker process never imports asyncio: with it come the ssl
module and OpenSSL's libssl, about 3 MB of the worker's memory for nothing it uses.

A frame is a 4-byte big-endian length, then a pickle of one message (kind, sequence number, payload).

Parent -> worker: ("batch", seq, [Recording]), ("stats", seq), ("close", seq).
Worker -> parent: ("ready", 0, None), ("done", seq, ([Written], sink stats)), ("stats", seq, sink stats),
                  ("closed", seq, sink stats).
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from typing import Any, Literal

from proxy.pipeline import PipelineConfig

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
