"""A policy resolved once: its configuration and everything the request path derives from it.

The guard builds one `ResolvedPolicy` per configured policy when it starts; a request looks its principal's
up once (`Guard.policy`) and hands that object to the guard, the stream relay and the after-stream judges,
so none of them turns a policy name back into a `PolicyConfig` or recomputes which evaluators judge what.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evaluators.base import Stage
from proxy.config import PolicyConfig
from proxy.streaming.modes import ModePlan

if TYPE_CHECKING:
    from proxy.guard import InlineStage


@dataclass(frozen=True, slots=True, eq=False)
class StreamJudging:
    """How a policy judges streamed answers: its mode's plan and which output evaluators judge how."""

    plan: ModePlan
    #: incremental judges (rules) that scan the answer as it arrives (none in `final` and `off` modes)
    scanning: tuple[str, ...]
    #: judges of windows (every output evaluator in `final` mode); whole-answer evaluators are left out of
    #: windowed modes, they judge the answer after the stream (proxy/quality.py)
    windowed: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ResolvedPolicy:
    """One policy as the request path uses it (built by `Guard`, shared by every request under it)."""

    name: str
    config: PolicyConfig
    #: the policy's configuration digest: part of the verdict cache's keys
    digest: str
    #: per stage, the evaluators that judge it (an evaluator whose `stages` exclude a stage never runs there)
    stages: Mapping[Stage, tuple[str, ...]]
    #: the stages whose evaluators all judge inline (`Guard._decide_inline`)
    inline: Mapping[Stage, InlineStage]
    #: the stages with shadow evaluators configured
    shadowed: frozenset[Stage]
    stream: StreamJudging
