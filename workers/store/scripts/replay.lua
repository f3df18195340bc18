-- Replay one dead-lettered command: through its own record, so idempotency still holds (a
-- second replay of a command that is queued again, or already succeeded, does nothing).
-- KEYS: 1 command record, 2 dead-letter set, 3 events stream, 4 queue list, 5 queue messages hash,
--       6 attempt history list, 7 the queue's doorbell list, 8 the command's reply_to stream (or "")
-- ARGV: 1 now (ms), 2 redis message id, 3 message data, 4 accepted event JSON, 5 events maxlen,
--       6 history entry JSON, 7 generation the message was built for (current gen + 1), 8 ttl (s),
--       9 the command id, 10 history max
-- Returns "replayed", or the command's status when it is not dead-lettered ("missing" if gone).
local rec = redis.call("HMGET", KEYS[1], "status", "gen")
if not rec[1] then
  return "missing"
end
if rec[1] ~= "dead_lettered" then
  return rec[1]
end
if tonumber(rec[2] or "1") + 1 ~= tonumber(ARGV[7]) then
  return "changed"
end
redis.call("HSET", KEYS[1], "status", "queued", "attempts", 0, "gen", ARGV[7], "updated", ARGV[1])
-- (a fresh attempt budget: crash attribution starts over too, see begin.lua)
redis.call("HDEL", KEYS[1], "outcome", "worker", "started", "iso", "alone", "shared_lost")
redis.call("HINCRBY", KEYS[1], "replays", 1)
redis.call("EXPIRE", KEYS[1], ARGV[8])
redis.call("ZREM", KEYS[2], ARGV[9])
add_history(KEYS[6], ARGV[6], ARGV[10], ARGV[8])
enqueue(KEYS[4], KEYS[5], KEYS[7], ARGV[2], ARGV[3])
publish(KEYS[3], KEYS[8], ARGV[5], ARGV[4])
return "replayed"
