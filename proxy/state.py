"""What the proxy serves from, worked out from the settings: the route, the replay index, the stored completions.

`ProxyState.build` does it once at startup. An embedding caller (the pytest plugin) builds a new one for each
test's cassette directory and mode, and the app swaps it in whole (`app.retarget`): requests already running
finish with the state they started with, new ones see the new one.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from proxy.cassettes import load_heads
from proxy.forward import ForwardConfig
from proxy.matching import MatchPolicy
from proxy.recording import Redaction
from proxy.replay import ReplayIndex
from proxy.settings import RecordMode, Settings
from proxy.stored_routes import StoredCompletions, stored_completions

log = logging.getLogger("proxy")


@dataclass(frozen=True, slots=True)
class Route:
    """What `handle` needs to know of the settings, worked out once: it runs for every request."""

    replays: bool
    records: bool
    forward: ForwardConfig

    @classmethod
    def of(cls, settings: Settings) -> Route:
        return cls(
            replays=settings.replays,
            records=settings.records,
            forward=ForwardConfig(
                upstream=settings.upstream,
                connect_timeout=settings.connect_timeout,
                first_byte_timeout=settings.first_byte_timeout,
                chunk_timeout=settings.chunk_timeout,
                mode=settings.mode.value,
                cassettes=settings.cassettes,
                default_tags={name.lower(): value for name, value in settings.default_tags.items()},
            ),
        )


def redaction_for(settings: Settings) -> Redaction:
    return Redaction(
        secret_headers=frozenset(name.lower() for name in settings.secret_headers),
        secret_query_params=frozenset(name.lower() for name in settings.secret_query_params),
        secret_body_fields=frozenset(settings.secret_body_fields),
    )


def match_policy_for(settings: Settings) -> MatchPolicy:
    return MatchPolicy(
        # a secret field is recorded as a marker, so it can't take part in matching
        ignore_body_fields=frozenset(settings.ignore_body_fields) | frozenset(settings.secret_body_fields),
        match_headers=tuple(name.lower() for name in settings.match_headers),
        on_exhausted=settings.on_exhausted,
    )


@dataclass(slots=True)
class LoadReport:
    """What replay found in the cassette directory: how many recordings it serves, and what it left out, why."""

    loaded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def line(self, directory: Path) -> str:
        text = f"loaded {self.loaded} recording(s) from {directory}/"
        if self.skipped:
            reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common())
            text += f"; skipped {sum(self.skipped.values())}: {reasons}"
        return text


def load_replay_index(settings: Settings) -> tuple[ReplayIndex, LoadReport]:
    """Read every cassette under the directory into the index; bad files are skipped with one warning each."""
    index = ReplayIndex(match_policy_for(settings), forwards_misses=settings.mode is RecordMode.AUTO)
    report = LoadReport()
    directory = settings.cassettes
    if directory.is_dir():
        good, bad = load_heads(directory)
        for item in bad:
            log.warning("skipping cassette %s: %s", item.path, item.reason)
        report.skipped.update("unreadable" for _ in bad)
        for path, interaction in sorted(good, key=lambda pair: pair[1].metadata.recorded_at):
            reason = index.add(interaction, path)
            if reason is None:
                report.loaded += 1
            else:
                report.skipped[reason] += 1
    return index, report


@dataclass(slots=True)
class ProxyState:
    settings: Settings
    route: Route
    index: ReplayIndex | None
    report: LoadReport
    stored: StoredCompletions | None

    @classmethod
    def build(cls, settings: Settings, replay_index: ReplayIndex | None = None) -> ProxyState:
        """`once` decided, the replay index loaded (unless given) when the mode replays."""
        settings = settings.resolved()
        index: ReplayIndex | None = None
        report = LoadReport()
        if settings.replays:
            if replay_index is not None:
                index, report.loaded = replay_index, len(replay_index)
            else:
                index, report = load_replay_index(settings)
        stored = None
        if index is not None and settings.stored_completions == "local":
            stored = stored_completions(index, settings.cassettes, store_all=settings.store_all)
        return cls(settings, Route.of(settings), index, report, stored)

    def take(self, other: ProxyState) -> None:
        """Become `other`: the app holds one state object, so a swap is seen by every handler at once."""
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(other, name))
