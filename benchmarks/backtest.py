"""Backtests: events per second through the whole built-in rule library, and how well it scores.

Part 1, speed. The reference workload's events (offline ``generate``, about 1,000,000 of them,
with a seq each as the server sends them) are written as a JSONL recording, then:

- ``EventStore.load`` alone: reading and parsing the recording (the store's share of a backtest);
- the nine built-in rules end to end: ``backtest(library.builtins(), recording)``;
- the rule engine alone: the eight built-ins over event tables on an already loaded store (every
  evaluation of every rule, windows found by binary search, incremental aggregates);
- ``dag_step_failures`` alone: it reads the ``dag_step_events`` history (each step's latest
  event in its window), so it takes the same windowed path as the other rules.

Each is the best of ``--rounds`` runs. The target is 1,000,000 events through the whole library
in under 10 s.

Part 2, quality (``--scores``). Each built-in rule on the scenario made for it, over three seeds
and a whole simulated day each (four anomaly windows per day, at 03:00, 09:00, 15:00, 21:00), and
the whole library on ``steady``: precision, recall, F1, mean time to detect (also in evaluation
intervals) and false alarms per simulated day.

Run: ``.venv/bin/python benchmarks/backtest.py [--events N] [--rounds N] [--scores] [--seeds 301,302,303]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd

from aios_notebook.protocol.codec import encode
from aios_notebook.recording import RecordingWriter
from aios_notebook.rules import backtest, combine_scores, library, score
from aios_notebook.server.scenarios import get_scenario
from aios_notebook.server.workload import DEFAULT_START, generate
from aios_notebook.store import EventStore

TARGET_EVENTS = 1_000_000
TARGET_SECONDS = 10.0
EVENTS_PER_HOUR = 5_000  # about, for the steady workload (over days): hours enough for the events asked


def _best(rounds: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def speed(events: int, rounds: int) -> None:
    hours = events / EVENTS_PER_HOUR
    with tempfile.TemporaryDirectory(prefix="aios-backtest-bench-") as folder:
        path = Path(folder) / "steady.jsonl"
        count = 0
        with RecordingWriter(path, flush_interval=None) as writer:
            for seq, (moment, event, data) in enumerate(generate(seed=7, scenario="steady", hours=hours), 1):
                writer.write(encode(event, data, seq), moment)
                count += 1
                if count >= events:
                    break
        print(f"recording: {count:,} events, {path.stat().st_size / 1e6:.0f} MB JSONL, "
              f"{hours / 24:.1f} simulated days")
        rules = library.builtins()
        fast = [r for r in rules if r.name != "dag_step_failures"]
        dag = [r for r in rules if r.name == "dag_step_failures"]

        load, store = _best(rounds, lambda: EventStore.load(path, retention={"raw": 0}, background=False))
        total, firings = _best(rounds, lambda: backtest(rules, path))
        engine_only, fast_firings = _best(rounds, lambda: backtest(fast, store))
        dag_only, _ = _best(rounds, lambda: backtest(dag, path))
        evaluations = fast_firings.attrs["evaluations"]

        print(f"\n{'what':<52} {'seconds':>8} {'events/s':>12}")
        for label, seconds in (
            ("EventStore.load of the recording (the store)", load),
            ("all 9 built-in rules, end to end", total),
            ("the rule engine: 8 rules over a loaded store", engine_only),
            ("dag_step_failures alone, end to end", dag_only),
        ):
            print(f"{label:<52} {seconds:>8.2f} {count / seconds:>12,.0f}")
        print(f"\n{firings.attrs['evaluations']:,} evaluations, {len(firings)} firings; the engine alone: "
              f"{evaluations:,} evaluations, {engine_only / evaluations * 1e6:.0f} us each")
        per_million = total * TARGET_EVENTS / count
        print(f"whole library: {per_million:.1f} s per 1,000,000 events; target {TARGET_SECONDS:.0f} s "
              f"(ratio {TARGET_SECONDS / per_million:.2f}, >= 1 meets it)")


def quality(seeds: list[int], hours: float) -> None:
    rules = library.builtins()
    runs = []
    started = time.perf_counter()
    for r in rules:
        scenario = r.detects[0]
        for seed in seeds:
            history = list(generate(seed=seed, scenario=scenario, hours=hours))
            labels = get_scenario(scenario).labels(DEFAULT_START, DEFAULT_START + hours * 3600)
            runs.append(score(backtest([r], history), labels))
    table = combine_scores(runs)
    steady = combine_scores(
        score(backtest(rules, list(generate(seed=seed, scenario="steady", hours=hours))), []) for seed in seeds
    ).set_index("rule")
    table["steady_false_alarms_per_day"] = table["rule"].map(steady["false_alarms_per_day"])
    shown = table[["rule", "detects", "labels", "detected", "firings", "precision", "recall", "f1",
                   "mean_time_to_detect", "mean_time_to_detect_intervals", "false_alarms_per_day",
                   "steady_false_alarms_per_day"]].copy()
    shown["mean_time_to_detect"] = shown["mean_time_to_detect"].map(
        lambda v: "-" if pd.isna(v) else f"{v.total_seconds() / 60:.1f} min")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.2f}".format):
        print(f"\nquality: each rule on its scenario, seeds {seeds}, {hours:g} simulated hours each "
              f"({time.perf_counter() - started:.0f} s)")
        print(shown.to_string(index=False))
    ok = ((table["precision"] >= 0.9) & (table["recall"] >= 0.9) & (table["mean_time_to_detect_intervals"] <= 2)
          & (table["steady_false_alarms_per_day"] <= 1))
    print(f"\nrules meeting the bar (precision, recall >= 0.9, time to detect <= 2 intervals, <= 1 false "
          f"alarm a day on steady): {int(ok.sum())} of {len(table)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=TARGET_EVENTS, help="events in the recording (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each measurement; the best counts")
    parser.add_argument("--scores", action="store_true", help="also print the quality table (a few minutes)")
    parser.add_argument("--seeds", default="301,302,303", help="seeds of the quality table")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours per seed of the quality table")
    args = parser.parse_args()
    speed(args.events, args.rounds)
    if args.scores:
        quality([int(s) for s in args.seeds.split(",")], args.hours)


if __name__ == "__main__":
    main()
