"""Dask's side of scaling out: a client (given, at an address, or a LocalCluster made for the
run), and running a list of tasks on it with a progress bar. The scheduling is Dask's own."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..exceptions import ConfigurationError

__all__ = ["dask_client", "run_tasks"]


@contextmanager
def dask_client(client: Any = None, *, workers: int | None = None, processes: bool = True) -> Iterator[Any]:
    """A ``distributed.Client``: ``client`` itself, a client of the scheduler at ``client``
    (``"tcp://host:8786"``), or a ``LocalCluster`` of ``workers`` single-threaded processes
    (default: every core) on 127.0.0.1, closed on leaving."""
    from distributed import Client, LocalCluster

    if client is not None:
        if isinstance(client, str):
            with Client(client) as connected:
                yield connected
            return
        if not hasattr(client, "submit") or not hasattr(client, "gather"):
            raise ConfigurationError(f"client must be a distributed.Client or a scheduler address, not {client!r}")
        yield client
        return
    if workers is not None and workers < 1:
        raise ConfigurationError(f"workers must be >= 1, got {workers}")
    count = workers or os.cpu_count() or 1
    # every socket on the loopback, ports chosen by the system (the default 8787 may be taken)
    where = {"host": "127.0.0.1"} if processes else {"worker_dashboard_address": "127.0.0.1:0"}
    with LocalCluster(n_workers=count, threads_per_worker=1, processes=processes, dashboard_address="127.0.0.1:0",
                      **where) as cluster, Client(cluster) as local:
        yield local


def run_tasks(client: Any, function: Callable[..., Any], arguments: Sequence[tuple[Any, ...]], *,
              progress: bool = False, desc: str = "tasks", unit: str = "task",
              weights: Sequence[float] | None = None) -> list[Any]:
    """``function(*args)`` for each of ``arguments`` on the cluster; the results in order. A
    task that raises raises here (the others are cancelled)."""
    from distributed import as_completed

    futures = [client.submit(function, *args, pure=False) for args in arguments]
    order = {future.key: index for index, future in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    bar = None
    if progress and futures:
        from tqdm.auto import tqdm

        bar = tqdm(total=float(sum(weights)) if weights else len(futures), desc=desc, unit=unit)
    try:
        for future in as_completed(futures):
            index = order[future.key]
            results[index] = future.result()
            if bar is not None:
                bar.update(weights[index] if weights else 1)
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        if bar is not None:
            bar.close()
    return results
