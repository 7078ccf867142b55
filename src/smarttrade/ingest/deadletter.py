"""Dead letters: every rejected input line, with its source, line number, raw text and reason.

JSON lines, appended. A resumed run re-reads lines it has already judged; the (source, ordinal)
pairs already in the file are not written twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

import msgspec

from smarttrade.feeds.files import Line


class DeadLetter(msgspec.Struct):
    source: str
    path: str
    line: int
    ordinal: int
    raw: str
    reason: str


class DeadLetters:
    def __init__(self, path: Path | None, source: str) -> None:
        self.path = path
        self.source = source
        self.count = 0  # rejections seen in this run (re-read ones included)
        self.reasons: dict[str, int] = {}
        self._seen: set[int] = set()
        self._fh: IO[bytes] | None = None
        if path is not None and path.exists():
            decoder = msgspec.json.Decoder(DeadLetter)
            with path.open("rb") as fh:
                for raw in fh:
                    try:
                        entry = decoder.decode(raw)
                    except msgspec.DecodeError:
                        continue
                    if entry.source == source:
                        self._seen.add(entry.ordinal)

    def reject(self, line: Line, reason: str) -> None:
        self._write(line.path, line.number, line.ordinal, line.raw, reason)

    def reject_record(self, ordinal: int, raw: bytes, reason: str) -> None:
        """A rejected trade of the live API (no file: the line number is its ordinal, and a later
        session's ordinals start over, so nothing is deduplicated)."""
        self._write("live", ordinal, ordinal, raw, reason, dedupe=False)

    def _write(
        self, path: str, number: int, ordinal: int, raw_bytes: bytes, reason: str, dedupe: bool = True
    ) -> None:
        self.count += 1
        kind = reason.split(":", 1)[0] if ":" in reason[:40] else reason[:40]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1
        if self.path is None or (dedupe and ordinal in self._seen):
            return
        if dedupe:
            self._seen.add(ordinal)
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        raw = raw_bytes.decode("utf-8", errors="replace").rstrip("\r\n")
        entry = DeadLetter(self.source, path, number, ordinal, raw[:4096], reason)
        self._fh.write(msgspec.json.encode(entry) + b"\n")

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
