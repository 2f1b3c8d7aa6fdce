"""The review UI (aiohttp, server-rendered)."""

from consumers.review_ui.app import create_app

__all__ = ["create_app"]
