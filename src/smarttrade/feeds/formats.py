"""The file layouts `smarttrade ingest --format` reads, by name (light: the CLI builds its
options from it without loading the parsers)."""

from __future__ import annotations

from enum import StrEnum


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    B3 = "b3"
    MT5 = "mt5"
    TARDIS = "tardis"
