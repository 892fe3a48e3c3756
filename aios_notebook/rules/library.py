"""Built-in detectors: each a factory returning a :class:`~aios_notebook.rules.api.Rule`.

=====================  ===============  ==========================================================
rule                   reads            fires (per key) when
=====================  ===============  ==========================================================
volume_change          job_events       job arrivals of a type in the last ``period`` are
                                        ``factor`` x the rate of the ``baseline`` before (Poisson)
success_rate_drop      job_events       the share of jobs that complete falls ``drop`` below the
                                        baseline's (binomial test)
failure_burst          job_events       failed jobs of a type in ``period`` exceed the baseline's
                                        failure rate ``factor`` times (Poisson)
slow_processing        agent_events     agent tasks take ``factor`` x their baseline median
stuck_jobs             job_events       unfinished jobs of a type sent nothing for ``stale``
agent_error_burst      agent_events     an agent raised ``min_errors`` agent_error in ``window``
agent_offline          agent_events     an agent's latest status is offline
knowledge_stall        metrics          jobs complete but the knowledge base does not grow
dag_step_failures      dag_step_events  a DAG's steps fail (or are retried) ``factor`` x more
                                        often than in the baseline (binomial test)
=====================  ===============  ==========================================================

Every factory takes the rule's schedule (``every``, ``pending``, ``cooldown``, ``name``) besides
its own parameters, and documents them. ``builtins()`` gives all nine with their defaults. The
heavy ones are incremental (running counts in time bins, see :mod:`.aggregates`); the light ones
are plain functions over numpy columns of their window.
"""

from __future__ import annotations

from .agent_rules import agent_error_burst, agent_offline, slow_processing
from .api import Rule
from .job_rules import failure_burst, stuck_jobs, success_rate_drop, volume_change
from .pipeline_rules import dag_step_failures, knowledge_stall

__all__ = [
    "agent_error_burst",
    "agent_offline",
    "builtins",
    "dag_step_failures",
    "failure_burst",
    "knowledge_stall",
    "slow_processing",
    "stuck_jobs",
    "success_rate_drop",
    "volume_change",
]


def builtins() -> list[Rule]:
    """All nine built-in rules with their default parameters."""
    return [
        volume_change(),
        success_rate_drop(),
        failure_burst(),
        slow_processing(),
        stuck_jobs(),
        agent_error_burst(),
        agent_offline(),
        knowledge_stall(),
        dag_step_failures(),
    ]
