"""URLs as the proxy shows them: in logs, /readyz, start-up lines and audit events."""

from __future__ import annotations

from urllib.parse import urlsplit


def display_url(url: str | None) -> str:
    """`url` without its credentials (user and password), query or fragment; "" for none.

    `redis://user:s3cret@host:6379/0?x=1` -> `redis://host:6379/0`; an IPv6 host keeps its brackets."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"
