-- Start one attempt of a command: count it (a crash counts too) and mark it running.
-- KEYS: 1 command record, 2 attempt history list
-- ARGV: 1 now (ms), 2 worker id, 3 message generation, 4 history max, 5 record ttl (s)
-- Returns {state, attempts, previous attempt lost (0|1: its history entry was written)}:
-- state "run"; "stale" when a newer copy of the
-- message was scheduled; the terminal status if the command already ended; "missing".
-- A record still "running" here means the previous attempt's worker died: that attempt is
-- written to the history as `worker_lost` before the new one starts.
local rec = redis.call("HMGET", KEYS[1], "status", "gen", "outcome", "attempts", "worker", "started")
if not rec[1] then
  return {"missing", 0}
end
if rec[3] then
  return {rec[1], tonumber(rec[4])}
end
local gen = tonumber(ARGV[3])
if gen < tonumber(rec[2] or "1") then
  return {"stale", tonumber(rec[4])}
end
local lost = 0
if rec[1] == "running" then
  lost = 1
  local lost = {attempt = tonumber(rec[4]), start = tonumber(rec[6] or "0"), ["end"] = tonumber(ARGV[1]),
                worker = rec[5] or "", result = "worker_lost",
                error = {kind = "worker_lost", message = "the worker running this attempt died before it ended"}}
  redis.call("RPUSH", KEYS[2], cjson.encode(lost))
  redis.call("LTRIM", KEYS[2], -tonumber(ARGV[4]), -1)
  redis.call("EXPIRE", KEYS[2], ARGV[5])
end
local attempts = redis.call("HINCRBY", KEYS[1], "attempts", 1)
redis.call("HSET", KEYS[1], "status", "running", "updated", ARGV[1], "started", ARGV[1], "worker", ARGV[2], "gen", gen)
return {"run", attempts, lost}
