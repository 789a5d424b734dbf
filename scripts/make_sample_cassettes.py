"""Record the sample cassettes shipped in cassettes/, the ones the README's first command replays.

The far side is the tests' fake upstream (tests/upstream.py), answering with friendly canned content; in front
of it runs the real proxy in record mode; the official `openai` SDK drives it. Both servers listen on 127.0.0.1
on ephemeral ports, nothing leaves the machine and no key is needed. The DuckDB writer is off: only cassette
files are produced, then moved into cassettes/ (replacing the previous samples, keeping the per-day folders).

    python scripts/make_sample_cassettes.py [--out cassettes]

The requests recorded are exactly these (the README shows them; tests/test_replay_e2e.py checks they hit),
each with model="gpt-4o-mini" and one user message:

    "Say hello to the proxy"           create(...)                                  -> a short greeting
    "What's the weather in Paris?"     create(..., tools=[WEATHER_TOOL], stream=True)  -> a get_weather tool call
    "Count to three"                   create(..., stream=True, stream_options={"include_usage": True})
    "Write a haiku about rate limits"  create(...)                                  -> 429 rate_limit_exceeded
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import openai  # noqa: E402
from aiohttp import web  # noqa: E402

from proxy.app import create_app  # noqa: E402
from proxy.cassettes import iter_cassette_paths  # noqa: E402
from proxy.settings import Settings  # noqa: E402
from tests.chunks import (  # noqa: E402
    content_delta,
    make_choice,
    make_chunk,
    make_completion,
    make_completion_choice,
    make_message,
    make_usage,
    role_delta,
    tool_call_delta,
    tool_calls_delta,
)
from tests.samples import COUNT, HAIKU, HELLO, WEATHER, WEATHER_TOOL  # noqa: E402
from tests.upstream import FakeUpstream  # noqa: E402

MODEL = "gpt-4o-mini"
TOKEN_PACE = 0.04  # seconds between the events of a streamed sample
ANSWERING_MODEL = "gpt-4o-mini-2024-07-18"

RATE_LIMITED = {
    "error": {
        "message": (
            f"Rate limit reached for {MODEL} in organization org-SampleOrg123 on requests per min (RPM): "
            "Limit 3, Used 3, Requested 1. Please try again in 1s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        ),
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


def samples(created: int) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The canned answers: completions and streams by scenario name."""
    hello = make_completion(
        [make_completion_choice(make_message("Hello, proxy! Nice to meet you. Everything looks good on this end."))],
        id="chatcmpl-SampleHello01",
        model=ANSWERING_MODEL,
        created=created,
        usage=make_usage(12, 14),
    )

    def chunk(choices: list[dict[str, Any]], id: str, **extra: Any) -> dict[str, Any]:
        return make_chunk(choices, id=id, model=ANSWERING_MODEL, created=created, **extra)

    weather_id = "chatcmpl-SampleWeather02"
    call = "call_SampleWeather7f3a"
    weather = [chunk([make_choice(role_delta(content=None))], weather_id)]
    first = tool_call_delta(0, "", id=call, name="get_weather")
    weather.append(chunk([make_choice(tool_calls_delta(first))], weather_id))
    weather += [
        chunk([make_choice(tool_calls_delta(tool_call_delta(0, part)))], weather_id)
        for part in ('{"', "city", '":"', "Paris", '"}')
    ]
    weather.append(chunk([make_choice(finish_reason="tool_calls")], weather_id))

    count_id = "chatcmpl-SampleCount03"
    count = [chunk([make_choice(role_delta())], count_id, usage=None)]
    count += [chunk([make_choice(content_delta(t))], count_id, usage=None) for t in ("One", ", two", ", three!")]
    count.append(chunk([make_choice(finish_reason="stop")], count_id, usage=None))
    count.append(chunk([], count_id, usage=make_usage(11, 7)))
    return {"hello": hello}, {"weather": weather, "count": count}


class SampleUpstream(FakeUpstream):
    """The fake upstream, choosing its answer from the question itself, so the recorded requests carry no
    test-only headers (`x-scenario`, `x-status`) and are exactly what the README's snippets send."""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read() or b"{}")
        question = body.get("messages", [{}])[-1].get("content", "")
        if question == HAIKU[0]["content"]:
            # laid out as the API lays out its errors: indented by four, with a final newline
            return web.json_response(
                RATE_LIMITED,
                dumps=lambda value: json.dumps(value, indent=4) + "\n",
                status=429,
                headers={
                    "x-request-id": "req_SampleRateLimited04",
                    "retry-after": "1",
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": "1s",
                },
            )
        name = {HELLO[0]["content"]: "hello", WEATHER[0]["content"]: "weather", COUNT[0]["content"]: "count"}[question]
        # The fake picks its scenario from a header; this script is sequential, so "default" is safe to point.
        if name in self.streams:
            self.streams["default"] = self.streams[name]
        else:
            self.completions["default"] = self.completions[name]
        return await super().handle(request)

    async def _write(
        self, request: web.Request, request_id: str, pieces: list[bytes], content_type: str
    ) -> web.StreamResponse:
        """Streams are paced like a model generating tokens, so `--timing original` has gaps to reproduce."""
        if not content_type.startswith("text/event-stream"):
            return await super()._write(request, request_id, pieces, content_type)
        response = web.StreamResponse(
            headers={"content-type": content_type, "x-request-id": request_id, "openai-processing-ms": "180"}
        )
        await response.prepare(request)
        for piece in pieces:
            await asyncio.sleep(TOKEN_PACE)
            await response.write(piece)
        await response.write_eof()
        return response


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def record(directory: Path) -> None:
    completions, streams = samples(int(time.time()))
    fake = SampleUpstream(completions=completions, streams=streams)
    upstream_runner, upstream_url = await _serve(fake.app())
    settings = Settings(mode="record", upstream=upstream_url, cassettes=directory, db_enabled=False, port=0)
    proxy_runner, proxy_url = await _serve(create_app(settings))
    try:
        async with openai.AsyncOpenAI(
            base_url=f"{proxy_url}/v1", api_key="sk-sample-not-a-real-key", max_retries=0
        ) as client:
            hello = await client.chat.completions.create(model=MODEL, messages=HELLO)
            print(f"hello:   {hello.choices[0].message.content}")
            async with client.chat.completions.stream(
                model=MODEL,
                messages=WEATHER,
                tools=[WEATHER_TOOL],
            ) as stream:
                weather = await stream.get_final_completion()
            (call,) = weather.choices[0].message.tool_calls or []
            print(f"weather: {call.function.name}({call.function.arguments})")
            async with client.chat.completions.stream(
                model=MODEL,
                messages=COUNT,
                stream_options={"include_usage": True},
            ) as stream:
                count = await stream.get_final_completion()
            print(f"count:   {count.choices[0].message.content} (usage {count.usage and count.usage.total_tokens})")
            try:
                await client.chat.completions.create(model=MODEL, messages=HAIKU)
                raise SystemExit("expected a 429 for the haiku request")
            except openai.RateLimitError as exc:
                print(f"haiku:   {exc.status_code} {exc.code}")
    finally:
        await proxy_runner.cleanup()  # the recorder's cleanup waits for every cassette to be written
        await upstream_runner.cleanup()


def install(recorded: Path, target: Path) -> list[Path]:
    """Replace the samples in target with the cassettes in recorded, keeping their day folders."""
    target.mkdir(parents=True, exist_ok=True)
    for old in list(iter_cassette_paths(target)):
        old.unlink()
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    installed: list[Path] = []
    for path in iter_cassette_paths(recorded):
        destination = target / path.relative_to(recorded)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, destination)
        installed.append(destination)
    return installed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "cassettes", help="where the samples go (replaced)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sample-cassettes-") as scratch:
        recorded = Path(scratch) / "cassettes"
        asyncio.run(record(recorded))
        written = list(iter_cassette_paths(recorded))
        if len(written) != 4:
            print(f"expected 4 cassettes, got {len(written)}: {[str(p) for p in written]}", file=sys.stderr)
            return 1
        for path in install(recorded, args.out):
            print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
