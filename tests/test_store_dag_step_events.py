"""dag_step_events: the append-only history of step_status, and dag_step_failures reading it."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest

from aios_notebook.rules import backtest, library
from aios_notebook.store import EventStore, bulk

COLUMNS = ["received_at", "seq", "timestamp", "event", "dag_id", "run_id", "step_id", "status",
           "start_time", "end_time", "duration", "retry_count", "error"]
START = pd.Timestamp("2026-01-05T00:00:00Z").timestamp()


def step(t: float, run: str, status: str, *, dag: str = "etl", step_id: str = "load", retries: int = 0,
         error: str | None = None) -> dict[str, Any]:
    stamp = pd.Timestamp(t, unit="s", tz="UTC").isoformat()
    return {"dag_id": dag, "run_id": run, "step_id": step_id, "status": status, "timestamp": stamp,
            "start_time": stamp, "end_time": stamp if status in ("success", "failed") else None,
            "duration": 1.5 if status in ("success", "failed") else None, "retry_count": retries, "error": error}


def frame(data: dict[str, Any], seq: int) -> str:
    return json.dumps({"event": "step_status", "data": data, "seq": seq})


@pytest.mark.parametrize("batched", [False, True])
def test_every_step_status_event_is_kept_with_the_contract_columns(batched: bool) -> None:
    store = EventStore()
    texts = [frame(step(START + i, "r1", status, retries=i, error="boom" if status == "failed" else None), i + 1)
             for i, status in enumerate(["running", "failed", "up_for_retry", "success"])]
    if batched:  # the Arrow path of frequent events
        bulk.ingest_frames(store, texts, [int((START + 10 + i) * 1e9) for i in range(len(texts))])
    else:  # the per-frame path
        for text in texts:
            store.ingest_frame(text, pd.Timestamp(START + 10, unit="s", tz="UTC"))
    events = store.dag_step_events
    assert list(events.columns) == COLUMNS
    assert events["status"].tolist() == ["running", "failed", "up_for_retry", "success"]
    assert events["seq"].tolist() == [1, 2, 3, 4]
    assert events["retry_count"].tolist() == [0, 1, 2, 3]
    assert events["error"].tolist()[1] == "boom" and pd.isna(events["error"].iloc[0])
    for name in ("received_at", "timestamp", "start_time", "end_time"):
        assert str(events[name].dtype) == "datetime64[ns, UTC]", name
    assert events["end_time"].isna().tolist() == [True, False, True, False]
    assert (str(events["seq"].dtype), str(events["retry_count"].dtype)) == ("Int64", "Int32")
    assert isinstance(events["step_id"].dtype, pd.CategoricalDtype)
    assert events["duration"].dtype == "float64"
    # the latest-state table still holds the one step, in its last state
    assert store.dag_steps["status"].tolist() == ["success"]


def test_retention_limits_the_history() -> None:
    store = EventStore(retention={"dag_step_events": 3})
    store.ingest({"event": "step_status", "data": step(START + i, f"r{i}", "success")} for i in range(5))
    assert store.dag_step_events["run_id"].tolist() == ["r2", "r3", "r4"]
    assert len(store.dag_steps) == 5
    assert store.retention["dag_step_events"]["rows"] == 3


def history(recover: bool) -> list[tuple[float, str, dict[str, Any]]]:
    """Three quiet hours of the ``load`` step (the rule waits for a full 2.5 h window), then 6
    runs in 10 minutes that fail; with ``recover``, each of them succeeds a minute later (its
    latest state is a success). Another DAG's step at 03:50 carries the stream past the 03:45
    evaluation."""
    out = []
    for i in range(38):  # the baseline: a run every 5 minutes until 03:06, all successful
        t = START + i * 300
        out += [(t, "step_status", step(t, f"b{i}", "running")), (t + 60, "step_status", step(t + 60, f"b{i}", "success"))]
    spike = START + 3.5 * 3600
    for i in range(6):
        t = spike + i * 100
        out.append((t, "step_status", step(t, f"s{i}", "failed", retries=1, error="timeout")))
        if recover:
            out.append((t + 60, "step_status", step(t + 60, f"s{i}", "success")))
    t = spike + 1200
    out.append((t, "step_status", step(t, "o1", "success", dag="other")))
    return out


def test_dag_step_failures_counts_each_step_by_its_latest_event() -> None:
    failing = backtest([library.dag_step_failures()], history(recover=False))
    assert failing["key"].tolist() == ["etl"]
    assert failing["evidence"].iloc[0]["failing_steps"] == 6
    assert failing["evidence"].iloc[0]["steps"] == 6
    recovered = backtest([library.dag_step_failures()], history(recover=True))
    assert recovered.empty
