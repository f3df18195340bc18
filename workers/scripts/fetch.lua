-- Take up to `count` messages off a Dramatiq queue for one worker process: Dramatiq's own fetch
-- (its dispatch script's "fetch": each id moves from the queue to the process's ack set, and the
-- messages come back), except that the heartbeat only ever moves forward. A consumer sends this
-- right behind its doorbell wait in one write (WakingConsumer), so Redis runs it the moment the
-- wait ends, and `now` is when the wait began: an older heartbeat must not replace a newer one.
-- KEYS: 1 the queue's list, 2 its messages hash, 3 this process's ack set for it, 4 heartbeats
--       (the names workers.constants.DramatiqKeys spells)
-- ARGV: 1 now (ms), 2 this worker process's id, 3 how many at most
-- Returns the messages' data, in queue order.
redis.call("ZADD", KEYS[4], "GT", ARGV[1], ARGV[2])
local ids = {}
for i = 1, tonumber(ARGV[3]) do
  local id = redis.call("LPOP", KEYS[1])
  if not id then
    break
  end
  ids[i] = id
  redis.call("SADD", KEYS[3], id)
end
if #ids == 0 then
  return {}
end
return redis.call("HMGET", KEYS[2], unpack(ids))
