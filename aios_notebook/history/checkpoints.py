"""Checkpoints of the archive's derived latest-state tables, at day boundaries.

``Archive.latest(name, at)`` derives a latest-state table by feeding the store every archived
frame of the events that fill it, from the archive's first day up to ``at``: a report on the
last month of a year-long archive replays the year (216 s at 10^8 events). A checkpoint is
the table as that replay held it just before day ``D``'s files, written under
``<archive>/_checkpoints/<table>/<D>/`` by ``EventStore.to_parquet`` (the store's own files:
``from_parquet`` relies on a store restored from them continuing exactly as the one that wrote
them). The next ``latest`` at or after ``D`` restores it and
feeds only the files from ``D`` on. Batches never span files, so the frames fed, their order
and their batches are those of the whole replay.

A checkpoint holds the digest of the raw files it was derived from (path, rows, time span,
in feeding order), of the dialect they are read in, of the table's columns and of the package's
version; a file added to an earlier day, a compaction, a new schema or release changes it, and
the checkpoint is ignored (and replaced once derived again).
A read-only archive just derives: writing one is an optimisation, never a requirement.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..exceptions import RecordingError
from ..store.schema import TABLES
from ..store.store import EventStore

__all__ = ["FOLDER", "Checkpoints"]

log = logging.getLogger("aios_notebook.history")

#: the folder under the archive's root (not listed in the manifest: readers never see it)
FOLDER = "_checkpoints"
#: checkpoints kept per table, the newest days: older ones serve only reports on old periods,
#: whose replay is short anyway
KEEP = 3
_FORMAT = 1
_KEY = "key.json"  # beside the tables: the digest they were derived from
_ABANDONED = 3600.0  # seconds after which a temporary folder is a killed writer's


def _version() -> str:
    try:
        return importlib.metadata.version("aios-notebook")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree: no release to tell
        return "source"


class Checkpoints:
    """The checkpoints of one archive's latest-state tables (see the module docstring).

    Args:
        root: the archive's folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = root / FOLDER

    @staticmethod
    def keys(name: str, entries: Iterable[tuple[str, dict[str, Any]]], dialect: str = "") -> Iterator[tuple[str, str]]:
        """``(day, key)`` for every day of ``entries`` (raw files in feeding order, dated ones
        first) but the first: the key of the state just before that day's files, read in
        ``dialect`` (the frames' foreign dialect, if any)."""
        # the package's version too: a release may change how the store derives the table
        digest = hashlib.sha256(json.dumps(
            [_FORMAT, _version(), name, dialect, [(c.name, c.kind) for c in TABLES[name].columns]]).encode())
        last: str | None = None
        for relative, entry in entries:
            day = entry["date"]
            if day != last and last is not None and day != "unknown":  # files of no day: never a boundary
                yield day, digest.hexdigest()
            last = day
            digest.update(json.dumps([relative, entry.get("rows"), entry.get("time")]).encode())

    def find(self, name: str, wanted: dict[str, str], factory: Callable[[Path], EventStore]
             ) -> tuple[str, EventStore] | None:
        """The newest checkpoint of ``name`` among ``wanted`` (day -> key) whose key matches,
        restored by ``factory(folder)``: ``(day, store)``, or None."""
        for day in sorted(wanted, reverse=True):
            folder = self.root / name / day
            try:
                if json.loads((folder / _KEY).read_text()) != wanted[day]:
                    continue
                return day, factory(folder)
            except FileNotFoundError:
                continue
            except (RecordingError, OSError, ValueError) as exc:  # damaged: derived again
                log.warning("checkpoint %s unreadable, derived again: %s", folder, exc)
        return None

    def save(self, name: str, day: str, key: str, store: EventStore) -> None:
        """Write ``store`` as the checkpoint of ``name`` before ``day`` (written aside, then
        renamed: a reader never sees half of one); keep the newest :data:`KEEP`."""
        folder = self.root / name
        temporary = folder / f".{day}.{os.getpid()}.tmp"
        try:
            store.to_parquet(temporary)
            (temporary / _KEY).write_text(json.dumps(key))
            target = folder / day
            if target.exists():
                shutil.rmtree(target)
            os.replace(temporary, target)
            for old in sorted(p for p in folder.iterdir() if not p.name.startswith("."))[:-KEEP]:
                shutil.rmtree(old, ignore_errors=True)
            for left in folder.glob(".*.tmp"):  # a writer killed midway: writing takes seconds
                if time.time() - left.stat().st_mtime > _ABANDONED:
                    shutil.rmtree(left, ignore_errors=True)
        except OSError as exc:  # a read-only archive, a full disk: derived again next time
            log.info("no checkpoint written for %s before %s: %s", name, day, exc)
            shutil.rmtree(temporary, ignore_errors=True)
