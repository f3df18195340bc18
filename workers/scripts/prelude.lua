-- Put before every script in this folder by workers.lua.lua_script (so its SHA covers it);
-- DOORBELL_TOKENS and DOORBELL_TTL_MS are filled in from workers.constants.

-- Ring a queue's doorbell: wake one idle consumer of the queue (workers.broker.WakingConsumer).
-- A few tokens are enough; they expire with nobody waiting.
local function ring(bell)
  redis.call("RPUSH", bell, "1")
  redis.call("LTRIM", bell, -DOORBELL_TOKENS, -1)
  redis.call("PEXPIRE", bell, DOORBELL_TTL_MS)
end


-- Publish an event body on the events stream and, when the command named one, on its reply_to
-- stream (`reply_to` = "": none), both capped near `maxlen`.
local function publish(events, reply_to, maxlen, body)
  redis.call("XADD", events, "MAXLEN", "~", maxlen, "*", "body", body)
  if reply_to ~= "" then
    redis.call("XADD", reply_to, "MAXLEN", "~", maxlen, "*", "body", body)
  end
end

-- Append an entry to a command's attempt history, keeping its last `most` entries for `ttl` seconds.
local function add_history(history, entry, most, ttl)
  redis.call("RPUSH", history, entry)
  redis.call("LTRIM", history, -tonumber(most), -1)
  redis.call("EXPIRE", history, ttl)
end

-- Enqueue a Dramatiq message the way Dramatiq's dispatch.lua does (its data in the queue's
-- messages hash, its id at the tail of the queue list), and ring the queue's doorbell.
local function enqueue(queue, messages, bell, id, data)
  redis.call("HSET", messages, id, data)
  redis.call("RPUSH", queue, id)
  ring(bell)
end

-- Move up to `most` commands parked for a full backend (zset `parked`: "queue/message id", scored
-- by priority then arrival, see workers.limits) back to the head of their queues, while the
-- backend's concurrency cap has room (`inflight`: leases by expiry). Returns how many moved.
local function unpark(inflight, parked, ns, now, cap, most)
  redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now)
  local room = math.min(most, cap - redis.call("ZCARD", inflight))
  local moved = 0
  while moved < room do
    local head = redis.call("ZPOPMIN", parked)
    if #head == 0 then break end
    local queue, id = string.match(head[1], "^([^/]+)/(.+)$")
    redis.call("LPUSH", ns .. ":" .. queue, id)
    ring(ns .. ":" .. queue .. ".bell")
    moved = moved + 1
  end
  return moved
end


-- Order stamps (workers.ordering.OrderStamp): "issued|seq|entry ms|entry seq|command id".
local function parse(s)
  local a, b, c, d, id = string.match(s, "^(%d+)|(%d+)|(%d+)|(%d+)|(.*)$")
  return {tonumber(a), tonumber(b), tonumber(c), tonumber(d), id}
end

-- Whether stamp `x` is ordered before stamp `y`.
local function older(x, y)
  local p, q = parse(x), parse(y)
  for i = 1, 4 do
    if p[i] ~= q[i] then return p[i] < q[i] end
  end
  return p[5] < q[5]
end

-- The Redis server's clock, in milliseconds.
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
