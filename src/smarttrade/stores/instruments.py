"""The instrument registry: the declarations an ingest used, kept in Redis so that every later
command and process reads the stored data with the same ticks, units and calendar.

One hash, ``instruments:registry`` (quotes db): ROOT -> canonical declaration (symbols.py). It is
permanent on purpose: the stores' keys and volumes mean nothing without it. A root is registered
once; a different declaration of it is refused unless replaced explicitly (``smarttrade symbols
add SPEC --replace``).
"""

from __future__ import annotations

import redis.exceptions as rexc

from smarttrade.errors import SmartTradeError, ValidationError
from smarttrade.keyspace import INSTRUMENTS_KEY, Store
from smarttrade.redis.connections import redis_errors
from smarttrade.redis.topology import Topology
from smarttrade.symbols import SPECS, SymbolSpec, check_declarations, declare, parse_spec

REPLACE_HINT = "to replace the registered one: smarttrade symbols add {} --replace"


class InstrumentRegistry:
    def __init__(self, topology: Topology) -> None:
        self.url = topology.url
        self.redis = topology.client(Store.QUOTES)

    async def read(self, denied_ok: bool = False) -> dict[str, SymbolSpec]:
        """The registered instruments; a declaration this version cannot read is an error that
        names it (the registry is never rewritten behind the user's back). ``denied_ok``: a
        role whose ACL does not reach the key (backup, exporter) reads nothing instead."""
        with redis_errors(self.url):
            try:
                raw = await self.redis.hgetall(INSTRUMENTS_KEY)
            except rexc.NoPermissionError:
                if not denied_ok:
                    raise
                return {}
        out: dict[str, SymbolSpec] = {}
        for root, text in sorted(raw.items()):
            try:
                out[root.decode()] = parse_spec(text.decode())
            except (SmartTradeError, UnicodeDecodeError) as exc:
                raise SmartTradeError(f"{INSTRUMENTS_KEY} field {root!r}: {exc}") from None
        return out

    async def load(self) -> dict[str, SymbolSpec]:
        """Make the registered instruments known to this process. One declared here too (in
        SMARTTRADE_SYMBOLS or --symbol-spec) must say the same; a different one is refused."""
        registered = await self.read(denied_ok=True)
        for spec in registered.values():
            mine = SPECS.get(spec.root)
            if mine is not None and mine != spec and not mine.builtin:
                raise ValidationError(
                    "symbol spec",
                    f"{mine.declaration} conflicts with the registered {spec.declaration}; "
                    + REPLACE_HINT.format(mine.declaration),
                )
            if mine is None:
                declare(spec)
        return registered

    async def register(self, specs: list[SymbolSpec], replace: bool = False) -> list[SymbolSpec]:
        """Store ``specs`` (refusing built-ins, and conflicts unless ``replace``); returns the
        ones that were new or changed."""
        check_declarations(specs, against_known=False)  # built-ins, two different among these
        registered = await self.read()
        changed = []
        for spec in specs:
            known = registered.get(spec.root)
            if known == spec:
                continue
            if known is not None and not replace:
                raise ValidationError(
                    "symbol spec",
                    f"{spec.declaration} conflicts with the registered {known.declaration}; "
                    + REPLACE_HINT.format(spec.declaration),
                )
            changed.append(spec)
        if changed:
            with redis_errors(self.url):
                await self.redis.hset(INSTRUMENTS_KEY, mapping={s.root: s.declaration for s in changed})
        for spec in changed:
            SPECS[spec.root] = spec
        return changed
