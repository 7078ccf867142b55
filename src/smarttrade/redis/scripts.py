"""Lua scripts, each a named string whose KEYS/ARGV are unpacked into named locals at its top.

Redis does not roll a script back when it fails halfway, so every multi-key script validates all
existing values first and writes only when all of them are sound.
"""

from __future__ import annotations

# Footprint: add buy/sell deltas to many levels at once (two writers never lose an update).
# KEYS: the level keys. ARGV: ttl, qty_decimals, then per key: price_text, buy_delta, sell_delta.
# Volumes are added as integers in units of 10^-qty_decimals, so fractional quantities never drift.
FOOTPRINT_APPLY = r"""
local ttl = tonumber(ARGV[1])
local decimals = tonumber(ARGV[2])
local unit = 10 ^ decimals

local function to_units(v)
  local n = tonumber(v)
  if n == nil then return nil end
  if n >= 0 then return math.floor(n * unit + 0.5) end
  return -math.floor(-n * unit + 0.5)
end
local function fmt(u)
  if decimals == 0 then return string.format('%d', u) end
  local s = string.format('%.' .. decimals .. 'f', u / unit)
  s = string.gsub(s, '0+$', '')
  return (string.gsub(s, '%.$', ''))
end

local buys, sells = {}, {}
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 3
  local db, ds = to_units(ARGV[base + 2]), to_units(ARGV[base + 3])
  if db == nil or ds == nil then
    return redis.error_reply('footprint delta for ' .. key .. ' is not a number')
  end
  local buy, sell = 0, 0
  local current = redis.call('GET', key)
  if current then
    local ok, obj = pcall(cjson.decode, current)
    if not ok or type(obj) ~= 'table' then
      return redis.error_reply(key .. ' holds a value that is not a JSON object; not changed')
    end
    buy, sell = to_units(obj.buy_volume or 0), to_units(obj.sell_volume or 0)
    if buy == nil or sell == nil then
      return redis.error_reply(key .. ' holds non-numeric volumes; not changed')
    end
  end
  buys[i], sells[i] = math.max(0, buy + db), math.max(0, sell + ds)
end

for i, key in ipairs(KEYS) do
  local buy, sell = buys[i], sells[i]
  local total = buy + sell
  if total == 0 then
    redis.call('DEL', key)
  else
    local imbalance = math.floor(buy / total * 1e6 + 0.5) / 1e6
    local price = ARGV[2 + (i - 1) * 3 + 1]
    redis.call('SET', key, '{"price":' .. price .. ',"buy_volume":' .. fmt(buy) ..
      ',"sell_volume":' .. fmt(sell) .. ',"total_volume":' .. fmt(total) ..
      ',"imbalance":' .. tostring(imbalance) .. '}', 'EX', ttl)
  end
end
return #KEYS
"""

# Order flow: append trades to per-second buckets, keeping the contract shape.
# KEYS: bucket keys. ARGV: ttl, then per key: symbol as a JSON string, trades as JSON objects
# joined by commas. Our own buckets end in "]}" and are extended in place; a hand-written bucket is
# decoded and rewritten.
ORDERFLOW_APPEND = r"""
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local symbol, items = ARGV[2 * i], ARGV[2 * i + 1]
  local current = redis.call('GET', key)
  if not current then
    out[i] = '{"symbol":' .. symbol .. ',"trades":[' .. items .. ']}'
  else
    local head = string.match(current, '^({"symbol":"[^"]*","trades":%[.*)%]}$')
    if head then
      local sep = string.sub(head, -1) == '[' and '' or ','
      out[i] = head .. sep .. items .. ']}'
    else
      local ok, obj = pcall(cjson.decode, current)
      if not ok or type(obj) ~= 'table' or
         (obj.trades ~= nil and type(obj.trades) ~= 'table') then
        return redis.error_reply(key .. ' is not an order-flow bucket; not changed')
      end
      local old = ''
      if obj.trades ~= nil and #obj.trades > 0 then
        old = string.sub(cjson.encode(obj.trades), 2, -2) .. ','
      end
      if type(obj.symbol) == 'string' then symbol = cjson.encode(obj.symbol) end
      out[i] = '{"symbol":' .. symbol .. ',"trades":[' .. old .. items .. ']}'
    end
  end
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, out[i], 'EX', ttl)
end
return #KEYS
"""

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
