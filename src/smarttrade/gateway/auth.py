"""Signed tokens (PyJWT, HS256): who a request or a socket is, and whether it may act as admin.

A token carries the user id (``sub``), an admin flag and an expiry; nothing else is trusted from
the client. The domain raises ``AuthError``; the HTTP and WebSocket edges map it to 401/403 and to
close codes (DESIGN.md §6).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

import jwt

from smarttrade.errors import SmartTradeError

ALGORITHM = "HS256"
ISSUER = "smarttrade"
USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")  # models.UserId, the session and config keys' id
DEFAULT_TTL_S = 12 * 3600
MAX_TTL_S = 366 * 86_400


class AuthError(SmartTradeError):
    """No token, a bad or expired one (401), or a token without the right (403)."""

    def __init__(self, message: str, *, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    admin: bool = False

    def require_admin(self) -> None:
        if not self.admin:
            raise AuthError("this needs an admin token", forbidden=True)

    def require_user(self, user: str) -> None:
        """Own data only, unless admin."""
        if user != self.user and not self.admin:
            raise AuthError(f"user {self.user!r} may not act for {user!r}", forbidden=True)


class Tokens:
    def __init__(self, secret: str) -> None:
        self._secret = secret

    def create(self, user: str, *, admin: bool = False, ttl_s: int = DEFAULT_TTL_S) -> str:
        if not USER_RE.match(user):
            raise ValueError(f"user {user!r}: 1-128 characters of letters, digits and _.@-")
        if not 0 < ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl: must be from 1 s to a year (got {ttl_s} s)")
        now = int(time.time())
        claims = {"sub": user, "adm": admin, "iat": now, "exp": now + ttl_s, "iss": ISSUER}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str | None) -> Identity:
        if not token:
            raise AuthError("no token: send Authorization: Bearer TOKEN or ?token=TOKEN")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["sub", "exp", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"bad token: {exc}") from None
        user = claims["sub"]
        if not isinstance(user, str) or not USER_RE.match(user):
            raise AuthError("bad token: its user id is not valid")
        return Identity(user, admin=claims.get("adm") is True)


def demo_secret() -> str:
    """A secret for one demo run (tokens die with it)."""
    return secrets.token_urlsafe(32)


def parse_ttl(text: str) -> int:
    """``12h``, ``30m``, ``7d``, ``90s`` or plain seconds, as seconds."""
    match = re.fullmatch(r"\s*(\d{1,9})\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"ttl: {text!r} is not a duration such as 90s, 30m, 12h or 7d")
    number, unit = int(match[1]), match[2] or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86_400}[unit]
