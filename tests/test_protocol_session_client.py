"""ClientSession details found while building the client (issue 3)."""

from __future__ import annotations

import json
import random
from itertools import islice

from aios_notebook.protocol import encode
from aios_notebook.protocol.session import (
    ClientSession,
    Delivered,
    Duplicate,
    GapDetected,
    Malformed,
    ResyncFinished,
)
from aios_notebook.server.workload import generate


def _connected() -> str:
    return encode("connected", {"client_id": "c", "capabilities": ["seq", "resync", "pong"]})


def _event(seq: int) -> str:
    return encode("agent_status_update", {"agent_id": "a1", "status": "idle",
                                          "timestamp": "2026-01-05T00:00:00Z"}, seq=seq)


def _resync_since(session: ClientSession) -> int:
    sent = [json.loads(text) for text in session.data_to_send()]
    return next(m["data"]["since_seq"] for m in sent if m["event"] == "resync")


def test_a_replay_cut_short_by_a_disconnect_is_asked_for_again_from_the_same_seq() -> None:
    """Live events can overtake the replay; if the connection then drops, last_seq has moved past
    events that were never replayed, so the next resync must start where the unfinished one did."""
    session = ClientSession()
    session.subscribe(["agents"])
    session.connection_opened("t")
    session.receive(_connected())
    session.receive(_event(10))
    session.connection_closed(1006)

    session.connection_opened("t")
    session.receive(_connected())
    assert _resync_since(session) == 10
    # live events 25 and 26 arrive before the replay of 11..24, then the connection drops
    assert all(isinstance(e, Delivered) for s in (25, 26) for e in session.receive(_event(s)))
    session.connection_closed(1006)

    session.connection_opened("t")
    session.receive(_connected())
    assert _resync_since(session) == 10  # not 26: 11..24 were never seen
    delivered = [session.receive(_event(s)) for s in range(11, 27)]
    assert [type(d[0]).__name__ for d in delivered] == ["Delivered"] * 14 + ["Duplicate"] * 2
    done = session.receive(encode("resync_complete", {"from_seq": 11, "to_seq": 26, "replayed": 16, "complete": True}))
    assert done == [ResyncFinished(11, 26, 16, True)]
    session.connection_closed(1006)

    session.connection_opened("t")
    session.receive(_connected())
    assert _resync_since(session) == 26  # that replay finished: resume from the newest again


def test_skip_resync_makes_the_next_reconnect_a_gap() -> None:
    session = ClientSession()
    session.subscribe(["agents"])
    session.connection_opened("t")
    session.receive(_connected())
    session.receive(_event(10))
    session.skip_resync("a frame over max_size could not be received")
    session.connection_closed(1009)
    session.connection_opened("t")
    session.receive(_connected())
    assert [json.loads(t)["event"] for t in session.data_to_send()] == ["auth", "subscribe"]
    events = session.receive(_event(30))
    gap = next(e for e in events if isinstance(e, GapDetected))
    assert gap.reason == "a frame over max_size could not be received"
    assert (gap.since_seq, gap.until_seq) == (10, 30)
    # only once: the reconnect after that resyncs again
    session.connection_closed(1006)
    session.connection_opened("t")
    session.receive(_connected())
    assert _resync_since(session) == 30


def test_a_server_that_restarts_its_numbering_is_not_taken_for_duplicates() -> None:
    session = ClientSession()
    session.subscribe(["agents"])
    session.connection_opened("t")
    session.receive(_connected())
    for seq in range(1, 501):
        session.receive(_event(seq))
    session.connection_closed(1001)
    # a new server process: its stream starts again from seq 1
    session.connection_opened("t")
    session.receive(_connected())
    assert _resync_since(session) == 500
    session.receive(encode("resync_complete", {"from_seq": 501, "to_seq": 3, "replayed": 0, "complete": True}))
    first = session.receive(_event(4))
    assert [type(e).__name__ for e in first] == ["GapDetected", "Delivered"]
    assert "restarted its numbering" in first[0].reason
    assert all(isinstance(session.receive(_event(s))[0], Delivered) for s in (5, 6))
    assert isinstance(session.receive(_event(6))[0], Duplicate)  # de-duplication goes on in the new numbering
    assert session.last_seq == 6
    session.connection_closed(1006)
    session.connection_opened("t")
    session.receive(_connected())
    assert _resync_since(session) == 6


def _spaced(frame: str) -> str:
    """The same message written with spaces: the session's envelope reader leaves it to the full
    decode, so it takes the reference path (``_accept``) and never the live fast path."""
    return json.dumps(json.loads(frame), indent=1)


_VALID = list(islice(generate(seed=3, hours=0.5), 300))


def _script(rng: random.Random) -> list[tuple[str, object]]:
    steps: list[tuple[str, object]] = []
    for _ in range(rng.randrange(20, 120)):
        roll = rng.random()
        if roll < 0.70:
            _, name, data = rng.choice(_VALID)  # valid frames: the full decode has nothing to report
            seq = rng.choice([None, rng.randrange(1, 40), rng.randrange(1, 40), rng.randrange(30, 90)])
            steps.append(("frame", encode(name, data, seq=seq)))
        elif roll < 0.80:
            caps = rng.choice([["seq", "resync"], ["seq"], []])
            data = {"client_id": "c", "capabilities": caps}
            if rng.random() < 0.5:
                data["stream_id"] = rng.choice(["s1", "s2"])
            steps.append(("frame", encode("connected", data)))
        elif roll < 0.88:
            first = rng.randrange(1, 40)
            steps.append(("frame", encode("resync_complete", {
                "from_seq": first, "to_seq": first + rng.randrange(0, 20),
                "replayed": rng.randrange(0, 20), "complete": rng.random() < 0.7})))
        else:
            steps.append(("reconnect", None))
    return steps


def _outcome(event: object) -> tuple[object, ...]:
    if isinstance(event, (Delivered, Duplicate)):
        return (type(event).__name__, event.event, event.seq, event.replayed)
    if isinstance(event, GapDetected):
        return ("GapDetected", event.start, event.end, event.reason, event.since_seq, event.until_seq)
    if isinstance(event, Malformed):  # its text is written differently on each side, nothing else
        return ("Malformed", event.decoded.message, event.decoded.problems)
    return (type(event).__name__, repr(event))


def _run(steps: list[tuple[str, object]], spaced: bool) -> list[tuple[object, ...]]:
    session = ClientSession()
    session.subscribe(["agents", "jobs", "dags"])
    session.connection_opened("t")
    seen: list[tuple[object, ...]] = []
    for kind, frame in steps:
        if kind == "reconnect":
            session.connection_closed(1006)
            session.connection_opened("t")
            seen.append(("sent", tuple(session.data_to_send())))
            continue
        assert isinstance(frame, str)
        text = _spaced(frame) if spaced else frame
        seen.extend(_outcome(event) for event in session.receive(text))
        seen.append(("state", session.last_seq, str(session.resync)))
    seen.append(("last_event_time", session.last_event_time))
    return seen


def test_the_live_fast_path_delivers_exactly_what_the_reference_path_does() -> None:
    """Held to _accept on random scripts of events, duplicates, greetings, replays and reconnects:
    every outcome, the seq bookkeeping, the resync state and what is sent on reconnect agree."""
    for seed in range(300):
        steps = _script(random.Random(seed))
        assert _run(steps, spaced=False) == _run(steps, spaced=True), f"seed {seed}"
