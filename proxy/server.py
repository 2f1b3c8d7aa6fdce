"""The HTTP server under the app: aiohttp's, set from config, answering what its parser rejects the OpenAI way.

aiohttp's HTTP parser rejects a malformed request line, a bad header or one over `max_header_bytes` before a
request exists, so no middleware sees it: aiohttp answers a plain-text 400 and logs a traceback. Here its
request handler answers those with an OpenAI-shaped JSON error instead, logs one line without content or
traceback, and counts them under the route `unparsed`.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, LineTooLong
from aiohttp.web_protocol import RequestHandler

from proxy.config import ServerConfig
from proxy.errors import ProxyError, internal_error
from proxy.metrics import REQUESTS, child

log = structlog.get_logger("guardstream")


def runner_options(server: ServerConfig) -> dict[str, object]:
    """aiohttp server settings from config: timeouts and per-connection buffer caps (see docs/reliability.md)."""
    return {"handler_cancellation": True, "access_log": None, "keepalive_timeout": server.keepalive_timeout_s,
            "max_line_size": server.max_header_bytes, "max_field_size": server.max_header_bytes,
            "read_bufsize": server.read_bufsize}


def make_runner(app: web.Application, server: ServerConfig, **overrides: Any) -> web.AppRunner:
    """The runner to serve the proxy app with: config's limits, OpenAI-shaped parser errors."""
    return ProxyRunner(app, **{**runner_options(server), **overrides})


def parser_error(status: int, exc: BaseException | None) -> ProxyError:
    """The OpenAI-shaped answer to a request aiohttp could not parse (never echoes what was sent)."""
    if status >= 500:
        return internal_error()
    if isinstance(exc, LineTooLong):
        return ProxyError(status, "The request line or a request header is too long.",
                          code="request_header_too_large")
    if isinstance(exc, (BadHttpMethod, BadStatusLine)):
        return ProxyError(status, "The HTTP request line is malformed.", code="invalid_http_request")
    return ProxyError(status, "The HTTP request is malformed.", code="invalid_http_request")


class OpenAIErrorsRequestHandler(RequestHandler):
    """aiohttp's per-connection protocol, with `handle_error` answering in OpenAI's shape."""

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        # type and status only: the parser's message can quote header bytes, which may hold a key
        log.warning("http_request_rejected", status=status, error=type(exc).__name__ if exc else None)
        child(REQUESTS, "unparsed", str(status)).inc()
        if request.writer.output_size > 0:  # part of an answer is out already: the connection is broken
            raise ConnectionError("Response is sent already, cannot send the error")
        response = parser_error(status, exc).response()
        response.force_close()
        return response


class OpenAIErrorsServer(web.Server):
    """aiohttp's server, making `OpenAIErrorsRequestHandler`s for its connections."""

    def __call__(self) -> RequestHandler:
        return OpenAIErrorsRequestHandler(self, loop=self._loop, **self._kwargs)


class ProxyRunner(web.AppRunner):
    """`web.AppRunner` whose server answers unparseable requests with OpenAI-shaped errors."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = OpenAIErrorsServer  # same state, one method more specific (aiohttp has no hook)
        return server
