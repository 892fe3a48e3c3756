"""The dashboard on a real client connected to the reference server over 127.0.0.1 (no browser)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aios_notebook.client import AIOSClient
from aios_notebook.exceptions import ConfigurationError
from aios_notebook.server import Simulator
from aios_notebook.views import Dashboard, JobsView

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    sim = Simulator(seed=7, speed=600.0, warmup=1800.0).start_in_thread()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def client(server: Simulator) -> Iterator[AIOSClient]:
    client = AIOSClient(server.url, server.token).start()
    try:
        assert client.wait_connected(30)
        yield client
    finally:
        client.stop()


def _until(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_dashboard_follows_a_live_client(client: AIOSClient, server: Simulator) -> None:
    dashboard = Dashboard(client, max_redraws_per_second=10)
    try:
        dashboard.widget  # noqa: B018 - live from here on, redrawn by the background scheduler
        _until(lambda: dashboard.values.get("total_processed", (None, None))[0] is not None)
        first = dashboard.values
        assert first["state"] == "connected"
        _until(lambda: dashboard.values["events"] > first["events"]
               and dashboard.values["total_processed"] != first["total_processed"])
        jobs = dashboard.views["Jobs"]
        _until(lambda: jobs.values["total"] > 0)
        assert jobs.values["total"] <= len(client.store.jobs)  # never ahead of the store
        badge = dashboard.header._panels["badge"].value
        assert "connected" in badge and server.url.split("?")[0] in badge
        # the token never reaches what is drawn or sent to the front end
        states = [dashboard.header._panels["badge"].value, dashboard.snapshot(include_plotlyjs=False)]
        states += [json.dumps(view._plot.get_state(), default=str) for view in dashboard.views.values()]
        assert not any(server.token in text for text in states)
    finally:
        dashboard.close()


def test_views_take_a_client_or_a_store(client: AIOSClient) -> None:
    assert JobsView(client).store is client.store
    assert JobsView(client.store).store is client.store
    with pytest.raises(ConfigurationError, match="needs an EventStore"):
        JobsView(object())
