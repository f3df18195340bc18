-- Give back a call slot, feed the call's outcome to the backend's circuit breaker, and release
-- the first command parked for the backend (most urgent first, then first come) to the head of
-- its queue, so the slot goes to the longest-waiting command while no worker thread waited for it.
-- KEYS: 1 in-flight leases, 2 breaker hash, 3 probe key, 4 parked commands (zset)
-- ARGV: 1 lease id, 2 outcome ("answered" | "down" | "other"), 3 now (ms), 4 failures to open,
--       5 cooldown (ms), 6 concurrency cap, 7 Dramatiq namespace
-- Returns the breaker state after the call: "closed", "open", or "opened"/"reclosed" when this
-- call changed it.
local now = tonumber(ARGV[3])
local freed = redis.call("ZREM", KEYS[1], ARGV[1]) == 1
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

-- Not while the breaker is open: the parked commands would only be deferred again. (Liveness
-- releases parked commands of backends with room every beat too, should a give-back never come.)
if freed and result ~= "open" and result ~= "opened" then
  unpark(KEYS[1], KEYS[4], ARGV[7], now, tonumber(ARGV[6]), 1)
end
return result
