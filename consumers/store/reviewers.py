"""Reviewer accounts: secrets stored as salted scrypt hashes, checked in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from sqlalchemy import Connection, select

from consumers.store import tables as t
from consumers.store.writes import utcnow

#: scrypt cost: 16 MiB and ~50 ms per check; stored with the hash so it can be raised later
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
NAME_RE = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def hash_secret(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def verify_secret(secret: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


_DUMMY = hash_secret("not a real secret")


def add_reviewer(conn: Connection, name: str, secret: str | None = None) -> str:
    """Create (or reset) a reviewer; returns the secret (generated when not given). Only the hash is stored."""
    if not NAME_RE.match(name):
        raise ValueError("reviewer names are 1-64 characters of letters, digits and . _ @ -")
    secret = secret or secrets.token_urlsafe(24)
    if len(secret) < 12:
        raise ValueError("a reviewer secret needs at least 12 characters")
    hashed = hash_secret(secret)
    R = t.reviewers
    if conn.execute(select(R.c.id).where(R.c.name == name)).first():
        conn.execute(R.update().where(R.c.name == name).values(secret_hash=hashed, active=True))
    else:
        conn.execute(R.insert().values(name=name, secret_hash=hashed, active=True, created_at=utcnow()))
    return secret


def deactivate_reviewer(conn: Connection, name: str) -> bool:
    return bool(conn.execute(t.reviewers.update().where(t.reviewers.c.name == name).values(active=False)).rowcount)


def list_reviewers(conn: Connection) -> list[tuple[str, bool]]:
    R = t.reviewers
    return [(r.name, r.active) for r in conn.execute(select(R.c.name, R.c.active).order_by(R.c.name))]


def authenticate(conn: Connection, name: str, secret: str) -> bool:
    """True when `name` is an active reviewer with this secret (same work done for unknown names)."""
    R = t.reviewers
    row = conn.execute(select(R.c.secret_hash, R.c.active).where(R.c.name == name)).first()
    if row is None:
        verify_secret(secret, _DUMMY)
        return False
    return verify_secret(secret, row.secret_hash) and bool(row.active)
