"""The lenient decoder, the encoder and timestamps (no I/O)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from aios_notebook.protocol import SERVER_EVENTS, SUBSCRIPTION_TYPES, decode, encode
from aios_notebook.protocol.codec import format_timestamp, parse_timestamp
from aios_notebook.protocol.models import PUBLISHED_SERVER_EVENTS, TYPE_OF_EVENT
from aios_notebook.store import EventStore
from aios_notebook.testing import PUBLISHED_EXAMPLES as PUBLISHED


def test_models_cover_the_published_document() -> None:
    assert set(PUBLISHED) == set(PUBLISHED_SERVER_EVENTS)
    assert len(PUBLISHED_SERVER_EVENTS) == 17
    for spec_name, data in PUBLISHED.items():
        assert set(data) <= set(SERVER_EVENTS[spec_name].fields), spec_name
    assert {e for events in SUBSCRIPTION_TYPES.values() for e in events} == set(TYPE_OF_EVENT)


@pytest.mark.parametrize("event", sorted(PUBLISHED))
def test_published_examples_decode_cleanly(event: str) -> None:
    decoded = decode(encode(event, PUBLISHED[event]))
    assert decoded.ok, decoded.describe()
    assert decoded.message is not None
    assert decoded.message.event == event
    assert decoded.message.data == PUBLISHED[event]


def test_seq_round_trips() -> None:
    decoded = decode(encode("ping", {"timestamp": "2023-01-01T00:00:00Z"}, seq=42))
    assert decoded.message is not None and decoded.message.seq == 42


@pytest.mark.parametrize(
    ("frame", "kind", "usable"),
    [
        ("not json at all", "not_json", False),
        ("[1, 2]", "not_object", False),
        ('"text"', "not_object", False),
        ('{"data": {}}', "missing_event", False),
        ('{"event": 5, "data": {}}', "missing_event", False),
        ('{"event": "mystery", "data": {}}', "unknown_event", True),
        ('{"event": "ping"}', "bad_data", True),
        ('{"event": "ping", "data": null}', "bad_data", True),
        ('{"event": "ping", "data": [1]}', "bad_data", True),
        ('{"event": "ping", "data": {}, "seq": "7"}', "bad_seq", True),
        ('{"event": "ping", "data": {}, "seq": 9223372036854775808}', "bad_seq", True),  # beyond int64
        ('{"event": "ping", "data": {}, "seq": ' + "9" * 100 + "}", "bad_seq", True),
        ('{"event": "ping", "data": {}, "seq": -1}', "bad_seq", True),  # a seq counts up from 0
        ('{"event": "processing_job_status", "data": {"job_id": "j", "status": "x", "progress": 1' + "0" * 400 + "}}",
         "field_type", True),  # beyond a float's range: it raised OverflowError
        ('{"event": "ping", "data": {"timestamp": 1' + "0" * 400 + "}}", "field_type", True),  # so did this
        ('{"event": "dag_run_status", "run_id": "r1", "data": {"status": "running"}}', "extra_keys", True),
        ('{"event": "processing_job_status", "data": {"job_id": "j", "status": "x", "progress": "half"}}', "field_type", True),
        ('{"event": "processing_job_status", "data": {"status": "x"}}', "missing_field", True),
        (b'{"event": "ping", "data": {}}', "binary_frame", True),
        (b"\xff\xfe\x00", "binary_frame", False),
        ('{"event": "ping", "data": {"timestamp": "yesterday"}}', "field_type", True),
        ("[" * 100_000, "not_json", False),
    ],
)
def test_malformed_frames_are_described_never_raised(frame: str | bytes, kind: str, usable: bool) -> None:
    decoded = decode(frame)
    assert kind in {p.kind for p in decoded.problems}, decoded.problems
    assert (decoded.message is not None) is usable
    assert decoded.describe()


def test_fields_beside_data_are_folded_in() -> None:
    decoded = decode('{"event": "dag_run_status", "run_id": "r1", "timestamp": 5, "data": {"status": "running", "timestamp": "2023-01-01T00:00:00Z"}}')
    assert decoded.message is not None
    assert decoded.message.data["run_id"] == "r1"
    # data wins over the copy beside it
    assert decoded.message.data["timestamp"] == "2023-01-01T00:00:00Z"
    assert decoded.message.extra == {"run_id": "r1", "timestamp": 5}


def test_client_messages_are_known_to_the_server_side() -> None:
    assert decode('{"event": "auth", "data": {"token": "t"}}', sender="client").ok
    assert not decode('{"event": "processing_job_status", "data": {}}', sender="client").ok


@pytest.mark.parametrize(
    "value",
    ["2023-01-01T00:00:00Z", "2023-01-01T00:00:00+00:00", "2023-01-01T01:00:00+01:00",
     "2023-01-01T00:00:00", 1672531200, 1672531200.0, 1672531200000],
)
def test_timestamps_in_every_accepted_form(value: object) -> None:
    assert parse_timestamp(value) == datetime(2023, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("value", [None, True, "", "soon", float("nan"), [], {}])
def test_unreadable_timestamps_are_none(value: object) -> None:
    assert parse_timestamp(value) is None


def test_format_timestamp_is_utc_with_z() -> None:
    assert format_timestamp(datetime(2023, 1, 1, 1, 0, tzinfo=timezone.utc)) == "2023-01-01T01:00:00.000Z"
    assert format_timestamp(1672531200.5) == "2023-01-01T00:00:00.500Z"
    assert parse_timestamp(format_timestamp(1672531200.25)).timestamp() == 1672531200.25


def test_encode_is_compact_json() -> None:
    text = encode("subscribe", {"types": ("agents",)})
    assert json.loads(text) == {"event": "subscribe", "data": {"types": ["agents"]}}
    assert " " not in text


def test_protocol_imports_no_heavy_modules() -> None:
    code = (
        "import sys, aios_notebook.protocol, aios_notebook;"
        "heavy = [m for m in ('pandas', 'websockets', 'aiohttp', 'ipywidgets', 'plotly', 'asyncio') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_seq_beyond_int64_never_reaches_the_store() -> None:
    """It once raised OverflowError out of ingest_frame, whichever path parsed it."""
    frame = '{"event":"ping","data":{},"seq":' + str(2**63) + "}"
    decoded = decode(frame)
    assert decoded.message is not None and decoded.message.seq is None
    assert "out of range" in decoded.describe()
    for fast_path in (True, False):
        store = EventStore(background=False, fast_path=fast_path)
        store.ingest_frame(frame)
        assert store.raw["seq"].isna().all() and "out of range" in store.errors["message"].iloc[0]


def test_a_negative_seq_is_no_seq_in_every_table() -> None:
    """The raw table showed it as missing while job_events kept -5 (and the session took it)."""
    frame = ('{"event":"processing_job_status","data":{"job_id":"j1","status":"processing",'
             '"timestamp":"2026-01-05T00:00:02Z"},"seq":-5}')
    decoded = decode(frame)
    assert decoded.message is not None and decoded.message.seq is None
    assert "seq -5 is negative" in decoded.describe()
    for fast_path in (True, False):
        store = EventStore(background=False, fast_path=fast_path)
        store.ingest([frame, frame.replace('"seq":-5', '"seq":0')])
        assert store.raw["seq"].isna().tolist() == [True, False]
        assert store.job_events["seq"].isna().tolist() == [True, False]
        assert store.jobs["seq"].tolist() == [0]
        assert store.errors["message"].tolist() == ["processing_job_status: seq -5 is negative (a seq counts up from 0)"]
