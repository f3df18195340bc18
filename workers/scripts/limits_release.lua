-- Give back a call slot, feed the call's outcome to the backend's circuit breaker, and hand the
-- slot straight to the first live waiter (most urgent first, then first come), so the waiter's
-- wait ends with the slot instead of another acquire round trip. Also withdraws a waiter that
-- gives up (its lease may have been granted meanwhile: then that slot goes to the next waiter).
-- KEYS: 1 in-flight leases, 2 breaker hash, 3 probe key, 4 freed-slot list (wakes waiters when no
--       grant is made), 5 waiters (zset), 6 waiters' deadlines (zset)
-- ARGV: 1 lease id, 2 outcome ("answered" | "down" | "other"), 3 now (ms), 4 failures to open,
--       5 cooldown (ms), 6 lease ttl (ms), 7 concurrency cap, 8 calls per second (0 = none),
--       9 grant list key prefix (a waiter's list is this prefix and its lease id)
-- Returns the breaker state after the call: "closed", "open", or "opened"/"reclosed" when this
-- call changed it.
local now = tonumber(ARGV[3])
local freed = redis.call("ZREM", KEYS[1], ARGV[1]) == 1
redis.call("ZREM", KEYS[5], ARGV[1])
redis.call("ZREM", KEYS[6], ARGV[1])
local state = redis.call("HGET", KEYS[2], "state") or "closed"
if redis.call("GET", KEYS[3]) == ARGV[1] then
  redis.call("DEL", KEYS[3])
end
local result = state
if ARGV[2] == "answered" then
  if state == "open" then
    redis.call("HSET", KEYS[2], "state", "closed", "failures", 0, "closed_at", now)
    result = "reclosed"
  else
    redis.call("HSET", KEYS[2], "failures", 0)
    result = "closed"
  end
elseif ARGV[2] == "down" then
  local failures = redis.call("HINCRBY", KEYS[2], "failures", 1)
  if state == "open" then
    redis.call("HSET", KEYS[2], "until", now + tonumber(ARGV[5]))
    result = "open"
  elseif failures >= tonumber(ARGV[4]) then
    redis.call("HSET", KEYS[2], "state", "open", "until", now + tonumber(ARGV[5]), "opened_at", now)
    redis.call("HINCRBY", KEYS[2], "opens", 1)
    result = "opened"
  end
end

-- Hand the slot to a waiter. Not while the breaker is open (the waiter's next ask finds out and
-- defers), nor under a calls-per-second cap (the grant would bypass it): then a token wakes the
-- waiters to ask again, as it does when a slot frees up with no one waiting yet.
local function grant()
  if result == "open" or result == "opened" or tonumber(ARGV[8]) > 0 then return false end
  redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
  -- Still full (the cap was lowered): no slot to hand on, and none to wake anyone for.
  if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[7]) then return true end
  local ttl = tonumber(ARGV[6])
  for _ = 1, 32 do
    local head = redis.call("ZPOPMIN", KEYS[5])
    if #head == 0 then return false end
    local lease = head[1]
    local until_ms = tonumber(redis.call("ZSCORE", KEYS[6], lease) or "0")
    redis.call("ZREM", KEYS[6], lease)
    -- A waiter past its deadline gave up, or died: skip it.
    if until_ms >= now then
      redis.call("ZADD", KEYS[1], now + ttl, lease)
      redis.call("PEXPIRE", KEYS[1], ttl + 1000)
      local list = ARGV[9] .. lease
      redis.call("RPUSH", list, "1")
      redis.call("PEXPIRE", list, until_ms - now + 10000)
      return true
    end
  end
  return false
end

if freed and not grant() then
  redis.call("RPUSH", KEYS[4], "1")
  redis.call("LTRIM", KEYS[4], -64, -1)
  redis.call("PEXPIRE", KEYS[4], 10000)
end
return result
