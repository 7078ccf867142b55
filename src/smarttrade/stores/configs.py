"""User settings (db 5): permanent, validated for the settings we know, capped in size.

Reads are tolerant: ``redis-cli SET config:u:theme dark`` stores the bare word ``dark``, which is
not JSON; it reads back as the string "dark". Writes are always JSON.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import msgspec

from smarttrade.errors import DecodeError, ValidationError
from smarttrade.keyspace import SPECS, Store, config_key, glob_escape, owner_prefix
from smarttrade.models import Theme, Watchlist, decode, encode
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores.alerts import SETTING as ALERTS
from smarttrade.stores.alerts import AlertStore, parse_rules
from smarttrade.stores.base import BaseStore

MAX_VALUE_BYTES = 64 * 1024
MAX_DEPTH = 64  # levels of arrays/objects in a setting value; far deeper than any real setting
USER_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
SETTING_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


# The settings whose shape we know, each with its check; any other name takes any JSON value.
KNOWN_SETTINGS: dict[str, Callable[[bytes], Any]] = {
    "theme": lambda data: decode(Theme, data, "theme"),
    "symbols": lambda data: decode(Watchlist, data, "symbols"),
    ALERTS: parse_rules,  # stores/alerts.py: per symbol, so an error names it
}


def check_user(user_id: str) -> str:
    if not isinstance(user_id, str) or not USER_RE.match(user_id):
        raise ValidationError(
            "user_id", f"{user_id!r} is not a user id (A-Z, a-z, 0-9, '_', '.', '@', '-'; 1-128)"
        )
    return user_id


def check_setting(name: str) -> str:
    if not isinstance(name, str) or not SETTING_RE.match(name):
        raise ValidationError(
            "setting", f"{name!r} is not a setting name (a-z, 0-9, '_', '.', '-'; 1-64 chars)"
        )
    return name


def _check_tree(name: str, tree: Any) -> None:
    """Depth and finite numbers, walked without recursion; ``tree`` is msgspec.to_builtins output."""
    stack: list[tuple[Any, str, int]] = [(tree, "$", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            # msgspec would write it as null; JSON has no NaN or Infinity.
            raise ValidationError(
                name, f"{node!r} is not a finite number; JSON has no NaN or Infinity - at {path}"
            )
        if isinstance(node, dict):
            children = [(v, f"{path}.{k}") for k, v in node.items()]
            children += [(k, f"{path} (a key)") for k in node]
        elif isinstance(node, (list, tuple, set, frozenset)):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(node)]
        else:
            continue
        if depth >= MAX_DEPTH:
            raise ValidationError(name, "nested too deeply")
        stack.extend((child, child_path, depth + 1) for child, child_path in children)


def validate_setting(name: str, value: Any) -> bytes:
    """The JSON to store for ``name``; ValidationError names the setting and the reason."""
    check_setting(name)
    try:
        tree = msgspec.to_builtins(value)
        data = encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ValidationError(name, f"not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise ValidationError(name, "nested too deeply") from None
    if len(data) > MAX_VALUE_BYTES:
        raise ValidationError(name, f"value is {len(data)} bytes; the cap is {MAX_VALUE_BYTES}")
    _check_tree(name, tree)
    check = KNOWN_SETTINGS.get(name)
    if check is not None:
        try:
            data = encode(check(data))
        except DecodeError as exc:
            raise ValidationError(exc.where, exc.reason) from None
    return data


def _tolerant(raw: bytes) -> Any:
    """JSON when it parses, else the raw text: a read never fails on what someone stored."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return raw.decode("utf-8", errors="replace")


class ConfigStore(BaseStore):
    spec = SPECS[Store.CONFIG]

    def __init__(self, topology: Topology, settings: Settings) -> None:
        super().__init__(topology, settings)
        self.alerts = AlertStore(topology, settings)  # alerts are written with their index

    async def set(self, user_id: str, setting: str, value: Any) -> None:
        data = validate_setting(setting, value)
        if setting == ALERTS:
            await self.alerts.replace(check_user(user_id), parse_rules(data))
            return
        await self.put_raw(config_key(check_user(user_id), setting), data)

    async def get(self, user_id: str, setting: str) -> Any | None:
        raw = await self.get_raw(config_key(check_user(user_id), check_setting(setting)))
        return None if raw is None else _tolerant(raw)

    async def remove(self, user_id: str, setting: str) -> bool:
        key = config_key(check_user(user_id), check_setting(setting))
        if setting == ALERTS:
            existed = await self.get_raw(key) is not None
            await self.alerts.replace(user_id, None)
            return existed
        return await self.delete(key)

    async def all(self, user_id: str) -> dict[str, Any]:
        prefix = owner_prefix(Store.CONFIG, check_user(user_id))
        keys = sorted(await self.scan_keys(glob_escape(prefix) + "*"))
        raws = await self.mget_raw(keys)
        return {
            key[len(prefix) :]: _tolerant(raw) for key, raw in zip(keys, raws, strict=True) if raw is not None
        }
