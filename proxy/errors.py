"""OpenAI-shaped error responses. Every rejection the proxy makes goes through here."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class ProxyError(Exception):
    """An error with its HTTP status and OpenAI `type`/`code`; rendered by the error middleware."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None, extra: dict[str, Any] | None = None,
                 close: bool = False, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.extra = extra or {}
        self.close = close  # end the connection after the answer (what is left of the request is unreadable)
        self.headers = headers or {}  # e.g. Retry-After

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        error.update(self.extra)
        return {"error": error}

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        response = web.Response(status=self.status, body=json.dumps(self.body()).encode(),
                                content_type="application/json",
                                headers={**self.headers, **headers} if self.headers and headers else
                                self.headers or headers)
        if self.close:
            response.force_close()
        return response


def bad_request(message: str, param: str | None = None, code: str | None = None) -> ProxyError:
    return ProxyError(400, message, param=param, code=code)


def nested_too_deeply() -> ProxyError:
    """A JSON body past what Python's parser (or encoder) can recurse into."""
    return bad_request("The JSON body of your request is nested too deeply.", code="invalid_json")


def duplicate_key(key: str) -> ProxyError:
    """A JSON object naming one key twice: the proxy would judge one value and the upstream might read another."""
    return bad_request(f"The JSON body of your request names the key {key!r} twice in one object; each key may "
                       "appear once.", param=key, code="duplicate_key")


def unreadable_body() -> ProxyError:
    return ProxyError(400, "The request body could not be read: it does not match its Content-Encoding or "
                      "Transfer-Encoding.", code="invalid_request_body", close=True)


def expectation_failed() -> ProxyError:
    return ProxyError(417, "Only 'Expect: 100-continue' is supported.", param="Expect",
                      code="expectation_failed", close=True)


def invalid_api_key() -> ProxyError:
    return ProxyError(401, "Incorrect API key provided.", type="invalid_request_error", code="invalid_api_key")


def body_too_large(limit: int) -> ProxyError:
    return ProxyError(413, f"Request body too large: the limit is {limit} bytes.", code="request_too_large")


def request_timeout(seconds: float) -> ProxyError:
    return ProxyError(408, f"Timed out reading the request body: it must arrive within {seconds:g} s.",
                      code="request_timeout")


def shutting_down() -> ProxyError:
    return ProxyError(503, "The proxy is shutting down; retry on another instance.", type="api_error",
                      code="server_shutting_down")


def upstream_unreachable() -> ProxyError:
    return ProxyError(502, "The upstream model server could not be reached.", type="api_error",
                      code="upstream_unreachable")


def upstream_timeout() -> ProxyError:
    return ProxyError(504, "The upstream model server timed out.", type="api_error", code="upstream_timeout")


def upstream_bad_response(detail: str) -> ProxyError:
    return ProxyError(502, f"The upstream model server sent an invalid response: {detail}", type="api_error",
                      code="upstream_bad_response")


def content_filtered(stage: str, categories: list[str], evaluators: list[str]) -> ProxyError:
    """HTTP 400 with code content_filter: OpenAI's shape for a prompt the policy blocked."""
    return ProxyError(
        400,
        "The prompt was blocked by the content policy.",
        code="content_filter",
        extra={"guardrail": {"stage": stage, "categories": categories, "evaluators": evaluators}},
    )


def not_found(path: str) -> ProxyError:
    return ProxyError(404, f"Unknown route: {path}", code="not_found")


def method_not_allowed(method: str) -> ProxyError:
    return ProxyError(405, f"Method {method} not allowed on this route.", code="method_not_allowed")


def internal_error() -> ProxyError:
    return ProxyError(500, "The proxy failed to process the request.", type="api_error", code="internal_error")
