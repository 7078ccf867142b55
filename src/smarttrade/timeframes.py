"""Bar timeframes (SMARTTRADE_TIMEFRAMES): a contract, so settings can check them without
loading the analytics engine (and numpy) into every command."""

from __future__ import annotations


def parse_timeframes(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in text.split(","):
        name = item.strip()
        if not name:
            continue
        unit = {"s": 1, "m": 60, "h": 3600}.get(name[-1:])
        if unit is None or not name[:-1].isdigit() or int(name[:-1]) <= 0:
            raise ValueError(f"timeframe {name!r} is not like 1m, 5m, 15m or 1h")
        seconds = int(name[:-1]) * unit
        if 3600 % seconds and (seconds % 3600 or 86_400 % seconds):
            raise ValueError(f"timeframe {name!r} must divide an hour, or a day in whole hours")
        out[name] = seconds
    if not out:
        raise ValueError("no timeframes")
    return out
