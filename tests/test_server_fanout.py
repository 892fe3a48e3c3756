"""Fan-out: many clients with their own filters get exactly their events; slow or flooding
clients are cut off (1008) without holding the others back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from typing import Any

import pytest
import websockets
from server_wire import WireClient, close_code

from aios_notebook.protocol.models import SUBSCRIPTION_TYPES, TYPE_OF_EVENT
from aios_notebook.server import Simulator
from aios_notebook.server.catalog import AGENTS
from aios_notebook.server.workload import DEFAULT_START

pytestmark = pytest.mark.timeout(120)

AGENT_IDS = [a.agent_id for a in AGENTS]


class Wants:
    """What one client asked for, and an independent reading of the subscription rules."""

    def __init__(self) -> None:
        self.types: dict[str, dict[str, Any]] = {}
        self.dag_runs: set[str] = set()

    def __call__(self, event: str, data: dict[str, Any]) -> bool:
        kind = TYPE_OF_EVENT.get(event)
        if kind is None:
            return True  # the stream's processing errors reach everyone
        filters = self.types.get(kind)
        if filters is not None:
            run_ok = "run_id" not in filters or "run_id" not in data or data["run_id"] == filters["run_id"]
            agent_ok = ("agent_ids" not in filters or "agent_id" not in data
                        or data["agent_id"] in filters["agent_ids"])
            if run_ok and agent_ok:
                return True
        return kind == "dags" and data.get("run_id") in self.dag_runs


async def subscribe_randomly(client: WireClient, rng: random.Random, runs: list[str]) -> Wants:
    wants = Wants()
    for _ in range(rng.randint(1, 3)):
        types = rng.sample(list(SUBSCRIPTION_TYPES), rng.randint(1, 3))
        roll = rng.random()
        filters: dict[str, Any] = {}
        if roll < 0.3:
            filters["agent_ids"] = rng.sample(AGENT_IDS, rng.randint(1, 3))
        elif roll < 0.5 and runs:
            filters["run_id"] = rng.choice(runs)
        await client.send("subscribe", {"types": types, **({"filters": filters} if filters else {})})
        for kind in types:
            wants.types[kind] = filters
    if rng.random() < 0.15 and runs:
        run = rng.choice(runs)
        await client.send("subscribe_dag_run", {"run_id": run})
        wants.dag_runs.add(run)
    return wants


async def test_200_clients_with_their_own_filters_each_get_exactly_their_events() -> None:
    rng = random.Random(2024)
    # slow enough that one test process can parse what 200 clients receive as fast as it comes
    async with Simulator(seed=9, speed=60, start=DEFAULT_START, warmup=9 * 3600) as sim:
        observer = await WireClient.open(sim)
        await observer.send("subscribe", {"types": list(SUBSCRIPTION_TYPES)})
        await observer.sync()
        runs = [job.run_id for job in sim.workload.active.values()]

        async def join() -> tuple[WireClient, Wants, int]:
            client = await WireClient.open(sim)
            wants = await subscribe_randomly(client, rng, runs)
            await client.sync()
            return client, wants, sim.hub.seq  # everything after this seq came after the subscribes

        clients = await asyncio.gather(*(join() for _ in range(200)))
        first = max(seq for _, _, seq in clients)
        while sim.hub.seq < first + 250:  # noqa: ASYNC110 - let a few hundred events go by
            await asyncio.sleep(0.05)
        last = sim.hub.seq
        await asyncio.gather(observer.sync(60), *(client.sync(60) for client, _, _ in clients))

        truth = [f for f in observer.stream() if f["seq"] <= last]
        assert [f["seq"] for f in truth if f["seq"] > first] == list(range(first + 1, last + 1))
        received_something = 0
        for client, wants, since in clients:
            expected = [f["seq"] for f in truth if f["seq"] > since and wants(f["event"], f["data"])]
            got = [f["seq"] for f in client.stream() if since < f["seq"] <= last]
            assert got == expected, f"{client.connected['data']['client_id']}: {wants.types} {wants.dag_runs}"
            received_something += bool(got)
            by_seq = {f["seq"]: f for f in truth}
            assert all(f == by_seq[f["seq"]] for f in client.stream() if since < f["seq"] <= last)
        assert received_something > 150
        # clients with the same subscriptions share one group: fewer groups than clients
        assert len({c.subscriptions.signature() for c in sim.connections}) < len(sim.connections)


async def test_a_client_that_stops_reading_is_cut_off_with_1008_and_the_others_miss_nothing() -> None:
    # the limit is well above one tick's worth of events (~150 here), so only a stalled reader trips it
    async with Simulator(seed=1, speed=1200, start=DEFAULT_START, warmup=12 * 3600,
                         send_queue_limit=3000) as sim:
        fast = await WireClient.open(sim)
        await fast.send("subscribe", {"types": list(SUBSCRIPTION_TYPES)})
        # the library stops reading the socket when its queue is full; a small, fixed socket buffer
        # keeps the kernel from holding megabytes for it before the server notices
        slow = await WireClient.open(sim, max_queue=1, receive_buffer=64 * 1024)
        await slow.send("subscribe", {"types": list(SUBSCRIPTION_TYPES)})
        await fast.sync()

        # the fast client reads on until 2,000 events past the cut-off (the target is set then);
        # it stops by itself: cancelling a read in wait_for can be lost on Python < 3.12
        target: list[int] = []
        reading = asyncio.create_task(
            fast.until(lambda m: bool(target) and m.get("seq", 0) >= target[0], timeout=60))
        while not sim.stats["slow_readers_cut"]:  # noqa: ASYNC110 - the server's own counter
            await asyncio.sleep(0.05)
        target.append(sim.hub.seq + 2000)
        await reading
        seqs = [f["seq"] for f in fast.stream()]
        assert seqs == list(range(seqs[0], seqs[-1] + 1)), "the reading client missed events"
        assert seqs[-1] >= target[0]
        assert await close_code(slow, timeout=30) == 1008
        assert len(sim.connections) == 1


async def test_a_flood_of_bad_messages_is_answered_one_by_one_and_the_connection_stays_open() -> None:
    async with Simulator(speed=60, start=DEFAULT_START) as sim:
        client = await WireClient.open(sim)
        for i in range(3000):
            await client.send_raw("{garbage" if i % 2 else json.dumps({"event": "nope", "data": i}))
        await client.sync()
        replies = [f for f in client.frames if f["event"] == "error" and "seq" not in f]
        assert len(replies) == 3000 + 1  # and the marker's
        await client.send("subscribe", {"types": ["insights"]})
        await client.until(lambda m: m["event"] == "dashboard_metrics_update")


async def test_a_flood_that_never_reads_its_replies_is_cut_off_not_buffered() -> None:
    async with Simulator(speed=60, start=DEFAULT_START, send_queue_limit=200) as sim:
        bystander = await WireClient.open(sim)
        await bystander.send("subscribe", {"types": ["insights"]})
        flooder = await WireClient.open(sim, max_queue=1, receive_buffer=64 * 1024)
        garbage = "{" + "x" * 2000  # each gets an error reply the flooder never reads
        sent = 0
        with contextlib.suppress(websockets.ConnectionClosed):
            while not sim.stats["slow_readers_cut"] and sent < 500_000:
                await flooder.send_raw(garbage)
                sent += 1
        assert sim.stats["slow_readers_cut"] == 1
        assert all(len(c.queue) <= 200 for c in sim.connections)
        # the close frame (1008) is sent, but a client still sending when the server drops the socket
        # gets a TCP reset that may discard it: what matters is that it is disconnected
        assert await close_code(flooder, timeout=30) in (1008, None)
        assert flooder.ws.state is websockets.State.CLOSED
        await bystander.until(lambda m: m["event"] == "dashboard_metrics_update")
