"""Ops dashboard: blocks over time, top categories, evaluator error rates, review backlog, agreement.

Aggregates only (no prompt or answer text is shown). `/api/summary` gives the same numbers as JSON.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from consumers.consensus import describe_scope
from consumers.dashboard import svg
from consumers.dashboard.data import summary
from consumers.store import Store

HERE = Path(__file__).parent
WINDOWS = (15, 60, 360, 1440)
STORE: web.AppKey[Store] = web.AppKey("store", Store)
STATE: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("state")
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


def _window(request: web.Request) -> int:
    try:
        minutes = int(request.query.get("minutes", "60"))
    except ValueError:
        return 60
    return minutes if minutes in WINDOWS else 60


async def _summary(request: web.Request) -> dict[str, Any]:
    store, minutes = request.app[STORE], _window(request)
    now = datetime.now(UTC).replace(tzinfo=None)

    def load() -> dict[str, Any]:
        with store.read() as conn:
            return summary(conn, now, minutes)

    return await asyncio.to_thread(load)


def charts(data: dict[str, Any]) -> dict[str, Any]:
    labels = [m.strftime("%H:%M") for m in data["axis"]]
    pct = lambda v: f"{v:.0%}"  # noqa: E731
    return {
        "blocks": svg.line_chart(data["blocks"], labels, title="Blocks per minute by stage"),
        "categories": svg.bar_chart(data["top_categories"], title="Top categories"),
        "errors": svg.bar_chart([(e["evaluator"], e["error_rate"]) for e in data["evaluators"]],
                                title="Evaluator error rate", fmt=pct, scale_max=1.0),
        "backlog": svg.bar_chart(data["backlog"]["by_age"], title="Unreviewed events by age"),
        "agreement": svg.bar_chart([(a["evaluator"], a["rate"]) for a in data["agreement"]["evaluators"]],
                                   title="Evaluator agreement with reviewers, on the categories each names",
                                   fmt=pct, scale_max=1.0),
        "precision": svg.bar_chart([(a["evaluator"], a["precision"]) for a in data["agreement"]["evaluators"]
                                    if a["precision"] is not None],
                                   title="Evaluator flags confirmed by reviewers (precision)", fmt=pct, scale_max=1.0),
        "shadow": svg.bar_chart([(f"{r['shadow']} · {_category(r['category'])}", r["rate"])
                                 for r in data["shadow"] if r["rate"] is not None][:12],
                                title="Shadow candidates agreeing with live, per category", fmt=pct, scale_max=1.0),
        "win_rate": svg.bar_chart([(f"{r['candidate']} vs {r['baseline']} · {r['tenant']}", r["win_rate"])
                                   for r in data["comparisons"]][:12],
                                  title="Candidate win rate (ties count half)", fmt=pct, scale_max=1.0),
        "scores": [(h, svg.bar_chart(h["bars"], title=f"Reward scores of {h['model']} ({h['evaluator']})"))
                   for h in data["scores"]],
    }


def _category(name: str) -> str:
    return "overall" if name == "any" else name


async def page(request: web.Request) -> web.Response:
    data = await _summary(request)
    html = request.app[TEMPLATES].get_template("dashboard.html").render(
        d=data, charts=charts(data), windows=WINDOWS, state=request.app[STATE]())
    return web.Response(text=html, content_type="text/html", headers={"Content-Security-Policy": CSP})


async def api_summary(request: web.Request) -> web.Response:
    data = await _summary(request)
    data = {**data, "since": data["since"].isoformat() + "Z", "until": data["until"].isoformat() + "Z",
            "axis": [m.isoformat() + "Z" for m in data["axis"]]}
    return web.json_response(data)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, **request.app[STATE]()})


def create_app(store: Store, *, state: Callable[[], dict[str, Any]] | None = None) -> web.Application:
    app = web.Application()
    app[STORE] = store
    app[STATE] = state or (lambda: {"consumer": "off"})
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    app[TEMPLATES] = env
    app.router.add_get("/", page)
    app.router.add_get("/api/summary", api_summary)
    app.router.add_get("/healthz", healthz)
    static = app.router.add_static("/static/", HERE / "static", append_version=True, name="static")
    env.globals["static"] = lambda name: str(static.url_for(filename=name))
    env.filters["scope"] = describe_scope
    return app
