-- Heartbeat this worker process and requeue, at the HEAD of their queues, the messages every dead
-- process (no heartbeat for heartbeat_timeout) had fetched but not acknowledged. Unlike
-- Dramatiq's maintenance it runs on every call (not 0.1 % of them), covers every queue at once,
-- puts recovered work first instead of behind the backlog, and never uses KEYS.
-- It also frees the backend call slots a dead process held (leases "<worker id>/...", see
-- workers.attempt.limits.BackendLimits), which would otherwise keep a backend's cap full until they expire.
-- KEYS: 1 Dramatiq namespace (the key names below are the ones workers.constants.DramatiqKeys
--       spells: a script reaches every dead process's ack set, so it builds them itself),
--       2 the backends' caps hash (which backends there are)
-- ARGV: 1 now (ms), 2 this worker's id, 3 heartbeat timeout (ms), 4 dead message ttl (ms),
--       5/6 a backend's in-flight key before/after its name, 7.. queue names (without .DQ)
-- Returns the number of messages requeued.
local ns = KEYS[1]
local now = tonumber(ARGV[1])
local heartbeats = ns .. ":__heartbeats__"
redis.call("ZADD", heartbeats, now, ARGV[2])
local queues = {}
for i = 7, #ARGV do
  queues[#queues + 1] = ARGV[i]
end
local requeued = 0
local dead = redis.call("ZRANGEBYSCORE", heartbeats, 0, now - tonumber(ARGV[3]))
local backends = #dead > 0 and redis.call("HKEYS", KEYS[2]) or {}
for _, worker in ipairs(dead) do
  for _, queue in ipairs(queues) do
    for _, name in ipairs({queue, queue .. ".DQ"}) do
      local acks = ns .. ":__acks__." .. worker .. "." .. name
      local ids = redis.call("SMEMBERS", acks)
      local put = 0
      for _, id in ipairs(ids) do
        if redis.call("HEXISTS", ns .. ":" .. name .. ".msgs", id) == 1 then
          redis.call("LPUSH", ns .. ":" .. name, id)
          put = put + 1
        end
      end
      if put > 0 then
        ring(ns .. ":" .. name .. ".bell")
        requeued = requeued + put
      end
      redis.call("DEL", acks)
    end
  end
  local mark = worker .. "/"
  for _, backend in ipairs(backends) do
    local inflight = ARGV[5] .. backend .. ARGV[6]
    for _, lease in ipairs(redis.call("ZRANGE", inflight, 0, -1)) do
      if string.sub(lease, 1, #mark) == mark then
        redis.call("ZREM", inflight, lease)
      end
    end
  end
  redis.call("ZREM", heartbeats, worker)
end
for _, queue in ipairs(queues) do
  local xq = ns .. ":" .. queue .. ".XQ"
  local old = redis.call("ZRANGEBYSCORE", xq, 0, now - tonumber(ARGV[4]), "LIMIT", 0, 1000)
  if #old > 0 then
    redis.call("ZREM", xq, unpack(old))
    redis.call("HDEL", xq .. ".msgs", unpack(old))
  end
end
return requeued
