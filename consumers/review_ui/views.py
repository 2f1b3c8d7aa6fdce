"""Review UI handlers: login, queue, event page, labels, dead letters. All DB work runs in a thread."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from markupsafe import Markup

from consumers.consensus import consensus, evaluator_agreement, latest_by_reviewer, reviewers_agree, scope_of
from consumers.review_ui import app as appmod
from consumers.review_ui.auth import LOGIN_COOKIE, SESSION_COOKIE, SESSION_TTL_S, Principal, safe_next
from consumers.review_ui.highlight import highlight, visible
from consumers.store import QueueFilter, Store, queries
from consumers.store.derive import VALUE_DOC, find_marks
from consumers.store.models import LABEL_TITLES, LABELS
from evaluators.base import LLAMA_GUARD_CATEGORIES, RULE_CATEGORIES

PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # a larger page number would overflow the database's OFFSET (a 500)
STAGES = ("input", "output")
ACTIONS = ("block", "flag", "redact", "allow", "error")
STATUSES = ("unreviewed", "reviewed", "all")
ORDERS = ("value", "newest")
#: look-alikes listed on an event page, and labelled with it in one action at most
MAX_BATCH = 200


def _fmt_ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _fmt_score(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _path(value: str) -> str:
    """One URL path segment (event ids come from the wire: quote everything)."""
    return quote(str(value), safe="")


FILTERS = {"ts": _fmt_ts, "score": _fmt_score, "label_title": lambda v: LABEL_TITLES.get(v, v), "path": _path,
           "visible": visible}


def reviewer_active(store: Store, name: str) -> bool:
    with store.read() as conn:
        return queries.reviewer_active(conn, name)


def _render(request: web.Request, template: str, status: int = 200, **ctx: Any) -> web.Response:
    principal: Principal | None = request.get(appmod.PRINCIPAL)
    env = request.app[appmod.TEMPLATES]
    html = env.get_template(template).render(
        principal=principal, csrf=request.app[appmod.SIGNER].csrf_token(principal) if principal else "", **ctx)
    return web.Response(text=html, status=status, content_type="text/html")


def parse_filter(query: Mapping[str, str]) -> QueueFilter:
    def pick(name: str, allowed: tuple[str, ...] | None = None) -> str | None:
        value = (query.get(name) or "").strip()
        if not value or (allowed is not None and value not in allowed):
            return None
        return value[:256]

    def when(name: str) -> datetime | None:
        value = (query.get(name) or "").strip()
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    status = query.get("status", "unreviewed")
    order = query.get("order", "value")
    return QueueFilter(stage=pick("stage", STAGES), category=pick("category"), evaluator=pick("evaluator"),
                       tenant=pick("tenant"), action=pick("action", ACTIONS), since=when("since"),
                       until=when("until"), status=status if status in STATUSES else "unreviewed",
                       order=order if order in ORDERS else "value", disagreement=query.get("disagreement") == "1")


# -- login --------------------------------------------------------------------------------------------
async def login_form(request: web.Request, error: str | None = None, status: int = 200) -> web.Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or ""
    fresh = len(nonce) != 32
    if fresh:
        import secrets

        nonce = secrets.token_hex(16)
    response = _render(request, "login.html", status=status, error=error,
                       login_token=request.app[appmod.SIGNER].login_token(nonce),
                       next=safe_next(request.query.get("next")))
    if fresh:
        response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="Strict", path="/login",
                            secure=request.app[appmod.SECURE], max_age=3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    signer = request.app[appmod.SIGNER]
    if not signer.check_login_token(request.cookies.get(LOGIN_COOKIE), str(form.get("login_token", ""))):
        return await login_form(request, error="The login form expired; please try again.", status=403)
    name, secret = str(form.get("name", "")).strip(), str(form.get("secret", ""))
    store, throttle = request.app[appmod.STORE], request.app[appmod.THROTTLE]
    keys = (f"name:{name}", f"addr:{request.remote}")
    if throttle.blocked(*keys):
        return await login_form(request, error="Too many failed logins; wait a few minutes.", status=429)
    if not (bool(name and secret) and await asyncio.to_thread(store.authenticate, name, secret)):
        throttle.failed(*keys)
        return await login_form(request, error="Unknown reviewer or wrong secret.", status=401)
    response = web.HTTPSeeOther(safe_next(str(form.get("next", "/"))))
    response.set_cookie(SESSION_COOKIE, signer.session_cookie(name), httponly=True, samesite="Strict", path="/",
                        secure=request.app[appmod.SECURE], max_age=SESSION_TTL_S)
    response.del_cookie(LOGIN_COOKIE, path="/login")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


async def healthz(request: web.Request) -> web.Response:
    store = request.app[appmod.STORE]

    def counts() -> dict[str, int]:
        with store.read() as conn:
            return queries.counts(conn)

    return web.json_response({"ok": True, "store": await asyncio.to_thread(counts), **request.app[appmod.STATE]()})


# -- queue and event ----------------------------------------------------------------------------------
def page_number(request: web.Request) -> int:
    """The `page` query parameter: 1 when missing or not a number, capped at MAX_PAGE."""
    try:
        return min(max(1, int(request.query.get("page", "1"))), MAX_PAGE)
    except ValueError:
        return 1


async def queue(request: web.Request) -> web.Response:
    f = parse_filter(request.query)
    page = page_number(request)
    store, me = request.app[appmod.STORE], request[appmod.PRINCIPAL].name

    def load() -> tuple[Any, ...]:
        with store.read() as conn:
            rows, total = queries.queue(conn, f, me, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            return rows, total, queries.facets(conn), queries.counts(conn)

    rows, total, facets, counts = await asyncio.to_thread(load)
    params = f.as_params()
    return _render(request, "queue.html", rows=rows, total=total, facets=facets, counts=counts, f=f,
                   stages=STAGES, actions=ACTIONS, statuses=STATUSES, orders=ORDERS, page=page,
                   highlight=highlight, value_doc=VALUE_DOC,
                   pages=max(1, -(-total // PAGE_SIZE)), query=urlencode(params),
                   page_query=lambda n: urlencode({**params, "page": n}))


async def event_page(request: web.Request) -> web.Response:
    store, me = request.app[appmod.STORE], request[appmod.PRINCIPAL].name
    f = parse_filter(request.query)
    event_id = request.match_info["event_id"]

    def load() -> tuple[Any, ...]:
        with store.read() as conn:
            event = queries.get_event(conn, event_id)
            if event is None:
                return None, None, None, {}, ([], 0)
            scopes = {name: scope_of(cats) for name, cats in queries.evaluator_categories(conn).items()}
            return (event, *queries.neighbours(conn, f, event), scopes,
                    queries.lookalikes(conn, event, limit=MAX_BATCH))

    event, prev_id, next_id, scopes, (alike, alike_total) = await asyncio.to_thread(load)
    if event is None:
        raise web.HTTPNotFound(text="no such event")
    latest = latest_by_reviewer(event.labels)
    decision = consensus(event.labels)
    verdicts = event.payload.get("verdicts", [])
    mine = latest.get(me)
    checked = set(mine.categories) if mine and mine.label == "unsafe" else set(event.payload.get("categories", []))
    categories = [(code, f"{code} {name}") for code, name in LLAMA_GUARD_CATEGORIES.items()]
    categories += [(code, code) for code in RULE_CATEGORIES]
    categories += [(c, c) for c in sorted(checked) if c not in LLAMA_GUARD_CATEGORIES and c not in RULE_CATEGORIES]
    return _render(request, "event.html", event=event, p=event.payload, content=event.content,
                   verdicts=verdicts, latest=latest, decision=decision, mine=mine,
                   agree=reviewers_agree(latest), ev_agree=evaluator_agreement(decision, verdicts, scopes),
                   categories=categories, checked=checked, labels=LABELS, prev_id=prev_id, next_id=next_id,
                   query=urlencode(f.as_params()), judged=_judged_index(event.payload),
                   payload_json=json.dumps(event.payload, indent=2, ensure_ascii=False),
                   shadow=event.payload.get("shadow") or {}, marked=_marked(event.payload),
                   alike=alike, alike_total=alike_total, highlight=highlight)


def _marked(payload: Mapping[str, Any]) -> Callable[[str | None], Markup]:
    """Renders one stored text of the event with its findings marked (see derive.find_marks)."""
    redacted = (payload.get("content") or {}).get("mode") == "redacted"
    return lambda text: highlight(text, find_marks(text, redacted) if text else [])


def _judged_index(payload: Mapping[str, Any]) -> int | None:
    """Index of the judged message: the last one for prompts; answers are judged in `completion`."""
    messages = (payload.get("content") or {}).get("messages") or []
    if payload.get("stage") == "input" and messages:
        return len(messages) - 1
    return None


async def post_label(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    event_id = request.match_info["event_id"]
    label = str(form.get("label", ""))
    categories = [str(c) for c in form.getall("categories", [])]
    note = str(form.get("note", ""))
    # a batch label: the look-alikes the page listed, when the reviewer ticked "label these too"
    alike = [str(e) for e in form.getall("lookalikes", [])][:MAX_BATCH] if form.get("batch") == "1" else []
    store, me = request.app[appmod.STORE], request[appmod.PRINCIPAL].name
    wants_json = "application/json" in request.headers.get("Accept", "")
    f = parse_filter(request.query)

    def next_after() -> str | None:
        with store.read() as conn:
            event = queries.get_event(conn, event_id)
            return queries.neighbours(conn, f, event)[1] if event else None

    def label_and_find_next() -> tuple[list[Any] | None, str | None]:
        # in value order a label changes the event's own value: its successor is found before it
        before_label = f.order == "value" and f.status != "unreviewed" and not wants_json
        successor = next_after() if before_label else None
        stored = store.add_labels(event_id, me, label, categories, note, alike)
        if stored is None or wants_json or before_label:
            return stored, successor
        if f.order == "value":  # unreviewed, most valuable first: the head of what is left
            with store.read() as conn:
                return stored, queries.first_in_queue(conn, f)
        return stored, next_after()

    try:
        stored, target = await asyncio.to_thread(label_and_find_next)
    except ValueError as exc:
        if wants_json:
            return web.json_response({"ok": False, "error": str(exc)}, status=400)
        raise web.HTTPBadRequest(text=str(exc)) from None
    if stored is None:
        raise web.HTTPNotFound(text="no such event")
    if wants_json:
        return web.json_response({"ok": True, "event_id": event_id, "label": stored[0].label,
                                  "categories": stored[0].categories, "reviewer": stored[0].reviewer,
                                  "labelled": len(stored)})

    query = urlencode(f.as_params())
    raise web.HTTPSeeOther(f"/events/{_path(target)}?{query}" if target else f"/?{query}")


async def dead_letters(request: web.Request) -> web.Response:
    store = request.app[appmod.STORE]

    def load() -> list[dict[str, Any]]:
        with store.read() as conn:
            return queries.dead_letter_page(conn)

    return _render(request, "dead_letters.html", letters=await asyncio.to_thread(load))
