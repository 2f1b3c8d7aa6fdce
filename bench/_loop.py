"""uvloop for every benchmark process (the proxy's own `serve` installs it too)."""

from __future__ import annotations

import asyncio


def install_uvloop() -> str:
    """Use uvloop when it is installed; return the loop's name for the report."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
