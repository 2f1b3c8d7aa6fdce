"""`guardstream promote` in the proxy's config file: find the live evaluator and its candidate, have the
evaluators' gates judge them (`evaluators/finetune/promote.py`), and rewrite the file when every gate holds.

Two ways to name the candidate: a `guardstream finetune` artifact that takes over evaluator NAME's options
(`promote`), or a shadow evaluator of the config that takes its live counterpart's place in the policy
(`promote_shadow`: the step after shadowing). If a gate fails, nothing is written; otherwise the config file
gets the change (the old file is kept as a timestamped backup) and the diff is returned. The file is edited as
a round trip (ruamel.yaml): comments, quoting and layout outside the changed values stay as the operator wrote them.
"""

from __future__ import annotations

import difflib
import io
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from evaluators.finetune.promote import Instance, PromoteResult, gate_artifact, gate_shadow
from proxy.config import EvaluatorConfig, load_settings


def instance(name: str, cfg: EvaluatorConfig) -> Instance:
    """A configured evaluator as the gates take it."""
    return Instance(name, cfg.type, cfg.options, cfg.on_error)


def promote(candidate: Path, config: Path, name: str, *, data: Path | None = None, canary: Path | None = None,
            max_recall_drop: float = 0.0, max_fpr_rise: float = 0.0, write: bool = True) -> PromoteResult:
    """An artifact replaces the options of evaluator `name` (same type, same deployment options)."""
    settings = load_settings(config)
    if name not in settings.evaluators:
        raise ValueError(f"{config} has no evaluator {name!r} (it has: {', '.join(sorted(settings.evaluators))})")
    result = gate_artifact(candidate, instance(name, settings.evaluators[name]), data=data, canary=canary,
                           max_recall_drop=max_recall_drop, max_fpr_rise=max_fpr_rise)
    if result.accepted:
        options = result.options
        result.diff, result.backup = rewrite_config(config, lambda raw: _set_options(raw, name, options), write)
        result.written = write
    return result


def promote_shadow(config: Path, candidate: str, *, policy: str | None = None, stage: str | None = None,
                   data: Path, canary: Path | None = None, max_recall_drop: float = 0.0,
                   max_fpr_rise: float = 0.0, write: bool = True) -> PromoteResult:
    """A shadow candidate of the config takes its live counterpart's place in the stages it shadows.

    The candidate must shadow a named live evaluator (`shadow: {CANDIDATE: LIVE}`); both judge the test
    split of `data` and the canary set, on the rows of those stages only (prompts for an input-stage
    candidate: an evaluator never judges a stage it does not serve in); if the gates hold, LIVE is replaced
    by CANDIDATE in those stages' `evaluators` and the `shadow` entry goes.
    """
    settings = load_settings(config)
    places = [(pname, sname, stage_cfg.shadow[candidate])
              for pname, pol in settings.policies.items() for sname, stage_cfg in (("input", pol.input),
                                                                                   ("output", pol.output))
              if candidate in stage_cfg.shadow and policy in (None, pname) and stage in (None, sname)]
    if not places:
        raise ValueError(f"{candidate!r} shadows no evaluator in {config}"
                         + (f" (policy {policy}, stage {stage or 'any'})" if policy or stage else ""))
    lives = {live for _, _, live in places}
    if None in lives:
        raise ValueError(f"{candidate!r} is compared with the stage's decision: name the evaluator it would "
                         f"replace (shadow: {{{candidate}: LIVE}})")
    if len(lives) > 1:
        raise ValueError(f"{candidate!r} shadows different evaluators ({', '.join(sorted(map(str, lives)))}): "
                         "choose one with --policy/--stage")
    live = str(lives.pop())
    result = gate_shadow(instance(live, settings.evaluators[live]), instance(candidate, settings.evaluators[candidate]),
                         {sname for _, sname, _ in places}, data=data, canary=canary,
                         max_recall_drop=max_recall_drop, max_fpr_rise=max_fpr_rise)
    if result.accepted:
        result.diff, result.backup = rewrite_config(
            config, lambda raw: _swap_in(raw, candidate, live, [(p, s) for p, s, _ in places]), write)
        result.written = write
    return result


def _set_options(raw: dict[str, Any], name: str, options: Mapping[str, Any]) -> None:
    raw["evaluators"][name]["options"] = dict(options)


def _swap_in(raw: dict[str, Any], candidate: str, live: str, places: Sequence[tuple[str, str]]) -> None:
    for policy, stage in places:
        stage_cfg = raw["policies"][policy][stage]
        names = stage_cfg["evaluators"]
        names[:] = [candidate if e == live else e for e in names]  # in place: the list keeps its layout
        shadow = stage_cfg.get("shadow")
        if isinstance(shadow, dict):
            shadow.pop(candidate, None)
        elif isinstance(shadow, list) and candidate in shadow:
            shadow.remove(candidate)
        if not shadow:
            stage_cfg.pop("shadow", None)


def rewrite_config(config: Path, change: Callable[[dict[str, Any]], None],
                   write: bool = True) -> tuple[str, Path | None]:
    """Apply `change` to the parsed config; keep a timestamped backup; return the diff.

    A round trip: the lines `change` did not touch come back as they were, comments included.
    """
    old_text = config.read_text(encoding="utf-8")
    yaml = YAML()  # round-trip mode: a dict subclass that remembers comments and layout
    yaml.preserve_quotes = True
    yaml.width = 4096  # long lines stay as written; the default (80) would re-wrap them
    raw = yaml.load(old_text)
    change(raw)
    out = io.StringIO()
    yaml.dump(raw, out)
    new_text = out.getvalue()
    diff = "".join(difflib.unified_diff(old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                        fromfile=str(config), tofile=f"{config} (promoted)"))
    backup = None
    if write:
        backup = config.with_name(f"{config.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
        shutil.copy2(config, backup)
        config.write_text(new_text, encoding="utf-8")
    return diff, backup
