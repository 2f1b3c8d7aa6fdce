"""The evaluator contract: what every engine receives, returns and promises.

Evaluators know nothing of HTTP, Redis or Kafka. The proxy hands them
`EvalItem`s and gets `Verdict`s back; caching, timeouts and error policy live
in the proxy (`proxy/guard.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Stage = Literal["input", "output"]
STAGES: tuple[Stage, ...] = ("input", "output")

#: Llama Guard 3 hazard taxonomy (MLCommons). The 1B model knows S1-S13.
LLAMA_GUARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

#: guardstream's own categories, produced by rule and learned evaluators.
RULE_CATEGORIES: dict[str, str] = {
    "pii": "Personal data (email, phone, payment card, IBAN, SSN)",
    "secret": "Credentials, API tokens and private keys",
    "prompt_injection": "Attempts to override instructions or exfiltrate the system prompt",
    "unicode": "Invisible or bidirectional control characters",
    "blocklist": "Configured words or patterns",
    "unsafe": "Unsafe content (learned classifier, no finer category)",
    "quality": "Structured record failed data-quality rules",
}

#: categories that say how good an answer is rather than whether it is safe (policies flag them by default)
QUALITY_CATEGORIES: dict[str, str] = {
    "low_quality": "Answer scored below the reward model's threshold (reward_model evaluator)",
}

ALL_CATEGORIES: dict[str, str] = {**LLAMA_GUARD_CATEGORIES, **RULE_CATEGORIES, **QUALITY_CATEGORIES}


@dataclass(frozen=True, slots=True)
class Turn:
    """One conversation turn. `role` is OpenAI's: system, user, assistant, tool."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class EvalItem:
    """A conversation and which turn of it to judge.

    `judged` indexes `turns` (default: the last turn). `stage` says whether the
    judged turn is a prompt (input) or an answer (output). Model engines judge
    the judged turn in the context of the turns before it.

    `request_text` is everything the upstream will read, when that is more than
    the judged turn: at the input stage, every text of the request (each
    message, content part, tool result and tool-call argument) joined by
    newlines. Rule engines scan `scan_text`; finding offsets index it.
    `judged_at` is where the judged turn's text starts inside it.
    """

    turns: tuple[Turn, ...]
    stage: Stage
    judged: int = -1
    request_text: str | None = None
    judged_at: int = 0

    @property
    def judged_turn(self) -> Turn:
        return self.turns[self.judged]

    @property
    def text(self) -> str:
        """The judged turn's text: what model engines judge."""
        return self.turns[self.judged].content

    @property
    def scan_text(self) -> str:
        """What rule engines scan: the whole request at the input stage, else the judged turn."""
        return self.turns[self.judged].content if self.request_text is None else self.request_text

    @classmethod
    def from_messages(cls, messages: Iterable[Mapping[str, Any]], stage: Stage) -> EvalItem:
        """Build from OpenAI chat messages; content parts are flattened to text."""
        turns = tuple(Turn(str(m.get("role", "user")), content_text(m.get("content"))) for m in messages)
        return cls(turns=turns, stage=stage)

    @classmethod
    def of_text(cls, text: str, stage: Stage = "input") -> EvalItem:
        role = "user" if stage == "input" else "assistant"
        turns = (Turn(role, text),) if stage == "input" else (Turn("user", ""), Turn(role, text))
        return cls(turns=turns, stage=stage)


def content_text(content: Any) -> str:
    """Flatten an OpenAI message `content` (string, list of parts, or None) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping):
                if isinstance(part.get("text"), str):
                    parts.append(part["text"])
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


class OptionError(ValueError):
    """A bad evaluator option. `option` is its path under the evaluator's `options` (e.g. `max_batch_size`, or
    `first.options.path` inside a cascade), so the proxy can name the whole key in one line."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}")
        self.option = option
        self.reason = reason

    def under(self, prefix: str) -> OptionError:
        """The same error one level down, e.g. inside a cascade's `first.options`."""
        return OptionError(f"{prefix}.{self.option}", self.reason)


@dataclass(frozen=True, slots=True)
class Finding:
    """A located match inside the scanned text (`EvalItem.scan_text`): what redaction masks."""

    category: str
    kind: str
    start: int
    end: int


@dataclass(slots=True)
class Verdict:
    """One evaluator's judgement of one item."""

    safe: bool
    evaluator: str
    version: str
    categories: list[str] = field(default_factory=list)
    score: float | None = None
    latency_ms: float = 0.0
    cached: bool = False
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        data = dict(data)
        data["findings"] = [Finding(**f) for f in data.get("findings") or []]
        return cls(**data)

    @classmethod
    def failure(cls, evaluator: Evaluator, error: str, latency_ms: float = 0.0) -> Verdict:
        """An error verdict; the proxy's `on_error` policy decides what it means."""
        return cls(safe=False, evaluator=evaluator.name, version=evaluator.version, error=error, latency_ms=latency_ms)


@runtime_checkable
class Evaluator(Protocol):
    """What the proxy needs of an engine.

    `evaluate` returns one verdict per item, in order. It may raise; the proxy
    turns exceptions and timeouts into error verdicts per `on_error`.
    `cache_context` returns the text the engine reads for an item: the cache key
    is built over it, so two items the engine cannot tell apart share a verdict.
    Optional: cheap CPU-only engines may also offer `evaluate_sync(items) ->
    list[Verdict] | None`, the same verdicts computed inline, or None when a
    batch should take the async path; the proxy then calls them without a task
    or a timer (see proxy/guard.py).
    """

    name: str
    version: str
    stages: frozenset[Stage]

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]: ...

    def cache_context(self, item: EvalItem) -> str: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class ScanStep:
    """What an incremental scanner says after text was fed to it.

    `findings` are the matches completed since the last step, at offsets in the whole answer; `cleared` is how
    many characters of the answer no match of this judge can still touch (everything but the tail that could be
    the start of an unfinished match). `score`, when the engine has one, is the answer-so-far's score.
    """

    findings: list[Finding]
    cleared: int
    score: float | None = None


@runtime_checkable
class IncrementalScanner(Protocol):
    """Judges one streamed answer as it grows: sees the whole answer so far, scans only what is new.

    A match's finding never depends on where the text was split: text that could still be part of an
    unfinished match stays uncleared until the match completes or cannot happen any more.
    """

    def feed(self, text: str) -> ScanStep:
        """`text` was appended to the answer."""
        ...

    def flush(self) -> ScanStep:
        """Judge everything fed so far as if the answer ended here (it did, or the relay cannot hold more):
        clears it all. More text may be fed afterwards."""
        ...


@runtime_checkable
class IncrementalJudge(Protocol):
    """An evaluator that can judge streamed answers incrementally (the rule engines)."""

    name: str
    version: str

    def incremental(self) -> IncrementalScanner | None:
        """A scanner for one answer; None when this instance cannot judge incrementally."""
        ...


class BaseEvaluator:
    """Convenience base: judged-turn-only cache context and a no-op close."""

    name: str = "base"
    version: str = "0"
    stages: frozenset[Stage] = frozenset(STAGES)
    #: worth caching: True for models; cheap rules set False (a cache lookup costs more than they do)
    cacheable: bool = True

    def cache_context(self, item: EvalItem) -> str:
        return item.text

    async def aclose(self) -> None:  # pragma: no cover - nothing to release
        return None

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:  # pragma: no cover
        raise NotImplementedError
