"""EventStore's public names are the analyst's (issue 20): bulk entry points live in store/bulk.py
and tuning constants are private, so neither creeps back onto the class unnoticed."""

from __future__ import annotations

import pandas as pd

from aios_notebook.protocol.codec import encode
from aios_notebook.store import TABLES, EventStore, bulk
from aios_notebook.storelike import StoreLike, StreamSink

#: the tables, each a property that reads it as a DataFrame
TABLE_PROPERTIES = set(TABLES)

#: what an analyst (and the client, the REST side, rules and views) calls on a store
ANALYST_NAMES = {
    # feeding it
    "ingest_frame", "ingest", "flush", "add_error", "add_gap", "add_insights", "merge_snapshot",
    # reading it
    "table", "TABLE_NAMES", "subscribe", "version", "now", "counts", "dropped", "received",
    "frames", "gaps", "retention",
    # files, and the end of it
    "load", "from_parquet", "to_parquet", "to_archive", "close",
}


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_the_public_names_are_the_analysts() -> None:
    public = _public(EventStore)
    extra = public - ANALYST_NAMES - TABLE_PROPERTIES
    missing = (ANALYST_NAMES | TABLE_PROPERTIES) - public
    assert not extra, f"new public names on EventStore (bulk entry points go to store/bulk.py, constants are private): {sorted(extra)}"
    assert not missing, f"EventStore lost public names: {sorted(missing)}"
    assert set(EventStore.TABLE_NAMES) == TABLE_PROPERTIES


def test_tables_are_properties_that_read_them() -> None:
    for name in TABLE_PROPERTIES:
        assert isinstance(getattr(EventStore, name), property), name
    store = EventStore(background=False)
    store.ingest_frame(encode("agent_status_update", {"agent_id": "a1", "name": "A", "status": "idle"}, 1))
    for name in TABLE_PROPERTIES:
        frame = getattr(store, name)
        assert isinstance(frame, pd.DataFrame)
        assert list(frame.columns) == list(store.table(name).columns)
    assert store.agents["agent_id"].tolist() == ["a1"]
    store.close()


def test_it_is_the_store_the_layers_above_expect() -> None:
    store = EventStore(background=False)
    assert isinstance(store, StoreLike) and isinstance(store, StreamSink)
    store.close()


def test_bulk_entry_points_live_in_their_module() -> None:
    assert set(bulk.__all__) == {"fast_frames", "ingest_frames", "ingest_parsed", "parse_frames"}
    for name in bulk.__all__:
        assert not hasattr(EventStore, name), name
    frames = [encode("agent_status_update", {"agent_id": f"a{i}", "name": "A", "status": "idle"}, i + 1)
              for i in range(3)]
    store = EventStore(background=False)
    assert bulk.ingest_frames(store, frames, [1_700_000_000_000_000_000 + i for i in range(3)]) == 3
    parsed = bulk.parse_frames(store, frames[:1], [1_700_000_000_000_000_100])
    assert store.frames == 3  # parsing alone touches nothing of the store
    assert bulk.ingest_parsed(store, parsed) == 1
    assert store.frames == 4 and len(store.agents) == 3 and 0 <= bulk.fast_frames(store) <= 4
    store.close()
