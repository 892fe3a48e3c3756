"""Workload scenarios: a known anomaly injected in known windows of simulated time, with labels.

Every scenario but ``steady`` repeats its anomaly: the first window opens ``first`` hours after the
simulation's start and a new one every ``period`` hours after that (four per simulated day), so a
detector can be scored for precision and recall on a single run. The workload reads the
parameters below; the labels (``Scenario.labels``) say when each window starts and ends and which
entities it touches. Outside the windows every scenario behaves exactly like ``steady``.

=================  =====  ======  ======  ==================================================  =========================================
scenario           first  length  period  what happens inside a window                        entities
=================  =====  ======  ======  ==================================================  =========================================
steady             -      -       -       nothing: daily cycle, ~3 % failures, rare agent     -
                                          errors
volume_spike       3 h    1 h     6 h     pdf arrivals x4 (total volume about x2.6)           ``{"job_type": "pdf"}``
success_rate_drop  3 h    1.5 h   6 h     step failure hazard x12: success ~97 % -> ~70 %     ``{}``
agent_outage       3 h    1 h     6 h     one agent offline (agent_error critical, status     ``{"agent_ids": [...]}`` (alternates
                                          offline, no tasks; its work moves to its peer)      context_mind_01 / digest_agent_02)
slow_processing    3 h    1.5 h   6 h     agent steps take x3 as long (processing time ~x3)   ``{}``
failure_burst      3 h    0.5 h   6 h     storage outage: each step fails with p=0.3, so      ``{}``
                                          ~80 % of jobs fail; many ``error`` events
stuck_jobs         3 h    1 h     6 h     pdf text_extraction hangs: those jobs send nothing  ``{"job_type": "pdf"}``
                                          until the window ends, then resume
agent_errors       3 h    1.5 h   6 h     summary_agent_03 raises agent_error ~30/h: 30 % of  ``{"agent_ids": ["summary_agent_03"]}``
                                          its tasks hit one (and take x1.5 longer), plus a
                                          stream of 12/h more
knowledge_stall    3 h    1.5 h   6 h     completed jobs create no knowledge items and no     ``{}``
                                          item is updated
dag_step_failures  3 h    1.5 h   6 h     audio_processing's transcription step fails 4 in 5  ``{"dag_id": "audio_processing"}``
                                          attempts (up_for_retry, retried by the DAG)
=================  =====  ======  ======  ==================================================  =========================================

Effects that outlast a window are part of the anomaly but not of its label: jobs started late in a
``slow_processing`` window finish after it, and rolling dashboard metrics (30 simulated minutes)
take that long to recover.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..protocol.codec import format_timestamp

__all__ = ["SCENARIOS", "Scenario", "Window", "get_scenario", "labels_document"]

_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Window:
    """One anomaly window: ``start``/``end`` in epoch seconds of simulated time."""

    scenario: str
    index: int
    start: float
    end: float
    entities: Mapping[str, Any]

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end

    def label(self, description: str) -> dict[str, Any]:
        """The window as a label dict (the format of docs/design.md)."""
        return {
            "id": f"{self.scenario}-{self.index + 1}",
            "scenario": self.scenario,
            "kind": self.scenario,
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "entities": _plain(self.entities),
            "description": description,
        }


def _plain(entities: Mapping[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in entities.items()}


@dataclass(frozen=True, slots=True)
class Scenario:
    """A workload variant: when its anomaly windows are and what the workload changes inside them.

    Attributes:
        name: the scenario's name (also the ``kind`` of its labels).
        summary: one line for people (``--scenario`` help, labels' description).
        first_h: hours from the simulation's start to the first window.
        length_h: length of each window in hours (0: no windows).
        period_h: hours between the starts of consecutive windows.
        targets: the entities of each window, cycled (window i uses ``targets[i % len]``).
        params: what the workload changes inside a window (read by ``workload.py``).
    """

    name: str
    summary: str
    first_h: float = 3.0
    length_h: float = 0.0
    period_h: float = 6.0
    targets: tuple[Mapping[str, Any], ...] = (MappingProxyType({}),)
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def has_windows(self) -> bool:
        return self.length_h > 0

    def window(self, origin: float, index: int) -> Window:
        """Window number ``index`` (from 0) of a simulation that started at ``origin``."""
        start = origin + (self.first_h + index * self.period_h) * _HOUR
        return Window(
            self.name,
            index,
            start,
            start + self.length_h * _HOUR,
            self.targets[index % len(self.targets)],
        )

    def windows(self, origin: float, until: float) -> list[Window]:
        """The windows that start before ``until`` (epoch seconds), in order."""
        if not self.has_windows or until <= origin:
            return []
        count = max(0, math.ceil((until - origin - self.first_h * _HOUR) / (self.period_h * _HOUR)))
        return [self.window(origin, i) for i in range(count)]

    def labels(self, origin: float, until: float) -> list[dict[str, Any]]:
        """Label dicts of the windows that start before ``until``; ends clipped to ``until``."""
        out = []
        for window in self.windows(origin, until):
            if window.end > until:
                window = Window(window.scenario, window.index, window.start, until, window.entities)
            out.append(window.label(self.describe(window)))
        return out

    def describe(self, window: Window) -> str:
        """The label's description: the summary with the window's own entities."""
        who = ", ".join(f"{k}={_plain(window.entities)[k]}" for k in sorted(window.entities))
        return f"{self.summary} ({who})" if who else self.summary


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType({k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()})


SCENARIOS: MappingProxyType[str, Scenario] = MappingProxyType(
    {
        s.name: s
        for s in (
            Scenario("steady", "normal operation: daily cycle, ~3% failures, rare agent errors"),
            Scenario(
                "volume_spike",
                "pdf arrivals x4 (total volume about x2.6)",
                length_h=1.0,
                targets=(_frozen({"job_type": "pdf"}),),
                params=_frozen({"job_type": "pdf", "arrival_factor": 4.0}),
            ),
            Scenario(
                "success_rate_drop",
                "step failure hazard x12: job success rate falls from ~97% to ~70%",
                length_h=1.5,
                params=_frozen({"failure_factor": 12.0}),
            ),
            Scenario(
                "agent_outage",
                "an agent goes offline; its peer takes all of its work",
                length_h=1.0,
                targets=(
                    _frozen({"agent_ids": ["context_mind_01"]}),
                    _frozen({"agent_ids": ["digest_agent_02"]}),
                ),
            ),
            Scenario(
                "slow_processing",
                "agent steps take x3 as long: job processing time about x3",
                length_h=1.5,
                params=_frozen({"duration_factor": 3.0}),
            ),
            Scenario(
                "failure_burst",
                "storage outage: every step fails with p=0.3 (about 80% of jobs fail)",
                length_h=0.5,
                params=_frozen(
                    {
                        "step_failure_probability": 0.3,
                        "error": "Storage backend unavailable (503): could not persist step output",
                        "error_type": "storage_error",
                    }
                ),
            ),
            Scenario(
                "stuck_jobs",
                "pdf text extraction hangs: those jobs stop updating until the window ends",
                length_h=1.0,
                targets=(_frozen({"job_type": "pdf"}),),
                params=_frozen({"job_type": "pdf", "step_id": "text_extraction"}),
            ),
            Scenario(
                "agent_errors",
                "an agent raises agent_error about 30 times an hour; 30% of its tasks hit an error",
                length_h=1.5,
                targets=(_frozen({"agent_ids": ["summary_agent_03"]}),),
                params=_frozen(
                    {
                        "agent_id": "summary_agent_03",
                        "errors_per_hour": 12.0,
                        "task_error_probability": 0.3,
                        "task_slowdown": 1.5,
                    }
                ),
            ),
            Scenario(
                "knowledge_stall",
                "completed jobs create no knowledge items and none is updated",
                length_h=1.5,
            ),
            Scenario(
                "dag_step_failures",
                "audio_processing transcription fails 4 attempts in 5 (retried by the DAG)",
                length_h=1.5,
                targets=(_frozen({"dag_id": "audio_processing"}),),
                params=_frozen(
                    {"dag_id": "audio_processing", "step_id": "transcription", "retry_probability": 0.8}
                ),
            ),
        )
    }
)


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; a ValueError naming the valid ones otherwise."""
    from ..exceptions import ConfigurationError

    try:
        return SCENARIOS[name]
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        ) from None


def labels_document(scenario: str, seed: int, origin: float, until: float) -> dict[str, Any]:
    """The ``--labels FILE`` JSON: ``{"scenario", "seed", "start", "end", "labels"}``."""
    return {
        "scenario": scenario,
        "seed": seed,
        "start": format_timestamp(origin),
        "end": format_timestamp(until),
        "labels": get_scenario(scenario).labels(origin, until),
    }
