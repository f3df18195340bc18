-- Start one attempt of a command: count it (a crash counts too) and mark it running.
-- KEYS: 1 command record.  ARGV: 1 now (ms), 2 worker id, 3 message generation
-- Returns {state, attempts, command JSON}: state "run"; "stale" when a newer copy of the
-- message was scheduled; the terminal status if the command already ended; "missing".
local rec = redis.call("HMGET", KEYS[1], "status", "gen", "outcome", "attempts", "command")
if not rec[1] then
  return {"missing", 0, ""}
end
if rec[3] then
  return {rec[1], tonumber(rec[4]), ""}
end
local gen = tonumber(ARGV[3])
if gen < tonumber(rec[2] or "1") then
  return {"stale", tonumber(rec[4]), ""}
end
local attempts = redis.call("HINCRBY", KEYS[1], "attempts", 1)
redis.call("HSET", KEYS[1], "status", "running", "updated", ARGV[1], "worker", ARGV[2], "gen", gen)
return {"run", attempts, rec[5]}
