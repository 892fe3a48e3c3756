"""Where the archive places rows: frame_times' fast ISO reading against pandas', and day_parts'
slices (rows in time order) against its masks (rows out of order)."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import pandas as pd
import pyarrow as pa

from aios_notebook.store.archive import day_parts, frame_times

_NAT = np.iinfo(np.int64).min

_GOOD = ["2026-01-05T00:00:00.000Z", "2026-01-05T23:59:59.999999Z", "2026-01-06T01:02:03+05:30",
         "2026-01-05T10:00:00-0100", "2026-01-05 00:00:00Z", "2026-01-05T00:00Z", "2026-01-07T08:00:00+05"]
_ODD = ["2026-01-05", "2026-01-05T00:00:00", "", "x", "2026-13-05T00:00:00Z", "20260105T000000Z",
        "2026-01-05T00:00:00.1234567891Z"]


def _reference(texts: list[str], fallback: np.ndarray) -> np.ndarray:
    """frame_times as pandas alone reads it: json for the first "timestamp", pandas for the time."""
    out = fallback.copy()
    for i, text in enumerate(texts):
        at = text.find('"timestamp":')
        if at < 0:
            continue
        value = text[at + len('"timestamp":'):].split(",")[0].rstrip("}")
        if value.startswith('"'):
            ns = pd.to_datetime(pd.Series([value[1:-1]]), utc=True, format="ISO8601", errors="coerce")
            number = ns.to_numpy(dtype="datetime64[ns]").view(np.int64)[0]
            if number != _NAT:
                out[i] = number
        else:
            with contextlib.suppress(ValueError):
                out[i] = round(float(value) * 1e9)
    return out


def _frame(stamp: object) -> str:
    if stamp is None:
        return '{"event":"ping","seq":1}'
    value = f'"{stamp}"' if isinstance(stamp, str) else repr(stamp)
    return f'{{"event":"job_update","data":{{"job_id":"j1","timestamp":{value}}},"seq":1}}'


def test_frame_times_reads_as_pandas_does_whatever_the_mix() -> None:
    rng = random.Random(17)
    for round_ in range(60):
        pool = _GOOD if round_ % 3 else _GOOD + _ODD  # clean columns take Arrow's cast, mixed ones pandas'
        stamps: list[object] = [rng.choice(pool) if rng.random() < 0.8 else
                                rng.choice([None, 1767571200, 1767571200.25]) for _ in range(rng.randint(1, 40))]
        texts = [_frame(s) for s in stamps]
        fallback = np.arange(len(texts), dtype=np.int64) * 7
        column = pa.array(texts, pa.large_string())
        if round_ % 2:  # a store's column comes in chunks
            cut = rng.randint(0, len(texts))
            column = pa.chunked_array([column[:cut], column[cut:]])
        got = frame_times(column, fallback)
        assert got.tolist() == _reference(texts, fallback).tolist(), stamps


def test_frame_times_of_a_clean_column_is_the_instant_written() -> None:
    got = frame_times(["{\"timestamp\":\"2026-01-06T01:00:00+01:00\"}"], np.zeros(1, np.int64))
    assert got[0] == pd.Timestamp("2026-01-06T00:00:00Z").value


def _table(ns: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": pd.to_datetime(ns, utc=True), "seq": pd.array(range(len(ns)), "Int64"),
                         "v": [f"r{i}" for i in range(len(ns))]})


def test_day_parts_in_time_order_match_out_of_order_rows_day_by_day() -> None:
    rng = np.random.default_rng(3)
    day = 86_400 * 10**9
    ns = np.sort(rng.integers(0, 5 * day, 500)).tolist()
    ordered = {d: (rows["v"].tolist(), p.tolist(), s.tolist())
               for d, rows, p, s in day_parts("job_events", _table(ns))}
    assert len(ordered) == 5 and sum(len(v[0]) for v in ordered.values()) == 500
    shuffled = _table(ns)
    order = rng.permutation(500)
    mixed = {d: (rows["v"].tolist(), p.tolist(), s.tolist())
             for d, rows, p, s in day_parts("job_events", shuffled.iloc[order].reset_index(drop=True))}
    assert sorted(mixed) == sorted(ordered)
    for d, (values, places, seqs) in ordered.items():
        again = mixed[d]
        assert sorted(again[0]) == sorted(values) and sorted(again[1]) == sorted(places)
        assert [int(v[1:]) for v in values] == seqs  # a slice keeps each row's seq beside it


def test_day_parts_rows_without_a_time_go_to_the_unknown_day() -> None:
    frame = _table([0, 1, 2])
    frame.loc[0, "timestamp"] = pd.NaT
    parts = {d: rows["v"].tolist() for d, rows, _, _ in day_parts("job_events", frame)}
    assert parts == {"unknown": ["r0"], "1970-01-01": ["r1", "r2"]}
