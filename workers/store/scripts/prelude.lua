-- Shared helpers: workers.store.lua.lua_script puts each before the scripts in this folder that call it
-- (so their SHA covers it); DOORBELL_TOKENS and DOORBELL_TTL_MS are filled in from workers.constants.

-- Ring a queue's doorbell: wake one idle consumer of the queue (workers.queue.broker.WakingConsumer).
-- A few tokens are enough; they expire with nobody waiting.
local function ring(bell)
  redis.call("RPUSH", bell, "1")
  redis.call("LTRIM", bell, -DOORBELL_TOKENS, -1)
  redis.call("PEXPIRE", bell, DOORBELL_TTL_MS)
end


-- Move up to `most` commands parked for a full backend (zset `parked`: "queue/message id", scored
-- by priority then arrival, see workers.attempt.limits) back to the head of their queues, while the
-- backend's concurrency cap has room (`inflight`: leases by expiry). Returns how many moved.
local function unpark(inflight, parked, ns, now, cap, most)
  redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now)
  local room = math.min(most, cap - redis.call("ZCARD", inflight))
  local moved = 0
  while moved < room do
    local head = redis.call("ZPOPMIN", parked)
    if #head == 0 then break end
    local queue, id = string.match(head[1], "^([^/]+)/(.+)$")
    redis.call("LPUSH", ns .. ":" .. queue, id)
    ring(ns .. ":" .. queue .. ".bell")
    moved = moved + 1
  end
  return moved
end
