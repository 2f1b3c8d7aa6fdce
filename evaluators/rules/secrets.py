"""Credentials: private keys, cloud and SaaS API tokens, JWTs, passwords in assignments and URLs.

Vendor tokens are found by their fixed prefixes (`AKIA`, `ghp_`, `sk-`,
`xoxb-`, `AIza`, `sk_live_`, `eyJ...`), so each pattern starts with a literal
the regex engine searches for quickly. A token whose random part is too
regular (`ghp_xxxx...`, `sk-your-key-here`) is a placeholder, not a secret.
Free-form `password = ...` / `api_key: ...` assignments, bearer tokens and
passwords inside connection strings count only when the value has a letter,
a digit and Shannon entropy at or above `entropy_threshold` bits per
character. For assignments, URLs and bearer tokens the finding covers the
value only, so redaction keeps the key name for context.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import regex

from evaluators.base import Finding
from evaluators.rules._base import RuleEvaluator, drop_overlaps, lower_same_length, shannon_entropy
from evaluators.rules._incremental import compile_partial, open_start
from evaluators.rules._prefilter import Triggers
from evaluators.rules.options import DEFAULT_ENTROPY_THRESHOLD, SECRET_KINDS, SecretsOptions

CATEGORY = "secret"
#: in priority order: where two kinds overlap, the earlier one wins
KINDS = SECRET_KINDS

_PEM_BEGIN = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ ){0,3})PRIVATE KEY(?: BLOCK)?-----")
# the armoured body: "Header: value" lines and base64 lines (atomic, so it never backtracks)
_PEM_LINE = r"(?:\s*+(?:[\w-]++:[^\n]*+|[A-Za-z0-9+/=]{4,}+))"
_PEM_BODY = re.compile(_PEM_LINE + "++")
_PEM_END = re.compile(r"\s*-----END (?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?-----")
#: a whole PEM block, END line included: a partial match is a block still being streamed (header or body)
_PEM_OPEN = compile_partial(_PEM_BEGIN.pattern + _PEM_LINE + "*+" + _PEM_END.pattern)


class _Token:
    """A vendor token: a pattern that starts with a literal (fast to search for) and its random part's group."""

    __slots__ = ("kind", "pattern", "group", "lead", "loose")

    def __init__(self, kind: str, pattern: str, group: int = 1, lead: int = 0, loose: bool = False) -> None:
        self.kind, self.pattern, self.group = kind, re.compile(pattern), group
        #: characters before the match that belong to the token (matched by a lookbehind)
        self.lead = lead
        #: a loose format (no fixed length or alphabet) must also look random: letters, digits, no placeholder words
        self.loose = loose


_TOKENS: tuple[_Token, ...] = (
    _Token(
        "aws_access_key",
        r"A(?<![A-Za-z0-9]A)(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA|3T[A-Z0-9])([A-Z0-9]{16})(?![A-Za-z0-9])",
    ),
    _Token("github_token", r"gh(?<![A-Za-z0-9]gh)[pousr]_([A-Za-z0-9]{36,255})(?![A-Za-z0-9])"),
    _Token("github_token", r"github_pat_([A-Za-z0-9_]{50,255})(?![A-Za-z0-9_])"),
    _Token(
        "openai_key",
        r"sk-(?<![A-Za-z0-9_-]sk-)(?:proj-|svcacct-|admin-|ant-(?:api\d\d-)?)?([A-Za-z0-9_-]{20,255})(?![A-Za-z0-9_-])",
        loose=True,
    ),
    _Token("slack_token", r"xox[abposr]-([A-Za-z0-9-]{10,255})(?![A-Za-z0-9-])"),
    _Token("slack_webhook", r"hooks\.slack\.com/services/(T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,})"),
    _Token("google_api_key", r"AIza([0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])"),
    _Token(
        "stripe_key", r"k_live_(?<=[sr]k_live_)(?<![A-Za-z0-9].k_live_)([0-9A-Za-z]{24,247})(?![0-9A-Za-z])", lead=1
    ),
    _Token(
        "jwt",
        r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{8,}+\.eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]*+(?![.A-Za-z0-9_-])",
        0,
    ),
)

# patterns below run on the lower-cased text (offsets are the same), so they need no IGNORECASE
_VALUE = r"([a-z0-9+/=_!@#$%^&*.~?-]{10,128})(?=[\"'`\s,;)}\]>]|$)"
_AWS_SECRET = re.compile(r"aws_?secret_?(?:access_?)?key[\"']?\s{0,5}[:=]\s{0,5}[\"']?([a-z0-9/+=]{40})(?![a-z0-9/+=])")
_ASSIGNMENT = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd|secret|api[_-]?key|apikey|access[_-]?key|token|credentials?)"
    r"[\w.-]{0,30}[\"']?\s{0,5}(?::=|=>|==?|:)\s{0,5}[\"'`]?" + _VALUE
)
_BEARER = re.compile(r"bearer\s{1,5}([a-z0-9._~+/-]{20,512}=*)(?![a-z0-9._~+/=-])")
_URL_PASSWORD = re.compile(r"://(?<=[a-z0-9]://)[^\s:/@]*:([^\s/@]{1,256})@[\w.-]+")

_MAX_LEAD = max(t.lead for t in _TOKENS)
#: what each kind's pattern cannot match without (the prefilter, `_prefilter.py`): the literal it starts with
_TRIGGERS = (
    ("private_key", rb"-----BEGIN "), ("aws_access_key", rb"A(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA|3T)"),
    ("github_token", rb"gh[pousr]_"), ("github_token", rb"github_pat_"), ("openai_key", rb"sk-"),
    ("slack_token", rb"xox[abposr]-"), ("slack_webhook", rb"hooks\.slack\.com/services/"),
    ("google_api_key", rb"AIza"), ("stripe_key", rb"k_live_"), ("jwt", rb"eyJ"), ("connection_string", rb"://"),
)
#: ... or the name it needs before a value (matched ignoring case)
_TRIGGERS_CASELESS = (
    ("aws_secret_key", rb"aws_?secret"), ("bearer_token", rb"bearer"),
    *(("generic_secret", p) for p in (rb"pass", rb"pwd", rb"secret", rb"api[_-]?key", rb"apikey",
                                      rb"access[_-]?key", rb"token", rb"credential")),
)
#: streams: the literal each token's pattern starts with (a URL's password: its `://`), by kind; a text holding
#: none of the triggers can end in an unfinished token only if it ends in the start of one of these
_TOKEN_LITERALS = (
    ("aws_access_key", ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "A3T")),
    ("github_token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")), ("openai_key", ("sk-",)),
    ("slack_token", tuple(f"xox{c}-" for c in "abposr")), ("slack_webhook", ("hooks.slack.com/services/",)),
    ("google_api_key", ("AIza",)), ("stripe_key", ("k_live_",)), ("jwt", ("eyJ",)), ("connection_string", ("://",)),
)
#: streams: a value's name and operator come at most this many characters before it
_VALUE_CONTEXT = 64
_VALUE_KEYS = re.compile(r"pass|pwd|secret|api|key|token|credential|bearer", re.IGNORECASE)

_PLACEHOLDER = re.compile(
    r"xxxx|\*\*\*|\.\.\.|your|example|sample|changeme|change_me|placeholder|redacted|dummy|"
    r"environ|getenv|process\.env|^(?:pass(?:word)?|secret|pwd|none|null|true|false|undefined)$"
)


def _looks_random(value: str, threshold: float, placeholders: bool = True) -> bool:
    """Has a letter and a digit, is no placeholder (when asked), and has entropy >= threshold."""
    if not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    if placeholders and _PLACEHOLDER.search(value.lower()):
        return False
    return shannon_entropy(value) >= threshold


def _token_ok(token: _Token, body: str) -> bool:
    """A vendor token's random part is not one character repeated (`ghp_xxxx...`); a loose one must look random."""
    if token.loose:
        return _looks_random(body, DEFAULT_ENTROPY_THRESHOLD)
    return shannon_entropy(body) >= 2.5


class SecretsEvaluator(RuleEvaluator):
    """Finds credentials; options `kinds` (default all of `KINDS`) and `entropy_threshold`."""

    category = CATEGORY
    engine_version = "secrets-1"
    options_model = SecretsOptions
    opts: SecretsOptions

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.kinds = self.opts.selected
        self.entropy_threshold = self.opts.entropy_threshold
        self._tokens = [t for t in _TOKENS if t.kind in self.kinds]
        self._triggers = Triggers([p for kind, p in _TRIGGERS if kind in self.kinds],
                                  [p for kind, p in _TRIGGERS_CASELESS if kind in self.kinds])
        # streams: where a token (in one run of non-whitespace) or a value (after its name) may still be arriving
        within = [t.pattern.pattern for t in self._tokens]
        if "connection_string" in self.kinds:
            within.append(f"(?i:{_URL_PASSWORD.pattern})")  # matched on the lower-cased text
        self._open_tokens = compile_partial("|".join(f"(?:{p})" for p in within) or "(?!)")
        literals = [literal for kind, group in _TOKEN_LITERALS if kind in self.kinds for literal in group]
        starts = sorted({literal[:i] for literal in literals for i in range(1, len(literal))})
        #: the literals' starts by their last character
        self._token_starts = {c: tuple(s for s in starts if s[-1] == c) for c in {s[-1] for s in starts}}
        values = [p.pattern.replace("|$)", ")") for kind, p in (("generic_secret", _ASSIGNMENT),
                  ("bearer_token", _BEARER), ("aws_secret_key", _AWS_SECRET)) if kind in self.kinds]
        self._value_keys = Triggers([], [p for kind, p in _TRIGGERS_CASELESS if kind in self.kinds])
        self._open_values = compile_partial("|".join(f"(?:{p})" for p in values), regex.IGNORECASE) \
            if values else None

    def scan(self, text: str) -> list[Finding]:
        if self._triggers.present(text) is False:
            return []  # none of the literals every pattern needs: nothing to find (one Hyperscan pass)
        kinds = self.kinds
        found: list[Finding] = []
        if "private_key" in kinds and "-----BEGIN " in text:
            found += _private_keys(text)
        for token in self._tokens:  # each starts with a literal: searching is as cheap as an `in` test
            found += [
                Finding(CATEGORY, token.kind, m.start() - token.lead, m.end())
                for m in token.pattern.finditer(text)
                if _token_ok(token, m.group(token.group))
            ]
        low = lower_same_length(text)
        random_enough: Callable[[str], bool] = lambda v: _looks_random(v, self.entropy_threshold)  # noqa: E731
        if "aws_secret_key" in kinds and "aws" in low:
            found += _values(text, low, _AWS_SECRET, "aws_secret_key", aws_secret_ok)
        if "connection_string" in kinds and "://" in text:
            found += _values(text, low, _URL_PASSWORD, "connection_string", _url_password_ok)
        if "bearer_token" in kinds and "bearer" in low:
            found += _values(text, low, _BEARER, "bearer_token", random_enough)
        if "generic_secret" in kinds and ("=" in text or ":" in text):
            found += _values(text, low, _ASSIGNMENT, "generic_secret", random_enough)
        return drop_overlaps(found) if len(found) > 1 else found

    def quiet_triggers(self) -> tuple[Triggers, float | None]:
        return self._triggers, None  # `scan` returns [] at once when they are absent

    def open_from(self, text: str, start: int, run: int) -> int:
        """Where a secret may still be streaming: a trailing run of non-whitespace that is (the start of) a
        token, a JWT or a URL's password; a value after `password = ` or `Bearer ` (the name is context, the
        value the finding); a PEM block from its header until its END line, or until its body stops looking
        like one. Ordinary words are cleared as they end... or at once, when they cannot start a token."""
        n = len(text)
        hold = n
        # a token still arriving holds its literal, or the text ends in the literal's start (cheaper to rule out
        # than the partial match: one Hyperscan pass `scan` reuses, one `endswith`)
        if run < n and (self._triggers.present(text) is not False
                        or ((starts := self._token_starts.get(text[-1])) is not None and text.endswith(starts))):
            found = open_start(self._open_tokens, text, run, slack=0)
            if found is not None:
                hold = max(run, found - _MAX_LEAD)  # a token's finding may start before its pattern (`lead`)
        if hold > start and self._open_values is not None:
            lo = max(0, start - _VALUE_CONTEXT)
            # the value names are among the triggers: none in the text, none after `lo` (and `scan` of this
            # same text reuses the pass, `Triggers.present`)
            keys = self._triggers.present(text) and self._value_keys.present(text[lo:])
            if keys or (keys is None and _VALUE_KEYS.search(text, lo) is not None):
                found = open_start(self._open_values, text, lo, slack=0)
                if found is not None:
                    hold = min(hold, max(found, start))
        if "private_key" in self.kinds and hold > start and text.find("-", start) >= 0:
            pem = open_start(_PEM_OPEN, text, start)
            if pem is not None and pem < hold:
                hold = pem
        return hold


    def certain(self, text: str, start: int) -> list[Finding]:
        """A PEM header followed by 40 characters of key material is a private key whatever follows."""
        if "private_key" not in self.kinds or text.find("-----BEGIN", start) < 0:
            return []
        return _private_keys(text, start)


def _values(text: str, low: str, pattern: re.Pattern[str], kind: str, accept: Callable[[str], bool]) -> list[Finding]:
    """Findings over group 1 of `pattern` (matched on the lower-cased text), judged on the original value."""
    out = []
    for m in pattern.finditer(low):
        start, end = m.span(1)
        if accept(text[start:end]):
            out.append(Finding(CATEGORY, kind, start, end))
    return out


def aws_secret_ok(value: str) -> bool:
    """40 base64 characters after an explicit AWS key name: random enough, even AWS's documented EXAMPLEKEY."""
    return _looks_random(value, DEFAULT_ENTROPY_THRESHOLD, placeholders=False)


def _url_password_ok(value: str) -> bool:
    low = value.lower()
    if low.startswith(("$", "{", "<", "%")) or _PLACEHOLDER.search(low):
        return False
    return len(set(value)) > 2


def _private_keys(text: str, pos: int = 0) -> list[Finding]:
    """PEM / OpenSSH / PGP private-key blocks: header, at least 40 characters of key material, END line if present."""
    out = []
    for m in _PEM_BEGIN.finditer(text, pos):
        body = _PEM_BODY.match(text, m.end())
        if body is None or sum(c.isalnum() for c in body.group()) < 40:
            continue
        end = body.end()
        tail = _PEM_END.match(text, end)
        out.append(Finding(CATEGORY, "private_key", m.start(), tail.end() if tail else end))
    return out


def create(name: str, options: Mapping[str, Any]) -> SecretsEvaluator:
    return SecretsEvaluator(name, options)
