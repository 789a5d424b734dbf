"""The report served by a running proxy: `GET /_proxy/report` and `GET /_proxy/report/interaction/<id>`.

The CLI (the composition root) hands these routes to `create_app`, so proxy/ never imports analytics/. Like all
of `/_proxy/`, they answer loopback clients only (the app's middleware). Queries run in a thread on a
read-only connection (db.py's protocol: the proxy's own writer steps aside for it), so the event loop that
forwards traffic never waits on DuckDB. DuckDB and the report modules are imported on the first request, not at
startup: a proxy that is never asked for its report starts as fast as before.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from proxy.settings import Settings


class _Unavailable(Exception):
    """The report cannot be made now (no database yet, a busy file): said in one line."""


def report_routes(settings: Settings) -> list[web.RouteDef]:
    db_path, cassettes = settings.db_path, settings.cassettes

    def page() -> str:
        from analytics.db import AnalyticsError, reading
        from analytics.prices import overrides_from, source_description
        from analytics.report import build_html

        try:
            with reading(db_path) as con:
                prices = source_description(overrides_from(settings.prices))
                html, _ = build_html(con, cassettes=cassettes, prices=prices)
        except AnalyticsError as exc:
            raise _Unavailable(str(exc)) from None
        return html

    def detail(interaction_id: str) -> dict[str, Any] | None:
        from analytics.db import AnalyticsError, reading
        from analytics.report_detail import interaction_details

        try:
            with reading(db_path) as con:
                return interaction_details(con, [interaction_id], cassettes).get(interaction_id)
        except AnalyticsError as exc:
            raise _Unavailable(str(exc)) from None

    async def report(request: web.Request) -> web.Response:
        try:
            html = await asyncio.to_thread(page)
        except _Unavailable as exc:
            return web.Response(status=503, text=f"no report: {exc}\n", content_type="text/plain")
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def interaction(request: web.Request) -> web.Response:
        try:
            found = await asyncio.to_thread(detail, request.match_info["id"])
        except _Unavailable as exc:
            return web.json_response({"error": str(exc)}, status=503)
        if found is None:
            return web.json_response({"error": "no such interaction"}, status=404)
        return web.Response(text=json.dumps(found, default=str), content_type="application/json")

    return [
        web.get("/_proxy/report", report),
        web.get("/_proxy/report/interaction/{id}", interaction),
    ]
