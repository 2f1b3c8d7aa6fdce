"""Client authentication: keys stored as sha256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from proxy.config import ClientKey


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant and the policy that applies to them."""

    tenant: str
    policy: str


ANONYMOUS = Principal(tenant="default", policy="default")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyRing:
    """Checks `Authorization: Bearer <key>` against configured key digests. No keys: open."""

    def __init__(self, keys: list[ClientKey]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), Principal(k.tenant, k.policy)) for k in keys]

    @property
    def open(self) -> bool:
        return not self._keys

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The caller's principal, or None when the key is missing or wrong."""
        if self.open:
            return ANONYMOUS
        token = _bearer(authorization)
        if token is None:
            return None
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for stored, principal in self._keys:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(stored, digest):
                found = principal
        return found


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
