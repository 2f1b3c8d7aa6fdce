"""PII rules: every kind found where it is, and its look-alikes left alone."""

from __future__ import annotations

import pytest

from evaluators.rules.pii import card_number_ok, create, iban_ok, luhn_ok, ssn_ok

PII = create("pii", {})


def found(text: str, evaluator=PII) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in evaluator.judge(text).findings]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mail me at john.doe+news@example.co.uk.", [("email", "john.doe+news@example.co.uk")]),
        ("Jörg.Müller@firma.de schrieb", [("email", "Jörg.Müller@firma.de")]),
        ("call (415) 555-0132 now", [("phone", "(415) 555-0132")]),
        ("415-555-0132", [("phone", "415-555-0132")]),
        ("415.555.0132", [("phone", "415.555.0132")]),
        ("1-415-555-0132", [("phone", "1-415-555-0132")]),
        ("+1 415 555 0132", [("phone", "+1 415 555 0132")]),
        ("ring +44 20 7946 0958 today", [("phone", "+44 20 7946 0958")]),
        ("+44 (0) 20 7946 0958", [("phone", "+44 (0) 20 7946 0958")]),
        ("0044 20 7946 0958", [("phone", "0044 20 7946 0958")]),
        ("tel: +33 1 23 45 67 89.", [("phone", "+33 1 23 45 67 89")]),
        ("+49 30 1234567 on 2023-10-12", [("phone", "+49 30 1234567")]),
        ("card 4111 1111 1111 1111 exp", [("credit_card", "4111 1111 1111 1111")]),
        ("4111-1111-1111-1111", [("credit_card", "4111-1111-1111-1111")]),
        ("4111111111111111", [("credit_card", "4111111111111111")]),
        ("amex 3782 822463 10005", [("credit_card", "3782 822463 10005")]),
        ("mc 2221 0000 0000 0009", [("credit_card", "2221 0000 0000 0009")]),
        ("IBAN DE89 3704 0044 0532 0130 00, thanks", [("iban", "DE89 3704 0044 0532 0130 00")]),
        ("DE89370400440532013000", [("iban", "DE89370400440532013000")]),
        ("GB82 WEST 1234 5698 7654 32 THEN", [("iban", "GB82 WEST 1234 5698 7654 32")]),
        ("NO9386011117947", [("iban", "NO9386011117947")]),
        ("SSN 123-45-6789.", [("ssn", "123-45-6789")]),
        ("ssn 123 45 6789", [("ssn", "123 45 6789")]),
    ],
)
def test_finds_each_kind(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "a@b",  # no domain
        "x@localhost",  # no TLD
        "@decorator\ndef f(): pass",
        "4155550132",  # a bare 10-digit run is no phone
        "order 12345678901234",
        "released 2023-10-12 at 10:30",
        "version 1.2.3 and 10.12.2023",
        "ip 192.168.100.200",
        "price 1,234,567.89",
        "isbn 978-3-16-148410-0",
        "80 370 860 1550 2440",  # a list of numbers, not a phone
        "4111 1111 1111 1112",  # fails Luhn
        "1234 5678 9012 3456 7890",  # 20 digits
        "0000 0000 0000 0000",  # Luhn-valid, no issuer
        "4111 1111-1111 1111",  # mixed separators
        "GB82WEST12345698765433",  # bad IBAN check digits
        "DE89 3704 0044 0532 0130",  # too short for DE
        "XX89370400440532013000",  # no such country
        "000-12-3456",  # SSN area 000
        "666-12-3456",  # area 666
        "900-12-3456",  # area 9xx
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "123456789",  # bare 9 digits
        "123-45 6789",  # mixed separators
        "12-345-6789",
    ],
)
def test_leaves_look_alikes(text: str) -> None:
    assert found(text) == []


def test_checksums() -> None:
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert card_number_ok("4012888888881881") and not card_number_ok("4012888888881882")
    assert not card_number_ok("1234567812345670")  # Luhn-valid, issuer prefix 1 unused
    assert not card_number_ok("2100000000000009")  # 2-series outside Mastercard's 2221-2720
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert iban_ok("FR1420041010050500013M02606")
    assert not iban_ok("FR1420041010050500013M0260")  # one character short
    assert ssn_ok("078", "05", "1120") and not ssn_ok("666", "05", "1120")


def test_several_kinds_in_order_and_verdict_shape() -> None:
    text = "Reach Ann at ann@corp.io or +1 415 555 0132; card 5555 5555 5555 4444; SSN 078-05-1120."
    v = PII.judge(text)
    assert not v.safe and v.categories == ["pii"] and v.score is None
    assert [f.kind for f in v.findings] == ["email", "phone", "credit_card", "ssn"]
    assert all(f.category == "pii" for f in v.findings)
    assert v.latency_ms > 0 and v.evaluator == "pii" and v.version == "pii-1"


def test_clean_text_is_safe() -> None:
    v = PII.judge("What is the capital of France? 3 + 4 = 7, see page 12.")
    assert v.safe and v.categories == [] and v.findings == []


def test_kinds_option() -> None:
    only_email = create("p", {"kinds": ["email"]})
    text = "a@b.io 4111 1111 1111 1111"
    assert found(text, only_email) == [("email", "a@b.io")]
    assert only_email.version != PII.version  # options change the cache identity
    with pytest.raises(ValueError, match="unknown kind"):
        create("p", {"kinds": ["passport"]})
    with pytest.raises(ValueError, match="unknown option"):
        create("p", {"kind": ["email"]})
