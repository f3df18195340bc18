-- Take up to `count` messages off a Dramatiq queue for one worker process: Dramatiq's own fetch
-- (its dispatch script's "fetch": each id moves from the queue to the process's ack set, and the
-- messages come back), except that the heartbeat only ever moves forward. A consumer sends this
-- right behind its doorbell wait in one write (WakingConsumer), so Redis runs it the moment the
-- wait ends, and `now` is when the wait began: an older heartbeat must not replace a newer one.
-- A message whose backend's concurrency cap is full joins that backend's parked line here instead
-- (what the worker would do after fetching and beginning it, at a fraction of the cost), so a deep
-- queue of a slow backend's commands does not stand between the workers and other backends' work.
-- The backend is the message id's tail (workers.queue.messages.redis_message_id); a backend missing from
-- the caps hash is never parked here.
-- KEYS: 1 the queue's list, 2 its messages hash, 3 this process's ack set for it, 4 heartbeats
--       (the names workers.constants.DramatiqKeys spells), 5 the backends' caps hash, 6 the queue's
--       doorbell
-- ARGV: 1 now (ms), 2 this worker process's id, 3 how many at most, 4 the queue's name, 5 its
--       place in a parked line (workers.attempt.limits.park_score at arrival 0), 6 most ids to look at,
--       7/8 a backend's in-flight key before/after its name, 9/10 its parked line's likewise,
--       11 "1" to park (not on a delay queue: a message not yet due waits for its time, not a slot)
-- Returns the messages' data, in queue order.
redis.call("ZADD", KEYS[4], "GT", ARGV[1], ARGV[2])
local now, count, most = tonumber(ARGV[1]), tonumber(ARGV[3]), tonumber(ARGV[6])
local ids, looked, full = {}, 0, {}
while #ids < count and looked < most do
  local id = redis.call("LPOP", KEYS[1])
  if not id then
    break
  end
  looked = looked + 1
  local backend = string.match(id, "^[^.]*%.(.+)$")
  local parked = false
  if backend and ARGV[11] == "1" then
    if full[backend] == nil then
      local cap = tonumber(redis.call("HGET", KEYS[5], backend) or "")
      full[backend] = false
      if cap then
        local inflight = ARGV[7] .. backend .. ARGV[8]
        redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now)
        full[backend] = redis.call("ZCARD", inflight) >= cap
      end
    end
    if full[backend] then
      redis.call("ZADD", ARGV[9] .. backend .. ARGV[10], tonumber(ARGV[5]) + now, ARGV[4] .. "/" .. id)
      parked = true
    end
  end
  if not parked then
    ids[#ids + 1] = id
    redis.call("SADD", KEYS[3], id)
  end
end
-- Fewer than asked tells the consumer the queue is empty; when it is not (the look stopped at
-- `most`), its doorbell makes the consumer's next wait return at once.
if #ids < count and looked >= most and redis.call("LLEN", KEYS[1]) > 0 then
  ring(KEYS[6])
end
if #ids == 0 then
  return {}
end
return redis.call("HMGET", KEYS[2], unpack(ids))
