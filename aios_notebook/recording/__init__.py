"""Recording, loading and replaying the AIOS stream (issue 7).

- :class:`RecordingWriter` / :class:`Recorder` (``writer``): lossless JSONL of frames as received,
  flushed every half second, optional gzip and rotation; ``client.record(path)`` returns a
  Recorder, ``aios-notebook record`` runs one (``commands``).
- :class:`RecordingReader` / :func:`read_frames` (``reader``): read recordings back, naming the
  file and line of any damage.
- ``load``: ``EventStore.load(path_or_glob)``, the tables live ingestion built.
- ``replay``: ``ReplayServer``, the reference server serving a recording (``aios-notebook replay``).

The format is in ``format``. ``load`` (pandas, Arrow) and ``replay`` (aiohttp) are imported on use.
"""

from __future__ import annotations

from .format import FORMAT_VERSION, public_url
from .reader import (
    FrameBatch,
    RecordedFrame,
    RecordingHeader,
    RecordingReader,
    read_frames,
    resolve_paths,
)
from .writer import Recorder, RecordingWriter, part_path

__all__ = [
    "FORMAT_VERSION",
    "FrameBatch",
    "RecordedFrame",
    "Recorder",
    "RecordingHeader",
    "RecordingReader",
    "RecordingWriter",
    "part_path",
    "public_url",
    "read_frames",
    "resolve_paths",
]
