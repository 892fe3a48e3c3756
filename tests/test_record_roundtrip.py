"""Record -> load gives the tables live ingestion built: the reference server, a real client, real files."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from faulty_server import FAST_CLIENT, CuttableProxy, FaultyServer
from store_samples import ODD_FRAMES

from aios_notebook.client import AIOSClient
from aios_notebook.exceptions import AIOSWarning, CorruptLog
from aios_notebook.protocol.codec import encode
from aios_notebook.recording import RecordingWriter
from aios_notebook.recording import reader as reader_module
from aios_notebook.server import Simulator
from aios_notebook.server.workload import generate
from aios_notebook.store import EventStore, bulk
from aios_notebook.store.load import load_into
from aios_notebook.store.schema import TABLES

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader's columnar path on every chunk, however small the recording: the path of
    large recordings (the line path is compared with it below)."""
    monkeypatch.setattr(reader_module, "_MIN_COLUMNS", 0)

# rows the client writes about the socket itself: not frames, so not in a recording
CONNECTION_ROWS = ("connection_error", "reconnect", "auth_failed")


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    sim = Simulator(speed=900, heartbeat=0.5, seed=11, scenario="failure_burst").start_in_thread()
    yield sim
    sim.stop()


def _record(url: str, token: str, path: Path, jobs: int, until: Callable[[], bool] = lambda: True,
            **options) -> AIOSClient:
    # REST snapshots are not frames: the comparison is with the store the frames built
    client = AIOSClient(url, token, snapshots=False, reconnect_delay=0.05, max_reconnect_delay=0.3,
                        healthy_after=0.2)
    recorder = client.record(path, **options)
    client.start()
    try:
        client.wait_for(lambda store: len(store.jobs) >= jobs and until(), timeout=60)
    finally:
        client.stop()
        recorder.stop()
    assert recorder.events == client.stats.frames_received
    return client


def _assert_same_tables(live: EventStore, loaded: EventStore) -> None:
    for name in TABLES:
        expected, got = live.table(name), loaded.table(name)
        if name == "errors":
            # the client's own rows about the socket are not frames; gap rows are dated when added
            own = expected["kind"].isin(CONNECTION_ROWS) & expected["event"].isna()  # not from a frame
            expected = expected[~own].drop(columns="received_at")
            got = got.drop(columns="received_at")
            expected, got = expected.reset_index(drop=True), got.reset_index(drop=True)
            # the connection rows left their categories behind in the live table
            pd.testing.assert_frame_equal(got, expected, obj=name, check_categorical=False)
            continue
        pd.testing.assert_frame_equal(got, expected, obj=name)
    assert loaded.now == live.now


def _connected(client_id: str) -> str:
    return encode("connected", {"client_id": client_id, "server_time": "2026-01-05T00:00:00Z",
                                "capabilities": ["seq", "resync"], "heartbeat_interval": 30})


@pytest.mark.parametrize("way", ["columns", "lines"])
@pytest.mark.parametrize("shape", ["one connection", "duplicates", "a reconnect with a replayed overlap", "odd frames"])
@pytest.mark.usefixtures("store_engine")
def test_the_bulk_load_builds_what_the_session_path_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           way: str, shape: str) -> None:
    monkeypatch.setattr(reader_module, "_MIN_COLUMNS", 0 if way == "columns" else 1 << 62)
    history = list(generate(seed=5, hours=3))
    frames = [(moment, encode(event, data, seq)) for seq, (moment, event, data) in enumerate(history, 1)]
    frames.insert(0, (frames[0][0], _connected("a")))
    cut = len(frames) // 2
    if shape == "duplicates":  # events sent twice on one connection: the session drops the copies
        frames[cut:cut] = frames[cut - 40 : cut]
    elif shape == "odd frames":  # malformed, mistyped, binary, deeply nested... among thousands
        frames[cut:cut] = [(frames[cut][0], odd) for odd in ODD_FRAMES]
    elif shape != "one connection":  # the socket reopened and the server replayed from an older seq
        frames[cut:cut] = [(frames[cut][0], _connected("b")), *frames[cut - 40 : cut]]
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path, flush_interval=None) as writer:
        for moment, frame in frames:
            writer.write(frame, moment)
    loaded = EventStore.load(path)
    reference = load_into(EventStore(background=False), path)  # every frame through the session
    assert loaded.frames == reference.frames and len(frames) - 40 <= loaded.frames <= len(frames)
    if shape == "duplicates":
        assert loaded.frames == len(frames) - 40
    assert bulk.fast_frames(loaded) > len(frames) * 0.9
    _assert_same_tables(reference, loaded)
    # the loader reads and parses ahead on threads: none is left running, even after a restart
    assert not [t for t in threading.enumerate() if t.name == "aios-load-reader"]


def test_a_damaged_line_deep_in_a_large_recording_stops_the_load_and_its_threads(tmp_path: Path) -> None:
    history = list(generate(seed=6, hours=2))
    path = tmp_path / "rec.jsonl"
    with RecordingWriter(path, flush_interval=None) as writer:
        for seq, (moment, event, data) in enumerate(history, 1):
            writer.write(encode(event, data, seq), moment)
    lines = path.read_text().splitlines(keepends=True)
    damaged = len(lines) * 3 // 4
    lines[damaged] = lines[damaged][:40] + "\n"  # a torn line, three quarters in
    path.write_text("".join(lines))
    with pytest.raises(CorruptLog) as info:
        EventStore.load(path)
    assert info.value.line == damaged + 1 and info.value.path == str(path)
    assert not [t for t in threading.enumerate() if t.name == "aios-load-reader"]
    with pytest.warns(AIOSWarning, match=f"rec.jsonl:{damaged + 1}: not JSON"):
        kept = EventStore.load(path, on_error="skip")
    assert kept.frames == len(lines) - 2  # every frame line but the damaged one (and the header)


def test_a_recording_loads_into_exactly_the_tables_live_ingestion_built(simulator: Simulator, tmp_path: Path) -> None:
    client = _record(simulator.url, simulator.token, tmp_path / "rec.jsonl", jobs=40)
    loaded = EventStore.load(tmp_path / "rec.jsonl")
    assert loaded.frames == client.store.frames > 1000
    _assert_same_tables(client.store, loaded)
    assert all(len(loaded.table(name)) for name in ("jobs", "job_events", "agents", "dag_steps", "metrics"))


def test_gzip_and_rotated_parts_load_like_one_file(simulator: Simulator, tmp_path: Path) -> None:
    # a gzip part grows when the compressor emits, mostly at flushes: record until it has rotated twice
    client = _record(simulator.url, simulator.token, tmp_path / "rec.jsonl.gz", jobs=50, rotate_bytes=6_000,
                     flush_interval=0.1, until=lambda: len(list(tmp_path.glob("rec*.jsonl.gz"))) > 2)
    parts = sorted(tmp_path.glob("rec*.jsonl.gz"))
    assert len(parts) > 2
    _assert_same_tables(client.store, EventStore.load(str(tmp_path / "rec*.jsonl.gz")))


def test_a_recording_with_reconnects_and_resyncs_loads_like_live(simulator: Simulator, tmp_path: Path) -> None:
    with CuttableProxy(simulator.port) as proxy:
        client = AIOSClient(proxy.url(), simulator.token, snapshots=False, reconnect_delay=0.05,
                            max_reconnect_delay=0.3, healthy_after=0.2)
        recorder = client.record(tmp_path / "rec.jsonl")
        client.start()
        try:
            for cut in range(3):
                client.wait_for(lambda store, n=cut: client.stats.connections == n + 1
                                and len(store.jobs) >= 10 * (n + 1), timeout=60)
                proxy.cut(0.2)  # the client reconnects and resyncs: replayed events may overlap
            client.wait_for(lambda store: client.stats.connections == 4 and len(store.jobs) >= 40, timeout=60)
        finally:
            client.stop()
            recorder.stop()
    assert client.stats.reconnects == 3 and client.stats.resyncs >= 1
    loaded = EventStore.load(tmp_path / "rec.jsonl")
    _assert_same_tables(client.store, loaded)
    seqs = loaded.job_events["seq"].dropna()
    assert seqs.is_unique  # the resync overlaps were dropped, as live


def test_a_loaded_store_round_trips_through_parquet_with_its_dtypes(simulator: Simulator, tmp_path: Path) -> None:
    _record(simulator.url, simulator.token, tmp_path / "rec.jsonl", jobs=15)
    loaded = EventStore.load(tmp_path / "rec.jsonl")
    loaded.to_parquet(tmp_path / "tables")
    again = EventStore.from_parquet(tmp_path / "tables")
    for name in TABLES:
        before, after = loaded.table(name), again.table(name)
        assert before.dtypes.map(str).tolist() == after.dtypes.map(str).tolist(), name
        pd.testing.assert_frame_equal(after, before, obj=name, check_categorical=False)
    assert str(loaded.jobs["started_at"].dtype) == "datetime64[ns, UTC]"
    assert again.now == loaded.now


@pytest.mark.usefixtures("store_engine")
def test_duplicates_malformed_and_binary_frames_load_as_live_took_them(tmp_path: Path) -> None:
    with FaultyServer(rate=300, heartbeat=0.2) as server:
        client = AIOSClient(server.url, server.token, **FAST_CLIENT)
        recorder = client.record(tmp_path / "rec.jsonl")
        client.start()
        try:
            client.wait_for(lambda store: len(store.job_events) >= 50, timeout=30)
            seen = set(client.store.job_events["seq"].dropna().astype(int).head(3))
            for seq, event, data in [entry for entry in server.log if entry[0] in seen]:
                server.send_raw(encode(event, data, seq))  # an event received before: a duplicate
                server.send_raw(json.dumps({"seq": seq, "data": data, "event": event}))  # keys in another order
            server.send_raw("not json {")
            server.send_raw(b"\x00\x01 binary")
            server.send_raw('{"event": "processing_job_status", "data": {"job_id": 7, "status": []}}')
            client.wait_for(lambda store: client.stats.duplicates >= 6 and client.stats.malformed >= 3, timeout=30)
            client.wait_for(lambda store: len(store.job_events) >= 150, timeout=30)
        finally:
            client.stop()
            recorder.stop()
    loaded = EventStore.load(tmp_path / "rec.jsonl")
    _assert_same_tables(client.store, loaded)
    assert (loaded.errors["kind"] == "malformed").sum() >= 2


def test_reconnects_to_a_server_without_resync_give_the_same_gaps(tmp_path: Path) -> None:
    with FaultyServer(rate=300, capabilities=("seq", "pong")) as server:
        client = AIOSClient(server.url, server.token, **FAST_CLIENT)
        recorder = client.record(tmp_path / "rec.jsonl")
        client.start()
        try:
            for restart in range(2):
                client.wait_for(lambda store, n=restart: client.stats.connections == n + 1
                                and len(store.job_events) >= 50 * (n + 1), timeout=30)
                server.restart(0.1)
            client.wait_for(lambda store: client.stats.gaps == 2 and len(store.job_events) >= 150, timeout=30)
        finally:
            client.stop()
            recorder.stop()
    loaded = EventStore.load(tmp_path / "rec.jsonl")
    _assert_same_tables(client.store, loaded)
    assert len(loaded.gaps) == 2
