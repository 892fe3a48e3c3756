"""The views under load, in a real kernel: 20,000 events/s into a store watched by every view.

A Jupyter kernel (started with jupyter_client, as a notebook's would be) holds an EventStore, every
view live with its widgets (the six views and the dashboard's header, each with its own redraw
throttle, all of them active), and a feeder thread that ingests pre-encoded frames of the
reference workload at the target rate through the client's fast path (``store.ingest_frame``).
Meanwhile this script sends a trivial cell every 100 ms and times execute_request ->
execute_reply, first with the kernel idle, then under load.

Prints, from one run: the rate reached, each view's redraws per second against its throttle,
how soon after the load stopped every view showed the store's final state, and the trivial cell's round
trip (p50 / p95 / max, idle and loaded). Exits 1 when a view redrew above its throttle, a view
stayed behind, or the loaded p95 reached 200 ms.

    .venv/bin/python benchmarks/ui_load.py [--rate 20000] [--seconds 20] [--throttle 4] [--max-busy 0.5]
"""

from __future__ import annotations

import argparse
import ast
import json
import statistics
import sys
import time
from typing import Any

from jupyter_client.manager import start_new_kernel

from aios_notebook.views.scheduler import DEFAULT_MAX_BUSY

P95_LIMIT_MS = 200.0

SETUP = """
import json, threading, time
from aios_notebook.protocol.codec import encode
from aios_notebook.server.workload import generate
from aios_notebook.store import EventStore
from aios_notebook.views import AgentsView, DagProgressView, InsightsFeed, JobsView, KnowledgeView, SuccessRateTrend
from aios_notebook.views.dashboard import ConnectionHeader
from aios_notebook.views.scheduler import default_scheduler

default_scheduler().max_busy = {max_busy}
_frames = [encode(name, data, seq=i + 1)
           for i, (_, name, data) in enumerate(generate(seed=7, scenario="steady", hours={hours}))]
_store = EventStore()
_views = [cls(_store, max_redraws_per_second={throttle})
          for cls in (ConnectionHeader, JobsView, AgentsView, SuccessRateTrend, InsightsFeed, KnowledgeView,
                      DagProgressView)]
for _view in _views:
    _view.widget  # live: subscribed to the store, registered with the redraw scheduler, drawn once
_stop, _fed = threading.Event(), [0]


def _feed(rate={rate}, tick=0.01):
    # paced in 10 ms slices, as frames come off a socket; the client calls ingest_frame per frame
    per_tick, start = max(1, int(rate * tick)), time.perf_counter()
    while not _stop.is_set() and _fed[0] < len(_frames):
        ahead = start + _fed[0] / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        for text in _frames[_fed[0]:_fed[0] + per_tick]:
            _store.ingest_frame(text)
        _fed[0] += per_tick


def _sample():
    return json.dumps({{"t": time.perf_counter(), "fed": _fed[0],
                        "redraws": {{type(v).__name__: v.redraw_count for v in _views}}}})


def _caught_up():
    # each view's last drawing against the store's tables now (the feeder has stopped)
    jobs, knowledge = _store.jobs, _store.knowledge
    by_name = {{type(v).__name__: v for v in _views}}
    return json.dumps({{
        "JobsView": by_name["JobsView"].values["total"] == len(jobs),
        "KnowledgeView": by_name["KnowledgeView"].values["total"] == len(knowledge),
        "DagProgressView": by_name["DagProgressView"].values["runs"] == len(_store.dag_runs),
        "InsightsFeed": by_name["InsightsFeed"].values["total"] == len(_store.insights),
        "SuccessRateTrend": by_name["SuccessRateTrend"].values["server_points"] == len(_store.metrics),
    }})
"""


def _expression(kc: Any, expression: str, timeout: float = 120.0) -> Any:
    reply = kc.execute_interactive("", user_expressions={"value": expression}, timeout=timeout,
                                   output_hook=lambda msg: None)
    value = reply["content"]["user_expressions"]["value"]
    if value.get("status") != "ok":
        raise RuntimeError(f"{expression} failed in the kernel: {value.get('ename')}: {value.get('evalue')}")
    return json.loads(ast.literal_eval(value["data"]["text/plain"]))  # the repr of the JSON text


def _round_trips(kc: Any, seconds: float, every: float = 0.1) -> list[float]:
    """Send a trivial cell every ``every`` s for ``seconds``; the ms from request to reply."""
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sent = time.perf_counter()
        msg_id = kc.execute("1 + 1", store_history=False)
        while True:
            reply = kc.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        times.append((time.perf_counter() - sent) * 1000)
        time.sleep(max(0.0, every - (time.perf_counter() - sent)))
    return times


def _summary(times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return f"p50 {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms   max {max(times):6.1f} ms   (n={len(times)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20_000.0, help="events per second (default 20000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds under load (default 20)")
    parser.add_argument("--throttle", type=float, default=4.0, help="redraws per second per view (default 4)")
    parser.add_argument("--max-busy", type=float, default=DEFAULT_MAX_BUSY,
                        help=f"share of a core the redraws may burn (default {DEFAULT_MAX_BUSY:g})")
    args = parser.parse_args()
    # frames for warm-up + the measured window, with a margin (the steady workload: ~5,500 events an hour)
    hours = int((args.seconds + 8) * args.rate / 5_000) + 1

    km, kc = start_new_kernel(kernel_name="python3")
    failures: list[str] = []
    try:
        started = time.perf_counter()
        reply = kc.execute_interactive(SETUP.format(hours=hours, throttle=args.throttle, rate=args.rate,
                                                    max_busy=args.max_busy),
                                       timeout=600, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"setup failed: {reply['content'].get('ename')}: {reply['content'].get('evalue')}")
        frames = _expression(kc, "json.dumps(len(_frames))")
        print(f"kernel ready in {time.perf_counter() - started:.1f} s: {frames:,} frames ({hours} simulated hours), "
              f"7 live views at most {args.throttle:g} redraws/s each, drawing with at most {args.max_busy:.0%} of a core")

        idle = _round_trips(kc, 3.0)
        kc.execute_interactive("threading.Thread(target=_feed, daemon=True).start()", timeout=30,
                               output_hook=lambda msg: None)
        time.sleep(3.0)  # warm-up: the tables fill, the views start redrawing
        first = _expression(kc, "_sample()")
        loaded = _round_trips(kc, args.seconds)
        last = _expression(kc, "_sample()")
        kc.execute_interactive("_stop.set()", timeout=30, output_hook=lambda msg: None)
        stopped = time.perf_counter()
        while True:  # the trailing redraws: every view ends on the store's final state
            caught_up = _expression(kc, "_caught_up()")
            if all(caught_up.values()) or time.perf_counter() - stopped > 60:
                break
            time.sleep(0.25)
        catch_up_s = time.perf_counter() - stopped

        elapsed = last["t"] - first["t"]
        rate = (last["fed"] - first["fed"]) / elapsed
        print(f"\ningested {rate:,.0f} events/s over {elapsed:.1f} s (target {args.rate:,.0f}: "
              f"{rate / args.rate:.0%})")
        print(f"\nredraws per second per view (throttle {args.throttle:g}/s):")
        for name, count in last["redraws"].items():
            per_second = (count - first["redraws"][name]) / elapsed
            ok = per_second <= args.throttle + 1e-9
            print(f"  {name:18s} {per_second:5.2f}/s  ({per_second / args.throttle:4.0%} of the throttle)"
                  f"{'' if ok else '  OVER'}")
            if not ok:
                failures.append(f"{name} redrew {per_second:.2f}/s")
        behind = [name for name, ok in caught_up.items() if not ok]
        print("\nevery view showed the store's final state "
              + (f"{catch_up_s:.1f} s after the load stopped" if not behind
                 else f"... not within 60 s: {', '.join(behind)}"))
        failures += [f"{name} stayed behind the store" for name in behind]

        print("\ntrivial cell round trip (execute_request -> execute_reply):")
        print(f"  idle     {_summary(idle)}")
        print(f"  loaded   {_summary(loaded)}")
        p95 = statistics.quantiles(loaded, n=20)[-1]
        idle_p95 = statistics.quantiles(idle, n=20)[-1]
        print(f"  loaded / idle p95: {p95 / idle_p95:.1f}x; loaded p95 / limit {P95_LIMIT_MS:g} ms: "
              f"{p95 / P95_LIMIT_MS:.0%}")
        if p95 >= P95_LIMIT_MS:
            failures.append(f"loaded p95 {p95:.0f} ms >= {P95_LIMIT_MS:g} ms")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    if failures:
        print("\nFAIL: " + "; ".join(failures))
        return 1
    print("\nOK: every view at or under its throttle, none behind, trivial cells under "
          f"{P95_LIMIT_MS:g} ms at p95")
    return 0


if __name__ == "__main__":
    sys.exit(main())
