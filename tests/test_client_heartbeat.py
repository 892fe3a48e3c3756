"""Staleness: dead connections are found (heartbeat or WebSocket keepalive), quiet ones are kept."""

from __future__ import annotations

import time

import pytest
from faulty_server import FAST_CLIENT, FaultyServer, stream_seqs, wait_for_whole_stream

from aios_notebook.client import AIOSClient

pytestmark = pytest.mark.timeout(60)


def test_a_stalled_heartbeat_closes_and_reconnects_then_resyncs() -> None:
    with FaultyServer(rate=100, heartbeat=0.2) as server:
        client = AIOSClient(server.url, server.token, **FAST_CLIENT).start()
        try:
            client.wait_for(lambda s: len(stream_seqs(s)) >= 5, timeout=10)
            assert client.server_info is not None and client.server_info.heartbeat_interval == 0.2
            server.stall()  # the socket stays open and answers WebSocket pings, but sends nothing
            server.wait_until(lambda: len(server.connections) >= 2, timeout=10)
            client.wait_for(lambda _s: client.stats.stale_disconnects >= 1 and client.state == "connected", timeout=10)
            server.pause_stream()
            last = server.last_seq
            wait_for_whole_stream(client, last)
            seqs = stream_seqs(client.store)
            assert sorted(seqs) == list(range(min(seqs), last + 1))  # the stalled stretch came back by resync
            errors = client.store.errors
            stale = errors[errors["message"].str.contains("the connection is dead")]
            assert len(stale) == client.stats.stale_disconnects
        finally:
            client.stop()


def test_a_quiet_subscription_with_pings_only_never_reconnects() -> None:
    with FaultyServer(heartbeat=0.1) as server:
        client = AIOSClient(server.url, server.token, types=["knowledge"], **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            # 30 heartbeats = 12 times the 2.5 x interval limit, with no event at all
            server.wait_until(lambda: len(server.messages("pong")) >= 30, timeout=20)
            assert len(server.connections) == 1
            assert client.state == "connected"
            assert client.stats.events_received == 0 and client.stats.stale_disconnects == 0
        finally:
            client.stop()


def test_pong_only_when_the_server_lists_that_capability() -> None:
    with FaultyServer(heartbeat=0.05, capabilities=("seq", "resync")) as server:
        client = AIOSClient(server.url, server.token, **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            client.wait_for(lambda _s: client.stats.frames_received >= 10, timeout=10)
            assert server.messages("pong") == []
        finally:
            client.stop()


def test_a_quiet_server_without_ping_events_is_not_stale() -> None:
    """No heartbeat advertised, no ping event, no event: only the WebSocket keepalive watches."""
    with FaultyServer(heartbeat=None, send_connected=False) as server:
        client = AIOSClient(server.url, server.token, ping_interval=0.05, ping_timeout=1.0, **FAST_CLIENT).start()
        try:
            client.wait_connected(5)
            time.sleep(1.5)  # 30 keepalive rounds and far past any heartbeat a client could assume
            assert len(server.connections) == 1
            assert client.state == "connected" and client.stats.stale_disconnects == 0
        finally:
            client.stop()


def test_a_frozen_peer_without_ping_events_is_found_by_the_websocket_keepalive() -> None:
    with FaultyServer(heartbeat=None, rate=50) as server:
        client = AIOSClient(server.url, server.token, ping_interval=0.1, ping_timeout=0.3, **FAST_CLIENT).start()
        try:
            client.wait_for(lambda s: len(stream_seqs(s)) >= 3, timeout=10)
            server.freeze()  # reads nothing, writes nothing: keepalive pings go unanswered
            server.wait_until(lambda: len(server.connections) >= 2, timeout=10)
            client.wait_for(lambda _s: client.state == "connected" and client.stats.reconnects == 1, timeout=10)
            assert client.stats.stale_disconnects == 0  # it was the keepalive, not the heartbeat rule
        finally:
            client.stop()
