"""The AIOS v2 REST API: snapshots of the current state, uploads and submissions, run watches.

The client (``aios_notebook.client``) wires these into ``client.upload``, ``client.submit_url``,
``client.watch``, ``client.search_knowledge``, ``client.get_dag_run`` and the snapshots it takes on
connect and after a gap; each part is usable on its own with a :class:`RestClient`::

    async with RestClient(sim.http_url, sim.token) as rest:
        snapshot = await fetch_snapshot(rest)
        merge_into(store, snapshot)
        job = await upload(rest, prepare_upload("report.pdf"))
        state = await RunWatch(job.run_id, lambda: get_dag_run(rest, job.run_id)).start()
"""

from __future__ import annotations

from .http import RETRY_STATUSES, RestClient, rest_url_from_ws
from .lookups import get_dag_run, search_knowledge
from .snapshot import (
    SNAPSHOT_KINDS,
    Snapshot,
    SnapshotUnavailable,
    fetch_snapshot,
    merge_into,
    normalise,
    published_run,
)
from .uploads import (
    ACCEPTED_EXTENSIONS,
    UPLOAD_OPTIONS,
    URL_OPTIONS,
    PreparedUpload,
    PreparedURL,
    UploadResult,
    prepare_upload,
    prepare_url,
    submit_url,
    upload,
)
from .watch import DISPLAY_MODES, RunState, RunWatch, in_notebook, run_state

__all__ = [
    "ACCEPTED_EXTENSIONS",
    "DISPLAY_MODES",
    "RETRY_STATUSES",
    "SNAPSHOT_KINDS",
    "UPLOAD_OPTIONS",
    "URL_OPTIONS",
    "PreparedURL",
    "PreparedUpload",
    "RestClient",
    "RunState",
    "RunWatch",
    "Snapshot",
    "SnapshotUnavailable",
    "UploadResult",
    "fetch_snapshot",
    "get_dag_run",
    "in_notebook",
    "merge_into",
    "normalise",
    "prepare_upload",
    "prepare_url",
    "published_run",
    "rest_url_from_ws",
    "run_state",
    "search_knowledge",
    "submit_url",
    "upload",
]
