"""Online anomaly detectors from other libraries as rules: ``from_river``.

::

    from river import anomaly, preprocessing
    from aios_notebook.rules import adapters, series

    hst = adapters.from_river(
        preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(n_trees=25, height=6, window_size=24, seed=1),
        series=series.job_counts("pdf", every="5m"), threshold=0.8, detects=("volume_spike",))
    backtest([hst], "recording.jsonl"); RuleEngine(client.store, [hst]).start()

The rule evaluates every ``series.every``: it takes the series' value of the interval that just
ended, asks the model for its anomaly score (``score_one``), fires when the score reaches
``threshold`` (after ``grace`` intervals of learning), then lets the model learn the value
(``learn_one``; with ``protect``, not the values it fired on, as river's ``QuantileFilter``
protects its detector). It learns online exactly as it would live: each engine (a live
``RuleEngine``, a ``backtest``, a lab run) starts from its own fresh copy of the model
(``model.clone()``) and feeds it the same values at the same instants, so a seeded model fires
the same in all of them.

Unsupervised detectors (``HalfSpaceTrees``, ``OneClassSVM``, ``LocalOutlierFactor``, pipelines
ending in one) see ``{series.name: value}``; supervised ones (``GaussianScorer``,
``StandardAbsoluteDeviation``) see the value as ``y``. Intervals with nothing to measure (NaN)
are skipped: no score, no learning.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

from ..exceptions import RuleError
from .aggregates import median
from .api import Insight, Rule, RuleContext, format_duration
from .evaluation import iso
from .series import Series

__all__ = ["OnlineDetector", "from_river"]


class OnlineDetector(Protocol):
    """What ``from_river`` needs of a model: river's anomaly detector interface."""

    def score_one(self, *args: Any) -> float: ...

    def learn_one(self, *args: Any) -> Any: ...

    def clone(self) -> Any: ...


def _supervised(model: Any) -> bool:
    """True for detectors that take the value as ``y`` (river's SupervisedAnomalyDetector)."""
    try:
        from river.base import SupervisedAnomalyDetector
    except ImportError:  # pragma: no cover - river is the lab extra
        return False
    last = model
    steps = getattr(model, "steps", None)
    if steps:  # a pipeline: its last step decides
        last = list(steps.values())[-1]
    return isinstance(last, SupervisedAnomalyDetector)


def from_river(
    model: OnlineDetector,
    *,
    series: Series,
    threshold: float,
    name: str | None = None,
    detects: Iterable[str] = (),
    grace: int = 12,
    protect: bool = True,
    points: int = 24,
    pending: Any = 0,
    cooldown: Any = "1h",
    title: str | None = None,
) -> Rule:
    """A rule that runs an online river anomaly detector over a named series.

    Args:
        model: a river anomaly detector (or a pipeline ending in one, e.g.
            ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=1)``). Give it a seed:
            an unseeded model does not fire the same twice.
        series: what it watches (see :mod:`aios_notebook.rules.series`); its interval is the
            rule's ``every``, its lookback the rule's window.
        threshold: the anomaly score at or above which the rule fires.
        name: the rule's name (default ``river_<model>_<series>``).
        detects: the label kinds it is meant to find (for ``score`` and the lab).
        grace: intervals the model only learns before it may fire.
        protect: do not learn the values it fired on (an anomaly must not become normal).
        points: intervals of the series kept in each insight's evidence (for its figure).
        pending, cooldown: the rule's schedule (see :func:`~aios_notebook.rules.rule`).
        title: the insights' title (default ``"<model> anomaly in <series>"``).
    """
    for method in ("score_one", "learn_one", "clone"):
        if not callable(getattr(model, method, None)):
            raise RuleError(f"from_river: model must be a river anomaly detector (it has no {method}()), "
                            f"not {type(model).__name__}")
    if not isinstance(series, Series):
        raise RuleError(f"from_river: series must be a Series (e.g. series.job_counts('pdf')), not {series!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise RuleError(f"from_river: threshold must be a number (an anomaly score), not {threshold!r}")
    if not isinstance(grace, int) or grace < 0:
        raise RuleError(f"from_river: grace must be a whole number of intervals >= 0, not {grace!r}")
    model_name = _model_name(model)
    rule_name = name or re.sub(r"\W+", "_", f"river_{model_name}_{series.name}").strip("_")
    supervised = _supervised(model)
    label = title or f"{model_name} anomaly in {series.name}"
    limit = float(threshold)

    def judge(ctx: RuleContext) -> Insight | None:
        state = ctx.state
        if "model" not in state:
            state["model"] = model.clone()  # this engine's own copy, unlearned
            state["seen"] = 0
            state["history"] = deque(maxlen=max(1, points))
        detector = state["model"]
        value = series.value(ctx)
        history: deque[tuple[int, float, float | None, bool]] = state["history"]
        if value != value:  # nothing to measure in this interval
            history.append((ctx.now_ns, value, None, False))
            return None
        x = {series.name: value}
        score = float(detector.score_one(None, value) if supervised else detector.score_one(x))
        # a model that cannot score yet (no spread seen) answers NaN: that is no anomaly
        fires = state["seen"] >= grace and score == score and score >= limit
        if not (fires and protect):
            if supervised:
                detector.learn_one(None, value)
            else:
                detector.learn_one(x)
            state["seen"] += 1
        history.append((ctx.now_ns, value, score, fires))
        if not fires:
            return None
        learned = [v for _, v, _, fired in history if not fired and v == v]
        baseline = median(learned)
        return Insight(
            title=label,
            description=(f"{series.name} was {value:g} {series.unit} in the "
                         f"{format_duration(series.every_ns)} to {iso(ctx.now_ns)}: anomaly score {score:.3f} "
                         f">= {limit:g} ({model_name}, learned online from {state['seen']} intervals)"),
            type="anomaly",
            confidence=round(min(0.99, max(0.5, score)), 2),
            metadata={"detector": model_name, "series": series.name, "score": round(score, 4)},
            key=series.key,
            evidence={
                "series": series.name,
                "unit": series.unit,
                "series_time": [iso(t) for t, _, _, _ in history],
                "series_value": [None if v != v else round(v, 6) for _, v, _, _ in history],
                "score": [None if s is None or s != s else round(s, 6) for _, _, s, _ in history],
                "score_threshold": limit,
                "value": value,
                "anomaly_score": score,
                **({"baseline": round(baseline, 6)} if baseline == baseline else {}),
            },
        )

    judge.__name__ = rule_name
    return Rule(
        judge, name=rule_name, every=series.every_ns / 1e9, window=series.lookback_ns / 1e9, pending=pending,
        cooldown=cooldown, detects=detects, tables=(series.table,), full_window=True,
        description=f"{model_name} (river) over {series.name}, firing at anomaly score >= {limit:g}",
        params={"model": repr(model), "series": series.name, "threshold": limit, "grace": grace, "protect": protect},
    )


def _model_name(model: Any) -> str:
    steps = getattr(model, "steps", None)
    if steps:
        return " | ".join(type(step).__name__ for step in steps.values())
    return type(model).__name__
