"""Trading sessions in an instrument's time zone: which session a trade belongs to.

Each instrument declares its calendar (symbols.py): the built-in B3 contracts (and ``@B3``) use
``SMARTTRADE_SESSIONS`` in America/Sao_Paulo, by default ``regular=09:00-18:25`` and an
after-hours session ``after=18:30-20:00/apart`` (``/apart``: its own bars, no indicators); a
24-hour market has one session ``day`` from midnight to midnight in its zone. A trade outside
every session belongs to ``off``. Sessions of a day are named ``YYYY-MM-DD/name``, the day being
the instrument's local day.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from smarttrade.symbols import (
    B3,
    B3_ZONE,
    DAY,
    DEFAULT_SESSIONS,
    OFF,
    SessionSpan,
    SymbolSpec,
    parse_sessions,
    zone,
)

B3_TZ = zone(B3_ZONE)
__all__ = ["DEFAULT_SESSIONS", "OFF", "Calendar", "calendar_for"]


@dataclass(frozen=True)
class Calendar:
    spans: tuple[SessionSpan, ...]
    tz: ZoneInfo = B3_TZ

    @classmethod
    def parse(cls, text: str = DEFAULT_SESSIONS, tz: ZoneInfo | str = B3_ZONE) -> Calendar:
        """ValueError names a bad session."""
        return cls(parse_sessions(text), zone(tz) if isinstance(tz, str) else tz)

    def _offset_s(self, day: int) -> int:
        """The zone's UTC offset on a local day (days since the epoch), at noon."""
        return _offset(self.tz, day)

    def locate(self, epoch_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per trade: local time (epoch seconds shifted by the zone's offset), local day (days
        since the epoch), session index (-1: off) and where that session began (local seconds of
        the day: its open, or for ``off`` the last close before, else midnight)."""
        approx = self._offset_s(int(epoch_s[0]) // 86_400)  # close enough to find each day's offset
        guess = (epoch_s + approx) // 86_400
        first, last = int(guess[0]), int(guess[-1])
        if first == last and guess.min() == first:  # the usual case: one day
            offsets = np.full_like(epoch_s, self._offset_s(first))
        else:
            offsets = np.zeros_like(epoch_s)
            for day in np.unique(guess).tolist():
                offsets[guess == day] = self._offset_s(day)
        local = epoch_s + offsets
        day = local // 86_400
        second = local - day * 86_400
        index = np.full(epoch_s.shape, -1, dtype=np.int64)
        began = np.zeros(epoch_s.shape, dtype=np.int64)
        for span in self.spans:
            began[second >= span.close_s] = span.close_s  # off after this session
        for i, span in enumerate(self.spans):
            inside = (second >= span.open_s) & (second < span.close_s)
            index[inside] = i
            began[inside] = span.open_s
        return local, day, index, began

    def session_name(self, day: int, index: int) -> str:
        return f"{date(1970, 1, 1) + timedelta(days=day)}/{self.kind(index)}"

    def kind(self, index: int) -> str:
        return self.spans[index].name if index >= 0 else OFF

    def indicators(self, index: int) -> bool:
        """Whether bars of this session feed the indicators: every session but ``off`` and those
        marked ``/apart``."""
        return index >= 0 and not self.spans[index].apart


def calendar_for(spec: SymbolSpec, b3_sessions: str) -> Calendar:
    """The instrument's calendar; ``b3_sessions`` is SMARTTRADE_SESSIONS, for B3's."""
    if spec.zone == B3:
        return _cached(b3_sessions, B3_ZONE)
    return _cached(spec.sessions or f"{DAY}=00:00-24:00", spec.zone)


@functools.lru_cache(maxsize=256)
def _cached(sessions: str, tz: str) -> Calendar:
    return Calendar.parse(sessions, tz)


@functools.lru_cache(maxsize=4096)
def _offset(tz: ZoneInfo, day: int) -> int:
    moment = datetime(1970, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
    offset = moment.astimezone(tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())
