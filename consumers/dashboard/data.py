"""What the ops dashboard shows, read from the metrics tables and the review store (same database)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, exists, func, select

from consumers.consensus import (
    category_sort_key,
    consensus,
    evaluator_agreement,
    flag_confirmed,
    latest_by_reviewer,
    reviewers_agree,
    scope_of,
)
from consumers.dashboard import quality
from consumers.store import queries
from consumers.store import tables as t

#: reviewed events looked at for agreement (most recent first)
AGREEMENT_SAMPLE = 5000


def minutes_between(since: datetime, until: datetime) -> list[datetime]:
    start = since.replace(second=0, microsecond=0)
    return [start + timedelta(minutes=i) for i in range(int((until - start).total_seconds() // 60) + 1)]


def summary(conn: Connection, now: datetime, minutes: int) -> dict[str, Any]:
    since = (now - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    ME, MC, MV = t.metric_events, t.metric_categories, t.metric_evaluators

    by_minute: dict[str, dict[datetime, int]] = {}
    for minute, stage, n in conn.execute(
            select(ME.c.minute, ME.c.stage, func.sum(ME.c.count)).where(ME.c.minute >= since, ME.c.action == "block")
            .group_by(ME.c.minute, ME.c.stage)):
        by_minute.setdefault(stage, {})[minute] = int(n)
    axis = minutes_between(since, now)
    blocks = {stage: [series.get(m, 0) for m in axis] for stage, series in sorted(by_minute.items())}

    actions = {a: int(n) for a, n in conn.execute(
        select(ME.c.action, func.sum(ME.c.count)).where(ME.c.minute >= since).group_by(ME.c.action))}
    tenants = [{"tenant": te, "events": int(n), "blocks": int(b or 0)} for te, n, b in conn.execute(
        select(ME.c.tenant, func.sum(ME.c.count),
               func.sum(case((ME.c.action == "block", ME.c.count), else_=0)))
        .where(ME.c.minute >= since).group_by(ME.c.tenant).order_by(func.sum(ME.c.count).desc()).limit(20))]
    top_categories = [(c, int(n)) for c, n in conn.execute(
        select(MC.c.category, func.sum(MC.c.count)).where(MC.c.minute >= since).group_by(MC.c.category)
        .order_by(func.sum(MC.c.count).desc(), MC.c.category).limit(10))]
    evaluators = []
    for name, calls, unsafe, errors, cached, ms in conn.execute(
            select(MV.c.evaluator, func.sum(MV.c.calls), func.sum(MV.c.unsafe), func.sum(MV.c.errors),
                   func.sum(MV.c.cached), func.sum(MV.c.latency_ms_sum))
            .where(MV.c.minute >= since).group_by(MV.c.evaluator).order_by(MV.c.evaluator)):
        calls, unsafe, errors, cached, ms = int(calls), int(unsafe), int(errors), int(cached), float(ms or 0.0)
        evaluators.append({"evaluator": name, "calls": calls, "errors": errors, "unsafe": unsafe,
                           "error_rate": errors / calls if calls else 0.0,
                           "unsafe_rate": unsafe / calls if calls else 0.0,
                           "cache_hit_rate": cached / calls if calls else 0.0,
                           "mean_latency_ms": ms / calls if calls else 0.0})
    return {"since": since, "until": now, "minutes": minutes, "axis": axis, "blocks": blocks, "actions": actions,
            "tenants": tenants, "top_categories": top_categories, "evaluators": evaluators,
            "backlog": backlog(conn, now), "agreement": agreement(conn), "shadow": shadow_agreement(conn, since),
            "comparisons": quality.comparisons(conn, since), "scores": quality.score_histograms(conn, since)}


def shadow_agreement(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    """Each shadow candidate against its live counterpart, per category: how often they agree.

    Overall (`any`): agreeing = both unsafe or both safe, over every compared item. Per category: agreeing =
    both named it, over the items where either did (neither is not counted: every category would agree)."""
    S = t.metric_shadow
    counts: dict[tuple[str, str, str, str], dict[str, int]] = {}
    for stage, shadow, live, category, outcome, n in conn.execute(
            select(S.c.stage, S.c.shadow, S.c.live, S.c.category, S.c.outcome, func.sum(S.c.count))
            .where(S.c.minute >= since).group_by(S.c.stage, S.c.shadow, S.c.live, S.c.category, S.c.outcome)):
        counts.setdefault((stage, shadow, live, category), {})[outcome] = int(n)
    rows = []
    for (stage, shadow, live, category), by in counts.items():
        agreeing = by.get("both", 0) + by.get("neither", 0)
        compared = agreeing + by.get("shadow_only", 0) + by.get("live_only", 0)
        rows.append({"stage": stage, "shadow": shadow, "live": live, "category": category, "compared": compared,
                     "agree": agreeing, "rate": agreeing / compared if compared else None,
                     "shadow_only": by.get("shadow_only", 0), "live_only": by.get("live_only", 0)})
    return sorted(rows, key=lambda r: (r["shadow"], r["live"], r["stage"], r["category"] != "any",
                                       category_sort_key(r["category"])))


def backlog(conn: Connection, now: datetime) -> dict[str, Any]:
    """Unreviewed events (all time) by age and by action; the oldest one's age."""
    E = t.events
    unreviewed = ~exists().where(t.labels.c.event_pk == E.c.id)
    buckets = [("< 1 h", timedelta(hours=1)), ("1-24 h", timedelta(days=1)), ("1-7 d", timedelta(days=7)),
               ("> 7 d", None)]
    ages: list[tuple[str, int]] = []
    newer_than = now
    for name, limit in buckets:
        q = select(func.count()).select_from(E).where(unreviewed, E.c.ts < newer_than)
        if limit is not None:
            q = q.where(E.c.ts >= now - limit)
            newer_than = now - limit
        ages.append((name, conn.execute(q).scalar_one()))
    by_action = [(a, int(n)) for a, n in conn.execute(
        select(E.c.action, func.count()).where(unreviewed).group_by(E.c.action).order_by(E.c.action))]
    oldest = conn.execute(select(func.min(E.c.ts)).where(unreviewed)).scalar()
    return {"total": sum(n for _, n in by_action), "by_age": ages, "by_action": by_action,
            "oldest_age_h": round((now - oldest).total_seconds() / 3600, 1) if oldest else None}


def agreement(conn: Connection, sample: int = AGREEMENT_SAMPLE) -> dict[str, Any]:
    """Reviewers vs evaluators and reviewers vs each other, on recent reviewed events.

    Each evaluator is compared on the categories it can name (a PII rule is not wrong about a violent prompt
    it let through; see `evaluator_agreement`), and the precision of its flags is the share its reviewers
    confirmed unsafe for a category in the flag's scope."""
    scopes = {name: scope_of(cats) for name, cats in queries.evaluator_categories(conn).items()}
    per_eval: dict[str, list[int]] = {}  # n, agree, flagged, confirmed
    pairs = [0, 0]  # events with >= 2 decided reviewers, of which all agree
    decided = 0
    seen = 0
    for event in queries.reviewed_events(conn, newest_first=True):
        if seen >= sample:
            break
        seen += 1
        decision = consensus(event.labels)
        agree = reviewers_agree(latest_by_reviewer(event.labels))
        if agree is not None:
            pairs[0] += 1
            pairs[1] += int(agree)
        if decision.label is None:
            continue
        decided += 1
        verdicts = event.payload.get("verdicts", [])
        for name, ok in evaluator_agreement(decision, verdicts, scopes).items():
            row = per_eval.setdefault(name, [0, 0, 0, 0])
            row[0] += 1
            row[1] += int(ok)
        for verdict in verdicts:
            confirmed = flag_confirmed(decision, verdict)
            if confirmed is not None:
                row = per_eval.setdefault(str(verdict["evaluator"]), [0, 0, 0, 0])
                row[2] += 1
                row[3] += int(confirmed)
    return {
        "reviewed": seen, "decided": decided,
        "evaluators": [{"evaluator": k, "n": n, "agree": a, "rate": a / n if n else 0.0,
                        "flagged": f, "confirmed": c, "precision": c / f if f else None,
                        "scope": "all" if scopes.get(k) is None else sorted(scopes[k] or (), key=category_sort_key)}
                       for k, (n, a, f, c) in sorted(per_eval.items())],
        "reviewers": {"n": pairs[0], "agree": pairs[1], "rate": pairs[1] / pairs[0] if pairs[0] else None},
    }
