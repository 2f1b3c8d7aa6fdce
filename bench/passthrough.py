"""The baseline relay: a minimal aiohttp pass-through, one pooled ClientSession, no checks.

    python -m bench.passthrough --port 9100 --upstream http://127.0.0.1:9000 [--reuse-port]

It forwards POST /v1/* bodies as they are and relays the answer, streaming
chunk by chunk when the upstream streams. guardstream's throughput target is
measured against this.
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

from bench._loop import install_uvloop

UPSTREAM = web.AppKey("upstream", str)
SESSION = web.AppKey("session", aiohttp.ClientSession)


async def relay(request: web.Request) -> web.StreamResponse:
    body = await request.read()
    session = request.app[SESSION]
    headers = {"content-type": "application/json"}
    async with session.post(request.app[UPSTREAM] + request.path, data=body, headers=headers) as upstream:
        if "text/event-stream" not in upstream.headers.get("content-type", ""):
            return web.Response(status=upstream.status, body=await upstream.read(),
                                content_type=upstream.content_type)
        response = web.StreamResponse(status=upstream.status, headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.router.add_post("/v1/{tail:.*}", relay)

    async def session(app: web.Application):  # type: ignore[no-untyped-def]
        app[SESSION] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.passthrough", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="upstream base URL (without /v1)")
    parser.add_argument("--reuse-port", action="store_true", help="SO_REUSEPORT, to run several processes")
    args = parser.parse_args(argv)
    install_uvloop()
    web.run_app(create_app(args.upstream), host=args.host, port=args.port, access_log=None, print=None,
                reuse_port=args.reuse_port or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
