"""Trading sessions in America/Sao_Paulo (configurable): which session a trade belongs to.

The default calendar is B3's futures day: ``regular=09:00-18:25`` and an after-hours session
``after=18:30-20:00``, kept apart from the regular one. A trade outside every session belongs to
``off``. Sessions of a day are named ``YYYY-MM-DD/name``.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from smarttrade.feeds.b3 import B3_TZ

DEFAULT_SESSIONS = "regular=09:00-18:25,after=18:30-20:00"
REGULAR = "regular"
OFF = "off"


@dataclass(frozen=True, slots=True)
class SessionSpan:
    name: str
    open_s: int  # seconds after local midnight
    close_s: int


@dataclass(frozen=True)
class Calendar:
    spans: tuple[SessionSpan, ...]
    tz: ZoneInfo = B3_TZ

    @classmethod
    def parse(cls, text: str = DEFAULT_SESSIONS, tz: ZoneInfo = B3_TZ) -> Calendar:
        spans = []
        for item in text.split(","):
            name, _, hours = item.strip().partition("=")
            try:
                a, b = hours.split("-")
                opening, closing = time.fromisoformat(a.strip()), time.fromisoformat(b.strip())
            except ValueError:
                raise ValueError(f"session {item.strip()!r} is not NAME=HH:MM-HH:MM") from None
            open_s = opening.hour * 3600 + opening.minute * 60
            close_s = closing.hour * 3600 + closing.minute * 60
            if not name.isidentifier() or close_s <= open_s or name == OFF:
                raise ValueError(f"session {item.strip()!r}: a name, and a close after the open")
            spans.append(SessionSpan(name, open_s, close_s))
        spans.sort(key=lambda s: s.open_s)
        for first, second in itertools.pairwise(spans):
            if second.open_s < first.close_s:
                raise ValueError(f"sessions {first.name} and {second.name} overlap")
        return cls(tuple(spans), tz)

    def _offset_s(self, day: int) -> int:
        """The zone's UTC offset on a local day (days since the epoch), at noon."""
        return _offset(self.tz, day)

    def locate(self, epoch_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per trade: local time (epoch seconds shifted by the zone's offset), local day (days
        since the epoch), session index (-1: off) and where that session began (local seconds of
        the day: its open, or for ``off`` the last close before, else midnight)."""
        guess = (epoch_s - 3 * 3600) // 86_400  # close enough to find each day's offset
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
        name = self.spans[index].name if index >= 0 else OFF
        return f"{date(1970, 1, 1) + timedelta(days=day)}/{name}"

    def kind(self, index: int) -> str:
        return self.spans[index].name if index >= 0 else OFF


@functools.lru_cache(maxsize=4096)
def _offset(tz: ZoneInfo, day: int) -> int:
    moment = datetime(1970, 1, 1, 12, tzinfo=UTC) + timedelta(days=day)
    offset = moment.astimezone(tz).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())
