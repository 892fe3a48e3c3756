"""The notebook-friendly client of the AIOS v2 WebSocket: never loses the stream, never freezes.

::

    client = AIOSClient(url, token).start()      # returns at once
    client.store.jobs                             # live DataFrames, safe to read while events arrive
    client.wait_for(lambda store: len(store.jobs) > 10, timeout=30)
    client.on("processing_job_completed", print)
    client.stop()

    async with AIOSClient(url, token) as c:       # pure asyncio
        async for event in c.events(): ...

    client = aios_notebook.connect()              # AIOS_URL / AIOS_TOKEN, or the embedded server

Decisions (issue 3):

- I/O on a background thread with its own event loop ("aios-client-io", a daemon stopped cleanly
  at exit). A cell that blocks the kernel (``time.sleep(30)``, a long computation) loses nothing:
  frames are read, stored, answered (``pong``) and kept alive (websockets' keepalive pings run on
  that loop) while the main thread is busy. ``start()`` therefore returns at once in JupyterLab,
  IPython, a plain script, or inside an application's running asyncio loop, whose loop it never
  touches. nest_asyncio is not used anywhere and nothing is patched at import.
- ``async with AIOSClient(...)`` runs the same thread; ``events()`` hands events to the caller's
  loop through a bounded buffer woken once per batch.
- Callbacks from ``on()`` run on a second thread ("aios-callbacks"), in arrival order, after the
  event is in the store, so a slow callback never stalls the connection. Their exceptions are
  caught, counted (``stats.callback_errors``), kept (``client.callback_errors``) and logged as one
  warning line; no traceback is printed from a thread.
- ``wait_for(predicate, timeout)`` blocks the calling thread on a condition the I/O thread signals
  after each frame; the store hands out snapshots, so reading it from the notebook while events
  arrive is safe.
- A refused token (close 4401, ``error auth_failed``, or HTTP 401/403 on the handshake) sets
  ``state = "auth_failed"``, writes an errors row, stops reconnecting (no storm) and logs one warning
  line. The notebook sees ``AuthError`` with a one-line message (never the token): raised by
  ``connect()`` (which waits for the server to accept the token), by ``wait_for``,
  ``wait_connected`` and ``events()``.
- Reconnect: our own loop (``connection.py`` says why not websockets' reconnecting ``connect``):
  exponential backoff from 1 s doubling to a 30 s cap, +-20 % jitter, reset once a connection has
  lasted ``healthy_after`` (5 s); forever unless ``max_reconnects`` bounds the attempts in a row.
- Staleness: with a server that sends heartbeats, no frame for 2.5 x its interval closes the
  connection (``ClientSession.check_alive``); otherwise only the WebSocket keepalive decides, and a
  quiet stream never causes a reconnect.
- The token (or a function returning it, called at every connect) is only ever written into the
  ``auth`` frame: never in a repr, log line, exception message or stats.
- ``wss://`` verifies certificates by default; ``ssl=`` takes a custom context. Frames up to 16 MiB
  (``max_size``) are accepted, so a big legitimate event is not dropped.
- ``add_frame_listener(fn)`` calls ``fn(frame, received_at)`` for every frame as received, on the I/O
  thread: the hook for recording.
"""

from __future__ import annotations

from .backoff import Backoff
from .client import DEFAULT_TYPES, STATES, AIOSClient
from .delivery import Event, Handle
from .embedded import connect
from .stats import ClientStats

__all__ = ["DEFAULT_TYPES", "STATES", "AIOSClient", "Backoff", "ClientStats", "Event", "Handle", "connect"]
