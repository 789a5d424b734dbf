"""The requests the README shows against the sample cassettes: recorded by scripts/make_sample_cassettes.py,
replayed by tests/test_replay_e2e.py."""

from __future__ import annotations

from typing import Any

HELLO: Any = [{"role": "user", "content": "Say hello to the proxy"}]
WEATHER: Any = [{"role": "user", "content": "What's the weather in Paris?"}]
COUNT: Any = [{"role": "user", "content": "Count to three"}]
HAIKU: Any = [{"role": "user", "content": "Write a haiku about rate limits"}]

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
