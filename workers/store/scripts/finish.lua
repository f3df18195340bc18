-- End a command with its terminal event, exactly once.
-- KEYS: 1 command record, 2 events stream, 3 reply_to stream (or ""), 4 dead-letter set,
--       5 attempt history list, 6 Dramatiq ack set of the running process (or ""),
--       7 Dramatiq message hash of the queue, 8 ordering record (or "": no guard), 9 holds hash
-- ARGV: 1 status, 2 terminal event JSON, 3 record ttl (s), 4 events maxlen, 5 now (ms),
--       6 history entry JSON (or ""), 7 history max, 8 Dramatiq redis message id,
--       9 the command's stored JSON (kept in the record of a dead letter, for `dlq show|replay`),
--       10 the command id, 11 ordering register field, 12 the command's order stamp,
--       13 the reasons expected to hold, sorted, one per line
-- Returns 1 if this call ended the command, 0 if it had already ended, -1 if the guard (KEYS[8])
-- did not hold: the ordering commit sent just before did not leave the state the event describes
-- (a newer command committed in between), so nothing is done and the worker publishes what did happen.
-- With KEYS[6], the Dramatiq message is acknowledged here too (what Dramatiq's ack would do),
-- saving the worker a round trip per command.
if KEYS[8] ~= "" then
  local holding = redis.call("HKEYS", KEYS[9])
  table.sort(holding)
  if redis.call("HGET", KEYS[8], ARGV[11]) ~= ARGV[12] or table.concat(holding, "\n") ~= ARGV[13] then
    return -1
  end
end
if KEYS[6] ~= "" then
  redis.call("SREM", KEYS[6], ARGV[8])
  redis.call("HDEL", KEYS[7], ARGV[8])
end
if redis.call("HEXISTS", KEYS[1], "outcome") == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "status", ARGV[1], "outcome", ARGV[2], "updated", ARGV[5])
redis.call("HDEL", KEYS[1], "worker", "started")
redis.call("EXPIRE", KEYS[1], ARGV[3])
if ARGV[6] ~= "" then
  add_history(KEYS[5], ARGV[6], ARGV[7], ARGV[3])
elseif redis.call("EXISTS", KEYS[5]) == 1 then
  redis.call("EXPIRE", KEYS[5], ARGV[3])
end
publish(KEYS[2], KEYS[3], ARGV[4], ARGV[2])
if ARGV[1] == "dead_lettered" then
  redis.call("ZADD", KEYS[4], ARGV[5], ARGV[10])
  if ARGV[9] ~= "" then
    redis.call("HSET", KEYS[1], "command", ARGV[9])
  end
end
return 1
