-- Record that a command will be tried again and publish its `retrying` event.
-- KEYS: 1 command record, 2 events stream, 3 reply_to stream (or "")
-- ARGV: 1 new generation, 2 event JSON, 3 events maxlen, 4 now (ms)
if redis.call("HEXISTS", KEYS[1], "outcome") == 1 then
  return 0
end
redis.call("HSET", KEYS[1], "status", "retrying", "gen", ARGV[1], "updated", ARGV[4])
redis.call("HDEL", KEYS[1], "worker")
redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[3], "*", "body", ARGV[2])
if KEYS[3] ~= "" then
  redis.call("XADD", KEYS[3], "MAXLEN", "~", ARGV[3], "*", "body", ARGV[2])
end
return 1
