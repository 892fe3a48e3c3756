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

Reshaping (``Simulator(..., scenario_params=...)``, ``generate(..., scenario_params=...)``,
``--param key=value`` on ``serve`` and ``simulate``): :meth:`Scenario.reshape` takes

- ``magnitude`` (default 1.0): how strong the anomaly is. 1.0 is the table above exactly, 0 is no
  anomaly at all (the windows and labels stay), values in between (or above 1) scale the
  parameter that defines it from its steady value: arrival factor (x4 at 1, x2.5 at 0.5),
  failure factor, duration factor, step failure probability, agent error rate and share of tasks
  hit, retry probability of the DAG step, share of target jobs that hang or of completed jobs
  that create no knowledge, and the share of the window an agent is offline;
- ``first``, ``length``, ``period``: the window times, in hours (``2``, ``1.5h``, ``90m``);
- the target: ``job_type`` (volume_spike, stuck_jobs), ``agent`` (agent_outage, agent_errors),
  ``dag_id`` and ``step`` (dag_step_failures; ``step`` also for stuck_jobs);
- the scenario's own defining numbers (``arrival_factor``, ``failure_factor`` ...), which
  ``magnitude`` then scales.

Labels record the magnitude (``label["magnitude"]``) and the labels document the parameters.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..protocol.codec import format_timestamp

__all__ = [
    "COMMON_PARAMS",
    "SCENARIOS",
    "TARGET_PARAMS",
    "Scenario",
    "Window",
    "get_scenario",
    "labels_document",
    "parse_param_assignments",
]

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

    def label(self, description: str, magnitude: float = 1.0) -> dict[str, Any]:
        """The window as a label dict (the format of docs/design.md, plus the magnitude)."""
        return {
            "id": f"{self.scenario}-{self.index + 1}",
            "scenario": self.scenario,
            "kind": self.scenario,
            "start": format_timestamp(self.start),
            "end": format_timestamp(self.end),
            "entities": _plain(self.entities),
            "description": description,
            "magnitude": magnitude,
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
        magnitude: how strong the anomaly is (1.0: as described; 0: none), see :meth:`reshape`.
        given: the reshaping parameters this scenario was made with (empty: the defaults).
    """

    name: str
    summary: str
    first_h: float = 3.0
    length_h: float = 0.0
    period_h: float = 6.0
    targets: tuple[Mapping[str, Any], ...] = (MappingProxyType({}),)
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    magnitude: float = 1.0
    given: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

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
            out.append(window.label(self.describe(window), self.magnitude))
        return out

    def describe(self, window: Window) -> str:
        """The label's description: the summary with the window's own entities (and reshaping)."""
        who = ", ".join(f"{k}={_plain(window.entities)[k]}" for k in sorted(window.entities))
        text = f"{self.summary} ({who})" if who else self.summary
        if self.given:
            text += " [reshaped: " + ", ".join(f"{k}={v}" for k, v in self.given.items()) + "]"
        return text

    # -- reshaping ----------------------------------------------------------------------------
    def param_keys(self) -> dict[str, str]:
        """Every key :meth:`reshape` accepts for this scenario, with one line of help each."""
        if not self.has_windows:
            return {}
        keys = dict(COMMON_PARAMS)
        keys.update(TARGET_PARAMS.get(self.name, {}))
        for key, value in self.params.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                keys[key] = f"the anomaly's defining number (default {value:g}), scaled by magnitude"
        return keys

    def scaled(self, key: str, steady: float) -> float:
        """``params[key]`` moved from its ``steady`` value by ``magnitude`` (exact at 1.0)."""
        target = float(self.params[key])
        if self.magnitude == 1.0:  # today's anomaly bit for bit: no float round trip
            return target
        return steady + self.magnitude * (target - steady)

    def share(self, key: str) -> bool:
        """Whether the entity called ``key`` (a job id) is among the ``magnitude`` share hit.

        A hash, not a draw of the workload's random generator: the other events of the run
        stay those of the full anomaly.
        """
        if self.magnitude >= 1.0:
            return True
        return zlib.crc32(key.encode()) < self.magnitude * 2**32

    def reshape(self, params: Mapping[str, Any] | None) -> Scenario:
        """This scenario with some parameters changed (see the module docstring).

        Values may be given as text (``"0.5"``, ``"90m"``), as on the command line.

        Raises:
            ConfigurationError: an unknown key or a bad value, naming the valid keys.
        """
        from ..exceptions import ConfigurationError

        if not params:
            return self
        if not isinstance(params, Mapping):
            raise ConfigurationError(f"scenario_params must be a dict of key -> value, not {type(params).__name__}")
        valid = self.param_keys()
        if not valid:
            raise ConfigurationError(f"scenario {self.name} has no anomaly to reshape: it takes no parameters")
        changes: dict[str, Any] = {}
        new_params = dict(self.params)
        targets: dict[str, Any] = {}
        given: dict[str, Any] = {}
        for key, raw in params.items():
            if key not in valid:
                raise ConfigurationError(
                    f"unknown parameter {key!r} for scenario {self.name}; valid keys: {', '.join(valid)}"
                )
            value = _convert(self, key, raw)
            given[key] = value
            if key == "magnitude":
                changes["magnitude"] = value
            elif key in ("first", "length", "period"):
                changes[f"{key}_h"] = value
            elif key == "job_type":
                new_params["job_type"] = value
                targets["job_type"] = value
            elif key == "agent":
                if self.name == "agent_errors":
                    new_params["agent_id"] = value
                targets["agent_ids"] = (value,)
            elif key == "dag_id":
                new_params["dag_id"] = value
                targets["dag_id"] = value
            elif key == "step":
                new_params["step_id"] = value
            else:
                new_params[key] = value
        if targets:
            changes["targets"] = tuple(
                MappingProxyType({**dict(t), **{k: v for k, v in targets.items() if k in t}})
                for t in self.targets
            )
            if self.name == "agent_outage":  # one agent named: every window takes it
                changes["targets"] = (MappingProxyType({"agent_ids": targets["agent_ids"]}),)
        changes["params"] = MappingProxyType(new_params)
        changes["given"] = MappingProxyType(given)
        shaped = dataclasses.replace(self, **changes)
        _check_shape(shaped)
        return shaped

    def params_used(self) -> dict[str, Any]:
        """What a labels document records: the magnitude, window times and the given keys."""
        return {"magnitude": self.magnitude, "first": self.first_h, "length": self.length_h,
                "period": self.period_h, **dict(self.given)}


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


COMMON_PARAMS: Mapping[str, str] = MappingProxyType({
    "magnitude": "how strong the anomaly is: 1.0 as described (default), 0 none, 0.5 half-way",
    "first": "hours from the start to the first window (default 3)",
    "length": "hours each window lasts",
    "period": "hours between the starts of windows (default 6)",
})

_JOB_TYPES = ("pdf", "audio", "url")
#: the target keys each scenario takes besides COMMON_PARAMS and its own numbers
TARGET_PARAMS: dict[str, dict[str, str]] = {
    "volume_spike": {"job_type": "the job type whose arrivals rise: pdf, audio or url"},
    "stuck_jobs": {"job_type": "the job type whose step hangs: pdf, audio or url",
                   "step": "the step that hangs (a step of that job type's workflow)"},
    "agent_outage": {"agent": "the agent that goes offline (every window)"},
    "agent_errors": {"agent": "the agent that raises the errors"},
    "dag_step_failures": {"dag_id": "the DAG whose step fails: pdf_processing, audio_processing or url_processing",
                          "step": "the failing step (a step of that DAG)"},
}
_HOURS = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(h|m|s)?\s*$")


def _convert(scenario: Scenario, key: str, raw: Any) -> Any:
    """One parameter's value, checked; text is read as the command line gives it."""
    from ..exceptions import ConfigurationError
    from .catalog import AGENTS, WORKFLOWS

    def bad(expected: str) -> ConfigurationError:
        return ConfigurationError(f"parameter {key}={raw!r} of scenario {scenario.name}: expected {expected}")

    if key in ("first", "length", "period"):
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            hours = float(raw)
        else:
            match = _HOURS.match(str(raw))
            if match is None:
                raise bad("hours, e.g. 2, 1.5h or 90m")
            hours = float(match.group(1)) / {"h": 1, None: 1, "m": 60, "s": 3600}[match.group(2)]
        if not math.isfinite(hours) or hours < 0 or (key != "first" and hours <= 0):
            raise bad("a positive number of hours" if key != "first" else "hours >= 0")
        return hours
    if key == "job_type":
        if raw not in _JOB_TYPES:
            raise bad(f"a job type: {', '.join(_JOB_TYPES)}")
        return str(raw)
    if key == "agent":
        agents = [a.agent_id for a in AGENTS]
        if raw not in agents:
            raise bad(f"an agent id: {', '.join(agents)}")
        return str(raw)
    if key == "dag_id":
        dags = [w.dag_id for w in WORKFLOWS.values()]
        if raw not in dags:
            raise bad(f"a DAG id: {', '.join(dags)}")
        return str(raw)
    if key == "step":
        steps = sorted({s.step_id for w in WORKFLOWS.values() for s in w.steps})
        if raw not in steps:
            raise bad(f"a step id: {', '.join(steps)}")
        return str(raw)
    # numbers: the magnitude and the scenario's own defining numbers
    try:
        number = float(raw)
    except (TypeError, ValueError):
        raise bad("a number") from None
    if isinstance(raw, bool) or not math.isfinite(number) or number < 0:
        raise bad("a finite number >= 0")
    if key.endswith("probability") and number > 1:
        raise bad("a probability from 0 to 1")
    return number


def _check_shape(scenario: Scenario) -> None:
    """What single values cannot tell: windows that overlap, a step outside its workflow."""
    from ..exceptions import ConfigurationError
    from .catalog import WORKFLOWS

    if scenario.period_h < scenario.length_h:
        raise ConfigurationError(
            f"scenario {scenario.name}: period ({scenario.period_h:g} h) must be at least the window "
            f"length ({scenario.length_h:g} h), or windows would overlap"
        )
    step = scenario.params.get("step_id")
    if step is None:
        return
    if scenario.name == "stuck_jobs":
        flow = WORKFLOWS[scenario.params["job_type"]]
    else:
        flow = next(w for w in WORKFLOWS.values() if w.dag_id == scenario.params["dag_id"])
    steps = [s.step_id for s in flow.steps]
    if step not in steps:
        raise ConfigurationError(
            f"scenario {scenario.name}: step {step!r} is not a step of {flow.dag_id} ({', '.join(steps)})"
        )


def parse_param_assignments(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["key=value", ...]`` (``--param``, repeatable) -> dict; ValueError on an item without ``=``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{item!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def get_scenario(name: str) -> Scenario:
    """The scenario called ``name``; a ValueError naming the valid ones otherwise."""
    from ..exceptions import ConfigurationError

    try:
        return SCENARIOS[name]
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        ) from None


def labels_document(scenario: str | Scenario, seed: int, origin: float, until: float,
                    params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``--labels FILE`` JSON: ``{"scenario", "seed", "start", "end", "params", "labels"}``.

    ``scenario`` is a name (reshaped by ``params``) or a :class:`Scenario` already reshaped.
    """
    shaped = scenario if isinstance(scenario, Scenario) else get_scenario(scenario).reshape(params)
    return {
        "scenario": shaped.name,
        "seed": seed,
        "start": format_timestamp(origin),
        "end": format_timestamp(until),
        "params": shaped.params_used(),
        "labels": shaped.labels(origin, until),
    }
