"""``aios-notebook simulate``: a scenario's recording and labels written offline, in seconds.

The events are those of :func:`aios_notebook.server.workload.generate` (the very events a live
reference server sends for the seed, scenario and parameters), each framed exactly as the live
server frames it (``{"event", "data", "seq"}``, seq counting from 1) and written as a recording
line received at its simulated time. So the file loads with ``EventStore.load`` into the tables a
live client would have built, backtests like a recording of a live run, and ``aios-notebook
replay`` serves it at any speed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, cast

from ..exceptions import ConfigurationError
from ..recording.format import format_received_at, frame_line, header_line
from .hub import encode_frame
from .scenarios import get_scenario, labels_document
from .workload import DEFAULT_START, Workload

__all__ = ["run_simulate", "write_scenario_recording"]


def write_scenario_recording(
    path: str | os.PathLike[str],
    *,
    scenario: str = "steady",
    hours: float = 24.0,
    seed: int = 7,
    scenario_params: Mapping[str, Any] | None = None,
    start: float | None = None,
    labels: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``hours`` simulated hours of ``scenario`` as a recording (``.gz``: compressed).

    Args:
        path: the recording to write.
        scenario, seed, scenario_params, start: as for ``generate`` (start defaults to its fixed
            Monday, so a seed always gives the same file).
        hours: simulated hours.
        labels: also write the labels document (JSON) here.
        overwrite: replace existing files instead of refusing.

    Returns:
        The labels document (with ``"events"``: the number of frames written).

    Raises:
        ConfigurationError: a bad scenario, parameter or number of hours, or a file that exists.
    """

    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours) or hours <= 0:
        raise ConfigurationError(f"hours must be a positive number, got {hours!r}")
    shaped = get_scenario(scenario).reshape(scenario_params)  # a bad parameter fails before any file
    out_path = Path(path)
    targets = [out_path] + ([Path(labels)] if labels is not None else [])
    for target in targets:
        if target.exists() and not overwrite:
            raise ConfigurationError(f"{target} already exists (replace it with --force)")
        if not target.parent.is_dir():
            raise ConfigurationError(f"no such directory: {target.parent}")
    workload = Workload(seed, scenario, DEFAULT_START if start is None else start, scenario_params=scenario_params)
    origin = workload.origin_ms / 1000
    end_ms = workload.origin_ms + int(hours * 3_600_000)
    simulated = {"scenario": scenario, "seed": seed, "hours": hours, "params": shaped.params_used()}
    seq = 0
    raw = open(out_path, "wb")  # noqa: SIM115 - closed below, after the gzip layer
    out: IO[bytes] = raw
    if out_path.name.endswith(".gz"):  # mtime 0 and no name: a seed always gives the same bytes
        out = cast(IO[bytes], gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0))
    try:
        out.write(header_line(None, origin, None, 0, simulated=simulated).encode("ascii"))
        lines: list[str] = []
        t_ms = workload.origin_ms
        batch = workload.flush()
        while True:
            for t, event, data in batch:
                seq += 1
                frame = encode_frame(event, data, seq).decode()
                lines.append(frame_line(frame, format_received_at(t)))
            if lines:
                out.write("".join(lines).encode("ascii"))
                lines.clear()
            if t_ms >= end_ms:
                break
            t_ms = min(end_ms, t_ms + 600_000)
            batch = workload.advance_ms(t_ms)
    finally:
        if out is not raw:
            out.close()
        raw.close()
    document = labels_document(shaped, seed, origin, end_ms / 1000)
    if labels is not None:
        Path(labels).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return {**document, "events": seq}


def run_simulate(args: argparse.Namespace, params: Mapping[str, str]) -> int:
    """``aios-notebook simulate``: the exit code (2 for a bad option, named as typed)."""
    try:
        document = write_scenario_recording(
            args.output, scenario=args.scenario, hours=args.hours, seed=args.seed, scenario_params=params,
            labels=args.labels, overwrite=args.force,
        )
    except ConfigurationError as exc:
        text = str(exc)
        if text.startswith("unknown scenario"):
            text = f"--scenario: {text}"
        elif text.startswith("hours"):
            text = f"--hours: {text}"
        elif text.startswith(("unknown parameter", "parameter ", "scenario ")):
            text = f"--param: {text}"
        print(f"aios-notebook simulate: {text}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aios-notebook simulate: cannot write {exc.filename or args.output}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    windows = len(document["labels"])
    print(f"wrote {document['events']:,} events ({args.hours:g} simulated hours of {args.scenario}, seed "
          f"{args.seed}, magnitude {document['params']['magnitude']:g}) to {args.output}")
    if args.labels:
        print(f"wrote {windows} labelled window(s) to {args.labels}")
    return 0
