"""The upstream model server: one pooled aiohttp session, the key from config, errors mapped to 502/504."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict

from proxy.config import UpstreamConfig
from proxy.errors import ProxyError, upstream_bad_response, upstream_timeout, upstream_unreachable
from proxy.keyscrub import key_bytes, scrub
from proxy.metrics import UPSTREAM_ERRORS
from proxy.urls import display_url

#: client request headers forwarded upstream; everything else (cookies, auth, hop-by-hop, Host) is dropped
FORWARDED_REQUEST_HEADERS = ("accept", "accept-language", "openai-organization", "openai-project", "user-agent",
                             "x-stainless-lang", "x-stainless-package-version", "x-stainless-os",
                             "x-stainless-arch", "x-stainless-runtime", "x-stainless-runtime-version")

#: upstream response headers relayed to the client
RELAYED_RESPONSE_HEADERS = ("content-type", "openai-model", "openai-processing-ms", "openai-version",
                            "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens",
                            "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens",
                            "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "retry-after")


#: (family, type, proto, canonname, address), as getaddrinfo gives it
AddrInfo = tuple[Any, ...]


class Upstream:
    """Sends requests to the configured upstream. Clients can never choose the URL or the key."""

    def __init__(self, cfg: UpstreamConfig) -> None:
        self.cfg = cfg
        self.base_url = cfg.url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self._api_key = cfg.resolved_api_key()
        self._key_bytes = key_bytes(cfg)
        self._session: aiohttp.ClientSession | None = None

    @property
    def display_url(self) -> str:
        """The upstream URL without credentials, for logs and audit events."""
        return display_url(self.base_url)

    async def start(self) -> None:
        factory = _receive_buffer_factory(self.cfg.receive_buffer_bytes) if self.cfg.receive_buffer_bytes else None
        connector = aiohttp.TCPConnector(limit=self.cfg.pool_size, limit_per_host=self.cfg.pool_size,
                                         ttl_dns_cache=300, enable_cleanup_closed=True, socket_factory=factory)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.cfg.connect_timeout_s,
                                        sock_read=self.cfg.read_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                              raise_for_status=False, trust_env=False,
                                              read_bufsize=self.cfg.read_bufsize)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def headers(self, client_headers: Mapping[str, str], request_id: str) -> CIMultiDict[str]:
        out: CIMultiDict[str] = CIMultiDict()
        for name in FORWARDED_REQUEST_HEADERS:
            value = client_headers.get(name)
            if value is not None:
                out[name] = value
        out["content-type"] = "application/json"
        out["x-request-id"] = request_id
        if self._api_key:
            out["authorization"] = f"Bearer {self._api_key}"
        return out

    async def request(self, method: str, path: str, body: bytes | None,
                      headers: Mapping[str, str]) -> aiohttp.ClientResponse:
        """Open a request; the caller reads (or streams) the body and releases the response."""
        assert self._session is not None, "Upstream.start() was not awaited"
        try:
            return await self._session.request(method, self.base_url + path, data=body, headers=headers,
                                               allow_redirects=False)
        except TimeoutError:
            UPSTREAM_ERRORS.labels("timeout").inc()
            raise upstream_timeout() from None
        except aiohttp.ClientError:
            UPSTREAM_ERRORS.labels("unreachable").inc()
            raise upstream_unreachable() from None

    async def read_body(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole (non-streamed) answer: at most `max_response_bytes`, the upstream key scrubbed out."""
        limit = self.cfg.max_response_bytes
        try:
            if response.content_length is not None:
                if response.content_length > limit:
                    raise _too_large(limit)
                body = await response.read()
            else:
                chunks, size = [], 0
                while chunk := await response.content.readany():
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(limit)
                    chunks.append(chunk)
                body = b"".join(chunks)
        except TimeoutError:
            UPSTREAM_ERRORS.labels("timeout").inc()
            raise upstream_timeout() from None
        except aiohttp.ClientError:
            UPSTREAM_ERRORS.labels("disconnected").inc()
            raise upstream_unreachable() from None
        return scrub(body, self._key_bytes)  # an upstream echoing our key back


def _receive_buffer_factory(size: int) -> Callable[[AddrInfo], socket.socket]:
    """Sockets for upstream connections with SO_RCVBUF set before connecting (so the TCP window matches).

    Without it Linux grows the buffer to megabytes (tcp_rmem): for a client that stops reading, the kernel
    would take that much of the upstream's answer on the proxy's side, and the upstream would never slow down.
    """
    def make(addr_info: AddrInfo) -> socket.socket:
        family, type_, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=type_, proto=proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:  # pragma: no cover - the kernel's default is fine
            pass
        return sock

    return make


def _too_large(limit: int) -> ProxyError:
    UPSTREAM_ERRORS.labels("too_large").inc()
    return upstream_bad_response(f"the answer is larger than {limit} bytes")


def relayed_headers(response: aiohttp.ClientResponse) -> dict[str, str]:
    return {k: response.headers[k] for k in RELAYED_RESPONSE_HEADERS if k in response.headers}


__all__ = ["Upstream", "ProxyError", "relayed_headers"]
