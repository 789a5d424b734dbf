"""The replay index: request -> key -> next recording; a miss explains itself (replay_answer.py sends it).

Identical requests replay in the order they were recorded (a queue per key, as mitmproxy's server replay
does); once used up, the last one repeats or the request fails, as the policy says. An entry keeps what
matching needs and where its file is; its answer is read and prepared once, on first use.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from multidict import CIMultiDictProxy

from proxy.cassettes import CassetteError, CassetteHead, load_cassette
from proxy.interaction import REDACTED, Interaction
from proxy.matching import MatchPolicy, RequestFacts, closest, difference_details, request_key
from proxy.recording import CLIENT_LEFT, body_bytes
from proxy.replay_answer import Prepared, prepare_answer

log = logging.getLogger("proxy.replay")

# The cache of raw requests to keys: bounded in entries and in the size of a body it keeps.
_RAW_KEY_LIMIT = 4096
_RAW_KEY_MAX_BODY = 64 * 1024


@dataclass(slots=True)
class Entry:
    # An interaction held in memory (no file); None for one on disk, read in full from `path` on first replay:
    # keeping every head would hold tens of MB for a large directory, and replay reads the file anyway.
    record: Interaction | None
    path: Path | None
    label: str
    facts: RequestFacts
    recorded_at: str = ""
    prepared: Prepared | None = None

    def prepare(self) -> Prepared:
        """Response bytes, built once. Raises CassetteError if the file went bad since it was indexed."""
        if self.prepared is None:
            if self.record is not None:
                interaction = self.record
            elif self.path is not None:
                interaction = load_cassette(self.path)
            else:
                raise CassetteError("a recording indexed with neither its interaction nor its file")
            self.prepared = prepare_answer(interaction)
        return self.prepared


@dataclass(slots=True)
class _Queue:
    entries: list[Entry] = field(default_factory=list)
    used: int = 0


def recorded_facts(interaction: Interaction | CassetteHead) -> RequestFacts:
    """A recording's request seen exactly as a live one is: built from the same bytes, by the same code."""
    request = interaction.request
    body = request.body
    if body.json_ is not None and body.layout is not None:
        # The stored value is what the live side would parse from these bytes: skip the round trip.
        return RequestFacts.build(request.method, request.path, request.query, request.headers, body.json_)
    return RequestFacts.from_parts(
        request.method, request.path, request.query, request.headers, body_bytes(request.body)
    )


def _masked(facts: RequestFacts, query_names: frozenset[str], header_names: frozenset[str]) -> RequestFacts:
    """The live request with the values that recordings hold only redacted (a secret `?key=`, a matched
    secret header) replaced by the same marker, so that a request carrying a secret can still match."""
    if not any(name in query_names for name, _ in facts.query) and not any(
        name in header_names for name, _ in facts.headers
    ):
        return facts
    return dataclasses.replace(
        facts,
        query=tuple(sorted((name, REDACTED if name in query_names else value) for name, value in facts.query)),
        headers=tuple((name, REDACTED if name in header_names else value) for name, value in facts.headers),
    )


# Why a recording is not indexed (counted and shown when replay starts).
NEVER_ANSWERED = "upstream never answered"
NO_FILE = "no cassette file to replay from"
CLIENT_LEFT_AUTO = "client left before the end (auto mode forwards these again)"
SERVER_ERROR_AUTO = "upstream 5xx (auto mode forwards these again)"


class ReplayIndex:
    """Recordings by request key, each key a queue replayed in recorded order.

    In replay mode everything the upstream answered is served, a stream the client abandoned included (it
    replays what was recorded and ends where the recording ended). In auto mode (`forwards_misses`) such
    fragments and upstream 5xx answers are left out, so they are forwarded again rather than frozen in."""

    def __init__(self, policy: MatchPolicy, *, forwards_misses: bool = False) -> None:
        self.policy = policy
        self.forwards_misses = forwards_misses
        self._queues: dict[str, _Queue] = {}
        self._by_route: dict[tuple[str, str], list[Entry]] = {}
        self._count = 0
        self._raw_keys: dict[tuple[object, ...], str] = {}
        # names whose values some recording holds only as REDACTED: masked the same way in live requests
        self._secret_query: frozenset[str] = frozenset()
        self._secret_headers: frozenset[str] = frozenset()
        # told of each recording indexed from now on (the stored-completions index follows this one)
        self.listeners: list[Callable[[Interaction | CassetteHead, Path | None], None]] = []

    def __len__(self) -> int:
        return self._count

    def add(self, interaction: Interaction | CassetteHead, path: Path | None) -> str | None:
        """Index one recording; return why it was left out, or None when it was indexed."""
        response = interaction.response
        if response.status <= 0 or not response.headers:
            return NEVER_ANSWERED
        if self.forwards_misses and interaction.outcome.incomplete_reason == CLIENT_LEFT:
            return CLIENT_LEFT_AUTO
        if self.forwards_misses and response.status >= 500:
            return SERVER_ERROR_AUTO
        facts = recorded_facts(interaction)
        secret_query = self._secret_query | {name for name, value in facts.query if value == REDACTED}
        secret_headers = self._secret_headers | {
            name for name, value in facts.headers if value == REDACTED and name in self.policy.match_headers
        }
        if (secret_query, secret_headers) != (self._secret_query, self._secret_headers):
            # more values are masked in live requests from now on, so keys cached for raw requests are stale
            self._secret_query, self._secret_headers = secret_query, secret_headers
            self._raw_keys.clear()
        if path is None and not isinstance(interaction, Interaction):
            return NO_FILE
        kept = interaction if path is None and isinstance(interaction, Interaction) else None
        label = str(path) if path else interaction.id
        entry = Entry(kept, path, label, facts, interaction.metadata.recorded_at)
        self._queues.setdefault(request_key(facts, self.policy), _Queue()).entries.append(entry)
        self._by_route.setdefault((facts.method, facts.path), []).append(entry)
        self._count += 1
        for listener in self.listeners:
            listener(interaction, path)
        return None

    def sort(self) -> None:
        """Identical requests replay in the order they were recorded: after a bulk load in file order, each
        queue is put in recording order (stable, so equal times keep the file order)."""
        for queue in self._queues.values():
            queue.entries.sort(key=lambda entry: entry.recorded_at)

    def reset(self) -> int:
        """Start every queue from its first recording again (a second run of a test suite); returns how many
        queues had been used."""
        used = sum(1 for queue in self._queues.values() if queue.used)
        for queue in self._queues.values():
            queue.used = 0
        return used

    def live(self, facts: RequestFacts) -> RequestFacts:
        """A live request as the recordings can match it (secret values masked as they were when recorded)."""
        return _masked(facts, self._secret_query, self._secret_headers)

    def lookup(
        self, method: str, path: str, query: str, headers: CIMultiDictProxy[str], body: bytes
    ) -> tuple[Entry | None, RequestFacts | None]:
        """The next recording for a live request, and its facts when they had to be built. A request seen
        before, byte for byte, skips parsing and canonicalising: replay's hot path is a dict lookup."""
        raw = (method, path, query, body, tuple(tuple(headers.getall(name, ())) for name in self.policy.match_headers))
        key = self._raw_keys.get(raw)
        facts = None
        if key is None:
            facts = RequestFacts.from_parts(method, path, query, headers.items(), body)
            key = request_key(self.live(facts), self.policy)
            if len(body) <= _RAW_KEY_MAX_BODY:
                if len(self._raw_keys) >= _RAW_KEY_LIMIT:
                    self._raw_keys.clear()
                self._raw_keys[raw] = key
        return self._take(key), facts

    def _take(self, key: str) -> Entry | None:
        queue = self._queues.get(key)
        if queue is None:
            return None
        if queue.used < len(queue.entries):
            queue.used += 1
            return queue.entries[queue.used - 1]
        return queue.entries[-1] if self.policy.on_exhausted == "repeat" else None

    def used_up(self, facts: RequestFacts) -> int:
        queue = self._queues.get(request_key(self.live(facts), self.policy))
        return len(queue.entries) if queue is not None else 0

    def candidates(self, facts: RequestFacts) -> list[tuple[RequestFacts, str]]:
        same_route = self._by_route.get((facts.method, facts.path))
        pool = same_route if same_route else [e for entries in self._by_route.values() for e in entries]
        return [(entry.facts, entry.label) for entry in pool]


def describe_miss(facts: RequestFacts, index: ReplayIndex) -> str:
    model = f" (model {facts.model})" if facts.model else ""
    head = f"no recording for {facts.method} {facts.path}{model}"
    used = index.used_up(facts)
    if used:
        return f"{head}: its {used} recording(s) were all used and on_exhausted is 'fail'"
    live = index.live(facts)
    near = closest(live, index.candidates(facts), index.policy, limit=1)
    if not near:
        return f"{head}; there are no recordings to compare with"
    best = near[0]
    details = difference_details(live, best.facts, index.policy)
    differing = "; ".join(detail.describe() for detail in details) or "nothing"
    return f"{head}; closest recording: {best.label}, which differs in {differing}"
