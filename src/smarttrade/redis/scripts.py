"""Lua scripts, each a named string whose KEYS/ARGV are unpacked into named locals at its top.

They share one library of functions (LIB), so the store-level scripts and the ingest commit
apply footprint deltas and order-flow appends the same way. Redis does not roll a script back when
it fails halfway, so scripts that can refuse do all their checks before the first write.
"""

from __future__ import annotations

from dataclasses import dataclass

from smarttrade.keyspace import OPS_TTL, SCRIPT_CALLS_KEY


def counted(script: str, header: str = "", key: str = repr(SCRIPT_CALLS_KEY)) -> str:
    """``script``, adding the commands it runs to a counter hash, ``SCRIPT_CALLS_KEY`` by default
    (in the db it ends in); ``key`` is a Lua expression, ``header`` Lua run first (a Protocol's).

    Redis counts every command a script runs in INFO (total_commands_processed and commandstats
    alike, on 6.2 and 7.x), so one commit reads as dozens of ops. The ops rate subtracts this
    counter to count what clients send: an EVALSHA once (docs/operations.md, "ops/s").
    """
    body = script.replace("redis.call(", "_counted_call(").replace("redis.pcall(", "_counted_pcall(")
    return (
        header + "local _calls = 0\n"
        "local function _counted_call(...) _calls = _calls + 1 return redis.call(...) end\n"
        "local function _counted_pcall(...) _calls = _calls + 1 return redis.pcall(...) end\n"
        f"local function _script()\n{body}\nend\n"
        "local _reply = _script()\n"
        f"redis.call('HINCRBY', {key}, 'calls', _calls + 2)  -- these two included\n"
        f"redis.call('EXPIRE', {key}, {OPS_TTL})\n"
        "return _reply\n"
    )


# Quantities are added as integers in units of 10^-decimals, so fractional amounts never drift.
LIB = r"""
local LIMIT = 2 ^ 53  -- integers beyond this are not exact in a double
local function qty_units(v, unit)
  local n = tonumber(v)
  if n == nil or n ~= n then return nil end
  n = n * unit
  if n >= LIMIT or n <= -LIMIT then return nil end
  if n >= 0 then return math.floor(n + 0.5) end
  return -math.floor(-n + 0.5)
end

local function qty_text(u, decimals)
  if decimals == 0 then return string.format('%d', u) end
  local s = string.format('%.' .. decimals .. 'f', u / (10 ^ decimals))
  s = string.gsub(s, '0+$', '')
  return (string.gsub(s, '%.$', ''))
end

-- A footprint level's volumes in units; 0, 0 when missing; nil when not a sound JSON object.
-- Our own shape (fp_write's) is read with one pattern; anything else goes through cjson.
local function fp_parse(current, unit)
  if not current then return 0, 0 end
  local p, b, s, t, m = string.match(current, '^{"price":(%-?[%d.]+),"buy_volume":([%d.]+),' ..
    '"sell_volume":([%d.]+),"total_volume":([%d.]+),"imbalance":([%d.e-]+)}$')
  if p and tonumber(p) and tonumber(t) and tonumber(m) then
    local buy, sell = qty_units(b, unit), qty_units(s, unit)
    if buy ~= nil and sell ~= nil then return buy, sell end
  end
  local ok, obj = pcall(cjson.decode, current)
  if not ok or type(obj) ~= 'table' then return nil, nil end
  local buy, sell = qty_units(obj.buy_volume or 0, unit), qty_units(obj.sell_volume or 0, unit)
  if buy == nil or sell == nil or buy < 0 or sell < 0 then return nil, nil end
  return buy, sell
end

local function fp_read(key, unit)
  return fp_parse(redis.call('GET', key), unit)
end

-- Write a level in the contract shape (or delete it when nothing is left), TTL refreshed.
local function fp_write(key, price, buy, sell, ttl, decimals)
  buy, sell = math.max(0, buy), math.max(0, sell)
  local total = buy + sell
  if total == 0 then
    redis.call('DEL', key)
    return
  end
  local imbalance = math.floor(buy / total * 1e6 + 0.5) / 1e6
  redis.call('SET', key, '{"price":' .. price .. ',"buy_volume":' .. qty_text(buy, decimals) ..
    ',"sell_volume":' .. qty_text(sell, decimals) .. ',"total_volume":' ..
    qty_text(total, decimals) .. ',"imbalance":' .. tostring(imbalance) .. '}', 'EX', ttl)
end

-- Append trade objects (comma-joined) to an order-flow bucket; nil if the bucket is not one.
-- Our own buckets (our symbol, and no "]" before the closing "]}" since trades hold no arrays)
-- are extended in place. A hand-written bucket is checked with cjson, and its trades are kept as
-- their raw text, so no number loses digits.
local function of_append(current, symbol_json, items)
  local head = '{"symbol":' .. symbol_json .. ',"trades":['
  if not current then return head .. items .. ']}' end
  if string.sub(current, 1, #head) == head and string.find(current, ']', 1, true) == #current - 1 then
    if #current == #head + 2 and string.sub(current, -2) == ']}' then
      return head .. items .. ']}'
    elseif string.sub(current, -3) == '}]}' then
      return string.sub(current, 1, -3) .. ',' .. items .. ']}'
    end
  end
  local ok, obj = pcall(cjson.decode, current)
  if not ok or type(obj) ~= 'table' then return nil end
  for name, value in pairs(obj) do
    if name ~= 'symbol' and name ~= 'trades' then return nil end
  end
  if obj.symbol ~= nil and cjson.encode(obj.symbol) ~= symbol_json then return nil end
  local raw = ''
  if obj.trades ~= nil then
    if type(obj.trades) ~= 'table' then return nil end
    for _, trade in ipairs(obj.trades) do
      if type(trade) ~= 'table' then return nil end
    end
    raw = string.match(current, '"trades"%s*:%s*(%b[])')
    if raw == nil then return nil end
    raw = string.match(raw, '^%[%s*(.-)%s*%]$')
  end
  return head .. raw .. (raw ~= '' and ',' or '') .. items .. ']}'
end

-- HINCRBY of op[first], op[first + 1], ... (field, amount pairs) on a hash: one HMGET and one HSET
-- for the fields that hold plain integers; a field that does not (or a sum past 2^53) gets its own
-- HINCRBY, so Redis's own checks and 64-bit range still apply.
local function hincrby(key, op, first)
  local fields = {}
  for j = first, #op, 2 do fields[#fields + 1] = op[j] end
  local current = redis.call('HMGET', key, unpack(fields))
  local out, slow = {}, {}
  for n, field in ipairs(fields) do
    local amount, v = op[first + 2 * n - 1], current[n]
    if not v then v = '0' end
    local sum = nil
    -- up to 15 digits: exact in a double, and so is the sum's check against LIMIT
    if (v == '0' or (#v <= 15 and string.match(v, '^%-?[1-9]%d*$'))) and #amount <= 15 and
       string.match(amount, '^%-?%d+$') then
      sum = tonumber(v) + tonumber(amount)
      if sum >= LIMIT or sum <= -LIMIT then sum = nil end
    end
    if sum then
      out[#out + 1] = field
      out[#out + 1] = string.format('%d', sum)
    else
      slow[#slow + 1] = field
      slow[#slow + 1] = amount
    end
  end
  if #out > 0 then redis.call('HSET', key, unpack(out)) end
  for j = 1, #slow, 2 do redis.call('HINCRBY', key, slow[j], slow[j + 1]) end
end

-- Remove one trade object (exactly as we wrote it) from a bucket: new value, found.
local function of_remove(current, item)
  local a, b = string.find(current, item, 1, true)
  if not a then return current, false end
  local before, after = string.sub(current, 1, a - 1), string.sub(current, b + 1)
  if string.sub(after, 1, 1) == ',' then
    after = string.sub(after, 2)
  elseif string.sub(before, -1) == ',' then
    before = string.sub(before, 1, -2)
  end
  return before .. after, true
end
"""

# Footprint: add buy/sell deltas to many levels at once (two writers never lose an update).
# KEYS: the level keys. ARGV: ttl, qty_decimals, then per key: price_text, buy_delta, sell_delta.
# A level holding something that is not a JSON object fails the call before anything is written.
FOOTPRINT_APPLY = (
    LIB
    + r"""
local ttl, decimals = tonumber(ARGV[1]), tonumber(ARGV[2])
local unit = 10 ^ decimals
local buys, sells = {}, {}
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 3
  local db, ds = qty_units(ARGV[base + 2], unit), qty_units(ARGV[base + 3], unit)
  if db == nil or ds == nil then
    return redis.error_reply('footprint delta for ' .. key .. ' is not a number')
  end
  local buy, sell = fp_read(key, unit)
  if buy == nil or sell == nil then
    return redis.error_reply(key .. ' holds a value that is not a JSON object; not changed')
  end
  buys[i], sells[i] = buy + db, sell + ds
end
for i, key in ipairs(KEYS) do
  fp_write(key, ARGV[2 + (i - 1) * 3 + 1], buys[i], sells[i], ttl, decimals)
end
return #KEYS
"""
)

# Order flow: append trades to per-second buckets, keeping the contract shape.
# KEYS: bucket keys. ARGV: ttl, then per key: symbol as a JSON string, trade objects joined by ",".
ORDERFLOW_APPEND = (
    LIB
    + r"""
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = of_append(redis.call('GET', key), ARGV[2 * i], ARGV[2 * i + 1])
  if out[i] == nil then
    return redis.error_reply(key .. ' is not an order-flow bucket; not changed')
  end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, out[i], 'EX', ttl)
end
return #KEYS
"""
)

# Latest quote: write the per-second key, and move the latest-quote index only forward in time.
# KEYS: quote key, latest key. ARGV: json, ttl, timestamp, latest ttl.
QUOTE_PUT = r"""
local json, ttl, ts, last_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('SET', KEYS[1], json, 'EX', ttl)
local current = redis.call('GET', KEYS[2])
if current then
  local ok, obj = pcall(cjson.decode, current)
  if ok and type(obj) == 'table' and tonumber(obj.timestamp) and tonumber(obj.timestamp) > ts then
    return 0
  end
end
redis.call('SET', KEYS[2], json, 'EX', last_ttl)
return 1
"""

# Sets a TTL only if the key still has none: a racing writer's own TTL is never overridden
# (`smarttrade cleanup`). KEYS: the key. ARGV: ttl.
EXPIRE_IF_NONE = """
local ttl = tonumber(ARGV[1])
if redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIRE', KEYS[1], ttl)
  return 1
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Protocol:
    """A script's fixed KEYS and ARGV slots, by name (arq's lua.py style).

    The Lua header (a named ``local`` per slot, before anything else runs) and the Python packing
    both come from here, so the two sides cannot disagree on a position. Variable-length parts
    follow the fixed slots; the header gives their offsets as ``NKEYS`` and ``NARGV``.
    """

    keys: tuple[str, ...]
    argv: tuple[str, ...]

    def header(self) -> str:
        lines = [f"local {name} = KEYS[{i}]" for i, name in enumerate(self.keys, 1)]
        lines += [f"local {name} = ARGV[{i}]" for i, name in enumerate(self.argv, 1)]
        lines.append(f"local NKEYS, NARGV = {len(self.keys)}, {len(self.argv)}")
        return "\n".join(lines) + "\n"

    def pack_keys(self, **values: str) -> list[str]:
        return [values[name] for name in self._check(self.keys, values)]

    def pack_argv(self, **values: str | bytes | int) -> list[str | bytes | int]:
        return [values[name] for name in self._check(self.argv, values)]

    @staticmethod
    def _check(names: tuple[str, ...], values: dict[str, object]) -> tuple[str, ...]:
        if len(values) != len(names) or set(values) != set(names):
            missing, unknown = set(names) - set(values), set(values) - set(names)
            raise TypeError(f"script slots: missing {sorted(missing)}, unknown {sorted(unknown)}")
        return names


# The ingest commit's fixed slots; after them, KEYS: nq quote keys, nb bucket keys, nl level keys,
# per cancel its bucket key and its quote key, one key per analytics op; ARGV: per quote
# QUOTE_ARGS (the quote as it is when new, its volume the commit's in that second; timestamp),
# nb buckets (each as a new bucket's JSON: set as sent when the key is new), per level
# LEVEL_ARGS (price, buy, sell), nc trades to cancel (each exactly as written to its bucket), no
# analytics ops.
COMMIT = Protocol(
    # calls_key: keyspace.script_calls_key; epoch_key: keyspace.stream_epoch_key
    keys=("checkpoint", "last_key", "stream", "epoch_key", "calls_key"),
    argv=(
        "seq",
        "ordinal",
        "dbs",  # "dbq dbo dbf", or "" when every store and op shares the connection's db: no SELECT
        "ttls",  # "ttl_q ttl_o ttl_f ttl_last"
        "decimals",  # the symbol's quantity decimals
        "coverage",  # "count digest" of the source ordinals covered (added to the checkpoint)
        "channel",  # pub/sub channel
        "sizes",  # "nq nb nl nc no"
        "symbol_json",  # the symbol as a JSON string
        "msg_head",  # the pub/sub message before its trades ("quote":null is filled in here)
        "msg_tail",  # the message after its trades, up to its offset's value
        "stream_ids",  # trade ids, comma-joined, in the buckets' order
        "stream_src",  # side sources, one letter per trade
        "last_ts",  # timestamp of the last quote
        "trades",  # the commit's trades, a JSON array (the buckets' trades, by second)
        "cancelled",  # cancelled trades, a JSON array
        "state",  # analytics state (JSON), or empty
    ),
)
QUOTE_ARGS, LEVEL_ARGS = 2, 3
# Analytics ops are one ARGV each: command, db and arguments joined by \031 (its key is in KEYS).
# HINCRBY takes field, amount pairs; HSETEX and HINCRBYEX take a TTL first and set it after the
# write; HINCRQTYEX takes a TTL, quantity decimals, then field, amount-in-units pairs, and keeps each
# field as exact decimal text (fractional quantities, never floats).
COMMIT_OPS = (
    "HSET", "HINCRBY", "EXPIRE", "ZADD", "ZREMRANGEBYRANK", "SET", "HSETEX", "HINCRBYEX", "HINCRQTYEX",
)  # fmt: skip

# The ingest commit for one symbol: quotes, order flow, footprint, the trade stream, a pub/sub
# message and the checkpoint, in one atomic step. A commit whose sequence number the checkpoint
# already holds is skipped, so a retried or replayed commit is applied once; one that skips a
# number is refused (GAP), so commits apply in order even when several are on the wire.
# Lean on purpose (docs/benchmarks.md): each group of keys is read with one MGET, a new bucket is
# set as sent, the trades array comes whole (a megabyte string built in Lua cost more than all the
# commands), our own footprint levels are read without cjson, and a bar footprint's fields are
# read and written with one HMGET and one HSET instead of a HINCRBY each.
# Counted (see ``counted``): every path through it ends in the quotes db, where ops:* keys live.
INGEST_COMMIT = counted(
    LIB
    + "local ALLOWED_OPS = {"
    + ", ".join(f"{op} = true" for op in COMMIT_OPS)
    + "}\n"
    + f"local QUOTE_ARGS, LEVEL_ARGS = {QUOTE_ARGS}, {LEVEL_ARGS}\n"
    + r"""
seq = tonumber(seq)
local dbq, dbo, dbf = string.match(dbs, '(%d+) (%d+) (%d+)')
local ttl_q, ttl_o, ttl_f, ttl_last = string.match(ttls, '(%d+) (%d+) (%d+) (%d+)')
decimals = tonumber(decimals)
local unit = 10 ^ decimals
local nq, nb, nl, nc, no = string.match(sizes, '(%d+) (%d+) (%d+) (%d+) (%d+)')
nq, nb, nl, nc, no = tonumber(nq), tonumber(nb), tonumber(nl), tonumber(nc), tonumber(no)
local function use(db)  -- nothing to select when every store shares the connection's db
  if dbq then redis.call('SELECT', db) end
end
-- values of KEYS[first + 1 .. first + n], in chunks (unpack has a stack limit)
local function mget(first, n)
  local out = {}
  for c = 1, n, 1000 do
    local part = redis.call('MGET', unpack(KEYS, first + c, first + math.min(n, c + 999)))
    for j = 1, #part do out[c + j - 1] = part[j] end
  end
  return out
end

use(dbq)
local done = tonumber(redis.call('HGET', checkpoint, 'seq') or '0')
if seq <= done then return {0, done, 0, 0} end
if seq > done + 1 then  -- an earlier commit of this symbol failed: it must go first
  return redis.error_reply('GAP ' .. checkpoint .. ' holds seq ' .. done .. ', got ' .. seq)
end

-- analytics ops (bars, bar footprints, indicator values) come last, one ARGV each:
-- "COMMAND<US>db<US>arg<US>arg...", US = \031; checked before anything is written
local ops_at = NARGV + QUOTE_ARGS * nq + nb + LEVEL_ARGS * nl + nc
local ops = {}
for i = 1, no do
  local parts = {}
  for part in string.gmatch(ARGV[ops_at + i], '[^\031]+') do parts[#parts + 1] = part end
  if not ALLOWED_OPS[parts[1]] then
    return redis.error_reply('ingest op ' .. tostring(parts[1]) .. ' is not allowed')
  end
  ops[i] = parts
end

local k, a = NKEYS, NARGV  -- cursors into KEYS and ARGV
-- A quote is per second: its volume adds up over commits (a second can span two batches); price,
-- time and bid/ask follow the newest trade of the second.
local last_quote = nil
local quotes = mget(k, nq)
for i = 1, nq do
  local key = KEYS[k + i]
  local base = a + (i - 1) * QUOTE_ARGS
  local value, ts = ARGV[base + 1], ARGV[base + 2]  -- the quote as it is when new: set as sent
  local current = quotes[i]
  if current then
    local head, volume, tail = string.match(value, '^(.-"volume":)([^,}]+)(.*)$')
    volume = qty_units(volume, unit)
    local old_volume = qty_units(string.match(current, '"volume":([^,}]+)'), unit)
    local old_ts = tonumber(string.match(current, '"timestamp":([^,}]+)'))
    if old_volume then volume = volume + old_volume end
    if old_ts and old_ts > tonumber(ts) then  -- a late trade: keep the newer quote's fields
      head = string.match(current, '^(.-"volume":)')
      tail = string.match(current, '"volume":[^,}]+(.*)$')
    end
    value = head .. qty_text(volume, decimals) .. tail
  end
  last_quote = value
  redis.call('SET', key, last_quote, 'EX', ttl_q)
end
if last_quote then
  local newer = true
  local current = redis.call('GET', last_key)
  if current then
    local ok, obj = pcall(cjson.decode, current)
    if ok and type(obj) == 'table' and tonumber(obj.timestamp) and
       tonumber(obj.timestamp) > tonumber(last_ts) then
      newer = false
    end
  end
  if newer then redis.call('SET', last_key, last_quote, 'EX', ttl_last) end
end
k, a = k + nq, a + QUOTE_ARGS * nq

use(dbo)
local repaired = 0
local buckets = mget(k, nb)
local bucket_head = '{"symbol":' .. symbol_json .. ',"trades":['
for i = 1, nb do
  local key, value = KEYS[k + i], ARGV[a + i]  -- the bucket as it is when new: set as sent
  if buckets[i] then  -- an existing bucket: its new trades appended
    local items = string.sub(value, #bucket_head + 1, -3)
    value = of_append(buckets[i], symbol_json, items)
    if value == nil then  -- not a bucket (hand-written garbage): replaced, and reported
      repaired = repaired + 1
      value = ARGV[a + i]
    end
  end
  redis.call('SET', key, value, 'EX', ttl_o)
end
local offset, epoch = '', ''
if nb > 0 or nc > 0 then
  -- the stream keeps the order-flow window: entries older than its TTL are trimmed; its entry id
  -- is the message's offset, and its epoch is made when missing (the history before is lost)
  local now = redis.call('TIME')
  local oldest = (tonumber(now[1]) - tonumber(ttl_o)) * 1000
  offset = redis.call('XADD', stream, 'MINID', '~', string.format('%d', oldest), '*', 'seq', seq,
    'trades', trades, 'ids', stream_ids, 'src', stream_src, 'cancelled', cancelled)
  redis.call('EXPIRE', stream, ttl_o)
  epoch = redis.call('GET', epoch_key)
  if not epoch then epoch = now[1] .. string.format('%06d', tonumber(now[2])) end
  redis.call('SET', epoch_key, epoch, 'EX', ttl_o)
end
k, a = k + nb, a + nb

use(dbf)
local levels = mget(k, nl)
for i = 1, nl do
  local key = KEYS[k + i]
  local base = a + (i - 1) * LEVEL_ARGS
  local buy, sell = fp_parse(levels[i], unit)
  if buy == nil or sell == nil then
    repaired = repaired + 1
    buy, sell = 0, 0
  end
  fp_write(key, ARGV[base + 1], buy + qty_units(ARGV[base + 2], unit),
    sell + qty_units(ARGV[base + 3], unit), ttl_f, decimals)
end
k, a = k + nl, a + LEVEL_ARGS * nl

local missed = 0
for i = 1, nc do
  local bucket_key, quote_key, item = KEYS[k + 2 * i - 1], KEYS[k + 2 * i], ARGV[a + i]
  use(dbo)
  local current = redis.call('GET', bucket_key)
  local found = false
  if current then current, found = of_remove(current, item) end
  if not found then
    missed = missed + 1
  else
    local last = string.match(current, '({"price":[^{}]*})%]}$')
    if last == nil then
      redis.call('DEL', bucket_key)
    else
      redis.call('SET', bucket_key, current, 'KEEPTTL')
    end
    -- the second's quote follows its remaining trades: last price, summed volume
    use(dbq)
    local quote = redis.call('GET', quote_key)
    if quote and last == nil then
      redis.call('DEL', quote_key)
    elseif quote then
      local volume = 0
      for v in string.gmatch(current, '"volume":([^,}]+)') do volume = volume + qty_units(v, unit) end
      local price = string.match(last, '"price":([^,}]+)')
      local ts = string.match(last, '"time":([^,}]+)')
      local tail = string.match(quote, '(,"bid":.*)$') or ',"bid":null,"ask":null}'
      local rebuilt = '{"symbol":' .. symbol_json .. ',"price":' .. price .. ',"volume":' ..
        qty_text(volume, decimals) .. ',"timestamp":' .. ts .. tail
      redis.call('SET', quote_key, rebuilt, 'KEEPTTL')
      local latest = redis.call('GET', last_key)
      if latest then
        local ok, obj = pcall(cjson.decode, latest)
        if ok and type(obj) == 'table' and tonumber(obj.timestamp) and
           math.floor(tonumber(obj.timestamp)) == math.floor(tonumber(ts)) then
          redis.call('SET', last_key, rebuilt, 'KEEPTTL')
        end
      end
    end
  end
end

k = k + 2 * nc
local selected = nil
for i = 1, no do
  local op, key = ops[i], KEYS[k + i]
  if op[2] ~= selected then
    use(op[2])
    selected = op[2]
  end
  local command, first = op[1], 3
  if command == 'HSETEX' or command == 'HINCRBYEX' or command == 'HINCRQTYEX' then  -- ours: TTL first
    command, first = string.sub(command, 1, -3), 4
  end
  if command == 'HINCRQTY' then  -- decimals, then field, units pairs: decimal text, exact
    local d = tonumber(op[4])
    local u = 10 ^ d
    local fields, out = {}, {}
    for j = 5, #op, 2 do fields[#fields + 1] = op[j] end
    local current = redis.call('HMGET', key, unpack(fields))
    for n, field in ipairs(fields) do
      local v = (qty_units(current[n] or '0', u) or 0) + tonumber(op[4 + 2 * n])
      out[#out + 1] = field
      out[#out + 1] = qty_text(v, d)
    end
    redis.call('HSET', key, unpack(out))
  elseif command == 'HINCRBY' then  -- field, amount pairs
    hincrby(key, op, first)
  else
    redis.call(command, key, unpack(op, first))
  end
  if first == 4 then redis.call('EXPIRE', key, op[3]) end
end

use(dbq)
-- count/digest only on checkpoints that had them from their first commit (older ones lack them)
if done == 0 or redis.call('HEXISTS', checkpoint, 'count') == 1 then
  local n, digest = string.match(coverage, '(%d+) (%d+)')
  redis.call('HINCRBY', checkpoint, 'count', n)
  redis.call('HINCRBY', checkpoint, 'digest', digest)
end
redis.call('HSET', checkpoint, 'seq', seq, 'ordinal', ordinal)
if state ~= '' then redis.call('HSET', checkpoint, 'analytics', state) end
local head = msg_head  -- its quote is the second's merged one, filled in here
local at = string.find(head, '"quote":null', 1, true)
if at and last_quote then
  head = string.sub(head, 1, at + 7) .. last_quote .. string.sub(head, at + 12)
end
redis.call('PUBLISH', channel, head .. trades .. msg_tail .. '"' .. offset .. '","epoch":"' .. epoch .. '"}')
return {1, seq, repaired, missed}
""",
    header=COMMIT.header(),
    key="calls_key",
)
# A cluster's commit: SPUBLISH to its slot's shard where the server has sharded pub/sub (7.0+, the
# one with redis.REDIS_VERSION_NUM), PUBLISH on 6.2; the gateway's reader picks the same way.
INGEST_COMMIT_CLUSTER = INGEST_COMMIT.replace(
    "_counted_call('PUBLISH', channel,",
    "_counted_call(redis.REDIS_VERSION_NUM and 'SPUBLISH' or 'PUBLISH', channel,",
)


def commit_script(mode: str) -> str:
    """The ingest commit's text for a topology mode (REDIS_MODE)."""
    return INGEST_COMMIT_CLUSTER if mode == "cluster" else INGEST_COMMIT


assert INGEST_COMMIT_CLUSTER != INGEST_COMMIT
