"""Options of the rule engines (`pii`, `secrets`, `unicode`, `injection`, `regex`): one model per engine.

Light on purpose (pydantic and the injection heuristics' names): the proxy checks these when it loads its
config, before any engine is built. Every rule engine takes `stages` and `inline_max_chars`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from evaluators.base import STAGES, OptionError
from evaluators.options import EngineOptions, Stages

#: batches with more characters than this are judged in a worker thread, not on the event loop
INLINE_MAX_CHARS = 64 * 1024

#: what each engine finds, in priority order: where two kinds overlap, the earlier one wins
PII_KINDS = ("email", "iban", "credit_card", "ssn", "phone")
SECRET_KINDS = (
    "private_key",
    "aws_access_key",
    "github_token",
    "openai_key",
    "slack_token",
    "slack_webhook",
    "google_api_key",
    "stripe_key",
    "jwt",
    "aws_secret_key",
    "connection_string",
    "bearer_token",
    "generic_secret",
)
UNICODE_KINDS = ("zero_width", "tag", "variation_selector", "bidi_control", "control")

DEFAULT_ENTROPY_THRESHOLD = 3.0
DEFAULT_INJECTION_THRESHOLD = 0.5
DEFAULT_CATEGORY = "blocklist"
#: injection scores that are not phrase heuristics (and can be disabled or re-weighted like them)
INJECTION_EXTRA_SCORES = ("encoded_payload", "base64_text")


class RuleOptions(EngineOptions):
    """What every rule engine accepts."""

    stages: Stages = frozenset(STAGES)
    inline_max_chars: int = Field(default=INLINE_MAX_CHARS, ge=0)

    @field_validator("stages", mode="before")
    @classmethod
    def _null_is_every_stage(cls, value: Any) -> Any:
        return frozenset(STAGES) if value is None else value


class KindsOptions(RuleOptions):
    """A rule engine that finds several kinds of things: `kinds` picks some (default: all)."""

    known_kinds: ClassVar[tuple[str, ...]] = ()
    kinds: frozenset[str] | None = None

    @field_validator("kinds", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        if value is None:
            return None
        kinds = frozenset([value] if isinstance(value, str) else value)
        if unknown := kinds - set(cls.known_kinds):
            raise ValueError(f"unknown kind(s) {sorted(unknown)} (known: {sorted(cls.known_kinds)})")
        return kinds

    @property
    def selected(self) -> frozenset[str]:
        return frozenset(self.known_kinds) if self.kinds is None else self.kinds


class PiiOptions(KindsOptions):
    known_kinds = PII_KINDS


class SecretsOptions(KindsOptions):
    known_kinds = SECRET_KINDS
    #: bits per character a generic secret's value needs at least
    entropy_threshold: float = DEFAULT_ENTROPY_THRESHOLD


class UnicodeOptions(KindsOptions):
    known_kinds = UNICODE_KINDS
    #: ZWJ / ZWNJ between letters of scripts that use them (Persian, Indic) are not hidden characters
    allow_script_joiners: bool = True


class InjectionOptions(RuleOptions):
    #: unsafe when the score reaches this
    threshold: float = Field(default=DEFAULT_INJECTION_THRESHOLD, gt=0.0, le=1.0)
    #: heuristic names to leave out
    disable: list[str] = Field(default_factory=list)
    #: heuristic name -> weight overrides
    weights: dict[str, float] = Field(default_factory=dict)
    decode_base64: bool = True

    @field_validator("disable", mode="before")
    @classmethod
    def _null_is_none_disabled(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("weights", mode="before")
    @classmethod
    def _null_is_no_override(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _known_heuristics(self) -> InjectionOptions:
        from evaluators.rules._injection_heuristics import HEURISTICS

        known = {h.name for h in HEURISTICS} | set(INJECTION_EXTRA_SCORES)
        for key, names in (("disable", set(self.disable)), ("weights", set(self.weights))):
            if unknown := names - known:
                raise OptionError(key, f"unknown heuristic(s) {sorted(unknown)} (known: {sorted(known)})")
        return self


class RegexOptions(RuleOptions):
    #: a regex, a list of them (kind "pattern"), or a mapping kind -> regex
    patterns: list[tuple[str, str]] = Field(default_factory=list)
    #: words or phrases matched whole, case-insensitively
    words: list[str] = Field(default_factory=list)
    category: str = DEFAULT_CATEGORY
    #: for `patterns` (words always ignore case)
    ignore_case: bool = True

    @field_validator("patterns", mode="before")
    @classmethod
    def _kinds_and_sources(cls, value: Any) -> Any:
        if not value:
            return []
        if isinstance(value, str):
            return [("pattern", value)]
        if isinstance(value, Mapping):
            return [(str(kind), str(source)) for kind, source in value.items()]
        if isinstance(value, list):
            return [("pattern", str(source)) for source in value]
        return value

    @field_validator("words", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if not value:
            return []
        return [str(value)] if isinstance(value, str) else [str(w) for w in value] if isinstance(value, list) else value

    @field_validator("category", mode="before")
    @classmethod
    def _empty_is_default(cls, value: Any) -> Any:
        return value or DEFAULT_CATEGORY

    @model_validator(mode="after")
    def _something_to_match(self) -> RegexOptions:
        for _, source in self.patterns:
            try:
                re.compile(source, self.flags)
            except re.error as exc:
                raise OptionError("patterns", f"bad pattern {source!r}: {exc}") from None
        if not self.patterns and not self.lowered_words:
            raise OptionError("patterns", "give at least one of `patterns` or `words`")
        return self

    @property
    def flags(self) -> int:
        return re.IGNORECASE if self.ignore_case else 0

    @property
    def lowered_words(self) -> list[str]:
        """The words as they are matched: stripped, lower-cased, sorted, each once."""
        return sorted({w.strip().lower() for w in self.words if w.strip()})
