"""The 30-second blocking cell, executed for real in a Jupyter kernel through nbclient."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from faulty_server import FaultyServer
from nbclient import NotebookClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SETUP = """
import json, time
from aios_notebook.client import AIOSClient
client = AIOSClient({url!r}, {token!r}, snapshots=False, ping_interval=1.0, ping_timeout=2.0).start()
client.wait_for(lambda store: len(store.job_events) >= 10, timeout=60)
before = client.stats
"""

BLOCK = "time.sleep(30)  # the kernel is busy: no await, no event loop turn"

CHECK = """
after = client.stats
seqs = sorted(set(client.store.job_events["seq"].dropna().astype(int))
              | set(client.store.agent_events["seq"].dropna().astype(int)))
client.stop()
print(json.dumps({"connections": after.connections, "state": after.state, "stale": after.stale_disconnects,
                  "during": after.events_received - before.events_received,
                  "first": seqs[0], "last": seqs[-1], "count": len(seqs)}))
"""

WRONG_TOKEN = """
from aios_notebook.client import connect
connect({url!r}, "not-the-token-5c1d", snapshots=False)
"""


def test_a_cell_blocking_the_kernel_for_30_s_loses_nothing_and_keeps_the_connection(tmp_path: Path) -> None:
    # the server drops a client whose WebSocket pongs stop for 2 s, and pings it every second
    with FaultyServer(rate=20, heartbeat=2.0, ws_ping_interval=1.0, ws_ping_timeout=2.0) as server:
        notebook = nbformat.v4.new_notebook()
        notebook.cells = [nbformat.v4.new_code_cell(SETUP.format(url=server.url, token=server.token)),
                          nbformat.v4.new_code_cell(BLOCK), nbformat.v4.new_code_cell(CHECK),
                          nbformat.v4.new_code_cell(WRONG_TOKEN.format(url=server.url))]
        path = tmp_path / "blocking.ipynb"
        nbformat.write(notebook, path)
        NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        nbformat.write(notebook, path)
        pongs = server.messages("pong")
        auths = server.messages("auth")

    result = json.loads(notebook.cells[2].outputs[0]["text"])
    assert result["connections"] == 1 and result["state"] == "connected" and result["stale"] == 0
    good = {m.connection for m in auths if m.data.get("token") == server.token}
    assert good == {1}  # one connection all along: the server never had to drop it
    assert result["count"] == result["last"] - result["first"] + 1  # not one event missing
    assert result["during"] >= 20 * 20  # 30 s at 20 events/s, received while the cell slept
    assert len(pongs) >= 10 and {m.connection for m in pongs} == {1}  # heartbeats answered while busy
    saved = path.read_text()
    assert server.token not in "".join(json.dumps(c.get("outputs", [])) for c in notebook.cells)
    assert "Traceback" not in saved
    # a refused token: one plain line in the cell that asked, nothing from a background thread
    error = notebook.cells[3].outputs[-1]
    assert error["output_type"] == "error" and error["ename"] == "AuthError"
    assert len(error["traceback"]) == 1 and "refused the token" in error["traceback"][0]
    assert "not-the-token-5c1d" not in json.dumps(notebook.cells[3].outputs)
    assert [o for o in notebook.cells[3].outputs if o.get("name") == "stderr" and "Traceback" in o["text"]] == []
