"""Streaming line reader shared by the file formats: ordinals, byte offsets, oversize checks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from smarttrade.feeds.record import MAX_LINE_BYTES, BadRecord, TradeRecord


@dataclass(frozen=True, slots=True)
class Line:
    ordinal: int  # 1-based, across all files of the source
    path: str
    number: int  # 1-based line number in its file
    raw: bytes


@dataclass(frozen=True, slots=True)
class Parsed:
    """One line's outcome: a trade, a rejection (with the reason), or nothing (header, quote)."""

    line: Line
    record: TradeRecord | None = None
    error: str | None = None


def read_lines(paths: Sequence[str | Path]) -> Iterator[Line]:
    """Lines of every file in order, never more than MAX_LINE_BYTES + 1 bytes of one in memory
    (a file without newlines must not be loaded whole); an oversized line keeps only its start."""
    ordinal = 0
    for path in paths:
        with open(path, "rb") as fh:
            number = 0
            while raw := fh.readline(MAX_LINE_BYTES + 1):
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    rest = raw
                    while rest and not rest.endswith(b"\n"):  # skip to the end of this line
                        rest = fh.readline(1 << 20)
                number += 1
                ordinal += 1
                yield Line(ordinal, str(path), number, raw)


class LineParser:
    """A format: ``parse`` turns one decoded line into a record, None to skip, or BadRecord."""

    name = "base"

    def parse(self, text: str, line: Line) -> TradeRecord | None:  # pragma: no cover - abstract
        raise NotImplementedError


def parse_lines(parser: LineParser, lines: Iterator[Line]) -> Iterator[Parsed]:
    for line in lines:
        if len(line.raw) > MAX_LINE_BYTES:
            yield Parsed(line, error=f"line is over {MAX_LINE_BYTES} bytes")
            continue
        try:
            text = line.raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text = line.raw.decode("latin-1")  # B3 files in the wild are often Latin-1
            except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
                yield Parsed(line, error="line is not text")
                continue
        text = text.rstrip("\r\n")
        if not text.strip():
            continue
        try:
            record = parser.parse(text, line)
        except BadRecord as exc:
            yield Parsed(line, error=str(exc))
        except Exception as exc:  # a parser bug must not stop the run: the line is kept aside
            yield Parsed(line, error=f"unreadable ({type(exc).__name__}: {str(exc)[:80]})")
        else:
            if record is not None:
                yield Parsed(line, record=record)
