"""Insight rules: write a detector in a cell, run it live, backtest it on history, score it.

::

    from aios_notebook.rules import rule, Insight, RuleEngine, backtest, score, library

    @rule(every="5m", window="30m", detects=("failure_burst",))
    def many_failures(job_events):
        failed = job_events[job_events["event"] == "processing_job_failed"]
        for job_type, count in failed["type"].value_counts().items():
            if count >= 5:
                yield Insight("Failures", f"{count} {job_type} jobs failed", key=job_type)

    firings = backtest([many_failures, *library.builtins()], "yesterday.jsonl")
    score(firings, "labels.json")
    RuleEngine(client.store, [many_failures]).start()      # the same rule, live

Series the kit derives from the tables (``series``), online detectors of river as rules
(``adapters.from_river``) and the detector lab (``lab.sensitivity``: recall, time to detect and
false alarms against the anomaly's magnitude) work with any of these rules.
"""

from __future__ import annotations

from . import adapters, lab, library, series
from .adapters import from_river
from .api import IncrementalRule, Insight, Rule, RuleContext, parse_duration, rule
from .backtest import backtest, collect_rules, load_rules
from .engine import RuleEngine, State
from .lab import sensitivity
from .scoring import combine_scores, load_labels, match_firings, score, timeline
from .windows import Rows

__all__ = [
    "IncrementalRule",
    "Insight",
    "Rows",
    "Rule",
    "RuleContext",
    "RuleEngine",
    "State",
    "adapters",
    "backtest",
    "collect_rules",
    "combine_scores",
    "from_river",
    "lab",
    "library",
    "load_labels",
    "load_rules",
    "match_firings",
    "parse_duration",
    "rule",
    "score",
    "sensitivity",
    "series",
    "timeline",
]
