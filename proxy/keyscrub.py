"""The upstream API key never reaches a client: every byte relayed from the upstream is scrubbed of it."""

from __future__ import annotations

from proxy.config import UpstreamConfig

#: what replaces the key in relayed bytes
REDACTED = b"[upstream key redacted]"


def key_bytes(cfg: UpstreamConfig) -> bytes | None:
    """The configured key as bytes; None when there is none, or it is too short to be told from other text."""
    key = cfg.resolved_api_key()
    return key.encode() if key and len(key) >= 8 else None


def scrub(data: bytes, key: bytes | None) -> bytes:
    """`data` with every occurrence of `key` replaced (an upstream echoing the key back, in an error say)."""
    if key is not None and key in data:
        return data.replace(key, REDACTED)
    return data
