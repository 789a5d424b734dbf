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

from proxy.cassettes import CassetteError, iter_cassette_paths, load_head
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


def new_replay_index(settings: Settings) -> ReplayIndex:
    return ReplayIndex(match_policy_for(settings), forwards_misses=settings.mode is RecordMode.AUTO)


def load_replay_index(settings: Settings, index: ReplayIndex | None = None) -> tuple[ReplayIndex, LoadReport]:
    """Read every cassette under the directory into the index (a new one unless given, e.g. with listeners that
    must see every recording); bad files are skipped with one warning each. Each file's head is indexed as it
    is read and then let go, so a large directory is never all in memory at once."""
    index = index if index is not None else new_replay_index(settings)
    report = LoadReport()
    directory = settings.cassettes
    if directory.is_dir():
        for path in iter_cassette_paths(directory):
            try:
                head = load_head(path)
            except CassetteError as exc:
                log.warning("skipping cassette %s: %s", path, exc)
                report.skipped["unreadable"] += 1
                continue
            reason = index.add(head, path)
            if reason is None:
                report.loaded += 1
            else:
                report.skipped[reason] += 1
        index.sort()
    return index, report


@dataclass(slots=True)
class ProxyState:
    settings: Settings
    route: Route
    index: ReplayIndex | None
    report: LoadReport
    stored: StoredCompletions | None

    @classmethod
    def build(cls, settings: Settings) -> ProxyState:
        """`once` decided, and the replay index loaded when the mode replays (the stored completions listen
        while it loads)."""
        settings = settings.resolved()
        index: ReplayIndex | None = None
        stored = None
        report = LoadReport()
        if settings.replays:
            index = new_replay_index(settings)
            if settings.stored_completions == "local":
                stored = stored_completions(index, settings.cassettes, store_all=settings.store_all)
            index, report = load_replay_index(settings, index)
        return cls(settings, Route.of(settings), index, report, stored)

    def take(self, other: ProxyState) -> None:
        """Become `other`: the app holds one state object, so a swap is seen by every handler at once."""
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(other, name))
