"""The proxy and a demo upstream running for real on loopback, in a background event loop.

Both the sync and the async `openai` clients can talk to it; tests reach into
`harness.upstream` (what the upstream saw) and `harness.state` (evaluators,
audit sink) to check effects.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiohttp import web

from proxy.app import create_app
from proxy.config import Settings
from proxy.demo_upstream import DemoUpstream
from proxy.server import make_runner
from proxy.state import STATE, ProxyState

T = TypeVar("T")


class ProxyHarness:
    def __init__(self, settings: Settings, upstream: DemoUpstream | None = None, upstream_url: str | None = None):
        self.settings = settings
        self.upstream = upstream or DemoUpstream()
        self._upstream_url = upstream_url
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="proxy-harness")
        self._runners: list[web.AppRunner] = []
        self.base_url = ""
        self.upstream_url = ""
        self.state: ProxyState | None = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> ProxyHarness:
        self._thread.start()
        self.call(self._start())
        return self

    async def _start(self) -> None:
        if self._upstream_url is None:
            runner, self.upstream_url = await self.upstream.start()
            self._runners.append(runner)
        else:
            self.upstream_url = self._upstream_url
        self.settings.upstream.url = self.upstream_url
        app = create_app(self.settings)
        self.state = app[STATE]
        runner = make_runner(app, self.settings.server, shutdown_timeout=2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._runners.insert(0, runner)
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        async def _stop() -> None:
            for runner in self._runners:
                await runner.cleanup()

        try:
            self.call(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
