"""A loopback TCP relay in front of a server, for network faults and TLS in tests and fault scripts.

`cut()` resets every relayed connection and closes the port (what clients see when a broker process is
killed: RST, then ECONNREFUSED); `restore()` listens again on the same port. `freeze()` keeps connections open
but moves no bytes (a hung broker: requests time out), `thaw()` lets them flow again. With `ssl`, the relay
terminates TLS (a TLS listener in front of a plaintext broker).

A Kafka broker behind the relay must advertise the relay's port, so that clients reconnect through it.
The server behind keeps its state through a cut, as a disk-backed broker does through a restart.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_lib
import threading
from typing import Any

from tests.services import free_port


class TcpRelay:
    def __init__(self, target_port: int, port: int | None = None, *, ssl: ssl_lib.SSLContext | None = None,
                 target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.ssl = ssl
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="tcp-relay")
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._flowing: asyncio.Event | None = None

    # -- control (any thread) ----------------------------------------------------------------------------
    def start(self) -> TcpRelay:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def freeze(self) -> None:
        self._call(self._set_flowing(False))

    def thaw(self) -> None:
        self._call(self._set_flowing(True))

    def stop(self) -> None:
        """Cut every connection, let each handler finish, then end the loop: a handler left pending would be
        destroyed later by the garbage collector, and asyncio logs that in whichever test runs then."""
        self._call(self._cut())
        self._call(self._wait_for_handlers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- the relay's loop ----------------------------------------------------------------------------------
    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
            self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=self.ssl,
                                                      reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for client, upstream in list(self._pairs):
            for writer in (client, upstream):
                writer.transport.abort()
        self._pairs.clear()

    async def _wait_for_handlers(self) -> None:
        # the relay's loop runs nothing but its connection handlers and these control calls
        handlers = asyncio.all_tasks() - {asyncio.current_task()}
        if handlers:
            await asyncio.wait(handlers, timeout=5)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for w in pair:
                w.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, ssl_lib.SSLError):
            pass
        finally:
            writer.transport.abort()
