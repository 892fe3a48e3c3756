"""``client.watch`` in a real kernel: a progress-bar widget shown in the cell, updated from the I/O
thread to its end, and ``await client.watch(...)`` in a cell."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

WIDGET = "application/vnd.jupyter.widget-view+json"

CELLS = [
    # 0: a reference server and a client, in the kernel
    "from pathlib import Path\n"
    "from aios_notebook.client import AIOSClient\n"
    "from aios_notebook.server import Simulator\n"
    "sim = Simulator(seed=2, speed=120, warmup=600.0).start_in_thread()\n"
    "client = AIOSClient(sim.url, sim.token).start()\n"
    "assert client.wait_connected(10)\n"
    "path = Path('report.pdf')\n"
    "path.write_bytes(b'%PDF-1.4 ' * 200)\n"
    "job = client.upload(path)",
    # 1: the watch shows itself; the cell returns at once
    "watch = client.watch(job.run_id, interval=0.1)\n"
    "watch",
    # 2: the bar was driven to its end by the client's I/O thread
    "state = watch.wait(60)\n"
    "bar, label = watch.widget.children\n"
    "print(state.status, bar.value, bar.bar_style, '|', label.value)",
    # 3: awaited in a cell (the kernel's own loop), as async code would
    "again = await client.watch(job.run_id, display='none')\n"
    "print('awaited', again.status)",
    "client.stop()\nsim.stop()",
]


def test_watch_in_a_kernel(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    (shown,) = nb.cells[1].outputs  # one bar, not a bar and a twin from the cell's last expression
    assert WIDGET in shown["data"] and shown["output_type"] == "display_data"

    text = "".join(out.get("text", "") for out in nb.cells[2].outputs)
    status = text.split()[0]
    assert status in ("completed", "failed"), text
    if status == "completed":
        assert "completed 100.0 success | completed" in text
    else:
        assert " danger | failed at <b>" in text

    awaited = "".join(out.get("text", "") for out in nb.cells[3].outputs)
    assert awaited.strip() == f"awaited {status}"
