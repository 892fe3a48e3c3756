"""The offline workload: valid events, determinism per seed, invariants over 10 simulated hours."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from functools import cache

import pytest

from aios_notebook.exceptions import ConfigurationError
from aios_notebook.protocol.codec import decode, encode, format_timestamp, parse_timestamp
from aios_notebook.protocol.models import SERVER_EVENTS, STREAM_EVENTS, SUBSCRIPTION_TYPES
from aios_notebook.server.content import clean_filename
from aios_notebook.server.scenarios import SCENARIOS
from aios_notebook.server.workload import DEFAULT_START, Workload, generate

RUN_ID = re.compile(r"^manual__\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")


@cache
def events(seed: int = 7, scenario: str = "steady", hours: float = 10.0) -> tuple:
    return tuple(generate(seed, scenario, hours))


def test_every_event_is_a_clean_protocol_message() -> None:
    for scenario in SCENARIOS:
        # all of steady; of the others, the hour of their first anomaly window (3 h to 4 h in)
        chosen = events() if scenario == "steady" else [
            e for e in events(7, scenario, 4.0) if e[0] >= DEFAULT_START + 3 * 3600
        ]
        for t, name, data in chosen:
            decoded = decode(encode(name, data, seq=1))
            assert decoded.ok, (scenario, name, decoded.describe())
            assert name in STREAM_EVENTS
            stamp = parse_timestamp(data["timestamp"])
            assert stamp is not None and abs(stamp.timestamp() - t) < 0.001
            assert data["timestamp"] == format_timestamp(t)


def test_the_events_of_the_published_examples_all_occur_with_their_fields() -> None:
    seen = {}
    for _, name, data in events():
        seen.setdefault(name, data)
    stream = {e for kind in SUBSCRIPTION_TYPES.values() for e in kind} | {"error"}
    assert stream <= set(seen), stream - set(seen)
    for name, data in seen.items():
        spec = SERVER_EVENTS[name]
        # every field the published document shows is present (nulls only where the state has none)
        assert set(spec.fields) <= set(data), (name, set(spec.fields) - set(data))


def test_same_seed_same_events_other_seed_other_events() -> None:
    first = list(generate(3, "success_rate_drop", 4))
    again = list(generate(3, "success_rate_drop", 4))
    other = list(generate(4, "success_rate_drop", 4))
    assert first == again
    assert first != other
    # the start moves every timestamp but not the shape of the run
    moved = list(generate(3, "success_rate_drop", 4, start=DEFAULT_START + 86_400 * 7))
    assert [e[1] for e in moved[:50]] == [e[1] for e in first[:50]]


def test_events_come_in_time_order() -> None:
    times = [t for t, _, _ in events()]
    assert times == sorted(times)
    assert times[0] == DEFAULT_START
    assert times[-1] <= DEFAULT_START + 10 * 3600


def test_jobs_report_status_before_they_finish_and_progress_never_goes_down() -> None:
    progress: dict[str, float] = {}
    run_of: dict[str, str] = {}
    status_seen: set[str] = set()
    failed_final: set[str] = set()
    can_retry: dict[str, bool] = {}
    finished = Counter()
    for _, name, data in events():
        if not name.startswith("processing_job_"):
            continue
        job = data["job_id"]
        assert job not in failed_final, f"{job} came back after a final failure"
        assert run_of.setdefault(job, data["run_id"]) == data["run_id"], "a job keeps its one run"
        if name == "processing_job_status":
            status_seen.add(job)
            assert data["progress"] >= progress.get(job, 0), f"{job} progress went down"
            assert 0 <= data["progress"] < 100
            progress[job] = data["progress"]
            assert data["status"] in ("queued", "processing")
            assert parse_timestamp(data["estimated_completion"]) >= parse_timestamp(data["timestamp"])
        else:
            assert job in status_seen, f"{name} for {job} without an earlier status"
            finished[name] += 1
            if name == "processing_job_completed":
                assert data["progress"] == 100 and data["status"] == "completed"
                failed_final.add(job)  # nothing may follow a completion either
            else:
                assert data["status"] == "failed" and data["error"]
                can_retry[job] = data["can_retry"]
                if not data["can_retry"]:
                    failed_final.add(job)
    assert finished["processing_job_completed"] > 500
    assert finished["processing_job_failed"] > 5
    assert len(set(run_of.values())) == len(run_of), "one DAG run per job"
    assert all(RUN_ID.match(run) for run in run_of.values())


def test_failures_come_with_a_processing_error_and_retries_come_back() -> None:
    pending_error: set[str] = set()
    retryable: set[str] = set()
    returned: set[str] = set()
    for _, name, data in events():
        if name == "processing_job_failed":
            pending_error.add(data["job_id"])
            if data["can_retry"]:
                retryable.add(data["job_id"])
        elif name == "error":
            assert data["code"] == "processing_error"
            pending_error.discard(data["details"]["job_id"])
            assert isinstance(data["details"]["retry_available"], bool)
        elif name == "processing_job_status" and data["job_id"] in retryable:
            returned.add(data["job_id"])
    assert not pending_error
    assert returned, "retryable failures come back"


def test_dag_runs_add_up_and_steps_move_through_valid_states() -> None:
    steps: dict[tuple[str, str], str] = {}
    runs: dict[str, str] = {}
    allowed = {
        None: {"running"},
        "pending": {"running"},
        "running": {"success", "failed", "up_for_retry"},
        "up_for_retry": {"running"},
        "failed": {"running"},
    }
    for _, name, data in events():
        if name == "dag_run_progress":
            parts = ("completed_steps", "running_steps", "failed_steps", "pending_steps")
            assert sum(data[p] for p in parts) == data["total_steps"]
            assert data["completion_percentage"] == round(100 * data["completed_steps"] / data["total_steps"], 1)
            assert data["running_steps"] <= 1
        elif name == "step_status":
            key = (data["run_id"], data["step_id"])
            assert data["status"] in allowed[steps.get(key)], (key, steps.get(key), data["status"])
            steps[key] = data["status"]
            if data["status"] == "running":
                assert data["end_time"] is None and data["duration"] is None
            else:
                start, end = parse_timestamp(data["start_time"]), parse_timestamp(data["end_time"])
                assert data["duration"] == pytest.approx((end - start).total_seconds() * 1000)
                assert (data["error"] is None) == (data["status"] == "success")
        elif name == "dag_run_status":
            assert data["status"] in ("queued", "running", "success", "failed")
            runs[data["run_id"]] = data["status"]
    assert "success" in runs.values() and "failed" in runs.values()


def test_agents_follow_their_work() -> None:
    completed = Counter()
    jobs_seen: set[str] = set()
    for _, name, data in events():
        if name == "processing_job_status":
            jobs_seen.add(data["job_id"])
        elif name == "agent_task_completed":
            assert data["job_id"] in jobs_seen
            completed[data["agent_id"]] += 1
            assert data["duration"] > 0
            assert 0 < data["result"]["confidence"] <= 1
        elif name == "agent_status_update":
            perf = data["performance"]
            assert perf["tasks_completed"] == completed[data["agent_id"]]
            assert 0 <= perf["success_rate"] <= 100
            assert data["status"] in ("idle", "working", "offline")
            assert (data["current_task"] is None) == (data["status"] != "working")
        elif name == "agent_error":
            assert data["severity"] in ("warning", "error", "critical")
            assert isinstance(data["affected_jobs"], list)
    names = {data["name"] for _, name, data in events() if name == "agent_status_update"}
    assert {"Content Mind", "Context Mind", "Digest", "Summary", "Web Fetcher"} <= names
    assert len(completed) == 8


def test_dashboard_metrics_every_30_seconds_from_the_simulated_state() -> None:
    finished = 0
    created = 0
    last = None
    times = []
    for t, name, data in events():
        if name in ("processing_job_completed", "processing_job_failed"):
            finished += 1
        elif name == "knowledge_item_created":
            created += 1
        elif name == "dashboard_metrics_update":
            times.append(t)
            assert data["total_processed"] == finished
            assert data["knowledge_items"] == created
            assert 0 <= data["success_rate"] <= 100 and data["processing_time"] >= 0
            assert set(data["changes"]) == {"total_processed", "processing_time", "success_rate",
                                             "active_agents", "knowledge_items"}
            assert all(re.match(r"^[+-]\d+(\.\d+)?$", v) for v in data["changes"].values())
            if last is not None:
                delta = data["total_processed"] - last["total_processed"]
                assert data["changes"]["total_processed"] == f"{delta:+d}"
            last = data
    assert [b - a for a, b in itertools.pairwise(times)] == [30.0] * (len(times) - 1)
    assert len(times) == 10 * 120


def test_knowledge_updates_refer_to_created_items_and_insights_come_from_the_server() -> None:
    items: set[str] = set()
    kinds = Counter()
    for _, name, data in events():
        if name == "knowledge_item_created":
            items.add(data["item_id"])
            assert data["tags"] and data["source_job"].startswith("job-")
        elif name == "knowledge_item_updated":
            assert data["item_id"] in items and data["updated_fields"]
        elif name == "insight_generated":
            kinds[data["type"]] += 1
            assert 0 < data["confidence"] <= 1 and data["metadata"]["metric"]
    assert kinds["summary"] == 1 and kinds["trend"] == 9 and kinds["pattern"] >= 3
    assert kinds["anomaly"] == 0, "steady has no anomalies"


def test_a_long_steady_run_never_trips_the_servers_anomaly_checks() -> None:
    for seed in (1, 2):
        anomalies = [d["title"] for _, n, d in generate(seed, "steady", 36) if n == "insight_generated"
                     and d["type"] == "anomaly"]
        assert anomalies == []


def test_uploads_start_jobs_at_the_current_simulated_time() -> None:
    workload = Workload(seed=1)
    workload.advance(DEFAULT_START + 600)
    job = workload.submit("pdf", "../../etc/passwd\nx.pdf")
    first = workload.flush()
    assert [name for _, name, _ in first] == ["processing_job_status", "dag_run_status", "dag_run_progress"]
    assert first[0][2]["filename"] == "passwdx.pdf"
    assert job.source == "upload" and workload.run(job.run_id) is job
    later = workload.advance(DEFAULT_START + 3600)
    done = [d for _, n, d in later if n == "processing_job_completed" and d["job_id"] == job.job_id]
    failed = [d for _, n, d in later if n == "processing_job_failed" and d["job_id"] == job.job_id]
    assert done or failed
    with pytest.raises(ValueError, match="unknown job type"):
        workload.submit("video", "x.mp4")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("../../etc/passwd", "passwd"), ("C:\\Users\\a\\report.pdf", "report.pdf"), ("..", "upload"),
     ("a\x00b\r\n.pdf", "ab.pdf"), ("x" * 500, "x" * 200)],
)
def test_client_filenames_are_display_strings_only(name: str, expected: str) -> None:
    assert clean_filename(name) == expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_stream_event_comes_within_two_simulated_hours_even_on_a_quiet_night(seed: int) -> None:
    saturday_2am = DEFAULT_START + 5 * 86_400 + 2 * 3600  # the quietest hour of the week
    seen = {name for _, name, _ in generate(seed, "steady", 2.0, start=saturday_2am)}
    assert seen == set(STREAM_EVENTS)


def test_first_id_moves_job_and_item_numbers_and_nothing_else() -> None:
    plain = list(generate(seed=5, hours=2.0))
    moved = list(generate(seed=5, hours=2.0, first_id=3_000_000))
    assert len(plain) == len(moved)
    ids = re.compile(r'"(?:job|kb-item)-(\d+)"')
    shifted = 0
    for (t1, e1, d1), (t2, e2, d2) in zip(plain, moved, strict=True):
        assert (t1, e1) == (t2, e2)
        a, b = encode(e1, d1), encode(e2, d2)
        numbers_a, numbers_b = ids.findall(a), ids.findall(b)
        assert [int(n) + 3_000_000 for n in numbers_a] == [int(n) for n in numbers_b]
        assert ids.sub('"#"', a) == ids.sub('"#"', b)
        shifted += len(numbers_a)
    assert shifted > 100
    with pytest.raises(ConfigurationError, match="first_id"):
        Workload(first_id=-1)
