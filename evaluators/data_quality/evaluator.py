"""The data-quality evaluator: judges the structured records in a model answer.

Output stage, category `quality`. Each answer is checked as one stream (a
fresh series state per answer): every record found by `extract.py` goes
through the `Checker`, and the answer is accepted only if every record is.

What the proxy sees, in the `Verdict`:
- `safe`, `categories=["quality"]` when any record failed, `score` 1.0/0.0
  (a binary accept/reject judgement, not a probability);
- one `Finding(category="quality", kind="<rule>:<field>@<index>", start, end)`
  per failure, the span being the failing record's characters in the answer
  (`parse:json@<n>` spans the unreadable block), capped at `max_findings`.
  The kind alone tells a reviewer which rule failed on which record.

The richer structure (messages, counts, spans) comes from `inspect(text)`,
which `guardstream eval` and tests can call directly.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evaluators.base import BaseEvaluator, EvalItem, Finding, OptionError, Stage, Verdict
from evaluators.data_quality.checker import Checker, Failure
from evaluators.data_quality.extract import extract_records
from evaluators.data_quality.options import DataQualityOptions
from evaluators.data_quality.rules import RulesError, RuleSet, load_rules, rules_from_data
from evaluators.options import parse_options

CATEGORY = "quality"
ENGINE_VERSION = "1"


@dataclass(frozen=True, slots=True)
class LocatedFailure:
    """A failure with the span of its record in the answer."""

    failure: Failure
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.failure.to_dict(), "start": self.start, "end": self.end}


@dataclass(slots=True)
class AnswerReport:
    """Everything the evaluator found in one answer."""

    records: int = 0
    rejected: int = 0
    sources: int = 0
    failures: list[LocatedFailure] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "records": self.records, "rejected": self.rejected,
                "sources": self.sources, "failures": [f.to_dict() for f in self.failures]}


class DataQualityEvaluator(BaseEvaluator):
    """Accept/reject the records of an answer against one rule set."""

    #: checking an answer's records costs less than a Redis round trip (config `cache: true` overrides)
    cacheable = False

    def __init__(self, name: str, rules: RuleSet, *, records_key: str | None = None,
                 require_records: bool = False, max_findings: int = 100,
                 stages: frozenset[Stage] = frozenset({"output"})):
        self.name = name
        self.rules = rules
        self.version = f"{ENGINE_VERSION}+{rules.digest()[:12]}"  # rule edits invalidate cached verdicts
        self.stages = stages
        self.records_key = records_key
        self.require_records = require_records
        self.max_findings = max_findings
        self._checker = Checker(rules)

    def inspect(self, text: str) -> AnswerReport:
        """Extract and check every record in `text`; one fresh series state per call."""
        extraction = extract_records(text, self.records_key)
        report = AnswerReport(records=len(extraction.records), sources=extraction.sources)
        for n, problem in enumerate(extraction.problems):
            report.failures.append(
                LocatedFailure(Failure(n, "parse", "json", problem.message), problem.start, problem.end))
        if self.require_records and not extraction.records and not extraction.problems:
            report.failures.append(
                LocatedFailure(Failure(0, "record", "", "no JSON records found in the answer"), 0, len(text)))
        checker = self._checker.fork()  # own state: safe if called from several threads
        for index, located in enumerate(extraction.records):
            failures = checker.check(located.value, index)
            if failures:
                report.rejected += 1
                report.failures.extend(LocatedFailure(f, located.start, located.end) for f in failures)
        return report

    def judge(self, text: str, offset: int = 0) -> Verdict:
        """Judge the records of `text`; finding spans are shifted by `offset` (where `text` sits in the item's
        `scan_text`, so a policy that redacts `quality` masks the right place)."""
        started = time.perf_counter()
        report = self.inspect(text)
        findings = [Finding(CATEGORY, f"{lf.failure.rule}:{lf.failure.field}@{lf.failure.index}",
                            lf.start + offset, lf.end + offset)
                    for lf in report.failures[: self.max_findings]]
        return Verdict(
            safe=report.accepted,
            evaluator=self.name,
            version=self.version,
            categories=[] if report.accepted else [CATEGORY],
            score=0.0 if report.accepted else 1.0,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            findings=findings,
        )

    async def evaluate(self, items: Sequence[EvalItem]) -> list[Verdict]:
        return [self.judge(item.text, item.judged_at) for item in items]


def create(name: str, options: Mapping[str, Any]) -> DataQualityEvaluator:
    """Registry factory. Options (`DataQualityOptions`): `rules` (path to the YAML rule file, or the rule set
    inline), `records_key`, `require_records` (default false), `max_findings` (100), `stages` (["output"])."""
    opts = parse_options(DataQualityOptions, options)
    source = opts.rules
    if isinstance(source, str):
        try:
            rules = load_rules(source)
        except RulesError as exc:  # the file's first problem, with its line; check-data lists them all
            more = f" (and {len(exc.issues) - 1} more: see `guardstream check-data`)" if len(exc.issues) > 1 else ""
            raise OptionError("rules", exc.issues[0].render(str(source)) + more) from None
    else:
        try:
            rules = rules_from_data(source, f"evaluators.{name}.options.rules")
        except RulesError as exc:
            issue = exc.issues[0]
            raise OptionError(f"rules.{issue.dotted}" if issue.path else "rules", issue.message) from None
    return DataQualityEvaluator(name, rules, records_key=opts.records_key, require_records=opts.require_records,
                                max_findings=opts.max_findings, stages=opts.stages)
