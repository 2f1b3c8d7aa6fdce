"""Personal data: email addresses, phone numbers, payment cards, IBANs, US SSNs.

Regexes find candidates; checksums and number-plan rules reject look-alikes
(Luhn for cards, mod-97 and the country's length for IBANs, the SSA's invalid
areas, groups and serials for SSNs). Phone numbers need an international
prefix (`+44 20 7946 0958`, `0044 ...`) or a formatted US/NANP shape
(`(415) 555-0132`, `415-555-0132`, `+1 415 555 0132`); bare digit runs,
dates, version strings and space-separated lists of numbers are not phone numbers.

IBANs are matched in upper case, as they are printed.

Speed and safety on long inputs: emails are anchored on each '@'; cards, SSNs
and US phones are looked for only inside regions with 9+ digits found by one
cheap pass; every pattern matches its first character and then checks its
left boundary with a lookbehind, so the regex engine still skips ahead on that
character and a long run of digits or letters is tried once, not once per
position (no quadratic blow-up on 100 KB inputs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from evaluators.base import Finding
from evaluators.rules._base import RuleEvaluator, drop_overlaps
from evaluators.rules._incremental import compile_partial, open_start
from evaluators.rules._prefilter import Triggers
from evaluators.rules.options import PII_KINDS, PiiOptions

CATEGORY = "pii"
#: in priority order: where two kinds overlap, the earlier one wins
KINDS = PII_KINDS

# -- email: anchored on '@', local part read backwards (at most 64 characters) --------
_LOCAL_CHARS = r"[\w.%+-]"
_LOCAL_TAIL = re.compile(rf"{_LOCAL_CHARS}{{1,64}}\Z")
_LOCAL_CHAR = re.compile(_LOCAL_CHARS)
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")

# -- stage 1 for the digit kinds: a region with at least 9 digits, cheap to find -------
_DENSE_DIGITS = re.compile(r"[\d(](?:[ .()-]{0,2}\d){8,}")
# -- payment cards: 13-19 digits, contiguous or in groups of 3-6 with one separator --------
_CARD = re.compile(
    r"\d(?<![\w-]\d)(?<!\d[ -]\d)"  # starts a number: no word char, '-' or "5 " before it
    r"(?:\d{12,18}|\d{2,5}(?:[ -]\d{3,6}){2,5})"
    r"(?![ -]?\d)(?!\w)"  # and ends it
)
# -- US SSN: AAA-GG-SSSS (dash or space, the same both times) ---------------------
_SSN = re.compile(r"\d(?<![\w.-]\d)(?<!\d[ -]\d)\d\d([- ])\d\d\1\d{4}(?![ -]?\d)(?!\w)(?!\.\d)")
# -- IBAN: country, check digits, BBAN (optionally in groups of four) ------------------
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?")
# -- phones ------------------------------------------------------------------------
_PHONE_PLUS = re.compile(r"\+\d[\d ().-]{6,22}\d(?!\d)")  # +CC ...
_PHONE_00 = re.compile(r"00(?<![\w.+-]00)(?<!\d 00)(?=[1-9])\d[\d ().-]{6,22}\d(?!\d)")  # 00CC ...
_PHONE_US = re.compile(
    r"(?:1(?<![\w.+-]1)[ .-]?|(?<![\w.+-]))"  # a boundary, optionally the trunk prefix "1 "
    r"(?:\(\d{3}\) ?|\d{3}([-. ]))"  # area code: (415) or 415- (any digits: "123-456-7890" is what people type)
    r"\d{3}(?(1)\1|[-. ])\d{4}"  # exchange and line, same separator as after the area code
    r"(?![\w])(?![.-]\d)"
)

#: IBAN length per country (SWIFT IBAN registry)
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_number_ok(digits: str) -> bool:
    """13-19 digits, an issuer prefix in use (Amex, Visa, Mastercard, Discover, JCB, Diners, UnionPay), Luhn."""
    if not 13 <= len(digits) <= 19:
        return False
    first = digits[0]
    if first == "2":
        if not 2221 <= int(digits[:4]) <= 2720:  # Mastercard 2-series
            return False
    elif first not in "3456":
        return False
    return luhn_ok(digits)


def iban_ok(iban: str) -> bool:
    """Country length and the ISO 13616 mod-97 check of a compact, upper-case IBAN."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


class PiiEvaluator(RuleEvaluator):
    """Finds personal data; option `kinds` (default all of `KINDS`)."""

    category = CATEGORY
    engine_version = "pii-1"
    options_model = PiiOptions
    opts: PiiOptions

    def __init__(self, name: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(name, options)
        self.kinds = self.opts.selected
        self._triggers = Triggers([p for kind, p in _TRIGGERS if kind in self.kinds])

    def scan(self, text: str) -> list[Finding]:
        if self._triggers.present(text) is False:
            return []  # no '@', nine digits, IBAN start or phone prefix: nothing to find (one Hyperscan pass)
        found: list[Finding] = []
        kinds = self.kinds
        if "email" in kinds and "@" in text:
            found += _emails(text)
        if "iban" in kinds:
            found += _ibans(text)
        us_phones: list[Finding] = []
        if kinds & _DIGIT_KINDS:
            numbers, us_phones = self._numbers(text)
            found += numbers
        if "phone" in kinds:
            found += _intl_phones(text)  # before US shapes: "+1 415 555 0132" is one number
            found += us_phones
        return drop_overlaps(found) if len(found) > 1 else found

    def quiet_triggers(self) -> tuple[Triggers, float | None]:
        return self._triggers, None  # `scan` returns [] at once when they are absent

    def open_from(self, text: str, start: int, run: int) -> int:
        """E-mail addresses (and IBANs or numbers written without spaces) are one run of non-whitespace: held
        while it may grow. Cards, SSNs, phones and IBANs written in groups hold spaces: held from where one
        could start in the trailing run of their characters."""
        hold = run
        n = len(text)
        low = max(start, n - _NUMBER_SPAN)
        i = n
        while i > low and text[i - 1] in _NUMBER_CHARS:
            i -= 1
        if i < n:  # a number may start in text[i:]: at a digit that begins one, a '+' or a '('
            starter = _NUMBER_START.search(text, i)
            if starter is not None and starter.start() < hold:
                hold = starter.start()
        if "iban" in self.kinds and hold > low and _IBAN_FIRST.search(text, low, hold) is not None:
            iban = open_start(_IBAN_OPEN, text, low, slack=2)  # (one would start at a capital before `hold`)
            if iban is not None and iban < hold:
                hold = iban
        return hold

    def _numbers(self, text: str) -> tuple[list[Finding], list[Finding]]:
        """Cards and SSNs, and US phones, looked for only inside regions dense with digits."""
        out: list[Finding] = []
        phones: list[Finding] = []
        kinds = self.kinds
        n = len(text)
        for region in _DENSE_DIGITS.finditer(text):
            # the engine's lookbehinds see before `pos`; let the lookaheads see two characters past the region
            pos, endpos = region.start(), min(n, region.end() + 2)
            if "credit_card" in kinds:
                for m in _CARD.finditer(text, pos, endpos):
                    if _one_separator(m.group()) and card_number_ok(_digits(m.group())):
                        out.append(Finding(CATEGORY, "credit_card", m.start(), m.end()))
            if "ssn" in kinds:
                for m in _SSN.finditer(text, pos, endpos):
                    if ssn_ok(*_SSN_PARTS.split(m.group())):
                        out.append(Finding(CATEGORY, "ssn", m.start(), m.end()))
            if "phone" in kinds:
                phones += [
                    Finding(CATEGORY, "phone", m.start(), m.end())
                    for m in _PHONE_US.finditer(text, pos, endpos)
                    if not _in_number_list(text, m)
                ]
        return out, phones


_DIGIT_KINDS = frozenset({"credit_card", "ssn", "phone"})
#: what each kind cannot match without (the prefilter, `_prefilter.py`); cards, SSNs and US phones are looked for
#: only inside `_DENSE_DIGITS` regions
_TRIGGERS = (("email", rb"@"), ("iban", rb"[A-Z][A-Z][0-9][0-9]"),
             *((kind, rb"[0-9(](?:[ .()\-]{0,2}[0-9]){8,}") for kind in ("credit_card", "ssn", "phone")),
             ("phone", rb"\+[0-9]"), ("phone", rb"00[1-9]"))
#: what cards, SSNs and phones are made of, and how long one is at most (with the lookahead past its end)
_NUMBER_CHARS = frozenset("0123456789 ().+-")
_NUMBER_SPAN = 52
_NUMBER_START = re.compile(r"(?<![\w-])\d|[+(]")
_IBAN_OPEN = compile_partial(_IBAN.pattern)
_IBAN_FIRST = re.compile(r"[A-Z]")  # how an IBAN starts (the partial match is the costly part of `open_from`)
_SSN_PARTS = re.compile(r"[- ]")


def _in_number_list(text: str, m: re.Match[str]) -> bool:
    """A space-separated "415 555 0132" inside a longer run of space-separated numbers is not a phone."""
    if m.group(1) != " ":
        return False
    return bool(_NUMBER_BEFORE.search(text, max(0, m.start() - 2), m.start()) or _NUMBER_AFTER.match(text, m.end()))


_NUMBER_BEFORE = re.compile(r"\d \Z")
_NUMBER_AFTER = re.compile(r" \d")


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


def _one_separator(s: str) -> bool:
    return not ("-" in s and " " in s)


def _emails(text: str) -> list[Finding]:
    out: list[Finding] = []
    at = text.find("@")
    while at != -1:
        local = _LOCAL_TAIL.search(text, max(0, at - 64), at)
        if local and not (local.start() > 0 and _LOCAL_CHAR.match(text, local.start() - 1)):
            domain = _DOMAIN.match(text, at + 1)
            if domain and not local.group().startswith("."):
                out.append(Finding(CATEGORY, "email", local.start(), domain.end()))
                at = text.find("@", domain.end())
                continue
        at = text.find("@", at + 1)
    return out


def _ibans(text: str) -> list[Finding]:
    out: list[Finding] = []
    for m in _IBAN.finditer(text):
        want = IBAN_LENGTHS.get(m.group()[:2])
        if want is None:
            continue
        # the regex may have run on into a following word: keep exactly the country's length
        end, count = m.start(), 0
        while count < want and end < m.end():
            if text[end] != " ":
                count += 1
            end += 1
        if count != want or (end < len(text) and text[end].isalnum()):
            continue
        if iban_ok(text[m.start() : end].replace(" ", "")):
            out.append(Finding(CATEGORY, "iban", m.start(), end))
    return out


_SEP_RUN = re.compile(r"[ .-]{2,}|[().-][ .-]|\(\)|[ .-]\)")


def _intl_phones(text: str) -> list[Finding]:
    """Numbers with an international prefix: "+CC ..." or "00CC ..."."""
    out: list[Finding] = []
    matches: list[Any] = []
    if "+" in text:
        matches += _PHONE_PLUS.finditer(text)
    if "00" in text:
        matches += _PHONE_00.finditer(text)
    for m in matches:
        s = m.group()
        limit = 17 if s.startswith("00") else 15  # E.164: at most 15 digits after the "+"
        n = sum(ch.isdigit() for ch in s)
        while n > limit and " " in s:  # ran on into a following number: drop trailing groups
            s = s[: s.rindex(" ")].rstrip(" .-(")
            n = sum(ch.isdigit() for ch in s)
        if 8 <= n <= limit and _phone_shape_ok(s):
            out.append(Finding(CATEGORY, "phone", m.start(), m.start() + len(s)))
    return out


def _phone_shape_ok(s: str) -> bool:
    """Separators are single, parentheses balanced and not nested; "00" numbers must be formatted."""
    if s.count("(") != s.count(")") or s.count("(") > 1 or _SEP_RUN.search(s.replace(") ", ")")):
        return False
    if s.count("(") and s.index("(") > s.index(")"):
        return False
    if s.startswith("00") and not any(ch in s for ch in " .-("):
        return False
    return True


def create(name: str, options: Mapping[str, Any]) -> PiiEvaluator:
    return PiiEvaluator(name, options)
