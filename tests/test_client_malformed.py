"""Servers in the wild (PROTOCOL_NOTES.md): every odd frame is kept, described, counted; the stream goes on."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from faulty_server import FAST_CLIENT, FaultyServer, stream_seqs

from aios_notebook.client import AIOSClient

pytestmark = pytest.mark.timeout(60)

JOB = {"job_id": "job-x", "run_id": "run-x", "type": "pdf", "status": "processing", "progress": 10}

#: (what, frame, shows as a problem in the errors table)
ODD_FRAMES: list[tuple[str, str | bytes, bool]] = [
    ("unknown event", json.dumps({"event": "quantum_flux", "data": {"level": 3}, "seq": 9001}), True),
    ("data missing", json.dumps({"event": "agent_status_update", "seq": 9002}), True),
    ("data null", json.dumps({"event": "agent_status_update", "data": None, "seq": 9003}), True),
    ("data a list", json.dumps({"event": "processing_job_status", "data": [1, 2], "seq": 9004}), True),
    ("data a string", json.dumps({"event": "processing_job_status", "data": "oops"}), True),
    ("keys beside data", json.dumps({"event": "processing_job_status", "data": {**JOB, "job_id": "job-beside"},
                                     "run_id": "run-x", "message": "hi", "seq": 9005}), True),
    ("keys instead of data", json.dumps({"event": "dag_run_status", "run_id": "run-instead", "status": "running",
                                         "timestamp": "2024-05-01T10:00:00Z", "seq": 9006}), True),
    ("wrong field type", json.dumps({"event": "processing_job_status",
                                     "data": {**JOB, "job_id": "job-typed", "progress": "fifty"}, "seq": 9007}), True),
    ("seq not an int", json.dumps({"event": "processing_job_status", "data": {**JOB, "job_id": "job-seq"},
                                   "seq": "9008"}), True),
    ("not JSON", "Internal Server Error", True),
    ("JSON but not an object", "[1, 2, 3]", True),
    ("a bare number", "42", True),
    ("no event name", json.dumps({"data": {"x": 1}}), True),
    ("binary frame", b"\x00\x01\xffbinary", True),
    ("binary JSON", json.dumps({"event": "processing_job_status", "data": {**JOB, "job_id": "job-bin"}}).encode(), True),
    ("numeric timestamp", json.dumps({"event": "processing_job_status",
                                      "data": {**JOB, "job_id": "job-epoch", "timestamp": 1714557600}, "seq": 9010}),
     False),
    ("ISO timestamp without zone", json.dumps({"event": "processing_job_status",
                                               "data": {**JOB, "job_id": "job-naive",
                                                        "timestamp": "2024-05-01T10:00:00"}, "seq": 9011}), False),
]


def test_every_odd_frame_is_kept_described_counted_and_the_stream_goes_on() -> None:
    with FaultyServer() as server:
        client = AIOSClient(server.url, server.token, **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            server.wait_until(lambda: server.messages("subscribe"))
            valid = [server.emit("processing_job_status", {**JOB, "job_id": "job-first"})]
            for _, frame, _ in ODD_FRAMES:
                server.send_raw(frame)
                valid.append(server.emit("agent_status_update", {"agent_id": f"a{len(valid)}", "status": "idle"}))
            client.wait_for(lambda s: set(valid) <= set(stream_seqs(s)), timeout=10)
            store, stats = client.store, client.stats

            assert len(server.connections) == 1 and client.state == "connected"
            problems = sum(1 for _, _, bad in ODD_FRAMES if bad)
            assert stats.malformed == problems
            # every frame that came is in the raw table (connected, authenticated, events, odd ones)
            assert len(store.raw) == stats.frames_received
            raw_texts = set(store.raw["text"])
            for what, frame, _ in ODD_FRAMES:
                text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
                assert text in raw_texts, what
            described = store.errors[store.errors["kind"].isin(["malformed", "field_type"])]
            assert len(described) >= problems
            # usable parts were still taken
            jobs = set(store.jobs["job_id"])
            assert {"job-first", "job-beside", "job-typed", "job-seq", "job-bin", "job-epoch", "job-naive"} <= jobs
            assert "run-instead" in set(store.dag_runs["run_id"])
            events = store.job_events.set_index("job_id")
            assert events.loc["job-epoch", "timestamp"] == pd.Timestamp(1714557600, unit="s", tz="UTC")
            assert events.loc["job-naive", "timestamp"] == pd.Timestamp("2024-05-01T10:00:00Z")
        finally:
            client.stop()


def test_a_server_that_ignores_auth_and_subscribe_and_sends_what_it_likes() -> None:
    with FaultyServer(ignore_client=True, send_connected=False, capabilities=()) as server:
        client = AIOSClient(server.url, server.token, types=["agents"], **FAST_CLIENT).start()
        try:
            assert client.wait_connected(5)  # nothing ever answers: accepted after the grace period
            seqs = [server.emit("processing_job_status", {**JOB, "job_id": f"j{n}"}) for n in range(5)]
            server.send_raw("hello from a proxy")
            # the odd frame comes after the events: wait for both (under load it was counted just after)
            client.wait_for(lambda s: set(seqs) <= set(stream_seqs(s)) and client.stats.malformed >= 1, timeout=10)
            assert client.state == "connected" and client.stats.malformed == 1
            assert [m.event for m in server.messages()] == ["auth", "subscribe"]
        finally:
            client.stop()


def test_a_frame_over_one_mebibyte_is_accepted_up_to_max_size() -> None:
    with FaultyServer(max_size=None) as server:
        client = AIOSClient(server.url, server.token, **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            server.wait_until(lambda: server.messages("subscribe"))
            summary = "x" * (3 * 2**20)
            seq = server.emit("processing_job_completed", {**JOB, "job_id": "big", "status": "completed",
                                                           "progress": 100, "result": {"summary": summary}})
            client.wait_for(lambda s: seq in stream_seqs(s), timeout=20)
            assert client.store.jobs.set_index("job_id").loc["big", "summary"] == summary
            assert client.stats.bytes_received > 3 * 2**20
        finally:
            client.stop()


def test_a_frame_over_max_size_costs_a_reconnect_and_a_gap_not_the_stream() -> None:
    with FaultyServer(max_size=None) as server:
        client = AIOSClient(server.url, server.token, max_size=64 * 1024, **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            server.wait_until(lambda: server.messages("subscribe"))
            before = server.emit("processing_job_status", {**JOB, "job_id": "before"})
            client.wait_for(lambda s: before in stream_seqs(s), timeout=10)
            server.emit("processing_job_completed", {**JOB, "job_id": "huge", "status": "completed",
                                                     "result": {"summary": "y" * 100_000}})
            server.wait_until(lambda: len(server.messages("subscribe")) == 2, timeout=10)
            later = server.emit("processing_job_status", {**JOB, "job_id": "later"})
            client.wait_for(lambda s: later in stream_seqs(s), timeout=10)
            # a resync would replay the same frame and fail again, forever: it is skipped once, and
            # the missed range is a gap
            assert server.messages("resync") == []
            assert len(server.connections) == 2
            gaps = client.store.gaps
            assert len(gaps) == 1 and "max_size" in gaps["reason"].iloc[0]
            assert client.store.errors["message"].str.contains("closed with 1009").any()
            assert "huge" not in set(client.store.jobs["job_id"])
        finally:
            client.stop()
