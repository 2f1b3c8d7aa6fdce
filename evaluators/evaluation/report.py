"""Turn a run into numbers people compare: a JSON report, rich tables and a precision-recall PNG."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from evaluators.base import Verdict
from evaluators.evaluation import metrics
from evaluators.evaluation.datasets import LabelledRow
from evaluators.evaluation.runner import RunOutput

OnError = Literal["fail_open", "fail_closed"]


def predictions(verdicts: Sequence[Verdict], on_error: OnError) -> list[bool]:
    """True = called unsafe. An error verdict counts per the error policy (fail_closed = unsafe)."""
    return [(on_error == "fail_closed") if v.error is not None else not v.safe for v in verdicts]


def scores_of(verdicts: Sequence[Verdict]) -> list[float | None]:
    return [v.score if v.error is None else None for v in verdicts]


def quality(rows: Sequence[LabelledRow], verdicts: Sequence[Verdict], on_error: OnError) -> dict[str, Any]:
    """Headline metrics, per-category recall, per-source rates and category agreement."""
    y = [r.unsafe for r in rows]
    pred = predictions(verdicts, on_error)
    out = metrics.summarize(y, pred, scores_of(verdicts))
    out["errors"] = sum(v.error is not None for v in verdicts)
    out["per_category"] = {
        cat: {"n": v["n_unsafe"], "recall": v["recall"]}
        for cat, v in metrics.per_group_rates(y, pred, [r.categories if r.unsafe else () for r in rows]).items()
    }
    if any(r.source for r in rows):
        out["per_source"] = metrics.per_group_rates(y, pred, [[r.source or "(none)"] for r in rows])
    caught = [(r, v) for r, v, p in zip(rows, verdicts, pred) if r.unsafe and p and r.categories]
    out["category_agreement"] = (
        sum(bool(set(r.categories) & set(v.categories)) for r, v in caught) / len(caught) if caught else None)
    return out


def latency(run: RunOutput) -> dict[str, Any]:
    per_item = [v.latency_ms for v in run.verdicts]
    n = sum(run.batch_sizes)
    return {
        "per_item": metrics.latency_summary(per_item),
        "per_batch": metrics.latency_summary(run.batch_ms),
        "batch_size_mean": n / len(run.batch_sizes) if run.batch_sizes else 0.0,
        "throughput_items_per_s": n / run.wall_s if run.wall_s else 0.0,
        "wall_s": run.wall_s,
    }


def cascade_section(rows: Sequence[LabelledRow], run: RunOutput, on_error: OnError,
                    second: RunOutput | None) -> dict[str, Any]:
    """Second-stage calls saved, and what the shortcut cost in recall."""
    assert run.routes is not None and run.first is not None
    n = len(rows)
    routes = {r: run.routes.count(r) for r in ("first_safe", "first_unsafe", "second", "error")}
    y = [r.unsafe for r in rows]
    cascade_q = metrics.summarize(y, predictions(run.verdicts, on_error))
    first_q = metrics.summarize(y, predictions(run.first, on_error), scores_of(run.first))
    passed_unsafe = sum(1 for r, route in zip(rows, run.routes) if r.unsafe and route == "first_safe")
    blocked_safe = sum(1 for r, route in zip(rows, run.routes) if not r.unsafe and route == "first_unsafe")
    n_unsafe = sum(y)
    out: dict[str, Any] = {
        "items": n,
        "second_stage_calls": routes["second"] + routes["error"],
        "saved_calls": routes["first_safe"] + routes["first_unsafe"],
        "saved_fraction": (routes["first_safe"] + routes["first_unsafe"]) / n if n else 0.0,
        "routes": routes,
        "unsafe_passed_by_first": passed_unsafe,
        "safe_blocked_by_first": blocked_safe,
        # the most recall the shortcut can have cost: unsafe items the second stage never saw
        "max_recall_cost": passed_unsafe / n_unsafe if n_unsafe else 0.0,
        "cascade": cascade_q,
        "first_alone": first_q,
    }
    if second is not None:
        second_q = metrics.summarize(y, predictions(second.verdicts, on_error), scores_of(second.verdicts))
        out["second_alone"] = second_q
        out["recall_cost"] = _rate(second_q, "recall") - _rate(cascade_q, "recall")
        out["fpr_change"] = _rate(cascade_q, "fpr") - _rate(second_q, "fpr")
        out["second_alone_latency"] = latency(second)
    return out


def _rate(summary: Mapping[str, object], key: str) -> float:
    """A rate of a `metrics.summarize` result (always a number: the confusion's rates are 0 when undefined)."""
    value = summary[key]
    assert isinstance(value, (int, float)), (key, value)
    return float(value)


def build_report(rows: Sequence[LabelledRow], run: RunOutput, *, evaluator: Any, spec: str, data: str,
                 stage: str | None, on_error: OnError, second: RunOutput | None = None) -> dict[str, Any]:
    report: dict[str, Any] = {
        "schema": "guardstream.eval.v1",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": data,
        "items": len(rows),
        "unsafe": sum(r.unsafe for r in rows),
        "stage": stage or "per row",
        "evaluator": {"spec": spec, "name": evaluator.name, "version": evaluator.version,
                      "threshold": getattr(evaluator, "threshold", None)},
        "on_error": on_error,
        "exceptions": run.exceptions,
        "metrics": quality(rows, run.verdicts, on_error),
        "latency": latency(run),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine()},
    }
    if run.routes is not None:
        report["cascade"] = cascade_section(rows, run, on_error, second)
    return report


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def plot_pr(path: str | Path, curves: Sequence[tuple[str, Sequence[bool], Sequence[float | None], Sequence[bool]]],
            title: str) -> None:
    """PR curves (one per (label, y_true, scores, predictions)); the operating point is marked.

    Evaluators without scores (rules) appear as their operating point only.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5), dpi=110)
    for label, y, scores, pred in curves:
        conf = metrics.confusion(y, pred)
        if scores and all(s is not None for s in scores):
            prec, rec, _ = metrics.pr_curve(y, [float(s) for s in scores])  # type: ignore[arg-type]  # no None left: checked above
            ap = metrics.average_precision(y, [float(s) for s in scores])  # type: ignore[arg-type]  # no None left: checked above
            line = ax.step([0.0, *rec], [prec[0] if prec else 1.0, *prec], where="post", label=f"{label} (AP {ap:.3f})")
            color = line[0].get_color()
        else:
            color = None
        ax.scatter([conf.recall], [conf.precision], marker="o", s=40, zorder=3, color=color,
                   label=f"{label} operating point (P {conf.precision:.3f}, R {conf.recall:.3f})")
    prevalence = sum(curves[0][1]) / len(curves[0][1]) if curves and curves[0][1] else 0.0
    ax.axhline(prevalence, color="grey", linestyle=":", linewidth=1, label=f"chance ({prevalence:.2f})")
    ax.set_xlabel("recall (unsafe caught)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def print_report(report: dict[str, Any], console: Any) -> None:
    """Rich tables: headline metrics, confusion matrix, per category / source, latency, cascade."""
    from rich.table import Table

    m = report["metrics"]
    ev = report["evaluator"]
    head = Table(title=f"{ev['name']} ({ev['version']}) on {report['data']}: {report['items']} items, "
                       f"{report['unsafe']} unsafe", title_justify="left")
    for col in ("precision", "recall", "F1", "FPR", "AUPRC", "accuracy", "errors"):
        head.add_column(col, justify="right")
    head.add_row(f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", f"{m['fpr']:.3f}",
                 "n/a" if m["auprc"] is None else f"{m['auprc']:.3f}", f"{m['accuracy']:.3f}", str(m["errors"]))
    console.print(head)

    conf = Table(title="confusion matrix (rows: truth)", title_justify="left")
    conf.add_column("")
    conf.add_column("called unsafe", justify="right")
    conf.add_column("called safe", justify="right")
    conf.add_row("unsafe", str(m["tp"]), str(m["fn"]))
    conf.add_row("safe", str(m["fp"]), str(m["tn"]))
    console.print(conf)

    if m["per_category"]:
        cat = Table(title="recall per category", title_justify="left")
        cat.add_column("category")
        cat.add_column("unsafe items", justify="right")
        cat.add_column("recall", justify="right")
        for name, v in m["per_category"].items():
            cat.add_row(name, str(v["n"]), f"{v['recall']:.3f}")
        console.print(cat)
    if m.get("per_source"):
        src = Table(title="per source", title_justify="left")
        for col in ("source", "unsafe", "recall", "safe", "FPR"):
            src.add_column(col, justify="left" if col == "source" else "right")
        for name, v in m["per_source"].items():
            src.add_row(name, str(v["n_unsafe"]), f"{v['recall']:.3f}" if v["n_unsafe"] else "-",
                        str(v["n_safe"]), f"{v['fpr']:.3f}" if v["n_safe"] else "-")
        console.print(src)

    lat = report["latency"]
    lt = Table(title=f"latency ({lat['throughput_items_per_s']:.1f} items/s, mean batch {lat['batch_size_mean']:.1f})",
               title_justify="left")
    for col in ("", "n", "p50 ms", "p90 ms", "p95 ms", "p99 ms", "max ms"):
        lt.add_column(col, justify="right")
    for key in ("per_item", "per_batch"):
        v = lat[key]
        lt.add_row(key.replace("_", " "), str(v["n"]),
                   *(f"{v[k]:.2f}" for k in ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")))
    console.print(lt)

    if "cascade" in report:
        c = report["cascade"]
        ct = Table(title=f"cascade: {c['saved_calls']} of {c['items']} second-stage calls saved "
                         f"({c['saved_fraction']:.1%})", title_justify="left")
        for col in ("", "precision", "recall", "F1", "FPR"):
            ct.add_column(col, justify="right")
        for key in ("first_alone", "cascade", "second_alone"):
            if key in c:
                v = c[key]
                ct.add_row(key.replace("_", " "), f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}",
                           f"{v['fpr']:.3f}")
        console.print(ct)
        line = (f"routes: {c['routes']}; unsafe items the first stage passed: {c['unsafe_passed_by_first']} "
                f"(recall cost at most {c['max_recall_cost']:.3f})")
        if "recall_cost" in c:
            line += f"; recall cost vs second alone: {c['recall_cost']:+.3f}, FPR change: {c['fpr_change']:+.3f}"
        console.print(line)


def print_split_table(result: dict[str, Any], console: Any) -> None:
    """Training summary: headline metrics per split at the chosen threshold."""
    from rich.table import Table

    table = Table(title=f"classifier {result.get('version', '')} at threshold {result['threshold']:.4f}",
                  title_justify="left")
    for col in ("split", "n", "unsafe", "precision", "recall", "F1", "FPR", "AUPRC", "accuracy", "majority"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split in ("train", "val", "dev"):
        m = result.get(split)
        if not m:
            continue
        table.add_row(split, str(m["n"]), str(m["tp"] + m["fn"]), f"{m['precision']:.3f}", f"{m['recall']:.3f}",
                      f"{m['f1']:.3f}", f"{m['fpr']:.3f}", "n/a" if m["auprc"] is None else f"{m['auprc']:.3f}",
                      f"{m['accuracy']:.3f}", f"{m['majority_baseline_accuracy']:.3f}")
    console.print(table)
