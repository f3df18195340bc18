-- Give back a call slot and feed the call's outcome to the backend's circuit breaker.
-- KEYS: 1 in-flight leases, 2 breaker hash, 3 probe key, 4 freed-slot list (wakes one waiter)
-- ARGV: 1 lease id, 2 outcome ("answered" | "down" | "other"), 3 now (ms), 4 failures to open,
--       5 cooldown (ms)
-- Returns the breaker state after the call: "closed", "open", or "opened"/"reclosed" when this
-- call changed it.
if redis.call("ZREM", KEYS[1], ARGV[1]) == 1 then
  redis.call("RPUSH", KEYS[4], "1")
  redis.call("LTRIM", KEYS[4], -64, -1)
  redis.call("PEXPIRE", KEYS[4], 10000)
end
local now = tonumber(ARGV[3])
local state = redis.call("HGET", KEYS[2], "state") or "closed"
if redis.call("GET", KEYS[3]) == ARGV[1] then
  redis.call("DEL", KEYS[3])
end
if ARGV[2] == "answered" then
  if state == "open" then
    redis.call("HSET", KEYS[2], "state", "closed", "failures", 0, "closed_at", now)
    return "reclosed"
  end
  redis.call("HSET", KEYS[2], "failures", 0)
  return "closed"
elseif ARGV[2] == "down" then
  local failures = redis.call("HINCRBY", KEYS[2], "failures", 1)
  if state == "open" then
    redis.call("HSET", KEYS[2], "until", now + tonumber(ARGV[5]))
    return "open"
  end
  if failures >= tonumber(ARGV[4]) then
    redis.call("HSET", KEYS[2], "state", "open", "until", now + tonumber(ARGV[5]), "opened_at", now)
    redis.call("HINCRBY", KEYS[2], "opens", 1)
    return "opened"
  end
end
return state
