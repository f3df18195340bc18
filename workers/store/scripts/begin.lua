-- Start one attempt of a command: count it (a crash it caused counts too) and mark it running.
-- KEYS: 1 command record, 2 attempt history list
-- ARGV: 1 now (ms), 2 worker id, 3 message generation, 4 history max, 5 record ttl (s),
--       6 deaths of a shared process after which the command runs alone
-- Returns {state, attempts, lost (0|1), alone (0|1)}: lost when an earlier attempt died with its worker
-- uncounted, now (its history entry is written here) or before a wait since (shared_lost), so it may
-- have reached the panel unrecorded whatever came after:
-- state "run"; "stale" when a newer copy of the
-- message was scheduled; the terminal status if the command already ended; "missing".
-- A record still "running" here means the previous attempt's worker died: that attempt is
-- written to the history as `worker_lost` before the new one starts. Crashes are attributed:
-- an attempt that shared its process with others when it died is not counted (any of them may
-- have killed it); once a command was caught in ARGV[6] such deaths it runs alone in its process
-- (`alone`), and an attempt that died while it ran alone (the record's `iso` is its number, see
-- CommandStore.mark_alone) is counted, so a command that kills its worker every time still
-- reaches its attempt cap.
local rec = redis.call("HMGET", KEYS[1], "status", "gen", "outcome", "attempts", "worker", "started", "iso", "alone",
                          "shared_lost")
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
local counted = true
local alone = rec[8] and 1 or 0
if rec[1] == "running" then
  lost = 1
  local number = tonumber(rec[4])
  counted = (rec[7] and tonumber(rec[7]) == number) or false
  local message = LOST_ALONE_TEXT
  if not counted then
    local shared = tonumber(rec[9] or "0") + 1
    redis.call("HSET", KEYS[1], "shared_lost", shared)
    if shared >= tonumber(ARGV[6]) and alone == 0 then
      alone = 1
      redis.call("HSET", KEYS[1], "alone", 1)
    end
    message = LOST_SHARED_TEXT .. (alone == 1 and NEXT_ALONE_TEXT or "")
  end
  local entry = {attempt = number, start = tonumber(rec[6] or "0"), ["end"] = tonumber(ARGV[1]),
                 worker = rec[5] or "", result = "worker_lost", counted = counted,
                 error = {kind = "worker_lost", message = message}}
  add_history(KEYS[2], cjson.encode(entry), ARGV[4], ARGV[5])
end
local attempts
if counted then
  attempts = redis.call("HINCRBY", KEYS[1], "attempts", 1)
else
  attempts = tonumber(rec[4])
end
redis.call("HSET", KEYS[1], "status", "running", "updated", ARGV[1], "started", ARGV[1], "worker", ARGV[2], "gen", gen)
return {"run", attempts, (lost == 1 or rec[9]) and 1 or 0, alone}
