"""The processes under test: how each is started, checked and stopped.

Every target is a URL the load generator hits. `direct` is the upstream itself; every other target is a
process of its own, pinned to core 1, that forwards to the upstream or replays what was recorded.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpc
import payloads
import procs

PATH = "/v1/chat/completions"
UPSTREAM_CORE, LOAD_CORE, TARGET_CORE = 0, 0, 1


@dataclass
class Context:
    repo: Path
    tmp: Path
    logs: Path
    pinning: procs.Pinning
    proxy_python: str  # the project's interpreter: our proxy, the pass-through and the bare handler
    load_python: str  # the bench venv's (uvloop): the upstream and the load generator
    mitmdump: str | None
    litellm: str | None = None


@dataclass
class Target:
    key: str
    label: str
    port: int
    proc: procs.Proc | None = None
    ours: bool = False
    records: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base + PATH

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def health(self) -> dict[str, Any]:
        return httpc.get_json(self.base + "/_proxy/health")


def _launch(ctx: Context, target: Target, argv: list[str], core: int = TARGET_CORE) -> Target:
    target.proc = procs.start(target.key, argv, ctx.logs, ctx.pinning, core, ctx.repo)
    procs.wait_port(target.proc, target.port, timeout=60.0)
    return target


def upstream(ctx: Context) -> Target:
    target = Target("direct", "direct to upstream", procs.free_port())
    argv = [ctx.load_python, str(ctx.repo / "bench" / "upstream.py"), "--port", str(target.port)]
    return _launch(ctx, target, argv, core=UPSTREAM_CORE)


def passthrough(ctx: Context, up: Target) -> Target:
    target = Target("passthrough", "bare aiohttp pass-through", procs.free_port())
    script = str(ctx.repo / "bench" / "passthrough.py")
    return _launch(ctx, target, [ctx.proxy_python, script, "--port", str(target.port), "--upstream", up.base])


def passthrough_tee(ctx: Context, up: Target) -> Target:
    target = Target("passthrough_tee", "pass-through teeing bodies to files", procs.free_port())
    script = str(ctx.repo / "bench" / "passthrough.py")
    argv = [ctx.proxy_python, script, "--port", str(target.port), "--upstream", up.base, "--tee", str(ctx.tmp / "tee")]
    return _launch(ctx, target, argv)


def ours_record(ctx: Context, up: Target, key: str, *, db: bool) -> Target:
    label = "proxy record" if db else "proxy record --no-db"
    target = Target(key, label, procs.free_port(), ours=True, records=True)
    home = ctx.tmp / key
    argv = [ctx.proxy_python, "-m", "proxy", "record", "--upstream", up.base, "--port", str(target.port)]
    # asyncio's loop, as the floors run on: like for like (uvloop's gain is measured apart, README "Performance")
    argv += ["--cassettes", str(home / "cassettes"), "--log-level", "warning", "--event-loop", "asyncio"]
    argv += ["--db", str(home / "traffic.duckdb")] if db else ["--no-db"]
    return _launch(ctx, target, argv)


def ours_replay(ctx: Context, cassettes: Path) -> Target:
    target = Target("replay", "proxy replay", procs.free_port(), ours=True)
    argv = [ctx.proxy_python, "-m", "proxy", "replay", str(cassettes), "--port", str(target.port)]
    return _launch(ctx, target, [*argv, "--no-db", "--log-level", "warning", "--event-loop", "asyncio"])


def _mitm_common(ctx: Context, up: Target, port: int) -> list[str]:
    assert ctx.mitmdump is not None
    return [
        ctx.mitmdump, "--mode", f"reverse:{up.base}", "--listen-host", "127.0.0.1", "--listen-port", str(port),
        "--set", f"confdir={ctx.tmp / 'mitmproxy-conf'}", "-q",
    ]  # fmt: skip


def mitm_record(ctx: Context, up: Target, flows: Path, key: str = "mitm_record") -> Target:
    target = Target(key, "mitmproxy record (-w)", procs.free_port())
    return _launch(ctx, target, [*_mitm_common(ctx, up, target.port), "-w", str(flows)])


def mitm_replay(ctx: Context, up: Target, flows: Path) -> Target:
    target = Target("mitm_replay", "mitmproxy server replay", procs.free_port())
    argv = [*_mitm_common(ctx, up, target.port), "-S", str(flows)]
    for option in ("server_replay_reuse=true", "server_replay_extra=kill", "server_replay_refresh=false",
                   "connection_strategy=lazy", "keepserving=true"):  # fmt: skip
        argv += ["--set", option]
    return _launch(ctx, target, argv)


def litellm(ctx: Context, up: Target) -> Target:
    """LiteLLM's proxy as a gateway to the same upstream: every model name routed to it as an OpenAI server.
    It re-serializes bodies (a note says so) and records nothing; it is here as the gateway users know."""
    assert ctx.litellm is not None
    target = Target("litellm", "LiteLLM proxy", procs.free_port())
    config = ctx.tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        '  - model_name: "*"\n'
        "    litellm_params:\n"
        '      model: "openai/*"\n'
        f'      api_base: "{up.base}/v1"\n'
        '      api_key: "sk-bench"\n'
    )
    # No master key on loopback, and the model price map from the package, not the network (closed here).
    env = ["env", "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY=true", "LITELLM_LOCAL_MODEL_COST_MAP=True"]
    argv = [*env, ctx.litellm, "--config", str(config), "--host", "127.0.0.1", "--port", str(target.port)]
    target.proc = procs.start(target.key, argv, ctx.logs, ctx.pinning, TARGET_CORE, ctx.repo)
    procs.wait_port(target.proc, target.port, timeout=120.0)  # it takes seconds to import
    return target


def bare_handler(ctx: Context, payload: httpc.Answer) -> Target:
    target = Target("bare", "bare aiohttp handler (recorded bytes)", procs.free_port())
    file = ctx.tmp / "bare-payload.json"
    file.write_text(
        json.dumps(
            {
                "status": payload.status,
                "content_type": payload.content_type,
                "headers": list(payload.headers),
                "body_b64": base64.b64encode(payload.body).decode(),
            }
        )
    )
    script = str(ctx.repo / "bench" / "bare_handler.py")
    return _launch(ctx, target, [ctx.proxy_python, script, "--port", str(target.port), "--payload", str(file)])


def check_plain(target: Target) -> httpc.Answer:
    """One plain request; raises unless it is a 200 carrying the upstream's completion byte for byte."""
    answer = httpc.post(target.url, payloads.PLAIN_REQUEST, payloads.REQUEST_HEADERS)
    if answer.status != 200:
        raise RuntimeError(f"{target.key}: plain request answered {answer.status}: {answer.body[:200]!r}")
    if answer.body != payloads.COMPLETION:
        target.notes.append("plain body differs from upstream's bytes")
    return answer


def check_stream(target: Target) -> None:
    answer = httpc.post(target.url, payloads.STREAM_REQUEST, payloads.REQUEST_HEADERS)
    if answer.status != 200:
        raise RuntimeError(f"{target.key}: streamed request answered {answer.status}: {answer.body[:200]!r}")
    if answer.body != b"".join(payloads.EVENTS):
        target.notes.append("streamed body differs from upstream's bytes")


def seed_with(target: Target) -> None:
    """The recordings that replay serves: one plain and one streamed exchange."""
    check_plain(target)
    check_stream(target)


def wait_drained(target: Target, timeout: float = 60.0) -> dict[str, Any]:
    """For a recording proxy: until every cassette is written and every row is in DuckDB (or the timeout)."""
    began = time.monotonic()
    first: dict[str, Any] | None = None
    state: dict[str, Any] = {}
    while time.monotonic() - began < timeout:
        state = target.health()
        first = first or state
        db = state.get("database")
        rows_behind = db is not None and not db["last_error"] and db["rows_written"] < state["interactions_recorded"]
        if state["recording_pending"] == 0 and not rows_behind:
            break
        time.sleep(0.05)
    return {
        "pending_at_end_of_load": (first or {}).get("recording_pending"),
        "drain_seconds": round(time.monotonic() - began, 3),
        "recorded": state.get("interactions_recorded"),
        "db_rows": (state.get("database") or {}).get("rows_written"),
        "write_errors": state.get("write_errors"),
    }
