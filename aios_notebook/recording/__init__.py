"""Recording, loading and replaying the AIOS stream (issue 7).

- :class:`RecordingWriter` / :class:`Recorder`: lossless JSONL of frames as received
  (``client.record(path)`` returns a Recorder).
- :class:`RecordingReader` / :func:`read_frames`: read recordings back, loud about damage.
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
