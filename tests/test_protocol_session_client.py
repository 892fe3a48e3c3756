"""ClientSession details found while building the client (issue 3)."""

from __future__ import annotations

import json

from aios_notebook.protocol import encode
from aios_notebook.protocol.session import (
    ClientSession,
    Delivered,
    Duplicate,
    GapDetected,
    ResyncFinished,
)


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
