"""The no-leak property, exhaustively, on the real relay in memory (tests/relay_driver.py).

For every rule kind (tests/planted.py) and for a window judge's planted word: the text is planted at every
offset of a surrounding answer and streamed in deltas of 1, 2, 3, 7 and random sizes. Whatever the split:
- buffered: the client never gets a byte of what the rule finds (of the planted word), the stream ends with
  `finish_reason: "content_filter"` then `data: [DONE]`, and the block is audited;
- optimistic: the same end and audit; what leaked is bounded: for rules, what arrived before the match became
  certain (the match less at most its last delta); for the window judge, at most one window (`lead`);
- final: the whole answer went out, then `content_filter`, and the audit.
The oracle is the non-streamed judgment of the same answer. tests/test_streaming_property_proxy.py runs a
representative subset through the real proxy over sockets.
"""

from __future__ import annotations

import random

import pytest

import tests.planted
from evaluators.base import Finding
from evaluators.rules.redact import redact
from tests.planted import AFTER, BEFORE, PLANTED, UNSAFE_WORD, _engines, answer_with, first_finding, pieces, settings
from tests.relay_driver import Outcome, RelayDriver

SIZES = (1, 2, 3, 7, 0)  # 0: random sizes


def decidable_at(answer: str, parts: list[str], finding: Finding) -> int:
    """How much of the answer, arriving in these deltas, the rules need before they report the finding:
    optimistic mode may have forwarded everything before the delta that completed it."""
    for engine in _engines().values():
        scanner = engine.incremental()  # type: ignore[attr-defined]
        seen = 0
        for part in parts:
            seen += len(part)
            if any(f.start == finding.start for f in scanner.feed(part).findings):
                return seen
        if any(f.start == finding.start for f in scanner.flush().findings):
            return len(answer)
    raise AssertionError(f"no scanner reports {finding}")


def check_cut(outcome: Outcome, answer: str) -> None:
    assert outcome.finish == "content_filter", outcome.raw[-300:]
    assert answer.startswith(outcome.text)  # the client's text is the answer's start, byte for byte
    blocks = [e for e in outcome.events if e["action"] == "block" and e["stage"] == "output"]
    assert len(blocks) == 1, outcome.events


def _last_part(parts: list[str], upto: int) -> str:
    seen = 0
    for part in parts:
        seen += len(part)
        if seen >= upto:
            return part
    return ""


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> RelayDriver:
    return RelayDriver(settings(tmp_path_factory.mktemp("property")))


def cases(text: str, offsets: range) -> list[tuple[int, int, str, list[str]]]:
    """(offset, size, answer, deltas) for `text` planted at each offset, split in each size."""
    out = []
    for offset in offsets:
        answer = answer_with(text, offset)
        for size in SIZES:
            out.append((offset, size, answer, pieces(answer, size, random.Random(offset))))
    return out


ALL_OFFSETS = range(len(BEFORE) + 1)


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_buffered_rules_never_send_a_byte_of_a_match(driver: RelayDriver, kind: str) -> None:
    todo = cases(PLANTED[kind], ALL_OFFSETS)
    outcomes = driver.run("rules-buffered", [parts for *_, parts in todo])
    leaks = []
    for (offset, size, answer, _), outcome in zip(todo, outcomes):
        check_cut(outcome, answer)
        start = first_finding(answer).start
        if len(outcome.text) > start:
            leaks.append((offset, size, outcome.text[start:]))
    assert leaks == [], leaks[:3]


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_optimistic_rules_leak_at_most_until_the_match_is_certain(driver: RelayDriver, kind: str) -> None:
    """Optimistic mode forwards each delta once it is scanned: the cut comes with the delta that makes the
    match certain (its end, and the character after it that shows it ended), and nothing of that delta."""
    todo = cases(PLANTED[kind], range(0, len(BEFORE) + 1, 5))
    outcomes = driver.run("rules-optimistic", [parts for *_, parts in todo])
    for (offset, size, answer, parts), outcome in zip(todo, outcomes):
        check_cut(outcome, answer)
        bound = decidable_at(answer, parts, first_finding(answer))
        assert len(outcome.text) <= bound - len(_last_part(parts, bound)), (offset, size, len(outcome.text))


@pytest.mark.parametrize("judges", ["window", "both"])
def test_buffered_window_judge_never_sends_a_byte_of_the_unsafe_word(driver: RelayDriver, judges: str) -> None:
    todo = cases(f"the password is {UNSAFE_WORD} of course", ALL_OFFSETS)
    outcomes = driver.run(f"{judges}-buffered", [parts for *_, parts in todo], settle=3)
    leaks = []
    for (offset, size, answer, _), outcome in zip(todo, outcomes):
        check_cut(outcome, answer)
        at = answer.index(UNSAFE_WORD)
        if len(outcome.text) > at:
            leaks.append((offset, size, outcome.text[at:]))
    assert leaks == [], leaks[:3]


def test_optimistic_window_judge_leaks_at_most_one_window(driver: RelayDriver) -> None:
    """The client may run `lead` (chunk_size) tokens past the judged text: a cut leaks at most that."""
    lead = driver.settings.policies["window-optimistic"].output.streaming.chunk_size
    todo = cases(f"the password is {UNSAFE_WORD} " + "and more words " * 40, range(0, len(BEFORE) + 1, 7))
    outcomes = driver.run("window-optimistic", [parts for *_, parts in todo], settle=3)
    for (offset, size, answer, parts), outcome in zip(todo, outcomes):
        check_cut(outcome, answer)
        end = answer.index(UNSAFE_WORD) + len(UNSAFE_WORD)
        sent, deltas = 0, 0  # deltas (tokens: one word or less each) sent past the end of the word
        for part in parts:
            if sent >= len(outcome.text):
                break
            sent += len(part)
            deltas += sent > end
        assert deltas <= lead, (offset, size, deltas)


@pytest.mark.parametrize("kind", ["pem_rsa", "jwt", "email", "card_spaced", "injection_ignore"])
def test_final_mode_sends_everything_then_content_filter(driver: RelayDriver, kind: str) -> None:
    todo = cases(PLANTED[kind], range(11, 12))
    for (_, _, answer, _), outcome in zip(todo, driver.run("rules-final", [parts for *_, parts in todo])):
        check_cut(outcome, answer)
        assert outcome.text == answer


def test_a_safe_answer_passes_whole_in_every_mode(driver: RelayDriver) -> None:
    answer = BEFORE + "nothing to see: the capital of France is Paris, 2 + 2 = 4, and it is 10:30 now." + AFTER
    for policy in ("rules-buffered", "rules-optimistic", "both-buffered", "window-buffered", "rules-final"):
        outcomes = driver.run(policy, [pieces(answer, size, random.Random(3)) for size in SIZES], settle=3)
        for size, outcome in zip(SIZES, outcomes):
            assert (outcome.text, outcome.finish) == (answer, "stop"), (policy, size)
            assert [e for e in outcome.events if e["action"] != "allow"] == []


def test_every_upstream_read_is_judged_once_whatever_its_size(driver: RelayDriver) -> None:
    """Many events in one read (an upstream under load): judged together, same outcome."""
    answer = answer_with(PLANTED["jwt"], 7)
    finding = first_finding(answer)
    for per_read in (1, 2, 5, 50):
        outcome = driver.run("rules-buffered", [pieces(answer, 3)], per_read=per_read)[0]
        check_cut(outcome, answer)
        assert len(outcome.text) <= finding.start


@pytest.mark.parametrize("kind", ["email", "card_spaced", "iban_grouped", "jwt", "pem_rsa", "password", "ssn"])
def test_buffered_redaction_masks_exactly_what_the_whole_answer_scan_masks(driver: RelayDriver, kind: str) -> None:
    """`redact` on a stream: whatever the split, the client gets the answer the non-streamed path would give,
    each finding replaced by its placeholder."""
    todo = cases(PLANTED[kind] + " and " + PLANTED["email"], range(0, len(BEFORE) + 1, 3))
    outcomes = driver.run("redact-buffered", [parts for *_, parts in todo])
    for (offset, size, answer, _), outcome in zip(todo, outcomes):
        findings = [f for engine in _engines().values() for f in engine.analyse(answer)[0]]  # type: ignore
        assert (outcome.text, outcome.finish) == (redact(answer, findings), "stop"), (offset, size)


@pytest.mark.parametrize("secret", ["LONG_RSA_KEY", "LONG_JWT"])
def test_long_secrets_are_never_sent_in_small_pieces(driver: RelayDriver, secret: str) -> None:
    """The issue's measurements: a 1,674-character RSA key and a 764-character JWT in 1- and 4-character
    pieces reached the client whole (the window holding the header was approved, the next window's context
    no longer held it)."""
    planted = getattr(tests.planted, secret)
    assert len(planted) in (1674, 764)
    todo = [(offset, size, answer_with(planted, offset)) for offset in range(0, len(BEFORE) + 1, 9)
            for size in (1, 4)]
    outcomes = driver.run("rules-buffered", [pieces(answer, size) for _, size, answer in todo])
    for (offset, size, answer), outcome in zip(todo, outcomes):
        check_cut(outcome, answer)
        assert len(outcome.text) <= answer.index(planted), (offset, size)


def test_flagged_findings_hold_nothing_back_and_are_audited(driver: RelayDriver) -> None:
    """Under the built-in policy personal data is flagged, not blocked: the judges that only flag hold no text
    back (a word is not held in case it is an e-mail's local part), and each finding is audited."""
    answer = answer_with("write to " + PLANTED["email"] + " or call " + PLANTED["phone_intl"], 20)
    outcomes = driver.run("builtin-buffered", [pieces(answer, size, random.Random(1)) for size in SIZES])
    for outcome in outcomes:
        assert (outcome.text, outcome.finish) == (answer, "stop")
        flagged = [(e["action"], e["categories"]) for e in outcome.events]
        assert flagged and all(f == ("flag", ["pii"]) for f in flagged)
        kinds = {f["kind"] for e in outcome.events for v in e["verdicts"] for f in v["findings"]}
        assert kinds == {"email", "phone"}
    secret = answer_with(PLANTED["github_token"], 20)
    outcome = driver.run("builtin-buffered", [pieces(secret, 1)])[0]
    check_cut(outcome, secret)
    assert len(outcome.text) <= first_finding(secret).start
