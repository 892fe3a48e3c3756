"""Randomly mutated frames among well-formed ones: every parsing path (Arrow for large batches,
msgspec for small ones) builds the tables that decoding each frame one by one builds, and never
raises. Seeded, so a failure replays."""

from __future__ import annotations

import json
import random
from typing import Any

import pandas as pd
import pytest
from store_samples import sample_frames

from aios_notebook.store import TABLES, EventStore, bulk

# values of every JSON type, and the odd ones: beyond int64, NaN, deep, zone-less or numeric times
_VALUES: list[Any] = [
    None, True, False, 0, -1, 7, 2**31, 2**63, -(2**64), 123456789012345678901234567890, 10**400, 0.5, -2.0, 1e300,
    float("nan"), float("inf"), "", "x", "42", "+5", "2026-01-01T00:00:00", "2026-01-01T00:00:00+02:00",
    "2026-13-45T99:00:00Z", 1767225600, [], [1, "a"], {}, {"a": {"b": 1}}, [[[[[[[[[[[[1]]]]]]]]]]]],
    "\u00e9\u4e2d\U0001f600",
]
_FIELDS = ["retry_count", "progress", "status", "job_id", "agent_id", "changes", "performance", "timestamp",
           "started_at", "run_id", "step_id", "completion_percentage", "tasks_completed", "error", "entities"]
_EVENTS = ["processing_job_status", "agent_status_update", "step_status", "dag_run_progress",
           "dashboard_metrics_update", "knowledge_item_created", "insight_generated", "no_such_event"]


def _mutate(frame: str, rng: random.Random) -> str | bytes:
    message = json.loads(frame)
    data = message.get("data")
    kind = rng.randrange(10)
    if kind <= 2 and isinstance(data, dict) and data:  # a field gets a value of another type
        data[rng.choice(sorted(data))] = rng.choice(_VALUES)
    elif kind == 3 and isinstance(data, dict) and data:  # a field goes
        del data[rng.choice(sorted(data))]
    elif kind == 4 and isinstance(data, dict):  # a field the event does not have
        data[rng.choice(_FIELDS)] = rng.choice(_VALUES)
    elif kind == 5 and isinstance(data, dict):  # a nested object gets odd keys
        for value in data.values():
            if isinstance(value, dict):
                value[rng.choice(_FIELDS)] = rng.choice(_VALUES)
    elif kind == 6:  # the envelope: an extra key, an odd seq, another event's name
        choice = rng.randrange(3)
        if choice == 0:
            message[rng.choice(["extra", "Event", "seq2"])] = 1
        elif choice == 1:
            message["seq"] = rng.choice(_VALUES)
        else:
            message["event"] = rng.choice(_EVENTS)
    elif kind == 7:  # data of another type
        message["data"] = rng.choice(_VALUES)
    text = json.dumps(message, separators=(",", ":"))  # NaN / Infinity as Python writes them
    if kind == 8:
        return text[: rng.randrange(len(text))]  # truncated
    if kind == 9:
        return text.encode()  # a binary frame
    return text


def _frames(seed: int, share: float = 0.25, text_only: bool = False) -> list[str | bytes]:
    rng = random.Random(seed)
    frames: list[str | bytes] = []
    for frame in sample_frames(1.0, seed=seed):
        odd = _mutate(frame, rng) if rng.random() < share else frame
        frames.append(odd.decode() if text_only and isinstance(odd, bytes) else odd)
    return frames


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("way", ["one large batch", "small batches", "Arrow chunks"])
@pytest.mark.usefixtures("store_engine")
def test_mutated_frames_build_what_decoding_one_by_one_builds(seed: int, way: str) -> None:
    # "Arrow chunks": few mutations and no binary frame, so that most chunks ingest_frame seals
    # (EventStore._SEAL) are Arrow arrays, merged into one for Arrow's parsing
    frames = _frames(seed, 0.03, text_only=True) if way == "Arrow chunks" else _frames(seed)
    assert len(frames) > 2000  # one batch takes Arrow's path
    batch_size = 50 if way == "small batches" else len(frames)
    fast = EventStore(background=False, batch_size=batch_size)
    slow = EventStore(background=False, batch_size=batch_size, fast_path=False)  # the same batches
    for store in (fast, slow):
        for frame in frames:
            store.ingest_frame(frame, received_at=1_700_000_000.0)
        store.flush()
    assert fast.frames == slow.frames == len(frames)
    assert bulk.fast_frames(fast) > (0.95 if way == "Arrow chunks" else 0.6) * len(frames)  # most went a batched way
    for name in TABLES:
        pd.testing.assert_frame_equal(fast.table(name), slow.table(name), obj=name)
