"""Ingest defaults the command line shows in its help: plain constants, so building the CLI does
not load the engine (and numpy).
"""

from __future__ import annotations

# Seconds a trade may arrive behind its symbol's latest one.
DEFAULT_TOLERANCE_S = 5.0

# How far ahead of its symbol's clock (replays) or of the wall clock (live) a trade may be without
# confirmation. Not above the late tolerance, so an unconfirmed trade can never make a later good
# one "late".
DEFAULT_FUTURE_S = 5.0

# Lines `smarttrade symbols guess` reads by default: enough to see a tick, bounded on a day's file.
GUESS_MAX_LINES = 200_000
