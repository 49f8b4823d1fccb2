"""Capture files: what live ingest received, one line per frame (reading them, and recording them live).

Format (UTF-8 text, optionally gzip-compressed when the name ends in .gz)::

    <ts_recv_ns> <raw frame>\\n
    1700000000125000000 [{"ev":"T","sym":"AAPL","p":187.43,"s":200,"t":1700000000123,...}]

The frame is stored exactly as received, so a recorded session replays
bit-for-bit through :func:`services.ingest.polygon_ws.parse_frame`. Polygon
sends compact single-line JSON; a frame holding a line break has it
replaced by a space on writing (JSON whitespace, same meaning).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from io import BufferedReader, BufferedWriter
from pathlib import Path
from typing import NamedTuple

from orderflow_client.timestamps import ns_to_utc_iso
from services.ingest.rejects import Reject

SOURCE = "capture"


class CaptureLine(NamedTuple):
    ts_recv: int
    frame: bytes


def format_line(ts_recv: int, frame: bytes | str) -> bytes:
    """One capture line, newline included."""
    data = frame.encode() if isinstance(frame, str) else frame
    if b"\n" in data or b"\r" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return b"%d %s\n" % (ts_recv, data)


def open_capture(path: Path) -> gzip.GzipFile | BufferedReader:
    """A capture file opened for reading bytes, decompressed when its name ends in ``.gz``."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_capture(path: Path) -> Iterator[CaptureLine | Reject]:
    """Stream a capture file line by line (never loaded whole)."""
    with open_capture(path) as stream:
        for number, line in enumerate(stream, start=1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            stamp, separator, frame = line.partition(b" ")
            if not separator or not stamp.isdigit() or not frame:
                yield Reject(
                    SOURCE, "malformed_capture_line", f"{path.name}:{number}", line[:80].decode(errors="replace")
                )
                continue
            yield CaptureLine(int(stamp), frame)


class CaptureRecorder:
    """Writes received frames in the capture format, one file per UTC day:
    ``<prefix>-YYYY-MM-DD.capture``."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._day = ""
        self._file: BufferedWriter | None = None

    def write(self, ts_recv: int, frame: str | bytes) -> None:
        """Append one frame received at ``ts_recv`` (ns), opening the file of its UTC day when it changes."""
        day = ns_to_utc_iso(ts_recv)[:10]
        if self._file is None or day != self._day:
            self.close()
            self._file = Path(f"{self.prefix}-{day}.capture").open("ab")  # noqa: SIM115 (closed by close())
            self._day = day
        self._file.write(format_line(ts_recv, frame))

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
