"""Series derived from the tables, and river detectors as rules: the same firings in a backtest, on
a live engine fed by the replay server, and in the lab."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from river import anomaly, preprocessing

from aios_notebook import AIOSClient
from aios_notebook.exceptions import RuleError
from aios_notebook.rules import Insight, RuleEngine, backtest, from_river, rule, score, series
from aios_notebook.server.replay import ReplayServer
from aios_notebook.server.simulate import write_scenario_recording
from aios_notebook.server.workload import DEFAULT_START, generate
from aios_notebook.store import EventStore

pytestmark = pytest.mark.timeout(180)

# volume_spike reshaped so that a short run holds two windows after the detector's warm-up
SHAPE = {"first": "90m", "length": "30m", "period": "1h"}
HOURS = 3.5


@functools.cache
def events(magnitude: float = 1.0) -> tuple[tuple[float, str, dict[str, Any]], ...]:
    return tuple(generate(seed=4, scenario="volume_spike", hours=HOURS,
                          scenario_params={**SHAPE, "magnitude": magnitude}))


def store_of(history: Any) -> EventStore:
    store = EventStore()
    store.ingest({"event": e, "data": d} for _, e, d in history)
    return store


def gaussian_rule(**options: Any) -> Any:
    return from_river(anomaly.GaussianScorer(window_size=36, grace_period=6), series=series.job_counts("pdf"),
                      threshold=0.99, grace=6, detects=("volume_spike",), **options)


def signature(firings: pd.DataFrame) -> list[tuple[Any, ...]]:
    return list(zip(firings["time"], firings["rule"], firings["key"], firings["fingerprint"], strict=True))


def test_series_match_the_events_counted_by_hand() -> None:
    history = events()
    store = store_of(history)
    frame = series.job_counts("pdf", every="5m").frame(store)
    # by hand: pdf jobs queued, binned on 5-minute interval ends (t - 5m, t]
    queued = [t for t, e, d in history if e == "processing_job_status" and d["status"] == "queued" and d["type"] == "pdf"]
    ns = (np.array(queued) * 1e9).round().astype(np.int64)
    every = 300 * 10**9
    ends = -(-ns // every) * every
    expected = pd.Series(ends).value_counts()
    got = dict(zip(frame["time"].astype("int64"), frame["value"], strict=True))
    assert len(frame) >= 40 and frame["time"].is_monotonic_increasing
    for end, value in got.items():
        assert value == expected.get(end, 0)
    # inside the spike the arrivals of pdf are far above the rest
    spike = frame[(frame["time"] > pd.Timestamp(DEFAULT_START + 5400, unit="s", tz="UTC"))
                  & (frame["time"] <= pd.Timestamp(DEFAULT_START + 7200, unit="s", tz="UTC"))]
    assert spike["value"].mean() > 2 * frame["value"].median()

    failures = series.failure_rate(every="10m").frame(store)
    finished = [(t, e) for t, e, _ in history if e in ("processing_job_failed", "processing_job_completed")]
    first_end = failures["time"].iloc[3].value
    window = [e for t, e in finished if first_end - 600e9 < round(t * 1e9) <= first_end]
    assert failures["value"].iloc[3] == pytest.approx(window.count("processing_job_failed") / len(window))
    assert series.agent_errors("summary_agent_03").name == "agent_errors[summary_agent_03]"
    assert series.silent_jobs("pdf").window == "1h30m"


def test_a_hand_written_rule_reads_a_series_with_evidence() -> None:
    pdf = series.job_counts("pdf", every="5m")

    @rule(every="5m", window="2h", detects=("volume_spike",))
    def pdf_surge(job_events: pd.DataFrame, ctx: Any) -> Insight | None:
        value = pdf.value(ctx)
        if value >= 12:
            return Insight("pdf surge", f"{value:.0f} pdf arrivals in 5 minutes", key="pdf",
                           evidence=series.evidence(pdf, ctx, baseline=5.0, threshold=12))
        return None

    firings = backtest([pdf_surge], events())
    assert len(firings)
    evidence = firings["evidence"].iloc[0]
    assert evidence["series"] == "job_counts[pdf]" and evidence["threshold"] == 12 and evidence["baseline"] == 5
    assert len(evidence["series_time"]) == len(evidence["series_value"]) == 24
    assert evidence["series_value"][-1] >= 12 and evidence["series_time"][-1] == evidence["window_end"]


def test_a_river_rule_detects_the_spike_and_learns_afresh_in_every_engine() -> None:
    model = anomaly.GaussianScorer(window_size=36, grace_period=6)
    river_rule = from_river(model, series=series.job_counts("pdf"), threshold=0.99, grace=6,
                            detects=("volume_spike",))
    assert river_rule.name == "river_GaussianScorer_job_counts_pdf" and river_rule.every == pd.Timedelta("5m")
    first = backtest([river_rule], events())
    second = backtest([river_rule], events())
    assert signature(first) == signature(second)  # a shared, already-trained model would fire otherwise
    labels = [{"kind": "volume_spike", "start": pd.Timestamp(DEFAULT_START + s, unit="s", tz="UTC"),
               "end": pd.Timestamp(DEFAULT_START + s + 1800, unit="s", tz="UTC"),
               "entities": {"job_type": "pdf"}} for s in (5400, 9000)]
    scores = score(first, labels)
    assert scores["recall"].iloc[0] == 1.0 and scores["precision"].iloc[0] >= 0.5
    evidence = first["evidence"].iloc[0]
    assert evidence["score_threshold"] == 0.99 and evidence["anomaly_score"] >= 0.99
    assert len(evidence["series_value"]) == len(evidence["score"]) <= 24
    # without the anomaly it stays (almost) quiet
    assert len(backtest([river_rule], events(0.0))) <= 1

    hst = from_river(preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(n_trees=10, height=4, window_size=12, seed=3),
                     series=series.job_counts("pdf"), threshold=0.9, name="hst_pdf")
    assert signature(backtest([hst], events())) == signature(backtest([hst], events()))


def test_bad_adapter_arguments_are_named() -> None:
    with pytest.raises(RuleError, match="model must be a river anomaly detector"):
        from_river(object(), series=series.job_counts(), threshold=0.5)  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="series must be a Series"):
        from_river(anomaly.GaussianScorer(), series="job_counts", threshold=0.5)  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="threshold must be a number"):
        from_river(anomaly.GaussianScorer(), series=series.job_counts(), threshold="high")  # type: ignore[arg-type]
    with pytest.raises(RuleError, match="every must be longer than zero"):
        series.job_counts(every=0)
    with pytest.raises(RuleError, match="type must be a non-empty string"):
        series.job_counts(type=3)  # type: ignore[arg-type]


def test_backtest_and_a_live_engine_on_the_replay_server_fire_the_same(tmp_path: Path) -> None:
    recording = tmp_path / "spike.jsonl"
    write_scenario_recording(recording, scenario="volume_spike", hours=HOURS, seed=4, scenario_params=SHAPE)
    river_rule = gaussian_rule()
    replayed = backtest([river_rule], str(recording))
    assert len(replayed) >= 2
    loaded = EventStore.load(recording)

    server = ReplayServer(recording, speed=900, heartbeat=1.0, token="lab-replay-token").start_in_thread()
    client = AIOSClient(server.url, server.token, snapshots=False)
    client.start()
    try:
        # the live engine follows the stream's clock (store.now) once the stream has one
        client.wait_for(lambda s: s.counts["raw"] > 0, timeout=30)
        engine = RuleEngine(client.store, [river_rule], poll=0.05)
        engine.schedule_from(pd.Timestamp(DEFAULT_START, unit="s", tz="UTC"))
        engine.start()
        try:
            client.wait_for(lambda s: server.finished and s.counts["job_events"] == loaded.counts["job_events"],
                            timeout=120)
        finally:
            engine.stop()
        engine.run_due()  # the due instants up to the last event, if the thread had not reached them yet
    finally:
        client.stop()
        server.stop()
    assert engine.errors.empty
    assert signature(engine.firings) == signature(replayed)
    live = engine.firings["evidence"].tolist()
    assert [e["series_value"] for e in live] == [e["series_value"] for e in replayed["evidence"]]
