-- Schedule the next run of a command and publish `retrying` (or `waiting`), atomically with the
-- delayed Dramatiq message, so a crash can neither lose the command nor leave two live copies.
-- With a parked-commands key the message waits in its backend's line instead of on the delay
-- queue, until a give-back releases it to the head of its queue (`unpark`, prelude.lua).
-- KEYS: 1 command record, 2 events stream, 3 reply_to stream (or ""), 4 (delay) queue list,
--       5 (delay) queue messages hash, 6 attempt history list, 7 that queue's doorbell list,
--       8 the backend's parked commands (zset) or "",
--       9.. the backend's waiting sets, one per reason (none when the command has no backend)
-- ARGV: 1 new generation, 2 event JSON ("" = publish nothing), 3 events maxlen, 4 now (ms), 5 redis message id,
--       6 message data, 7 status ("retrying" | "waiting"), 8 "1" to un-count this attempt,
--       9 history entry JSON ("" = none), 10 history max, 11 record ttl (s), 12 place in the
--       parked line, 13 its member ("queue/message id"), 14 command id, 15 index (from 9) of the
--       waiting set it now waits in (0 = none: a parked command is counted from the parked line),
--       16 when it looks again (ms), 17 entries scored below this (ms) are stale and trimmed
-- Returns 1 if scheduled, 0 if the command had already ended.
if redis.call("HEXISTS", KEYS[1], "outcome") == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "status", ARGV[7], "gen", ARGV[1], "updated", ARGV[4])
redis.call("HDEL", KEYS[1], "worker", "started")
if ARGV[8] == "1" then
  redis.call("HINCRBY", KEYS[1], "attempts", -1)
end
if KEYS[8] ~= "" then
  redis.call("HSET", KEYS[5], ARGV[5], ARGV[6])
  redis.call("ZADD", KEYS[8], ARGV[12], ARGV[13])
else
  enqueue(KEYS[4], KEYS[5], KEYS[7], ARGV[5], ARGV[6])
end
-- What waits, by backend and reason, for the gauge: in one set at most, scored by its next look.
local current = tonumber(ARGV[15])
for i = 9, #KEYS do
  if i == current then
    redis.call("ZADD", KEYS[i], ARGV[16], ARGV[14])
    redis.call("ZREMRANGEBYSCORE", KEYS[i], "-inf", "(" .. ARGV[17])
    redis.call("EXPIRE", KEYS[i], ARGV[11])
  else
    redis.call("ZREM", KEYS[i], ARGV[14])
  end
end
if ARGV[9] ~= "" then
  add_history(KEYS[6], ARGV[9], ARGV[10], ARGV[11])
end
if ARGV[2] ~= "" then
  publish(KEYS[2], KEYS[3], ARGV[3], ARGV[2])
end
return 1
