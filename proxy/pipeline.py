"""The recording pipeline: Recording -> Interaction -> cassette file -> sinks, in one place.

It runs wherever its runner puts it (runners.py: on a thread of this process, or in the recording worker
process) and is wired the same either way. Sinks are what the composition root hands in (the DuckDB rows are
one): each is built from a factory where the pipeline runs, so a sink that lives in the worker process never
crosses a process boundary itself; only its factory does (a module-level callable, pickled by reference).

What comes back to the proxy for each recording is small (`Written`): the cassette's path, an error if it could
not be written, the few fields of the traffic log line, and the replay index's head when the proxy replays
what it records. Never the whole interaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from proxy.cassettes import CassetteHead, head_of, write_cassette
from proxy.interaction import Interaction
from proxy.recording import Recording, Redaction, build_interaction

log = logging.getLogger("proxy.record")

__all__ = ["Pipeline", "PipelineConfig", "Sink", "SinkFactory", "SinkStats", "Summary", "Written"]


@dataclass(frozen=True, slots=True)
class SinkStats:
    """A sink's counters, as `/_proxy/health` shows them."""

    name: str
    rows_written: int = 0
    write_errors: int = 0
    last_error: str | None = None
    rows_dropped: int = 0


class Sink(Protocol):
    """Where interactions go besides their cassette. `submit` must not block for long nor raise."""

    def submit(self, interaction: Interaction, cassette: str | None) -> None: ...

    def stats(self) -> SinkStats: ...

    def close(self) -> SinkStats: ...


# Builds a sink where the pipeline runs. Module-level functions or classes (or partials of them) only: a factory
# crosses to the worker process by reference.
SinkFactory = Callable[[], Sink]

# The traffic log line of a recorded exchange: method, path, requested model, status, total ms, and whether
# the upstream failed.
Summary = tuple[str, str, str | None, int, float | None, bool]


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    redaction: Redaction
    sinks: tuple[SinkFactory, ...] = ()
    send_heads: bool = False  # the proxy replays what it records (auto mode): send the index head back


@dataclass(slots=True)
class Written:
    """What the proxy learns of one recording."""

    directory: Path
    cassette: str | None  # relative to directory; None if it could not be written
    error: str | None
    summary: Summary | None
    head: CassetteHead | None = None

    def __reduce__(self) -> tuple[type[Written], tuple[Any, ...]]:
        # One comes back to the event loop per recording; a slots dataclass unpickles through a Python-level
        # __setstate__ (2.1 us each in a batch of 64, against 1.8 us this way, and 58 bytes rather than 75).
        return Written, (self.directory, self.cassette, self.error, self.summary, self.head)


def summary_of(interaction: Interaction) -> Summary:
    request = interaction.request
    return (
        request.method,
        request.path,
        interaction.requested_model,
        interaction.response.status,
        interaction.timings.total_ms,
        interaction.outcome.error is not None,
    )


class Pipeline:
    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.sinks: list[Sink] = []

    def open(self) -> None:
        """Build the sinks. One that cannot start is logged and left out: cassettes are still written."""
        for factory in self.config.sinks:
            try:
                self.sinks.append(factory())
            except Exception:
                log.exception("a recording sink could not start; cassettes are still written")

    def run(self, recording: Recording) -> Written:
        """Build the Interaction, write its cassette, hand it to the sinks. Never raises."""
        directory = recording.directory
        try:
            interaction = build_interaction(recording, self.config.redaction)
        except Exception as exc:  # a bug in our own code must not stop the recordings after it
            log.exception("could not build a recording of %s %s", recording.method, recording.path)
            return Written(directory, None, f"build failed: {exc!r}", None)
        cassette: str | None = None
        error: str | None = None
        try:
            cassette = str(write_cassette(directory, interaction).relative_to(directory))
        except OSError as exc:
            error = f"cannot write cassette in {directory}: {exc.strerror or exc}"
        for sink in self.sinks:
            try:
                sink.submit(interaction, cassette)
            except Exception:
                log.exception("a recording sink failed on interaction %s", interaction.id)
        head = head_of(interaction) if self.config.send_heads and cassette is not None else None
        return Written(directory, cassette, error, summary_of(interaction), head)

    def stats(self) -> tuple[SinkStats, ...]:
        return tuple(sink.stats() for sink in self.sinks)

    def close(self) -> tuple[SinkStats, ...]:
        """Flush and stop every sink (the DuckDB writer's last flush happens here)."""
        closed = []
        for sink in self.sinks:
            try:
                closed.append(sink.close())
            except Exception:
                log.exception("a recording sink failed to close")
        return tuple(closed)
