"""Masking personal data and secrets in text: for the `redact` action and redacted audit content."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from evaluators.base import Finding


@lru_cache(maxsize=1)
def _scanners() -> tuple[Callable[[str], list[Finding]], ...]:
    from evaluators.rules.pii import create as pii
    from evaluators.rules.secrets import create as secrets

    return (pii("redact-pii", {}).scan, secrets("redact-secrets", {}).scan)


def redact_findings(text: str, findings: Sequence[Finding]) -> str:
    from evaluators.spans import redact

    return redact(text, list(findings))


def redact_text(text: str) -> str:
    """`text` with every PII and secret match replaced by a `[CATEGORY:kind]` placeholder."""
    if not text:
        return text
    findings = [f for scan in _scanners() for f in scan(text)]
    return redact_findings(text, findings) if findings else text
