"""Backtests of an archive on Dask: exactly the in-memory firings (same rows, same fingerprints),
on 10^6 events with the nine built-ins on two worker processes, and on rules whose states reach
across chunks (a rule over a latest-state table, cooldowns chaining over chunk boundaries)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster

from aios_notebook.cli import main
from aios_notebook.history import Archive
from aios_notebook.rules import Insight, backtest, library, rule
from tests.history_samples import store_of, workload

MILLION = 1_000_000
_DAY = re.compile(r'"2026-01-(\d\d)T')
_SEQ = re.compile(r',"seq":(\d+)}$')


def _million() -> tuple[list[str], np.ndarray]:
    """10^6 frames: a quarter of a million generated (about 44 simulated hours of the
    failure_burst workload), then three more copies of them two days later each (every ISO date
    in the frames moved, seqs counting on): the generator is the slow part of this test."""
    frames, times = workload(60.0, scenario="failure_burst", limit=MILLION // 4)
    out, moments = list(frames), [times]
    for copy in range(1, 4):
        days, seqs = 2 * copy, copy * len(frames)
        out += [_SEQ.sub(lambda m, s=seqs: f',"seq":{int(m.group(1)) + s}}}',
                         _DAY.sub(lambda m, d=days: f'"2026-01-{int(m.group(1)) + d:02d}T', frame))
                for frame in frames]
        moments.append(times + days * 86_400 * 10**9)
    return out, np.concatenate(moments)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as local, Client(local) as client:
        yield client


def test_a_million_events_on_two_workers_equal_the_in_memory_backtest(tmp_path, cluster):
    frames, times = _million()
    assert len(frames) == MILLION and len(set(frames[-3:] + frames[:3])) == 6
    store = store_of(frames, times)
    assert abs(store.now.value - int(times[-1])) < 1_000_000 and store.job_events["seq"].is_unique
    del frames
    store.to_archive(tmp_path / "archive")
    rules = library.builtins()
    memory = backtest(rules, store)
    dask = backtest(rules, Archive(tmp_path / "archive"), engine="dask", client=cluster)
    assert len(memory) >= 10 and dask.attrs["chunks"] > 2
    pd.testing.assert_frame_equal(dask, memory)
    assert dask["fingerprint"].tolist() == memory["fingerprint"].tolist()
    for key in ("start", "end", "evaluations"):
        assert dask.attrs[key] == memory.attrs[key], key


@rule(every="5m", window="30m", cooldown="2h")
def bursts(job_events, ctx):
    """Fires in bursts fixed by the clock (10 minutes of every 35) and by job types seen: its
    cooldown chains firings over chunk boundaries."""
    if (ctx.now_ns // 300_000_000_000) % 7 in (0, 1):
        for job_type in sorted(set(job_events["type"].dropna().astype(str))):
            yield Insight("burst", f"{job_type} burst", key=job_type)


@rule(every="10m", window="1h", pending="20m", cooldown="30m")
def many_running(jobs):
    """A rule over a latest-state table: it reads the jobs' state as of each evaluation."""
    running = jobs[jobs["status"].astype(str) == "processing"]
    if len(running) >= 3:
        yield Insight("busy", f"{len(running)} jobs processing", key="all")


@rule(every="5m", window="20m", cooldown="0s")
def never_clears(agent_events):
    """Holds from the first window to the end: its firing stays open across every chunk."""
    if len(agent_events):
        yield Insight("agents", "agents talk", key="agents")


def test_states_across_chunks_equal_the_in_memory_backtest(tmp_path):
    events = workload(8.0, scenario="stuck_jobs", start="2026-01-05T20:00:00Z")
    store = store_of(*events)
    store.to_archive(tmp_path / "archive")
    rules = [bursts, many_running, never_clears]
    memory = backtest(rules, store)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address="127.0.0.1:0",
                      worker_dashboard_address="127.0.0.1:0") as local, \
            Client(local) as client:
        dask = backtest(rules, Archive(tmp_path / "archive"), engine="dask", client=client, chunk="2h")
    assert set(memory["rule"]) == {"bursts", "many_running", "never_clears"}
    # chunks shorter than the warm-up: some disagree at first and run again with a longer one
    assert dask.attrs["chunks"] >= 4 and dask.attrs["reruns"] >= 1
    pd.testing.assert_frame_equal(dask, memory)
    # the firing open over every chunk resolves (never) as in memory; bursts re-fire after cooldowns
    assert memory.loc[memory["rule"] == "never_clears", "resolved_at"].isna().all()
    assert (memory["rule"] == "bursts").sum() > 4


def test_backtest_an_archive_from_the_command_line(tmp_path, capsys):
    events = workload(6.0, scenario="failure_burst")
    store_of(*events).to_archive(tmp_path / "archive")
    output = tmp_path / "firings.csv"
    code = main(["backtest", "builtins", "--archive", str(tmp_path / "archive"), "--workers", "1",
                 "-o", str(output)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    memory = backtest(library.builtins(), store_of(*events))
    assert f"{len(memory)} firings" in captured.out
    assert len(pd.read_csv(output)) == len(memory)
    assert main(["backtest", "builtins", "--archive", str(tmp_path / "archive"), "--log", "x.jsonl"]) in (1, 2)
    assert main(["backtest", "builtins", "--archive", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err
