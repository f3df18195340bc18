-- Release commands parked for backends whose concurrency cap has room and whose breaker is not
-- open: the safety net behind limits_release.lua (a holder that died gave nothing back; its lease
-- expired). Run by every worker process's heartbeat.
-- KEYS: per backend, 3 keys: in-flight leases, parked commands, breaker hash
-- ARGV: 1 now (ms), 2 Dramatiq namespace, then per backend its concurrency cap
-- Returns how many commands were released.
local now = tonumber(ARGV[1])
local moved = 0
for i = 1, #KEYS, 3 do
  if redis.call("EXISTS", KEYS[i + 1]) == 1 and redis.call("HGET", KEYS[i + 2], "state") ~= "open" then
    local cap = tonumber(ARGV[2 + (i + 2) / 3])
    moved = moved + unpark(KEYS[i], KEYS[i + 1], ARGV[2], now, cap, cap)
  end
end
return moved
