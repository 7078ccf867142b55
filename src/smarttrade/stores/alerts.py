"""Price alerts' index: per symbol, who waits for which price, so a check costs O(log n + fired).

``config:USER:alerts`` (db 5) is the fact; the index beside it (keyspace.ALERT_INDEX_PREFIX) is
derived from it and written by the same script, so the two never disagree; ``rebuild`` re-derives
it from the config keys (repair, start-up). The check (``check``) is one script per commit and
symbol: it refuses an offset at or before the last one checked, so two gateways checking the same
message, or a replayed commit, fire once. Semantics and bounds: docs/alerts.md.

Standalone layout: each script builds a few keys of other symbols or users from prefixes given in
ARGV (the per-symbol keys of a whole-config write, the fired user's history); under Redis Cluster
these writes split per slot (docs/alerts.md, "Cluster").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from smarttrade.errors import DecodeError, NotFound, SmartTradeError, UnknownSymbol, ValidationError
from smarttrade.keyspace import (
    ALERT_CHANGES_CHANNEL,
    ALERT_CHANNEL,
    ALERT_HISTORY_LEN,
    ALERT_HISTORY_TTL,
    ALERT_INDEX_PARTS,
    ALERT_LAST_TTL,
    ALERT_SYMBOLS_KEY,
    SPECS,
    Store,
    alert_history_key,
    alert_index_key,
    config_key,
    parse_key,
    trades_stream_key,
)
from smarttrade.models import AlertRule, Symbol, Trade, decode, decode_stream_entry, encode
from smarttrade.redis.scripts import Protocol
from smarttrade.redis.topology import Topology
from smarttrade.settings import Settings
from smarttrade.stores.base import BaseStore
from smarttrade.stores.trade_stream import holds_after
from smarttrade.symbols import check_symbol, spec_for

log = logging.getLogger(__name__)

SETTING = "alerts"
RETRIES = 20  # optimistic writes of one user's alerts racing each other
STREAM_PAGE = 500


def parse_rules(data: bytes) -> dict[str, AlertRule]:
    """Per symbol, so an error names it: ``alerts.DOL: Expected float > 0.0 - at $.price``."""
    rules = decode(dict[Symbol, Any], data, SETTING)
    out = {sym: decode(AlertRule, encode(rule), f"alerts.{sym}") for sym, rule in rules.items()}
    for sym, rule in out.items():
        if rule.trigger == "every":
            _tick(sym)
    return out


def _tick(symbol: str) -> Decimal:
    try:
        return spec_for(symbol).tick
    except UnknownSymbol:
        raise ValidationError(
            f"alerts.{symbol}.trigger", f"'every' re-arms one tick back and {symbol!r} is an unknown symbol"
        ) from None


def _num(value: float) -> str:
    """A price or time as JSON number text, parsed identically by Redis, Lua and JSON readers."""
    return repr(float(value))


def _index_rule(symbol: str, rule: AlertRule) -> bytes:
    """The rule as the index keeps it: texts, so the scripts compare and score exactly."""
    rearm = ""
    if rule.trigger == "every":
        tick = _tick(symbol)
        price = Decimal(repr(float(rule.price)))
        rearm = _num(float(price - tick if rule.type == "above" else price + tick))
    expires = "" if rule.expires_at is None else _num(rule.expires_at)
    return encode({"pt": _num(rule.price), "t": rule.type, "g": rule.trigger, "xt": expires, "ra": rearm})


def _index_keys_by_part(symbol: str) -> dict[str, str]:
    """The symbol's index keys named by part: the KEYS slots of the rearm and check scripts."""
    return {part: alert_index_key(symbol, part) for part in ALERT_INDEX_PARTS}


def _symbol_keys(symbol: str) -> list[str]:
    """The same keys in ALERT_INDEX_PARTS' order (the write script's per-symbol slots)."""
    return list(_index_keys_by_part(symbol).values())


# Writes a user's alerts (the config key, unless only the index is repaired) and their index
# entries, after checking that the config key still holds what the caller read (else -1: read
# again). A rule that is unchanged keeps its state (fired, waiting); a new or changed one is armed
# now, by the server's clock, and fires only on commits after that millisecond. After the fixed
# slots: per symbol its six index keys (ALERT_INDEX_PARTS' order) and two ARGV, the symbol and its
# index rule (JSON texts from _index_rule) or "" to remove it.
WRITE = Protocol(
    keys=("config_key", "symbols_key"),
    argv=("user", "expect_present", "expect", "write_config", "new_config", "channel", "last_ttl"),
)
WRITE_SCRIPT = (
    WRITE.header()
    + r"""
if write_config == '1' then
  local cur = redis.call('GET', config_key)
  if (cur ~= false) ~= (expect_present == '1') or (cur and cur ~= expect) then return -1 end
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = {}
local n = (#KEYS - NKEYS) / 6
for i = 0, n - 1 do
  local k = NKEYS + i * 6
  local above, below, rearm_above, rearm_below, meta, last =
    KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  local sym, rule = ARGV[NARGV + i * 2 + 1], ARGV[NARGV + i * 2 + 2]
  local cur = redis.call('HGET', meta, user)
  local keep = false
  if rule ~= '' and cur then
    local r, ok, m = cjson.decode(rule), pcall(cjson.decode, cur)
    keep = ok and m.pt == r.pt and m.t == r.t and m.g == r.g and m.xt == r.xt and m.ra == r.ra
  end
  if not keep and (cur or rule ~= '') then
    for _, set in ipairs({above, below, rearm_above, rearm_below}) do redis.call('ZREM', set, user) end
    if rule == '' then
      redis.call('HDEL', meta, user)
      if redis.call('HLEN', meta) == 0 then redis.call('SREM', symbols_key, sym) end
    else
      local r = cjson.decode(rule)
      r.st, r.s = 'armed', now_ms
      redis.call('ZADD', r.t == 'above' and above or below, r.pt, user)
      redis.call('HSET', meta, user, cjson.encode(r))
      redis.call('SADD', symbols_key, sym)
      redis.call('SET', last, now_ms .. '-0', 'NX', 'EX', last_ttl)
    end
    changed[#changed + 1] = sym
  end
end
if write_config == '1' then
  if new_config == '' then redis.call('DEL', config_key) else redis.call('SET', config_key, new_config) end
end
if #changed > 0 then redis.call('PUBLISH', channel, table.concat(changed, ',')) end
return #changed
"""
)

# Arms one alert again (whatever its state), from now; 0 when the user has none on the symbol.
REARM = Protocol(
    keys=("above", "below", "rearm_above", "rearm_below", "meta", "last", "symbols_key"),
    argv=("user", "symbol", "channel", "last_ttl"),
)
REARM_SCRIPT = (
    REARM.header()
    + r"""
local cur = redis.call('HGET', meta, user)
if not cur then return 0 end
local t = redis.call('TIME')
local r = cjson.decode(cur)
for _, set in ipairs({above, below, rearm_above, rearm_below}) do redis.call('ZREM', set, user) end
r.st, r.s, r.fr = 'armed', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), nil
redis.call('ZADD', r.t == 'above' and above or below, r.pt, user)
redis.call('HSET', meta, user, cjson.encode(r))
redis.call('SADD', symbols_key, symbol)
redis.call('SET', last, r.s .. '-0', 'NX', 'EX', last_ttl)
redis.call('PUBLISH', channel, symbol)
return 1
"""
)

# One commit of one symbol against its armed alerts: refused (reply {0}) when its offset is at or
# before the last one checked; else the trades, in order, re-arm waiting "every" alerts one tick
# back and fire armed ones at or beyond their price. A fire moves the member out of its armed set,
# records it in the meta and the user's history, and publishes the frame gateways push. Expired
# alerts found on the way are disarmed; alerts armed in or after the commit's millisecond (the
# offset's first part, the server's clock) are passed over. After the fixed ARGV: price, time
# pairs (JSON number texts). Reply: {1, fired users...}.
# With ``full`` "0" the pairs are only the commit's records (each trade beyond every earlier one,
# up or down): exact for alerts armed before the commit, since the first trade at or beyond a price
# is such a record. Not when an "every" alert could re-arm within the commit: then the reply is {2},
# nothing written, and the caller sends every trade (``full`` "1").
CHECK = Protocol(
    keys=("above", "below", "rearm_above", "rearm_below", "meta", "last"),
    argv=(
        "offset",
        "symbol_json",
        "offset_json",
        "epoch_json",
        "history_pre",  # the fired history key is history_pre .. USER .. history_post
        "history_post",
        "history_len",
        "history_ttl",
        "channel",
        "last_ttl",
        "full",  # "1": every trade follows; "0": only the records (see above)
        "min_price",  # the commit's lowest and highest trade prices
        "max_price",
    ),
)
CHECK_SCRIPT = (
    CHECK.header()
    + r"""
local ems, eseq = string.match(offset, '^(%d+)%-(%d+)$')
if not ems then return redis.error_reply('offset ' .. offset .. ' is not a stream entry id') end
ems, eseq = tonumber(ems), tonumber(eseq)
local prev = redis.call('GET', last)
if prev then
  local pms, pseq = string.match(prev, '^(%d+)%-(%d+)$')
  pms, pseq = tonumber(pms), tonumber(pseq)
  if pms and (ems < pms or (ems == pms and eseq <= pseq)) then return {0} end
end

local function edge(key, index)
  local r = redis.call('ZRANGE', key, index, index, 'WITHSCORES')
  if r[1] then return tonumber(r[2]) end
  return nil
end
local function first_score(r)
  if r[1] then return tonumber(r[2]) end
  return nil
end
local lo_above, hi_below = edge(above, 0), edge(below, -1)
local hi_rearm_above, lo_rearm_below = edge(rearm_above, -1), edge(rearm_below, 0)
if full == '0' then
  if hi_rearm_above or lo_rearm_below then return {2} end
  local function any_every(members)
    for _, m in ipairs(members) do
      local raw = redis.call('HGET', meta, m)
      if raw and string.find(raw, '"g":"every"', 1, true) then return true end
    end
    return false
  end
  if lo_above and tonumber(max_price) >= lo_above
      and any_every(redis.call('ZRANGEBYSCORE', above, '-inf', max_price)) then return {2} end
  if hi_below and tonumber(min_price) <= hi_below
      and any_every(redis.call('ZRANGEBYSCORE', below, min_price, '+inf')) then return {2} end
end
redis.call('SET', last, offset, 'EX', last_ttl)
if not (lo_above or hi_below or hi_rearm_above or lo_rearm_below) then return {1} end

local fired = {1}
local function rearm(from, members, to)
  for _, m in ipairs(members) do
    redis.call('ZREM', from, m)
    local raw = redis.call('HGET', meta, m)
    if raw then
      local mt = cjson.decode(raw)
      mt.st = 'armed'
      redis.call('HSET', meta, m, cjson.encode(mt))
      redis.call('ZADD', to, mt.pt, m)
    end
  end
end
local function visit(set, m, dir, ptext, ttext)
  local raw = redis.call('HGET', meta, m)
  if not raw then redis.call('ZREM', set, m) return end
  local mt = cjson.decode(raw)
  if mt.xt ~= '' and tonumber(mt.xt) * 1000 <= ems then
    redis.call('ZREM', set, m)
    mt.st = 'expired'
    redis.call('HSET', meta, m, cjson.encode(mt))
    return
  end
  if mt.s >= ems then return end
  redis.call('ZREM', set, m)
  local rec = '{"user":"' .. m .. '","symbol":' .. symbol_json .. ',"price":' .. mt.pt ..
    ',"trade_price":' .. ptext .. ',"type":"' .. dir .. '","trigger":"' .. mt.g ..
    '","fired_at":' .. ttext .. ',"offset":' .. offset_json .. ',"epoch":' .. epoch_json .. '}'
  if mt.g == 'every' then
    local ra = tonumber(mt.ra)
    if dir == 'above' then
      redis.call('ZADD', rearm_above, mt.ra, m)
      if not hi_rearm_above or ra > hi_rearm_above then hi_rearm_above = ra end
    else
      redis.call('ZADD', rearm_below, mt.ra, m)
      if not lo_rearm_below or ra < lo_rearm_below then lo_rearm_below = ra end
    end
    mt.st = 'waiting'
  else
    mt.st = 'fired'
  end
  mt.fr = rec
  redis.call('HSET', meta, m, cjson.encode(mt))
  local hk = history_pre .. m .. history_post
  redis.call('LPUSH', hk, rec)
  redis.call('LTRIM', hk, 0, tonumber(history_len) - 1)
  redis.call('EXPIRE', hk, history_ttl)
  redis.call('PUBLISH', channel, '{"type":"alert","symbol":' .. symbol_json .. ',"offset":' ..
    offset_json .. ',"epoch":' .. epoch_json .. ',"user":"' .. m .. '","alert":' .. rec .. '}')
  fired[#fired + 1] = m
end

for i = NARGV + 1, #ARGV - 1, 2 do
  local ptext, ttext = ARGV[i], ARGV[i + 1]
  local p = tonumber(ptext)
  if hi_rearm_above and p <= hi_rearm_above then
    rearm(rearm_above, redis.call('ZRANGEBYSCORE', rearm_above, ptext, '+inf'), above)
    hi_rearm_above, lo_above = edge(rearm_above, -1), edge(above, 0)
  end
  if lo_rearm_below and p >= lo_rearm_below then
    rearm(rearm_below, redis.call('ZRANGEBYSCORE', rearm_below, '-inf', ptext), below)
    lo_rearm_below, hi_below = edge(rearm_below, 0), edge(below, -1)
  end
  if lo_above and p >= lo_above then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', above, '-inf', ptext)) do
      visit(above, m, 'above', ptext, ttext)
    end
    lo_above = first_score(
      redis.call('ZRANGEBYSCORE', above, '(' .. ptext, '+inf', 'WITHSCORES', 'LIMIT', 0, 1))
  end
  if hi_below and p <= hi_below then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', below, ptext, '+inf')) do
      visit(below, m, 'below', ptext, ttext)
    end
    hi_below = first_score(
      redis.call('ZREVRANGEBYSCORE', below, '(' .. ptext, '-inf', 'WITHSCORES', 'LIMIT', 0, 1))
  end
end
return fired
"""
)


@dataclass(frozen=True, slots=True)
class AlertState:
    """One alert as the API shows it: the rule, its state and the last time it fired."""

    symbol: str
    rule: AlertRule
    state: str  # armed | fired | waiting | expired
    armed_at: float | None  # epoch seconds (server clock) of the last arming
    last_fired: dict[str, Any] | None


class AlertStore(BaseStore):
    """The index and the fired history, in the config db; the trade streams for catch-up."""

    spec = SPECS[Store.CONFIG]

    def __init__(self, topology: Topology, settings: Settings) -> None:
        super().__init__(topology, settings)
        self.streams = topology.client(Store.ORDERFLOW)

    # -- writing alerts (config key and index together) --

    async def replace(self, user_id: str, rules: dict[str, AlertRule] | None) -> None:
        """Write the user's whole alerts setting (None: remove it) and its index entries."""
        await self.update(user_id, lambda _: rules)

    async def update(
        self,
        user_id: str,
        change: Callable[[dict[str, AlertRule]], dict[str, AlertRule] | None],
    ) -> dict[str, AlertRule] | None:
        """Read the user's alerts, apply ``change`` and write the result, retried when another
        write came between (a compare-and-set inside the script)."""
        key = config_key(user_id, SETTING)
        for _ in range(RETRIES):
            raw = await self.get_raw(key)
            current = self._lenient(key, raw)
            new = change(dict(current))
            data = b"" if new is None else encode(self._checked(new))
            symbols = set(current) | set(new or {})
            reply = await self._write(user_id, symbols, new or {}, raw, data, write_config=True)
            if reply >= 0:
                return new
        raise SmartTradeError(f"{key}: changed by others {RETRIES} times in a row; try again")

    @staticmethod
    def _checked(rules: dict[str, AlertRule]) -> dict[str, AlertRule]:
        return parse_rules(encode(rules))

    @staticmethod
    def _lenient(key: str, raw: bytes | None) -> dict[str, AlertRule]:
        """The stored rules; a hand-written value that breaks the shape counts as none (logged):
        the write replaces it."""
        if raw is None:
            return {}
        try:
            return parse_rules(raw)
        except DecodeError as exc:
            log.warning("%s: ignored, not an alerts map: %s", key, exc)
            return {}

    async def _write(
        self,
        user_id: str,
        symbols: Iterable[str],
        rules: dict[str, AlertRule],
        expect: bytes | None,
        data: bytes,
        *,
        write_config: bool,
    ) -> int:
        keys = WRITE.pack_keys(config_key=config_key(user_id, SETTING), symbols_key=ALERT_SYMBOLS_KEY)
        argv = WRITE.pack_argv(
            user=user_id,
            expect_present="1" if expect is not None else "0",
            expect=expect or b"",
            write_config="1" if write_config else "0",
            new_config=data,
            channel=ALERT_CHANGES_CHANNEL,
            last_ttl=ALERT_LAST_TTL,
        )
        for sym in sorted(symbols):
            keys += _symbol_keys(sym)
            argv += [sym, _index_rule(sym, rules[sym]) if sym in rules else b""]
        return int(await self.run_script(WRITE_SCRIPT, keys, argv))

    async def rearm(self, user_id: str, symbol: str) -> None:
        check_symbol(symbol)
        keys = REARM.pack_keys(**_index_keys_by_part(symbol), symbols_key=ALERT_SYMBOLS_KEY)
        argv = REARM.pack_argv(
            user=user_id, symbol=symbol, channel=ALERT_CHANGES_CHANNEL, last_ttl=ALERT_LAST_TTL
        )
        if not await self.run_script(REARM_SCRIPT, keys, argv):
            raise NotFound(f"alerts.{symbol}: no alert on this symbol")

    async def rebuild(self) -> int:
        """Re-derive the whole index from the config keys (SCAN ``config:*:alerts``): entries of
        rules that are gone are removed, new or changed ones armed, unchanged ones keep their state.
        Returns the number of (user, symbol) entries changed."""
        wanted: dict[str, dict[str, AlertRule]] = {}
        for key in await self.scan_keys(f"config:*:{SETTING}"):
            try:
                user = parse_key(key).parts[0]
            except ValueError:
                continue
            wanted[user] = self._lenient(key, await self.get_raw(key))
        with self.guard(ALERT_SYMBOLS_KEY):
            indexed = {s.decode() for s in await self.redis.smembers(ALERT_SYMBOLS_KEY)}
        touched: dict[str, set[str]] = {user: set(rules) for user, rules in wanted.items()}
        for sym in indexed:
            with self.guard(sym):
                for user in await self.redis.hkeys(alert_index_key(sym, "meta")):
                    touched.setdefault(user.decode(), set()).add(sym)
        changed = 0
        for user, symbols in touched.items():
            changed += await self._write(user, symbols, wanted.get(user, {}), None, b"", write_config=False)
        return changed

    # -- reading --

    async def states(self, user_id: str) -> list[AlertState]:
        key = config_key(user_id, SETTING)
        rules = self._lenient(key, await self.get_raw(key))
        out = []
        for sym, rule in sorted(rules.items()):
            with self.guard(sym):
                raw = await self.redis.hget(alert_index_key(sym, "meta"), user_id)
            meta = msgspec.json.decode(raw) if raw else {}
            fired = meta.get("fr")
            out.append(
                AlertState(
                    symbol=sym,
                    rule=rule,
                    state=meta.get("st", "unindexed"),
                    armed_at=meta["s"] / 1000 if "s" in meta else None,
                    last_fired=msgspec.json.decode(fired) if fired else None,
                )
            )
        return out

    async def fired(self, user_id: str, limit: int = ALERT_HISTORY_LEN) -> list[dict[str, Any]]:
        """The user's fired history, newest first."""
        key = alert_history_key(user_id)
        with self.guard(key):
            raws = await self.redis.lrange(key, 0, limit - 1)
        return [msgspec.json.decode(r) for r in raws]

    async def symbols(self) -> set[str]:
        """Symbols with at least one alert (armed or not): the engine's cheap first test."""
        with self.guard(ALERT_SYMBOLS_KEY):
            return {s.decode() for s in await self.redis.smembers(ALERT_SYMBOLS_KEY)}

    async def armed_count(self, symbol: str) -> int:
        with self.guard(symbol):
            async with self.redis.pipeline(transaction=False) as pipe:
                for part in ("above", "below", "rearm_above", "rearm_below"):
                    pipe.zcard(alert_index_key(symbol, part))
                return sum(await pipe.execute())

    async def last_checked(self, symbol: str) -> str | None:
        raw = await self.get_raw(alert_index_key(symbol, "last"))
        return raw.decode() if raw else None

    # -- checking --

    async def check(self, symbol: str, offset: str, epoch: str, trades: Iterable[Trade]) -> list[str] | None:
        """Check one commit's trades (in order) against the symbol's alerts; None when that
        offset was already checked (by this or another gateway), else the users fired."""
        trades = list(trades)
        if not trades:
            return []  # nothing to cross
        pre, _, post = alert_history_key("\0").partition("\0")
        keys = CHECK.pack_keys(**_index_keys_by_part(symbol))
        records = _records(trades)
        low, high = min(t.price for t in records), max(t.price for t in records)
        reply: list[Any] = []
        for full, pairs in (("0", records), ("1", _path(trades))):
            argv = CHECK.pack_argv(
                offset=offset,
                symbol_json=encode(symbol),
                offset_json=encode(offset),
                epoch_json=encode(epoch),
                history_pre=pre,
                history_post=post,
                history_len=ALERT_HISTORY_LEN,
                history_ttl=ALERT_HISTORY_TTL,
                channel=ALERT_CHANNEL,
                last_ttl=ALERT_LAST_TTL,
                full=full,
                min_price=_num(low),
                max_price=_num(high),
            )
            for t in pairs:
                argv += [_num(t.price), _num(t.time)]
            reply = await self.run_script(CHECK_SCRIPT, keys, argv)
            if reply[0] != 2:
                break
        if not reply[0]:
            return None
        return [u.decode() if isinstance(u, bytes) else u for u in reply[1:]]

    async def stream_since(self, symbol: str, offset: str) -> tuple[list[tuple[str, list[Trade]]], bool]:
        """The symbol's commits after ``offset`` from its trade stream, and whether the stream
        still reached back to it (False: entries between were trimmed, beyond the 300 s window)."""
        key = trades_stream_key(symbol)
        out: list[tuple[str, list[Trade]]] = []
        start = f"({offset}"
        with self.guard(key):
            reached = await holds_after(self.streams, key, offset)
            while True:
                page = await self.streams.xrange(key, min=start, count=STREAM_PAGE)
                for entry_id, fields in page:
                    eid = entry_id.decode()
                    out.append((eid, decode_stream_entry(fields, f"{key} {eid}").trades))
                if len(page) < STREAM_PAGE:
                    break
                start = f"({out[-1][0]}"
        return out, reached


def _records(trades: list[Trade]) -> list[Trade]:
    """Each trade beyond every earlier one, up or down (the first trade is one)."""
    out = [trades[0]]
    low = high = trades[0].price
    for t in trades:
        if t.price > high:
            high = t.price
            out.append(t)
        elif t.price < low:
            low = t.price
            out.append(t)
    return out


def _path(trades: list[Trade]) -> list[Trade]:
    """Every trade but repeats of the price before (a repeat crosses nothing the first did not)."""
    out = [trades[0]]
    for t in trades:
        if t.price != out[-1].price:
            out.append(t)
    return out
