"""Exceptions that the CLI turns into one-line messages instead of tracebacks."""

from __future__ import annotations

import re


class SmartTradeError(Exception):
    """An expected failure: shown to the user as one line, exit code ``exit_code``."""

    exit_code = 1


class SettingsError(SmartTradeError):
    """A bad environment value; names the variable and the reason."""

    exit_code = 2

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


class RedisUnavailable(SmartTradeError):
    """Redis cannot be reached (refused, timed out, auth failed, binary missing)."""

    exit_code = 2

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach Redis at {url}: {reason}")
        self.url = url
        self.reason = reason


class DecodeError(SmartTradeError):
    """A stored or submitted value does not match its contract shape."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


class ValidationError(DecodeError):
    """A value offered for writing breaks a rule (bad setting, bad symbol, too large)."""


class UnknownSymbol(ValidationError):
    def __init__(self, symbol: str) -> None:
        super().__init__("symbol", f"unknown symbol {symbol!r}")
        self.symbol = symbol


class NotFound(SmartTradeError):
    """Nothing stored under a name that is valid (a known symbol with no quote yet, a setting
    the user never set, no alert on that symbol): the gateway's edge answers 404."""


class OutOfMemory(SmartTradeError):
    """Redis refused a write because maxmemory is reached and nothing can be evicted."""


class StayedFull(OutOfMemory):
    """The ingest engine waited SMARTTRADE_FULL_WAIT seconds and Redis never had room: it stops."""

    exit_code = 2


_PASSWORD_RE = re.compile(r"(//[^/@:]*:)[^@/]*@")


def redact(url: str) -> str:
    """The URL with its password masked, for messages; works on URLs too broken to parse."""
    return _PASSWORD_RE.sub(r"\1***@", url)
