"""Dead letters: every rejected input line, with its source, line number, raw text and reason.

JSON lines, appended. A resumed run re-reads lines it has already judged; the (source, ordinal)
pairs already in the file are not written twice.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO

import msgspec

from smarttrade.errors import ValidationError
from smarttrade.feeds.files import Line


class DeadLetter(msgspec.Struct):
    source: str
    path: str
    line: int
    ordinal: int
    raw: str
    reason: str


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]{0,39}")


def kind_of(reason: str) -> str:
    """What a reason is about, to count reasons by: the field it names ("price: ... is not on the
    tick" -> "price"), else the whole reason, never cut."""
    field, sep, _ = reason.partition(":")
    return field if sep and _FIELD.fullmatch(field) else reason


def check_path(path: Path | None) -> None:
    """Fail now, before anything is touched, if the dead letters could not be written there."""
    if path is None:
        return
    if path.is_dir():
        raise ValidationError("--dead-letter", f"{path} is a directory; name a file")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if (
        not parent.is_dir()
        or not os.access(parent, os.W_OK)
        or (path.exists() and not os.access(path, os.W_OK))
    ):
        raise ValidationError("--dead-letter", f"{path} cannot be written")


class DeadLetters:
    def __init__(self, path: Path | None, source: str) -> None:
        self.path = path
        self.source = source
        self.count = 0  # rejections seen in this run (re-read ones included)
        self.reasons: dict[str, int] = {}  # by kind (see kind_of)
        self.examples: dict[str, str] = {}  # kind -> its first full reason
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
        kind = kind_of(reason)
        self.reasons[kind] = self.reasons.get(kind, 0) + 1
        self.examples.setdefault(kind, reason)
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
