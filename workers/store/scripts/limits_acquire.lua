-- Take a call slot on one backend: breaker, concurrency cap and calls-per-second cap together.
-- KEYS: 1 in-flight leases (zset lease -> expiry ms), 2 recent call starts (zset), 3 breaker hash,
--       4 probe key
-- ARGV: 1 now (ms), 2 lease id, 3 lease ttl (ms), 4 concurrency cap, 5 calls per second (0 = none)
-- Returns {verdict, wait_ms}: "ok", "probe" (the one call that tests a half-open breaker),
-- "open" (breaker open: wait_ms until the next probe), "full" (the concurrency cap is full: the
-- caller parks its command for a give-back to release, see limits_release.lua; wait_ms is when
-- the first lease expires), "busy" (the rate cap: retry in wait_ms).
local now = tonumber(ARGV[1])
local state = redis.call("HMGET", KEYS[3], "state", "until")
local verdict = "ok"
if state[1] == "open" then
  local until_ms = tonumber(state[2] or "0")
  if now < until_ms then
    return {"open", until_ms - now}
  end
  if not redis.call("SET", KEYS[4], ARGV[2], "NX", "PX", ARGV[3]) then
    return {"open", 250}
  end
  verdict = "probe"
end
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
if redis.call("ZCARD", KEYS[1]) >= tonumber(ARGV[4]) then
  if verdict == "probe" then redis.call("DEL", KEYS[4]) end
  local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
  return {"full", math.max(10, tonumber(first[2]) - now)}
end
local rate = tonumber(ARGV[5])
if rate > 0 then
  local n = math.max(1, math.floor(rate))
  local window = math.floor(1000 * n / rate)
  redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - window)
  if redis.call("ZCARD", KEYS[2]) >= n then
    if verdict == "probe" then redis.call("DEL", KEYS[4]) end
    local first = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
    return {"busy", math.max(1, tonumber(first[2]) + window - now)}
  end
  redis.call("ZADD", KEYS[2], now, ARGV[2])
  redis.call("PEXPIRE", KEYS[2], window + 1000)
end
redis.call("ZADD", KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call("PEXPIRE", KEYS[1], tonumber(ARGV[3]) + 1000)
return {verdict, 0}
