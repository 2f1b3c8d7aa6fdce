"""guardstream as one of several processes sharing a port (SO_REUSEPORT): the multi-process rows.

    python -m bench.reuseport --config guardstream.yaml

`guardstream serve` runs one process; a deployment that wants every core runs
one per core behind a balancer. The kernel's SO_REUSEPORT balancing is that
balancer here. Otherwise the same as `serve`: same app, same settings, uvloop.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from bench._loop import install_uvloop


async def serve(config: str) -> None:
    from aiohttp import web

    from proxy.app import create_app
    from proxy.config import load_settings
    from proxy.logs import configure_logging
    from proxy.server import make_runner

    settings = load_settings(config)
    configure_logging(settings.logging)
    runner = make_runner(create_app(settings), settings.server)
    await runner.setup()
    await web.TCPSite(runner, settings.server.host, settings.server.port, reuse_port=True).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reuseport", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    install_uvloop()
    asyncio.run(serve(args.config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
