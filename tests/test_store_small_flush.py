"""Small flushes (a trickle of frames read often) take their own paths through the tables:
append-only tables keep small batches waiting and encode them together, latest-state tables
work small batches of Python lists out event by event, and batches of lists are merged with
list operations. Each must give exactly what the vectorised, one-batch-at-a-time paths give:
the same tables, dtypes, categories, change batches and versions."""

from __future__ import annotations

import gc
import json
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from store_samples import sample_frames

from aios_notebook.store import TABLES, EventStore, bulk
from aios_notebook.store.columns import _BIG_CHUNK, _compact
from aios_notebook.store.tables import AppendTable, Batch, LatestTable, merge_batches


def _vectorised(store: EventStore) -> EventStore:
    """The store with the small-batch paths turned off (the reference they must match)."""
    for table in store._tables.values():
        if isinstance(table, AppendTable):
            table.PENDING_ROWS = 1  # nothing waits: every batch is encoded when applied
        else:
            assert isinstance(table, LatestTable)
            table.SMALL = 0  # every batch takes the vectorised update, at once
            table.PENDING_ROWS = 1
    return store


def _hard_stream(seed: int, drop_seqs: bool = True) -> list[str]:
    """The sample stream with what makes latest-state tables work: replays of earlier frames
    (older seqs arriving late), frames without a seq (ordered by time), fields left out."""
    rng = random.Random(seed)
    frames = sample_frames(1.0, seed=seed)
    out: list[str] = []
    for index, frame in enumerate(frames):
        message = json.loads(frame)
        roll = rng.random()
        if roll < 0.05 and drop_seqs:
            message.pop("seq", None)
        elif roll < 0.10 and isinstance(message.get("data"), dict) and len(message["data"]) > 2:
            data = message["data"]
            data.pop(rng.choice([k for k in data if k not in ("job_id", "agent_id", "run_id", "step_id", "item_id")]))
        out.append(json.dumps(message))
        if index > 50 and rng.random() < 0.03:  # a replay of a few earlier frames
            start = rng.randrange(0, index - 20)
            out += frames[start : start + rng.randrange(1, 15)]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.usefixtures("store_engine")
def test_small_flushes_match_the_vectorised_paths(seed):
    # the plain live stream (seqs in order) lets latest-state tables apply waiting batches at
    # once; replays and frames without a seq make them apply some batch by batch
    frames = sample_frames(1.0, seed=seed) if seed == 3 else _hard_stream(seed, drop_seqs=seed != 4)
    rng = random.Random(seed)
    small = EventStore(background=False)
    reference = _vectorised(EventStore(background=False))
    position = 0
    flushes = 0
    while position < len(frames):
        size = rng.choice([1, 2, 5, 20, 60, 200])
        for frame in frames[position : position + size]:
            for store in (small, reference):
                store.ingest_frame(frame, received_at=1_700_000_000.0 + position / 1000)
        position += size
        assert small.flush() == reference.flush()  # the same change batches, the same version
        flushes += 1
        if flushes % 7 == 0:  # REST snapshots between flushes: Python rows, snapshot=True
            records = [{"agent_id": f"agent-{k}", "status": "idle", "current_task": None} for k in range(3)]
            for store in (small, reference):
                store.merge_snapshot("agents", records, at="2020-01-01T00:00:00Z")
                store.merge_snapshot("dag_steps", [{"run_id": "run-x", "step_id": "s1", "status": "done"}])
        if flushes % 5 == 0:  # a read in between: waiting rows are encoded, then more wait
            pd.testing.assert_frame_equal(small.job_events, reference.job_events)
    assert flushes > 20
    assert small.counts == reference.counts and small.version == reference.version
    assert small.counts["jobs"] and small.counts["dag_steps"]
    for name in TABLES:
        pd.testing.assert_frame_equal(small.table(name), reference.table(name), obj=name)
        for column in small.table(name).select_dtypes("category"):  # the same categories, in order
            assert list(small.table(name)[column].cat.categories) == list(reference.table(name)[column].cat.categories)


def _as_arrow(batch: Batch, kinds: dict[str, str]) -> Batch:
    from aios_notebook.store.columns import normalize

    columns = {name: (values if kinds.get(name, "int64") == "obj" else normalize(kinds.get(name, "int64"), values, len(batch)))
               for name, values in batch.columns.items()}
    return Batch(batch.positions, columns, batch.counted, batch.owned)


def test_merging_lists_matches_merging_arrow_arrays():
    spec = TABLES["jobs"]
    first = Batch(np.array([0, 3, 5]), {"job_id": ["a", "b", "a"], "status": ["x", None, "y"], "seq": [1, 4, 6]},
                  np.array([True, False, True]), {"status": np.array([True, False, True])})
    second = Batch(np.array([1, 2, 4]), {"job_id": ["c", "a", "d"], "progress": [0.5, None, 1.0], "seq": [2, 3, 5]})
    third = Batch(np.array([6]), {"job_id": ["e"], "entities": [["p"]], "seq": [7]}, None)
    lists = merge_batches(spec, [first, second, third])
    arrows = merge_batches(spec, [_as_arrow(b, spec.kinds) for b in (first, second, third)])
    assert lists is not None and arrows is not None
    assert lists.positions.tolist() == arrows.positions.tolist() == list(range(7))
    assert list(lists.columns) == list(arrows.columns)
    for name, values in lists.columns.items():
        other = arrows.columns[name]
        assert values == (other if isinstance(other, list) else other.to_pylist()), name
    assert lists.counted.tolist() == arrows.counted.tolist() == [True, False, False, False, False, True, False]
    assert lists.owned.keys() == arrows.owned.keys() == {"status", "progress", "entities"}
    for name, carries in lists.owned.items():
        assert carries.tolist() == arrows.owned[name].tolist(), name
    assert lists.owned["status"].tolist() == [True, False, False, False, False, True, False]


def test_text_chunks_stay_few_and_keep_every_row():
    big = pa.array([f"big {i}" for i in range(_BIG_CHUNK)], pa.string())
    chunks: list[pa.Array] = [big]
    rows = big.to_pylist()
    for k in range(2000):
        piece = [f"frame {k} {i}" for i in range(k % 7 + 1)]
        rows += piece
        chunks.append(pa.array(piece, pa.string()))
        if len(chunks) > 32:
            chunks = _compact(chunks)
            assert chunks[0] is big  # a large chunk is never copied again
            assert len(chunks) <= 2 + len(rows) // _BIG_CHUNK
    assert len(chunks) < 40
    assert pa.chunked_array(chunks, pa.string()).to_pylist() == rows


@pytest.mark.usefixtures("store_engine")
def test_fields_typed_in_the_decoder_give_the_tables_of_the_per_frame_path():
    """msgspec checks most fields' types while decoding small batches: a frame it rejects goes
    the per-frame way, which must give the same rows, and report what is wrong with it."""
    job = '"job_id":"job-{n}","run_id":"r","type":"pdf","status":"processing","timestamp":"2026-01-01T00:00:0{n}Z"'
    oddities = [
        '"progress":1', '"progress":0.25', '"retry_count":2.0', '"retry_count":"2"', '"can_retry":1',
        '"can_retry":null', '"progress":true', '"filename":7', '"error":{"a":1}',
    ]
    frames = [
        '{"event":"processing_job_status","data":{' + job.format(n=n) + "," + odd + '},"seq":' + str(100 + n) + "}"
        for n, odd in enumerate(oddities)
    ]
    frames.append('{"event":"insight_generated","data":{"insight_id":"i1","title":"T","type":"x","confidence":0.5,'
                  '"metadata":[1],"timestamp":"2026-01-01T00:00:00Z"},"seq":300}')
    frames.append('{"event":"insight_generated","data":{"insight_id":"i2","title":"T","type":"x","confidence":1,'
                  '"metadata":{"k":1},"timestamp":"2026-01-01T00:00:00Z"},"seq":301}')
    small = EventStore(background=False)
    slow = EventStore(background=False, fast_path=False)
    for store in (small, slow):
        for frame in frames:
            store.ingest_frame(frame, received_at=1_700_000_000.0)
        store.flush()
    for name in TABLES:
        pd.testing.assert_frame_equal(small.table(name), slow.table(name), obj=name)
    assert bulk.fast_frames(small) >= 4  # the well-typed ones stayed in the batch
    reported = set(small.errors.loc[small.errors["kind"] == "field_type", "message"].str.split(":").str[0])
    assert reported == {"processing_job_status.retry_count", "processing_job_status.can_retry",
                        "processing_job_status.progress", "processing_job_status.filename",
                        "processing_job_status.error", "insight_generated.metadata"}
    assert small.job_events["retry_count"].tolist()[2] == 2  # an integral float is an integer


def test_waiting_batches_on_a_row_ordered_by_time_apply_one_by_one():
    """A REST snapshot row has no seq: the first event on it is compared by time, the next by
    seq. Applying the two flushes' batches at once would compare both by time, so they must
    be applied one by one (here the second event is older by time but newer by seq: it wins)."""
    def agent(seq: int, status: str, at: str) -> str:
        return json.dumps({"event": "agent_status_update", "seq": seq,
                           "data": {"agent_id": "a1", "status": status, "timestamp": at}})

    small = EventStore(background=False)
    reference = _vectorised(EventStore(background=False))
    for store in (small, reference):
        store.merge_snapshot("agents", [{"agent_id": "a1", "status": "idle"}], at="2026-01-01T00:10:00Z")
        store.ingest_frame(agent(10, "working", "2026-01-01T00:11:00Z"))
        store.flush()
        store.ingest_frame(agent(11, "offline", "2026-01-01T00:05:00Z"))
        store.flush()
    pd.testing.assert_frame_equal(small.agents, reference.agents)
    assert small.agents["status"].tolist() == ["offline"]


def test_frames_of_append_only_tables_share_rows_read_only_and_stay_the_callers():
    """Append-only tables hand out their rows as read-only views (they never change): writing
    to a frame read makes pandas copy, never touches the store, and the usual operations work."""
    store = EventStore(background=False)
    for frame in sample_frames(0.2, seed=5):
        store.ingest_frame(frame, received_at=1_700_000_000.0)
    store.ingest_frame('{"event":"processing_job_status","data":{"job_id":"j","status":"x","timestamp":1e30},"seq":999999}')
    before = store.job_events
    assert before["timestamp"].isna().sum() == 1  # a missing time reads as NaT
    mine = store.job_events
    mine.loc[0, "progress"] = 123.0
    mine.iloc[1, mine.columns.get_loc("retry_count")] = 77
    mine["seq"] += 1
    mine.loc[2, "timestamp"] = pd.Timestamp("2000-01-01", tz="UTC")
    mine.fillna({"progress": -1.0}, inplace=True)
    mine.update(mine[["progress"]] * 2)
    with pytest.raises(ValueError):
        store.job_events["progress"].to_numpy()[0] = 5.0  # NumPy views of a shared frame are read-only
    pd.testing.assert_frame_equal(store.job_events, before)
    assert store.job_events.groupby("status", observed=True)["progress"].mean().notna().any()
    assert len(store.job_events.merge(store.jobs[["job_id", "type"]], on="job_id")) == len(before)


@pytest.mark.parametrize("moved_on", ["next version read", "compacted"])
def test_a_frame_read_earlier_can_be_written_after_the_store_moved_on(moved_on: str) -> None:
    """A frame is the caller's to write to, also once the store's own cached frame is gone
    (a later version was read, or retention compacted the table): pandas copies first, as for
    any shared frame. It raised "assignment destination is read-only" into the shared view."""
    frames = sample_frames(1.0, seed=8)
    retention = {"job_events": 200} if moved_on == "compacted" else None
    store = EventStore(retention=retention, background=False)
    store._tables["job_events"].COMPACT_ROWS = 64  # compacted every few hundred rows here
    half = len(frames) // 2
    for frame in frames[:half]:
        store.ingest_frame(frame, received_at=1_700_000_000.0)
    mine = store.job_events
    held = mine.copy(deep=True)
    for frame in frames[half:]:
        store.ingest_frame(frame, received_at=1_700_000_001.0)
    after = store.job_events  # the cache is now this version's
    if moved_on == "compacted":
        assert store.dropped["job_events"] > 3 * 64  # compactions made new buffers
    gc.collect()
    stamp = pd.Timestamp("2000-01-01", tz="UTC")
    status = mine.loc[1, "status"]
    mine.loc[0, "progress"] = 123.0
    mine.at[0, "seq"] = -5
    mine.loc[0, "timestamp"] = stamp
    mine.iloc[0, mine.columns.get_loc("status")] = status
    mine.loc[0, "can_retry"] = True
    mine.loc[0, "retry_count"] = 9
    written = mine.loc[0, ["progress", "seq", "timestamp", "status", "can_retry", "retry_count"]].tolist()
    assert written == [123.0, -5, stamp, status, True, 9]
    pd.testing.assert_frame_equal(mine.iloc[1:], held.iloc[1:])  # the other rows as read
    pd.testing.assert_frame_equal(store.job_events, after)  # the store untouched
    if moved_on == "next version read":
        pd.testing.assert_frame_equal(store.job_events.iloc[: len(held)], held, check_categorical=False)


def test_frames_read_earlier_do_not_change_as_rows_arrive():
    frames = sample_frames(0.3, seed=6)
    store = EventStore(background=False)
    half = len(frames) // 2
    for frame in frames[:half]:
        store.ingest_frame(frame, received_at=1_700_000_000.0)
    earlier = {name: store.table(name) for name in ("job_events", "jobs", "agents", "raw")}
    copies = {name: frame.copy(deep=True) for name, frame in earlier.items()}
    for frame in frames[half:]:
        store.ingest_frame(frame, received_at=1_700_000_001.0)
    assert store.counts["job_events"] > len(earlier["job_events"])
    store.jobs  # noqa: B018 - every waiting batch applied, latest-state rows updated in place
    for name, frame in earlier.items():
        pd.testing.assert_frame_equal(frame, copies[name], obj=name)
