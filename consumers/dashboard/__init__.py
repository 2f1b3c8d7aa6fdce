"""The ops dashboard (aiohttp, server-rendered SVG charts)."""

from consumers.dashboard.app import create_app

__all__ = ["create_app"]
