"""The review UI: an aiohttp application over the review store (server-rendered, escaped by Jinja2)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from consumers.review_ui import comparison_views, views
from consumers.review_ui.auth import SESSION_COOKIE, LoginThrottle, Principal, Signer, parse_basic_auth
from consumers.store import Store

HERE = Path(__file__).parent
STORE: web.AppKey[Store] = web.AppKey("store", Store)
SIGNER: web.AppKey[Signer] = web.AppKey("signer", Signer)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("templates", jinja2.Environment)
STATE: web.AppKey[Callable[[], dict[str, Any]]] = web.AppKey("state")
SECURE: web.AppKey[bool] = web.AppKey("secure", bool)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
THROTTLE: web.AppKey[LoginThrottle] = web.AppKey("throttle", LoginThrottle)

PUBLIC = ("/login", "/static/", "/healthz")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    if isinstance(response, web.HTTPException):
        raise response
    return response


async def principal_of(request: web.Request) -> Principal | None:
    store, signer = request.app[STORE], request.app[SIGNER]
    session = signer.read_session(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        active = await asyncio.to_thread(views.reviewer_active, store, session.name)
        return session if active else None
    basic = parse_basic_auth(request.headers.get("Authorization"))
    if basic:
        throttle, keys = request.app[THROTTLE], (f"name:{basic[0]}", f"addr:{request.remote}")
        if throttle.blocked(*keys):
            return None
        if await asyncio.to_thread(store.authenticate, *basic):
            return Principal(name=basic[0], binding=f"basic:{basic[0]}")
        throttle.failed(*keys)
    return None


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin on POST; when present it must be this host (behind a proxy: X-Forwarded-Host)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    hosts = {request.host, request.headers.get("X-Forwarded-Host", "")}
    return urlsplit(origin).netloc in hosts


@web.middleware
async def refuse_nul(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A NUL character in the path, the query or a form field: 400. No text column of the store can hold one
    (PostgreSQL refuses it: the request would fail with a 500)."""
    values = [request.path, *request.query.values()]
    if request.method == "POST" and request.content_type in ("application/x-www-form-urlencoded",
                                                              "multipart/form-data"):
        values += [v for v in (await request.post()).values() if isinstance(v, str)]
    if any("\x00" in value for value in values):
        raise web.HTTPBadRequest(text="NUL characters are not accepted")
    return await handler(request)


@web.middleware
async def auth_and_csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method == "POST" and not _same_origin(request):
        raise web.HTTPForbidden(text="cross-origin request refused")
    if request.path.startswith(PUBLIC):
        return await handler(request)
    principal = await principal_of(request)
    if principal is None:
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            raise web.HTTPSeeOther(f"/login?next={request.rel_url}")
        raise web.HTTPUnauthorized(text="login required", headers={"WWW-Authenticate": 'Basic realm="guardstream"'})
    request[PRINCIPAL] = principal
    if request.method == "POST":
        token = request.headers.get("X-CSRF-Token")
        if token is None:
            token = (await request.post()).get("csrf_token")  # type: ignore[assignment]  # a form field is text; a file upload fails the check below
        if not request.app[SIGNER].check_csrf(principal, token if isinstance(token, str) else None):
            raise web.HTTPForbidden(text="missing or invalid CSRF token")
    return await handler(request)


def create_app(store: Store, *, state: Callable[[], dict[str, Any]] | None = None,
               secure_cookies: bool = False) -> web.Application:
    """The UI over `store`; `state` reports the consumer running beside it (shown at /healthz)."""
    app = web.Application(middlewares=[security_headers, refuse_nul, auth_and_csrf], client_max_size=256 * 1024)
    app[STORE] = store
    app[SIGNER] = Signer(store.secret_setting("review_ui.session_key"))
    app[TEMPLATES] = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                        autoescape=True,
                                        trim_blocks=True, lstrip_blocks=True)
    app[TEMPLATES].filters.update(views.FILTERS)
    app[STATE] = state or (lambda: {"consumer": "off"})
    app[SECURE] = secure_cookies
    app[THROTTLE] = LoginThrottle()
    app.router.add_get("/login", views.login_form)
    app.router.add_post("/login", views.login)
    app.router.add_post("/logout", views.logout)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/", views.queue)
    app.router.add_get("/events/{event_id}", views.event_page)
    app.router.add_post("/events/{event_id}/labels", views.post_label)
    app.router.add_get("/dead-letters", views.dead_letters)
    comparison_views.add_routes(app)
    static = app.router.add_static("/static/", HERE / "static", append_version=True, name="static")
    app[TEMPLATES].globals["static"] = lambda name: str(static.url_for(filename=name))
    return app
