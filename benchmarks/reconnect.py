"""Reconnect benchmark: time from a server restart to resubscribed, and events lost over 20 restarts.

A fault-injecting server (tests/faulty_server.py) streams events at a steady rate and restarts
(closes every connection with 1001, closes its listener, listens again at once on the same port)
20 times, each once the client is back and events flow again. Its stream and replay buffer outlive
the restarts, as with a server whose buffer outlives its process.

Prints, for the client's default backoff (first delay 1 s +-20 %):
- restart -> resubscribed: from the moment the server listens again to the moment it receives the
  client's ``subscribe`` on the new connection (median, p90, max; aim: under 1.5 s);
- events lost over the restarts with resync (aim: 0), and without resync: events lost and the gap
  rows that account for them.

Usage: python benchmarks/reconnect.py [--restarts 20] [--rate 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from faulty_server import FaultyServer, stream_seqs

from aios_notebook.client import AIOSClient

# healthy_after is shortened from 5 s so that 20 restarts take about a minute; every restart below
# comes after a connection that lasted longer than that, so the backoff starts from 1 s each time
CLIENT = {"healthy_after": 1.5, "snapshots": False}


def _subscribe_times(server: FaultyServer) -> dict[int, float]:
    return {m.connection: m.at for m in server.messages("subscribe")}


def run(restarts: int, rate: float, resync: bool) -> dict[str, float]:
    capabilities = ("seq", "resync", "pong") if resync else ("seq", "pong")
    with FaultyServer(rate=rate, heartbeat=5.0, capabilities=capabilities) as server:
        client = AIOSClient(server.url, server.token, **CLIENT).start()
        try:
            client.wait_for(lambda s: len(stream_seqs(s)) >= 20, timeout=30)
            delays: list[float] = []
            for _ in range(restarts):
                time.sleep(CLIENT["healthy_after"] + 0.2)  # mid-stream, after a healthy connection
                newest = max(_subscribe_times(server))
                listening = server.restart()
                server.wait_until(lambda n=newest: max(_subscribe_times(server)) > n, timeout=60)
                at = max(_subscribe_times(server).items())[1]
                delays.append(at - listening)
                received = client.stats.events_received
                client.wait_for(lambda _s, r=received: client.stats.events_received > r, timeout=30)
            server.pause_stream()
            last = server.last_seq
            client.wait_for(lambda s: max(stream_seqs(s)) >= last, timeout=30)
            seqs = stream_seqs(client.store)
            first = min(seqs)
            expected = last - first + 1
            return {
                "expected": expected,
                "lost": expected - len(set(seqs)),
                "stored_twice": len(seqs) - len(set(seqs)),
                "gaps": len(client.store.gaps),
                "reconnects": client.stats.reconnects,
                "median": statistics.median(delays),
                "p90": statistics.quantiles(delays, n=10)[-1] if len(delays) > 1 else delays[0],
                "max": max(delays),
            }
        finally:
            client.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    args = parser.parse_args()
    started = time.monotonic()
    with_resync = run(args.restarts, args.rate, resync=True)
    without = run(max(3, args.restarts // 4), args.rate, resync=False)
    print(f"{args.restarts} restarts at {args.rate:g} events/s, default backoff (first delay 1 s +-20 %)")
    print(f"restart -> resubscribed: median {with_resync['median']:.3f} s, p90 {with_resync['p90']:.3f} s, "
          f"max {with_resync['max']:.3f} s (aim < 1.5 s): ratio to aim {with_resync['max'] / 1.5:.2f}")
    print(f"with resync: {with_resync['lost']:.0f} events lost of {with_resync['expected']:.0f} "
          f"({with_resync['lost'] / with_resync['expected']:.4%}), {with_resync['stored_twice']:.0f} stored twice, "
          f"{with_resync['gaps']:.0f} gap rows, {with_resync['reconnects']:.0f} reconnects")
    print(f"without resync ({without['reconnects']:.0f} reconnects): {without['lost']:.0f} events lost of "
          f"{without['expected']:.0f}, {without['gaps']:.0f} gap rows (one per reconnect: "
          f"{without['gaps'] == without['reconnects']})")
    print(f"total {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
