"""Reviewer sessions and CSRF for the review UI.

- Login form (name + secret) -> a signed session cookie (HMAC-SHA256 with a key kept in the store),
  HttpOnly, SameSite=Strict, Secure when served over TLS. HTTP Basic auth works too (scripts, curl).
- Every POST needs a CSRF token bound to the session (hidden field or `X-CSRF-Token` header), and a
  cross-origin `Origin` header is refused. The login form has its own token bound to a pre-login cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "gs_review_session"
LOGIN_COOKIE = "gs_review_login"
SESSION_TTL_S = 12 * 3600


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making the request; `binding` ties the CSRF token to this session (or to basic auth)."""

    name: str
    binding: str


class Signer:
    def __init__(self, key: str) -> None:
        self._key = key.encode()

    def mac(self, *parts: str) -> str:
        return hmac.new(self._key, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    # -- sessions -------------------------------------------------------------------------------
    def session_cookie(self, name: str, now: float | None = None) -> str:
        issued = str(int(now if now is not None else time.time()))
        nonce = secrets.token_hex(16)
        body = base64.urlsafe_b64encode(f"{name}|{issued}|{nonce}".encode()).decode()
        return f"{body}.{self.mac('session', body)}"

    def read_session(self, cookie: str | None, now: float | None = None) -> Principal | None:
        if not cookie or "." not in cookie:
            return None
        body, sig = cookie.rsplit(".", 1)
        if not hmac.compare_digest(sig, self.mac("session", body)):
            return None
        try:
            name, issued, nonce = base64.urlsafe_b64decode(body.encode()).decode().split("|")
            age = (now if now is not None else time.time()) - int(issued)
        except (ValueError, binascii.Error, UnicodeDecodeError):
            return None
        if not 0 <= age <= SESSION_TTL_S:
            return None
        return Principal(name=name, binding=f"session:{nonce}")

    # -- CSRF -----------------------------------------------------------------------------------
    def csrf_token(self, principal: Principal) -> str:
        return self.mac("csrf", principal.binding)

    def check_csrf(self, principal: Principal, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(principal))

    def login_token(self, login_nonce: str) -> str:
        return self.mac("login", login_nonce)

    def check_login_token(self, login_nonce: str | None, token: str | None) -> bool:
        if not login_nonce or not token:
            return False
        return hmac.compare_digest(token, self.login_token(login_nonce))


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        name, _, secret = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (name, secret) if name and secret else None


def safe_next(target: str | None) -> str:
    """Only same-site relative paths are followed after login (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


class LoginThrottle:
    """At most `max_failures` failed logins per reviewer name (and per client address) in `window_s`."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def blocked(self, *keys: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return any(len(self._recent(k, now)) >= self.max_failures for k in keys)

    def failed(self, *keys: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in keys:
            self._failures.setdefault(key, []).append(now)
        if len(self._failures) > 10_000:  # bounded memory under a spray of names
            for key in list(self._failures)[:5_000]:
                del self._failures[key]
