"""The aiohttp application: routes, the one middleware (request id, auth, errors, metrics), lifecycle."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import HttpVersion11, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from proxy import handlers, logs
from proxy.config import Settings
from proxy.connections import CONNECTIONS, Connections
from proxy.errors import (
    ProxyError,
    expectation_failed,
    internal_error,
    invalid_api_key,
    method_not_allowed,
    not_found,
    shutting_down,
)
from proxy.gc_tuning import tune_gc
from proxy.metrics import INFLIGHT, REGISTRY, REQUESTS, child
from proxy.recording import CTX, RequestContext
from proxy.server import make_runner
from proxy.state import STATE, ProxyState

log = structlog.get_logger("guardstream")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


@web.middleware
async def guardstream_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id on every log line and response, client auth, OpenAI-shaped errors, request metrics."""
    started = time.perf_counter()
    incoming = request.headers.get("x-request-id", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else os.urandom(16).hex()  # uuid4().hex, cheaper
    structlog.contextvars.bind_contextvars(request_id=request_id)
    resource = request.match_info.route.resource
    route = resource.canonical if resource else "unmatched"
    headers = {"x-request-id": request_id}
    status = 500
    INFLIGHT.inc()
    connections = request.app[CONNECTIONS]
    connections.inflight += 1
    try:
        state: ProxyState = request.app[STATE]
        if connections.draining:
            headers["connection"] = "close"
            raise shutting_down()
        if request.path not in _PUBLIC:
            principal = state.keyring.authenticate(request.headers.get("authorization"))
            if principal is None:
                raise invalid_api_key()
            request[CTX] = RequestContext(request_id, principal, route, None, started)
        response = await handler(request)
        if not response.prepared:
            response.headers.update(headers)
        status = response.status
        return response
    except ProxyError as exc:
        status = exc.status
        return exc.response(headers)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status == 404:
            return not_found(request.path).response(headers)
        if exc.status == 405:
            return method_not_allowed(request.method).response(headers)
        return ProxyError(exc.status, exc.reason).response(headers)
    except asyncio.CancelledError:
        status = 499  # client closed the connection
        raise
    except ConnectionResetError:  # the client went away mid-answer: nothing to send (aiohttp drops this one)
        status = 499
        return ProxyError(499, "The client closed the connection.", code="client_closed_request").response(headers)
    except Exception:
        log.exception("unhandled_error", route=route)
        return internal_error().response(headers)
    finally:
        INFLIGHT.dec()
        connections.inflight -= 1
        child(REQUESTS, route, str(status)).inc()
        if logs.INFO_ENABLED:
            log.info("request", method=request.method, route=route, status=status,
                     duration_ms=round((time.perf_counter() - started) * 1000, 3))
        structlog.contextvars.unbind_contextvars("request_id")


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` as aiohttp answers it; any other expectation gets an OpenAI-shaped 417 (aiohttp's
    own is plain text, and runs before the middleware)."""
    if request.version != HttpVersion11:
        return None
    if request.headers.get("expect", "").lower() != "100-continue":
        return expectation_failed().response()
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer proper has not started
    return None


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready once started; optional components (Redis, Kafka) are reported, never fatal."""
    state: ProxyState = request.app[STATE]
    return web.json_response({"status": "ready", "cache": state.cache.state(), "audit": state.audit.state(),
                              "evaluators": sorted(state.evaluators)})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"content-type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    from proxy.openapi import openapi_document

    return web.json_response(openapi_document())


def create_app(settings: Settings, state: ProxyState | None = None) -> web.Application:
    """The proxy as an aiohttp app; its state starts and stops with the app."""
    app = web.Application(middlewares=[guardstream_middleware], client_max_size=settings.server.max_body_bytes)
    app[STATE] = state or ProxyState.build(settings)
    app[CONNECTIONS] = Connections(settings.server.write_timeout_s, settings.server.stream_buffer_bytes)
    routes = [("POST", "/v1/chat/completions", handlers.chat_completions), ("POST", "/v1/completions",
              handlers.completions), ("GET", "/v1/models", handlers.models), ("GET", "/healthz", healthz),
              ("GET", "/readyz", readyz), ("GET", "/metrics", metrics), ("GET", "/openapi.json", openapi)]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler, expect_handler=expect_continue)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]  # aiohttp's cleanup-context generator type is long; checked by aiohttp
        await app[STATE].start()
        await app[CONNECTIONS].start()
        yield
        await app[CONNECTIONS].close()
        await app[STATE].close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(settings: Settings, host: str, port: int, started: asyncio.Event | None = None, *,
                state: ProxyState | None = None, on_listening: Callable[[], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT: then stop accepting, let in-flight requests finish until
    `shutdown_grace_s`, end the streams still running cleanly, flush the audit sink."""
    app = create_app(settings, state)
    runner = make_runner(app, settings.server, shutdown_timeout=_AFTER_DEADLINE_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / platform
            pass
    tune_gc()  # start-up is over: what it built is frozen, young collections become rare (proxy/gc_tuning.py)
    log.info("listening", host=host, port=port)
    if on_listening is not None:
        on_listening()
    if started is not None:
        started.set()
    try:
        await stop.wait()
    finally:
        connections = app[CONNECTIONS]
        log.info("shutting_down", grace_s=settings.server.shutdown_grace_s, inflight=connections.inflight,
                 streams=connections.streams)
        await site.stop()  # no new connections
        await connections.drain(settings.server.shutdown_grace_s)
        await runner.cleanup()  # closes idle connections, flushes the audit sink


#: after the drain deadline, what is left (non-streaming requests) gets this long before being cancelled
_AFTER_DEADLINE_S = 1.0
