"""Client and server sessions talking to each other in memory: no socket, no sleeps."""

from __future__ import annotations

from aios_notebook.protocol import encode
from aios_notebook.protocol.models import (
    CLOSE_AUTH_FAILED,
    CLOSE_AUTH_TIMEOUT,
    CLOSE_GOING_AWAY,
    CLOSE_TOO_BIG,
)
from aios_notebook.protocol.session import (
    AuthFailed,
    AuthRejected,
    ClientSession,
    CloseRequest,
    ConnectionDead,
    ConnectionInfo,
    DagRunRequest,
    Delivered,
    Duplicate,
    GapDetected,
    Malformed,
    ResyncFinished,
    ResyncRequest,
    ServerNotice,
    ServerSession,
    constant_time_equal,
)
from aios_notebook.protocol.subscriptions import Filters, Subscriptions
from aios_notebook.testing import exchange


class Ticker:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def server(clock: Ticker, **kw: object) -> ServerSession:
    session = ServerSession(client_id="c1", token_check=constant_time_equal("secret"), clock=clock, **kw)  # type: ignore[arg-type]
    session.opened()
    return session


def event(name: str, seq: int, ts: str = "2026-01-05T00:00:00Z", **data: object) -> str:
    return encode(name, {"timestamp": ts, **data}, seq=seq)


def test_auth_first_then_subscriptions_and_server_routes_by_them() -> None:
    clock = Ticker()
    client = ClientSession()
    client.subscribe(["agents"], {"agent_ids": ["a1"]})
    client.subscribe(["dags"])
    client.connection_opened("secret")
    first = client.data_to_send()
    assert first[0] == encode("auth", {"token": "secret"})
    client._outgoing = first  # put them back for the exchange
    srv = server(clock)
    events, _ = exchange(client, srv)
    assert isinstance(events[0], ConnectionInfo) and "resync" in events[0].capabilities
    assert srv.authenticated
    assert srv.wants("agent_error", {"agent_id": "a1"})
    assert not srv.wants("agent_error", {"agent_id": "a2"})
    assert srv.wants("step_status", {"run_id": "any"})
    assert not srv.wants("knowledge_item_created", {})
    assert srv.wants("ping", {})


def test_wrong_token_is_auth_failed_and_close_4401() -> None:
    clock = Ticker()
    client = ClientSession()
    client.connection_opened("wrong")
    srv = server(clock)
    events, requests = exchange(client, srv)
    assert any(isinstance(e, AuthFailed) for e in events)
    assert client.auth_failed
    assert AuthRejected() in requests and CloseRequest(CLOSE_AUTH_FAILED, "auth failed") in requests
    assert not srv.wants("ping", {})
    assert client.connection_closed(CLOSE_AUTH_FAILED)[0] == AuthFailed(
        "the server closed the connection with 4401 (wrong token)"
    )


def test_messages_before_auth_get_not_authenticated() -> None:
    srv = server(Ticker())
    srv.data_to_send()
    assert srv.receive(encode("subscribe", {"types": ["agents"]})) == []
    reply = srv.data_to_send()
    assert '"not_authenticated"' in reply[0]
    assert srv.subscriptions.types == {}


def test_auth_timeout_closes_4408() -> None:
    clock = Ticker()
    srv = server(clock, auth_timeout=10.0)
    srv.data_to_send()
    assert srv.tick() == []
    clock.now += 10.5
    assert srv.tick() == [CloseRequest(CLOSE_AUTH_TIMEOUT, "auth timeout")]
    assert '"auth_timeout"' in srv.data_to_send()[0]


def test_heartbeat_pings_and_pong() -> None:
    clock = Ticker()
    srv = server(clock, heartbeat=5.0)
    client = ClientSession(clock=clock)
    client.connection_opened("secret")
    exchange(client, srv)
    clock.now += 5.0
    srv.tick()
    assert srv.next_deadline() == clock.now + 5.0
    frames = srv.data_to_send()
    assert '"ping"' in frames[0]
    client.receive(frames[0])
    assert '"pong"' in client.data_to_send()[0]


def test_invalid_messages_get_errors_and_keep_the_session() -> None:
    srv = server(Ticker())
    srv.receive(encode("auth", {"token": "secret"}))
    srv.data_to_send()
    for bad in ["{", "[]", '{"data": {}}', '{"event": "dance", "data": {}}',
                encode("subscribe", {"types": "nope-not-a-list-but-a-string"}),
                encode("resync", {"since_seq": -1}), encode("subscribe_dag_run", {})]:
        srv.receive(bad)
    replies = srv.data_to_send()
    assert len(replies) == 7
    assert sum('"invalid_message"' in r for r in replies) == 6
    assert sum('"invalid_subscription"' in r for r in replies) == 1
    assert not srv.closed


def test_unknown_subscription_type_errors_but_valid_types_apply() -> None:
    srv = server(Ticker())
    srv.receive(encode("auth", {"token": "secret"}))
    srv.data_to_send()
    srv.receive(encode("subscribe", {"types": ["agents", "weather"]}))
    reply = srv.data_to_send()
    assert '"invalid_subscription"' in reply[0] and "weather" in reply[0]
    assert set(srv.subscriptions.types) == {"agents"}


def test_requests_for_the_io_layer() -> None:
    srv = server(Ticker())
    srv.receive(encode("auth", {"token": "secret"}))
    assert srv.receive(encode("resync", {"since_seq": 10})) == [ResyncRequest(10)]
    assert srv.receive(encode("subscribe_dag_run", {"run_id": "r"})) == [DagRunRequest("r")]
    assert srv.receive("x" * (1 << 20 + 1)) == [CloseRequest(CLOSE_TOO_BIG, "frame over 1 MiB")]


def test_shutdown_sends_connection_error_then_1001() -> None:
    srv = server(Ticker())
    srv.data_to_send()
    assert srv.shutdown() == CloseRequest(CLOSE_GOING_AWAY, "server shutdown")
    assert '"server_shutdown"' in srv.data_to_send()[0]


def test_dedup_by_seq_and_resync_after_reconnect() -> None:
    clock = Ticker()
    client = ClientSession(clock=clock)
    client.subscribe(["agents"])
    client.connection_opened("secret")
    exchange(client, server(clock))
    out = client.receive(event("agent_error", 5, agent_id="a1"))
    assert isinstance(out[0], Delivered)
    assert isinstance(client.receive(event("agent_error", 5, agent_id="a1"))[0], Duplicate)
    client.connection_closed(1006)
    client.connection_opened("secret")
    srv = server(clock)
    exchange(client, srv)
    # after the subscriptions, the client asked for everything after seq 5
    assert srv.receive(encode("resync", {"since_seq": 5})) == [ResyncRequest(5)]
    replayed = [client.receive(event("agent_error", s, agent_id="a1")) for s in (7, 6, 7)]
    assert [type(r[0]) for r in replayed] == [Delivered, Delivered, Duplicate]
    done = client.receive(encode("resync_complete", {"from_seq": 6, "to_seq": 7, "replayed": 2, "complete": True}))
    assert done == [ResyncFinished(6, 7, 2, True)]
    assert client.last_seq == 7


def test_subscriptions_are_restored_in_order_after_reconnect_with_queued_messages() -> None:
    client = ClientSession()
    client.subscribe(["agents"])
    client.connection_opened("t")
    client.data_to_send()
    client.connection_closed(1006)
    # asked for while offline
    client.unsubscribe(["agents"])
    client.subscribe(["dags", "knowledge"], {"run_id": "r1"})
    client.subscribe_dag_run("manual__x")
    client.send("pong", {})
    client.connection_opened("t")
    sent = client.data_to_send()
    assert sent == [
        encode("auth", {"token": "t"}),
        encode("subscribe", {"types": ["dags", "knowledge"], "filters": {"run_id": "r1"}}),
        encode("subscribe_dag_run", {"run_id": "manual__x"}),
        encode("pong", {}),
    ]


def test_reconnect_to_a_server_without_resync_is_a_gap() -> None:
    client = ClientSession()
    client.connection_opened("t")
    client.receive(encode("connected", {"client_id": "x"}))
    client.receive(event("agent_error", 1, "2026-01-05T00:00:00Z", agent_id="a"))
    client.connection_closed(1006)
    client.connection_opened("t")
    client.receive(encode("connected", {"client_id": "y"}))
    assert not any('"resync"' in f for f in client.data_to_send())
    out = client.receive(event("agent_error", 9, "2026-01-05T00:10:00Z", agent_id="a"))
    gap = next(e for e in out if isinstance(e, GapDetected))
    assert gap.start.isoformat() == "2026-01-05T00:00:00+00:00"
    assert gap.end.isoformat() == "2026-01-05T00:10:00+00:00"


def test_reconnect_to_a_server_that_never_says_connected_is_a_gap() -> None:
    client = ClientSession()
    client.connection_opened("t")
    client.receive(encode("agent_error", {"agent_id": "a", "timestamp": "2026-01-05T00:00:00Z"}))
    client.connection_closed(1006)
    client.connection_opened("t")
    out = client.receive(encode("agent_error", {"agent_id": "a", "timestamp": "2026-01-05T00:05:00Z"}))
    assert any(isinstance(e, GapDetected) for e in out)
    assert any(isinstance(e, Delivered) for e in out)


def test_incomplete_resync_is_a_gap() -> None:
    client = ClientSession()
    client.connection_opened("t")
    client.receive(encode("connected", {"client_id": "x", "capabilities": ["resync"]}))
    client.receive(event("agent_error", 3, agent_id="a"))
    client.connection_closed(1006)
    client.connection_opened("t")
    client.receive(encode("connected", {"client_id": "x", "capabilities": ["resync"]}))
    out = client.receive(encode("resync_complete", {"from_seq": 50, "to_seq": 60, "replayed": 11, "complete": False}))
    gap = next(e for e in out if isinstance(e, GapDetected))
    assert gap.since_seq == 3 and gap.until_seq == 50


def test_stale_heartbeat_only_for_servers_that_ping() -> None:
    clock = Ticker()
    client = ClientSession(clock=clock)
    client.connection_opened("t")
    client.receive(encode("connected", {"client_id": "x"}))  # no heartbeat_interval advertised
    clock.now += 3600
    assert client.check_alive() is None  # a quiet stream alone is never a reason
    client.receive(encode("ping", {}))
    clock.now += 74
    assert client.check_alive() is None
    clock.now += 2
    assert isinstance(client.check_alive(), ConnectionDead)


def test_advertised_heartbeat_sets_the_staleness_limit() -> None:
    clock = Ticker()
    client = ClientSession(clock=clock)
    client.connection_opened("t")
    client.receive(encode("connected", {"client_id": "x", "heartbeat_interval": 2}))
    assert client.next_check() == clock.now + 5.0
    clock.now += 5.1
    dead = client.check_alive()
    assert dead is not None and dead.limit == 5.0


def test_malformed_frames_are_reported_and_usable_ones_still_delivered() -> None:
    client = ClientSession()
    client.connection_opened("t")
    assert [type(e) for e in client.receive("garbage")] == [Malformed]
    out = client.receive('{"event": "agent_error", "data": {"agent_id": 5}}')
    assert [type(e) for e in out] == [Malformed, Delivered]
    notice = client.receive(encode("error", {"code": "invalid_message", "message": "bad"}))
    assert notice[0] == ServerNotice("error", "invalid_message", "bad", notice[0].decoded)
    stream_error = client.receive(encode("error", {"code": "processing_error", "message": "x"}, seq=4))
    assert isinstance(stream_error[0], Delivered)


def test_subscriptions_filters_and_signature() -> None:
    subs = Subscriptions()
    assert subs.subscribe(["processing_jobs", "nope"], Filters.parse({"run_id": "r1"})[0]) == ["nope"]
    assert subs.matches("processing_job_status", {"run_id": "r1"})
    assert not subs.matches("processing_job_status", {"run_id": "r2"})
    assert subs.matches("processing_job_status", {})  # a filter never drops an event lacking its field
    assert not subs.matches("step_status", {"run_id": "r1"})
    subs.add_dag_run("r9")
    assert subs.matches("step_status", {"run_id": "r9"})
    other = subs.copy()
    assert other.signature() == subs.signature()
    other.unsubscribe(["processing_jobs"])
    assert other.signature() != subs.signature()
    filters, problems = Filters.parse({"run_id": 3, "agent_ids": [1], "colour": "red"})
    assert filters.empty and len(problems) == 3


def test_one_manual_clock_drives_both_sessions() -> None:
    # issue 20: one Clock everywhere; the wall clock is never read when a clock is given
    import json

    from aios_notebook.testing import ManualClock, session_pair

    clock = ManualClock(start=1_800_000_000.0)  # 2027-01-15
    client, server = session_pair("secret", clock=clock)
    exchange(client, server)
    assert server.authenticated and client.info is not None
    assert client.info.server_time.startswith("2027-01-15")  # the server wrote its clock's time
    clock.advance(server.heartbeat)
    server.tick()  # a ping is due on the clock's monotonic time
    for frame in server.data_to_send():
        client.receive(frame)
    pongs = [json.loads(f) for f in client.data_to_send()]
    assert [p["event"] for p in pongs] == ["pong"]
    assert pongs[0]["data"]["timestamp"].startswith("2027-01-15")  # the client's clock, not the wall
    assert client.next_check() == clock.monotonic() + 2.5 * server.heartbeat
    clock.advance(2.5 * server.heartbeat + 1)
    assert client.check_alive() is not None


def test_resync_state_goes_live_awaiting_replaying_live() -> None:
    # issue 20: the session's resync bookkeeping is one state, not flags
    from aios_notebook.protocol.session import ResyncState
    from aios_notebook.testing import session_pair

    client, server = session_pair("secret")
    exchange(client, server)
    assert client.resync is ResyncState.LIVE
    client.receive(event("processing_job_status", 1, job_id="j1", status="queued"))
    client.connection_closed(1006)
    client.connection_opened("secret")
    assert client.resync is ResyncState.AWAITING_GREETING
    client.receive(encode("connected", {"client_id": "c", "capabilities": ["seq", "resync"]}))
    assert client.resync is ResyncState.REPLAYING and str(client.resync) == "replaying"
    client.receive(encode("resync_complete", {"from_seq": 2, "to_seq": 1, "replayed": 0, "complete": True}))
    assert client.resync is ResyncState.LIVE
