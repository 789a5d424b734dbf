"""End to end: completions created with `store: true` through `proxy record`, then browsed, re-tagged and
deleted through `proxy replay` with the official SDK, as the stored Chat Completions API."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.cassettes import iter_cassette_paths
from proxy.stored_overlay import OVERLAY_NAME
from tests.chunks import (
    content_delta,
    make_choice,
    make_chunk,
    make_completion,
    make_completion_choice,
    make_message,
    role_delta,
)
from tests.cli_process import ProxyProcess, run_cli, start_proxy_process
from tests.conftest import API_KEY
from tests.upstream import FakeUpstream, serve_upstream_in_thread

ANSWERED = {"gpt-4o-mini": "gpt-4o-mini-2024-07-18", "gpt-4.1": "gpt-4.1-2025-04-14"}
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
CONVERSATION: list[Any] = [
    {"role": "developer", "content": "Answer in one word."},
    {"role": "user", "content": "Name a colour.", "name": "ada"},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": [{"type": "text", "text": "And this one?"}, IMAGE]},
    {"role": "user", "content": "Thanks."},
]


@dataclass(frozen=True)
class Scenario:
    id: str
    created: int
    model: str
    stream: bool
    store: bool | None
    metadata: dict[str, str] | None
    messages: list[Any] = field(default_factory=list)

    def request(self) -> dict[str, Any]:
        messages = self.messages or [{"role": "user", "content": f"Question for {self.id}"}]
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "extra_headers": {"x-scenario": self.id}}
        if self.store is not None:
            kwargs["store"] = self.store
        if self.metadata is not None:
            kwargs["metadata"] = self.metadata
        return kwargs


# In recording order. st01 and st03 share `created`: st01 was recorded first, so it comes first.
SCENARIOS = [
    Scenario("chatcmpl-st01", 1_764_000_100, "gpt-4o-mini", False, True, {"team": "red", "env": "prod"}),
    Scenario("chatcmpl-st02", 1_764_000_050, "gpt-4.1", True, True, {"team": "blue", "env": "prod"}),
    Scenario("chatcmpl-st03", 1_764_000_100, "gpt-4o-mini", True, True, {"team": "red", "env": "dev"}),
    Scenario(
        "chatcmpl-st04",
        1_764_000_200,
        "gpt-4.1",
        False,
        True,
        {"team": "red", "env": "prod", "note": "a b&c=d/é+"},
        CONVERSATION,
    ),
    Scenario("chatcmpl-st05", 1_764_000_010, "gpt-4o-mini", False, True, {"team": "blue"}),
    Scenario("chatcmpl-st06", 1_764_000_300, "gpt-4o-mini", True, True, None),
    Scenario("chatcmpl-st07", 1_764_000_150, "gpt-4o-mini", False, False, {"team": "red"}),  # not stored
    Scenario("chatcmpl-st08", 1_764_000_120, "gpt-4.1", True, True, {"team": "red", "env": "prod"}),
]
BY_ID = {s.id: s for s in SCENARIOS}
NOT_STORED = "chatcmpl-st07"


def expected(*, model: str | None = None, metadata: dict[str, str] | None = None, store_all: bool = False) -> list[str]:
    """The ids a list should give, in ascending order: by created, then in recording order."""
    chosen = [
        (s.created, number, s.id)
        for number, s in enumerate(SCENARIOS)
        if (s.store or store_all)
        and (model is None or model in (s.model, ANSWERED[s.model]))
        and all((s.metadata or {}).get(key) == value for key, value in (metadata or {}).items())
    ]
    return [completion_id for _, _, completion_id in sorted(chosen)]


def register(fake: FakeUpstream, s: Scenario) -> None:
    answered = ANSWERED[s.model]
    text = f"Answer of {s.id}."
    fake.completions[s.id] = make_completion(
        [make_completion_choice(make_message(text))], id=s.id, created=s.created, model=answered
    )
    chunk = {"id": s.id, "created": s.created, "model": answered}
    fake.streams[s.id] = [
        make_chunk([make_choice(role_delta())], **chunk),
        make_chunk([make_choice(content_delta(text[:7]))], **chunk),
        make_chunk([make_choice(content_delta(text[7:]))], **chunk),
        make_chunk([make_choice(finish_reason="stop")], **chunk),
    ]


@dataclass
class Recorded:
    directory: Path
    created: dict[str, Any]  # what the SDK returned when each was created


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Every scenario created once through `proxy record` (a real process) against the fake upstream."""
    fake = FakeUpstream()
    for s in SCENARIOS:
        register(fake, s)
    url, stop, thread = serve_upstream_in_thread(fake)
    directory = tmp_path_factory.mktemp("stored") / "cassettes"
    proc = start_proxy_process(["record", "--upstream", url, "--cassettes", str(directory), "--no-db"])
    created: dict[str, Any] = {}
    try:
        with openai.OpenAI(base_url=f"{proc.url}/v1", api_key=API_KEY, max_retries=0) as client:
            for s in SCENARIOS:
                if s.stream:
                    with client.chat.completions.stream(**s.request()) as stream:
                        created[s.id] = stream.get_final_completion()
                else:
                    created[s.id] = client.chat.completions.create(**s.request())
    finally:
        code, stderr = proc.stop()
        stop.set()
        thread.join(10)
    assert code == 0, stderr
    assert len(list(iter_cassette_paths(directory))) == len(SCENARIOS)
    yield Recorded(directory, created)


@contextmanager
def replaying(directory: Path, *flags: str) -> Iterator[tuple[ProxyProcess, openai.OpenAI]]:
    """`proxy replay DIR` (a real process) and an SDK client pointed at it."""
    proc = start_proxy_process(["replay", str(directory), "--no-db", *flags])
    try:
        with openai.OpenAI(base_url=f"{proc.url}/v1", api_key="not-needed", max_retries=0) as client:
            yield proc, client
    finally:
        code, stderr = proc.stop()
        assert code == 0, stderr
        assert "Traceback" not in stderr


def copy_of(recorded: Recorded, tmp_path: Path) -> Path:
    target = tmp_path / "cassettes"
    shutil.copytree(recorded.directory, target)
    return target


@pytest.fixture(scope="module")
def client(recorded: Recorded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    """One replay for the tests that change nothing."""
    directory = tmp_path_factory.mktemp("read-only") / "cassettes"
    shutil.copytree(recorded.directory, directory)
    with replaying(directory) as (_, sdk):
        yield sdk


# --- list ------------------------------------------------------------------------------------------------------

FILTERS: list[dict[str, Any]] = [
    {},
    {"model": "gpt-4o-mini"},
    {"model": "gpt-4.1-2025-04-14"},
    {"metadata": {"team": "red"}},
    {"metadata": {"team": "red", "env": "prod"}},
    {"metadata": {"note": "a b&c=d/é+"}},
    {"model": "gpt-4.1", "metadata": {"team": "red"}},
    {"metadata": {"team": "green"}},
]


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "&".join(f"{k}={v}" for k, v in f.items()) or "all")
def test_auto_pagination_walks_every_stored_completion_once(
    client: openai.OpenAI, filters: dict[str, Any], order: str
) -> None:
    ids = [c.id for c in client.chat.completions.list(limit=2, order=order, **filters)]  # type: ignore[arg-type]
    want = expected(**filters)
    assert ids == (want if order == "asc" else want[::-1])


def test_default_order_is_ascending_and_pages_carry_the_five_fields(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.list(limit=3).http_response.json()
    want = expected()
    assert set(raw) == {"object", "data", "first_id", "last_id", "has_more"}
    assert raw["object"] == "list"
    assert [item["id"] for item in raw["data"]] == want[:3]
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (want[0], want[2], True)
    last = client.chat.completions.with_raw_response.list(after=want[-2]).http_response.json()
    assert ([item["id"] for item in last["data"]], last["has_more"]) == ([want[-1]], False)


def test_a_completion_created_without_store_is_not_stored(client: openai.OpenAI) -> None:
    assert NOT_STORED not in [c.id for c in client.chat.completions.list(limit=100)]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(NOT_STORED)


@pytest.mark.parametrize("limit", [0, 101])
def test_a_limit_beyond_the_bounds_is_a_bad_request(client: openai.OpenAI, limit: int) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.list(limit=limit)
    assert caught.value.param == "limit"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.messages.list("chatcmpl-st04", limit=limit)


# --- retrieve and messages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("completion_id", [s.id for s in SCENARIOS if s.store])
def test_retrieve_gives_the_completion_as_created_with_its_metadata(
    client: openai.OpenAI, recorded: Recorded, completion_id: str
) -> None:
    got = client.chat.completions.retrieve(completion_id)
    made = recorded.created[completion_id]
    assert (got.id, got.created, got.model) == (made.id, made.created, made.model)
    assert got.choices[0].message.content == made.choices[0].message.content == f"Answer of {completion_id}."
    assert got.choices[0].finish_reason == "stop"
    assert getattr(got, "metadata", None) == (BY_ID[completion_id].metadata or {})


def test_messages_are_the_request_input_walked_page_by_page(client: openai.OpenAI) -> None:
    messages = list(client.chat.completions.messages.list("chatcmpl-st04", limit=2))
    assert [m.id for m in messages] == [f"chatcmpl-st04-{i}" for i in range(len(CONVERSATION))]
    assert [m.role for m in messages] == [m["role"] for m in CONVERSATION]
    assert messages[1].content == "Name a colour."
    assert getattr(messages[1], "name", None) == "ada"
    assert messages[1].content_parts is None
    parts = messages[3].content_parts
    assert parts is not None
    assert [p.model_dump(exclude_none=True) for p in parts] == CONVERSATION[3]["content"]
    backwards = list(client.chat.completions.messages.list("chatcmpl-st04", limit=2, order="desc"))
    assert [m.id for m in backwards] == [m.id for m in messages][::-1]


def test_unknown_ids_are_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.retrieve("chatcmpl-nope")
    assert caught.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.messages.list("chatcmpl-nope")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.update("chatcmpl-nope", metadata={"a": "b"})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.delete("chatcmpl-nope")


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(17)},
        {"k" * 65: "v"},
        {"k": "v" * 513},
    ],
    ids=["17-pairs", "long-key", "long-value"],
)
def test_metadata_beyond_the_limits_is_a_bad_request(client: openai.OpenAI, metadata: dict[str, str]) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.update("chatcmpl-st01", metadata=metadata)
    assert client.chat.completions.retrieve("chatcmpl-st01").metadata == BY_ID["chatcmpl-st01"].metadata


def test_a_create_still_replays_its_recording(client: openai.OpenAI) -> None:
    again = client.chat.completions.create(**BY_ID["chatcmpl-st01"].request())
    assert again.choices[0].message.content == "Answer of chatcmpl-st01."


# --- changes -------------------------------------------------------------------------------------------------------


def fingerprint(directory: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in iter_cassette_paths(directory)}


def test_update_changes_what_later_lists_and_gets_see(recorded: Recorded, tmp_path: Path) -> None:
    directory = copy_of(recorded, tmp_path)
    with replaying(directory) as (_, sdk):
        updated = sdk.chat.completions.update("chatcmpl-st01", metadata={"team": "green", "stage": "eval"})
        assert updated.id == "chatcmpl-st01"
        assert updated.metadata == {"team": "green", "stage": "eval"}
        assert updated.choices[0].message.content == "Answer of chatcmpl-st01."
        assert [c.id for c in sdk.chat.completions.list(metadata={"team": "green"})] == ["chatcmpl-st01"]
        red = [c.id for c in sdk.chat.completions.list(limit=2, metadata={"team": "red"})]
        assert red == [i for i in expected(metadata={"team": "red"}) if i != "chatcmpl-st01"]
        assert sdk.chat.completions.retrieve("chatcmpl-st01").metadata == {"team": "green", "stage": "eval"}


def test_delete_removes_it_from_gets_and_lists(recorded: Recorded, tmp_path: Path) -> None:
    directory = copy_of(recorded, tmp_path)
    with replaying(directory) as (_, sdk):
        deleted = sdk.chat.completions.delete("chatcmpl-st03")
        assert (deleted.id, deleted.deleted, deleted.object) == ("chatcmpl-st03", True, "chat.completion.deleted")
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.retrieve("chatcmpl-st03")
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.messages.list("chatcmpl-st03")
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.delete("chatcmpl-st03")
        assert [c.id for c in sdk.chat.completions.list(limit=2)] == [i for i in expected() if i != "chatcmpl-st03"]


def test_updates_and_deletes_survive_a_restart_never_touch_a_cassette_and_clear_with_the_file(
    recorded: Recorded, tmp_path: Path
) -> None:
    directory = copy_of(recorded, tmp_path)
    before = fingerprint(directory)
    with replaying(directory) as (_, sdk):
        sdk.chat.completions.update("chatcmpl-st02", metadata={"reviewed": "yes"})
        sdk.chat.completions.delete("chatcmpl-st05")
    assert fingerprint(directory) == before
    with replaying(directory) as (_, sdk):
        assert sdk.chat.completions.retrieve("chatcmpl-st02").metadata == {"reviewed": "yes"}
        assert [c.id for c in sdk.chat.completions.list(metadata={"reviewed": "yes"})] == ["chatcmpl-st02"]
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.retrieve("chatcmpl-st05")
        (directory / OVERLAY_NAME).unlink()  # clears every change, and the running proxy notices
        assert sdk.chat.completions.retrieve("chatcmpl-st05").id == "chatcmpl-st05"
        assert sdk.chat.completions.retrieve("chatcmpl-st02").metadata == BY_ID["chatcmpl-st02"].metadata


def test_two_replays_over_one_directory_see_each_other_changes(recorded: Recorded, tmp_path: Path) -> None:
    directory = copy_of(recorded, tmp_path)
    with replaying(directory) as (_, first), replaying(directory) as (_, second):
        first.chat.completions.delete("chatcmpl-st06")
        second.chat.completions.update("chatcmpl-st08", metadata={"by": "second"})
        with pytest.raises(openai.NotFoundError):
            second.chat.completions.retrieve("chatcmpl-st06")
        assert first.chat.completions.retrieve("chatcmpl-st08").metadata == {"by": "second"}
        with pytest.raises(openai.NotFoundError):
            second.chat.completions.update("chatcmpl-st06", metadata={"too": "late"})


def test_store_all_lists_every_recorded_completion(recorded: Recorded, tmp_path: Path) -> None:
    directory = copy_of(recorded, tmp_path)
    with replaying(directory, "--store-all") as (_, sdk):
        ids = [c.id for c in sdk.chat.completions.list(limit=3)]
        assert ids == expected(store_all=True)
        assert NOT_STORED in ids
        assert sdk.chat.completions.retrieve(NOT_STORED).metadata == {"team": "red"}


@pytest.mark.parametrize("command", ["replay", "serve"])
def test_help_names_the_stored_completions_flags(command: str) -> None:
    result = run_cli([command, "--help"])
    assert result.returncode == 0
    assert "--store-all" in result.stdout
    assert "--stored-completions" in result.stdout
