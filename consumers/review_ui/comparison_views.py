"""Review UI for comparisons: the list, one comparison side by side, and a reviewer's verdict (confirm or flip)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from consumers.review_ui import app as appmod
from consumers.review_ui.views import PAGE_SIZE, _path, _render, page_number
from consumers.store import comparisons as cmp

OUTCOMES = ("win", "tie", "loss")
#: how the page names a winner
WINNER_TITLES = {"baseline": "baseline better", "candidate": "candidate better", "tie": "tie (neither better)"}


def parse_filter(query: Mapping[str, str]) -> cmp.ComparisonFilter:
    def pick(name: str, allowed: tuple[str, ...] | None = None) -> str | None:
        value = (query.get(name) or "").strip()
        return value[:256] if value and (allowed is None or value in allowed) else None

    status, order = query.get("status", "unreviewed"), query.get("order", "uncertain")
    return cmp.ComparisonFilter(candidate=pick("candidate"), tenant=pick("tenant"), outcome=pick("outcome", OUTCOMES),
                                status=status if status in cmp.STATUSES else "unreviewed",
                                order=order if order in cmp.ORDERS else "uncertain")


async def comparison_list(request: web.Request) -> web.Response:
    f = parse_filter(request.query)
    page = page_number(request)
    store, me = request.app[appmod.STORE], request[appmod.PRINCIPAL].name

    def load() -> tuple[Any, ...]:
        with store.read() as conn:
            rows, total = cmp.page(conn, f, me, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            return rows, total, cmp.candidates(conn), cmp.counts(conn)

    rows, total, candidates, counts = await asyncio.to_thread(load)
    params = f.as_params()
    return _render(request, "comparisons.html", rows=rows, total=total, candidates=candidates, counts=counts, f=f,
                   outcomes=OUTCOMES, statuses=cmp.STATUSES, page=page, pages=max(1, -(-total // PAGE_SIZE)),
                   query=urlencode(params), winner_titles=WINNER_TITLES,
                   page_query=lambda n: urlencode({**params, "page": n}))


async def comparison_page(request: web.Request) -> web.Response:
    store, me = request.app[appmod.STORE], request[appmod.PRINCIPAL].name
    f = parse_filter(request.query)
    event_id = request.match_info["event_id"]

    def load() -> tuple[cmp.StoredComparison | None, str | None]:
        with store.read() as conn:
            found = cmp.get(conn, event_id)
            return found, cmp.next_after(conn, f, event_id) if found else None

    found, next_id = await asyncio.to_thread(load)
    if found is None:
        raise web.HTTPNotFound(text="no such comparison")
    latest = found.latest_by_reviewer()
    judged = found.judged_winner
    flipped = {"candidate": "baseline", "baseline": "candidate"}.get(judged)
    return _render(request, "comparison.html", c=found, p=found.payload, content=found.payload["content"],
                   latest=latest, mine=latest.get(me), verdict=cmp.verdict_of(found.labels), judged=judged,
                   flipped=flipped, winner_titles=WINNER_TITLES, next_id=next_id, query=urlencode(f.as_params()))


async def post_comparison_label(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    event_id = request.match_info["event_id"]
    winner, note = str(form.get("winner", "")), str(form.get("note", ""))
    store, me = request.app[appmod.STORE], request[appmod.PRINCIPAL].name
    wants_json = "application/json" in request.headers.get("Accept", "")
    f = parse_filter(request.query)

    def save() -> tuple[cmp.ComparisonLabel | None, str | None]:
        with store.write() as conn:
            stored = cmp.add_label(conn, event_id, me, winner, note)
            return stored, cmp.next_after(conn, f, event_id) if stored else None

    try:
        stored, target = await asyncio.to_thread(save)
    except ValueError as exc:
        if wants_json:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        raise web.HTTPBadRequest(text=str(exc)) from None
    if stored is None:
        raise web.HTTPNotFound(text="no such comparison")
    if wants_json:
        return web.json_response({"ok": True, "event_id": event_id, "winner": stored.winner, "reviewer": me})
    query = urlencode(f.as_params())
    raise web.HTTPSeeOther(f"/comparisons/{_path(target)}?{query}" if target else f"/comparisons?{query}")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/comparisons", comparison_list)
    app.router.add_get("/comparisons/{event_id}", comparison_page)
    app.router.add_post("/comparisons/{event_id}/labels", post_comparison_label)
