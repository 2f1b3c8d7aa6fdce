"""Per-tenant limits on concurrent upstream requests: one tenant cannot take the whole upstream pool.

Every tenant may hold at most its limit of upstream requests and streams at once (a stream counts until it
ends); one more gets an OpenAI-shaped 429 with `Retry-After`, at once, instead of queueing for a pool
connection, so another tenant's request finds a free connection. Counting is a dict on the event loop: no lock.
"""

from __future__ import annotations

from collections.abc import Mapping

from proxy.errors import ProxyError
from proxy.metrics import TENANT_REJECTIONS

#: seconds a rejected client is told to wait
RETRY_AFTER_S = 1


class TenantLimits:
    def __init__(self, default: int, overrides: Mapping[str, int] | None = None) -> None:
        self.default = default
        self.overrides = dict(overrides or {})
        self.open: dict[str, int] = {}

    def limit(self, tenant: str) -> int:
        return self.overrides.get(tenant, self.default)

    def slot(self, tenant: str) -> _Slot:
        """Hold one of the tenant's upstream slots for the `with` block; over the limit: a 429 ProxyError on
        entering it."""
        return _Slot(self, tenant)

    def _take(self, tenant: str) -> None:
        held = self.open.get(tenant, 0)
        limit = self.limit(tenant)
        if held >= limit:
            TENANT_REJECTIONS.labels(tenant).inc()
            raise over_limit(tenant, limit)
        self.open[tenant] = held + 1

    def _give_back(self, tenant: str) -> None:
        left = self.open[tenant] - 1
        if left:
            self.open[tenant] = left
        else:
            del self.open[tenant]


class _Slot:
    """`TenantLimits.slot`'s context manager: a plain class, not `contextlib.contextmanager` (whose generator
    costs ~2-3 µs a request on the request path, `bench.instructions`)."""

    __slots__ = ("limits", "tenant")

    def __init__(self, limits: TenantLimits, tenant: str) -> None:
        self.limits = limits
        self.tenant = tenant

    def __enter__(self) -> None:
        self.limits._take(self.tenant)

    def __exit__(self, *exc: object) -> None:
        self.limits._give_back(self.tenant)

def over_limit(tenant: str, limit: int) -> ProxyError:
    return ProxyError(429, f"Too many concurrent requests for tenant {tenant!r}: at most {limit} may be in "
                      "progress at once. Retry when one has finished.", type="requests", code="rate_limit_exceeded",
                      headers={"retry-after": str(RETRY_AFTER_S)})
