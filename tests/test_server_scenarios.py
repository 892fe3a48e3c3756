"""Scenarios: each anomaly is clearly there inside its labelled windows and absent outside them."""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from statistics import mean

import pytest

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.codec import parse_timestamp
from aios_notebook.server.scenarios import SCENARIOS, get_scenario, labels_document
from aios_notebook.server.workload import DEFAULT_START, generate

HOURS = 24.0
END = DEFAULT_START + HOURS * 3600


@cache
def run(scenario: str) -> tuple:
    return tuple(generate(11, scenario, HOURS))


def windows(scenario: str) -> list[tuple[float, float, dict]]:
    return [
        (parse_timestamp(lab["start"]).timestamp(), parse_timestamp(lab["end"]).timestamp(), lab["entities"])
        for lab in SCENARIOS[scenario].labels(DEFAULT_START, END)
    ]


def inside(t: float, spans: list[tuple[float, float, dict]], margin: float = 0.0) -> bool:
    return any(a <= t < b + margin for a, b, _ in spans)


def per_hour(times: list[float], spans: list[tuple[float, float, dict]], margin: float = 0.0) -> tuple[float, float]:
    """Rate per hour inside the windows, and outside them (ignoring ``margin`` after each window)."""
    hours_in = sum(b - a for a, b, _ in spans) / 3600
    hours_out = HOURS - hours_in - margin * len(spans) / 3600
    n_in = sum(1 for t in times if inside(t, spans))
    n_out = sum(1 for t in times if not inside(t, spans, margin))
    return n_in / hours_in, n_out / hours_out


def test_there_are_ten_documented_scenarios() -> None:
    assert list(SCENARIOS) == [
        "steady", "volume_spike", "success_rate_drop", "agent_outage", "slow_processing",
        "failure_burst", "stuck_jobs", "agent_errors", "knowledge_stall", "dag_step_failures",
    ]
    import aios_notebook.server.scenarios as module

    for name in SCENARIOS:
        assert name in module.__doc__
    with pytest.raises(ConfigurationError, match="unknown scenario 'nope'; choose one of steady"):
        get_scenario("nope")


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "steady"])
def test_labels_repeat_four_times_a_day_in_the_design_format(scenario: str) -> None:
    labels = SCENARIOS[scenario].labels(DEFAULT_START, END)
    assert len(labels) == 4
    for i, label in enumerate(labels):
        assert set(label) == {"id", "scenario", "kind", "start", "end", "entities", "description", "magnitude"}
        assert label["id"] == f"{scenario}-{i + 1}" and label["kind"] == scenario == label["scenario"]
        assert label["start"].endswith("Z") and label["end"].endswith("Z")
        start = parse_timestamp(label["start"]).timestamp()
        assert start == DEFAULT_START + (3 + 6 * i) * 3600
        assert 0.5 * 3600 <= parse_timestamp(label["end"]).timestamp() - start <= 1.5 * 3600
        assert set(label["entities"]) <= {"job_type", "agent_ids", "dag_id"}
    document = labels_document(scenario, 11, DEFAULT_START, END)
    assert json.loads(json.dumps(document)) == document
    assert document["labels"] == labels and document["seed"] == 11


def test_steady_has_no_labels_and_partial_windows_are_clipped() -> None:
    assert SCENARIOS["steady"].labels(DEFAULT_START, END) == []
    clipped = SCENARIOS["slow_processing"].labels(DEFAULT_START, DEFAULT_START + 4 * 3600)
    assert len(clipped) == 1 and clipped[0]["end"] == "2026-01-05T04:00:00.000Z"


def test_volume_spike_multiplies_pdf_arrivals() -> None:
    spans = windows("volume_spike")
    arrivals = [t for t, n, d in run("volume_spike") if n == "dag_run_status" and d["status"] == "queued"
                and d["dag_id"] == "pdf_processing"]
    rate_in, rate_out = per_hour(arrivals, spans)
    assert rate_in > 2.5 * rate_out


def _success(events: tuple, spans: list, margin: float) -> tuple[float, float]:
    counts = {True: [0, 0], False: [0, 0]}
    for t, n, _ in events:
        if n in ("processing_job_completed", "processing_job_failed"):
            where = inside(t, spans)
            if where or not inside(t, spans, margin):
                counts[where][n == "processing_job_completed"] += 1
    return tuple(c[1] / sum(c) for c in (counts[True], counts[False]))  # type: ignore[return-value]


def test_success_rate_drop_takes_success_from_about_97_to_about_70_percent() -> None:
    inside_rate, outside_rate = _success(run("success_rate_drop"), windows("success_rate_drop"), 1800)
    assert 0.6 < inside_rate < 0.8
    assert outside_rate > 0.94


def test_failure_burst_fails_most_jobs_for_half_an_hour() -> None:
    inside_rate, outside_rate = _success(run("failure_burst"), windows("failure_burst"), 1800)
    assert inside_rate < 0.35 and outside_rate > 0.94
    storage = [t for t, n, d in run("failure_burst") if n == "processing_job_failed" and "Storage" in d["error"]]
    # a step fails part-way, so the last failures land shortly after a window closes
    assert storage and all(inside(t, windows("failure_burst"), margin=300) for t in storage)


def test_agent_outage_takes_one_agent_offline_and_its_peer_does_the_work() -> None:
    spans = windows("agent_outage")
    assert [s[2]["agent_ids"] for s in spans] == [["context_mind_01"], ["digest_agent_02"]] * 2
    for start, end, entities in spans:
        agent = entities["agent_ids"][0]
        own = [(t, n, d) for t, n, d in run("agent_outage") if d.get("agent_id") == agent and start <= t <= end]
        assert own[0][1] == "agent_error" and own[0][2]["severity"] == "critical"
        assert own[1][1] == "agent_status_update" and own[1][2]["status"] == "offline"
        assert own[-1][1] == "agent_status_update" and own[-1][2]["status"] == "idle" and own[-1][0] == end
        assert len(own) == 3, "an offline agent does nothing"
    completions = [t for t, n, d in run("agent_outage") if n == "processing_job_completed"]
    rate_in, rate_out = per_hour(completions, spans)
    assert rate_in > 0.5 * rate_out, "the work goes on"
    offline = [t for t, n, d in run("steady") if n == "agent_status_update" and d["status"] == "offline"]
    assert offline == []


def test_slow_processing_triples_job_durations() -> None:
    spans = windows("slow_processing")
    started: dict[str, float] = {}
    durations = defaultdict(list)
    for t, n, d in run("slow_processing"):
        if n == "dag_run_status" and d["status"] == "queued":
            started[d["run_id"]] = t
        elif n == "processing_job_completed" and d["run_id"] in started:
            begun = started[d["run_id"]]
            if inside(begun, spans):
                durations["in"].append(t - begun)
            elif not inside(begun, spans, 3600):
                durations["out"].append(t - begun)
    assert mean(durations["in"]) > 2.5 * mean(durations["out"])


def test_stuck_jobs_go_silent_for_the_window_and_only_then() -> None:
    spans = windows("stuck_jobs")
    for scenario, expect_stuck in (("stuck_jobs", True), ("steady", False)):
        last: dict[str, tuple[float, str]] = {}
        silences = []
        for t, n, d in run(scenario):
            if n.startswith("processing_job_"):
                previous = last.get(d["job_id"])
                if previous and previous[1] == "processing":
                    silences.append((previous[0], t - previous[0], d["type"]))
                last[d["job_id"]] = (t, d["status"])
        long = [(t, gap, kind) for t, gap, kind in silences if gap > 15 * 60]
        if expect_stuck:
            assert len(long) > 20
            assert all(kind == "pdf" for _, _, kind in long)
            # each silence lies within a window (give or take the last report before it opened
            # and the resumption up to two minutes after it closed)
            assert all(any(a - 600 <= t and t + gap <= b + 300 for a, b, _ in spans) for t, gap, _ in long)
        else:
            assert long == []
            assert max(gap for _, gap, _ in silences) < 5 * 60


def test_agent_errors_come_from_one_agent_about_thirty_times_an_hour() -> None:
    spans = windows("agent_errors")
    errors = [t for t, n, d in run("agent_errors") if n == "agent_error" and d["agent_id"] == "summary_agent_03"]
    rate_in, rate_out = per_hour(errors, spans)
    assert 15 < rate_in < 45 and rate_out < 1
    others = [t for t, n, d in run("agent_errors") if n == "agent_error" and d["agent_id"] != "summary_agent_03"]
    assert per_hour(others, spans)[0] < 3


def test_knowledge_stall_stops_knowledge_while_jobs_complete() -> None:
    spans = windows("knowledge_stall")
    knowledge = [t for t, n, _ in run("knowledge_stall") if n.startswith("knowledge_item_")]
    completions = [t for t, n, _ in run("knowledge_stall") if n == "processing_job_completed"]
    assert not any(inside(t, spans) for t in knowledge)
    assert per_hour(completions, spans)[0] > 30
    assert per_hour(knowledge, spans)[1] > 30


def test_dag_step_failures_hit_one_dag_step_and_are_retried() -> None:
    spans = windows("dag_step_failures")
    retries = [t for t, n, d in run("dag_step_failures") if n == "step_status"
               and d["status"] == "up_for_retry" and d["dag_id"] == "audio_processing"]
    rate_in, rate_out = per_hour(retries, spans)
    assert rate_in > 5 and rate_in > 20 * max(rate_out, 0.1)
    other = [t for t, n, d in run("dag_step_failures") if n == "step_status" and d["status"] == "up_for_retry"
             and d["dag_id"] != "audio_processing"]
    other_in, other_out = per_hour(other, spans)
    assert other_in < 2 * other_out + 2, "the other DAGs keep their normal rare retries"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "steady"])
def test_before_the_first_window_a_scenario_is_steady(scenario: str) -> None:
    first = windows(scenario)[0][0]
    steady = [e for e in run("steady") if e[0] < first]
    mine = [e for e in run(scenario) if e[0] < first]
    # same seed and no anomaly yet: the same jobs arrive (the random streams only part ways later)
    def arrivals(evs: list) -> list:
        return [d["run_id"] for _, n, d in evs if n == "dag_run_status" and d["status"] == "queued"]

    assert arrivals(mine)[:50] == arrivals(steady)[:50]
