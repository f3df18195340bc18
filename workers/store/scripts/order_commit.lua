-- Commit a turn (workers.attempt.ordering.TargetGuard.commit_call): store the stamp with the hold change, free the lease.
-- KEYS: 1 order record, 2 holds hash, 3 holds index.  ARGV: 1 lease token, 2 stamp, 3 register field,
-- 4 hold op (add|remove|none), 5 reason, 6 hold JSON, 7 backend, 8 args JSON without secrets (kept
-- for reconcile), 9 the state the panel call set ("fingerprint|ms|command id", "" = no call: nothing
-- to repeat), 10 the command's name (kept for reconcile: the last one applied is the desired state).
-- Returns {"committed"|"stale", reasons holding after}. A stamp older than the register (the
-- lease expired and a newer command committed meanwhile) is not stored.
local last = redis.call("HGET", KEYS[1], ARGV[3])
local verdict = "committed"
if last and older(ARGV[2], last) then
  verdict = "stale"
else
  redis.call("HSET", KEYS[1], ARGV[3], ARGV[2])
  if ARGV[8] ~= "" then
    redis.call("HSET", KEYS[1], "backend", ARGV[7], "args", ARGV[8], "command", ARGV[10])
  end
  if ARGV[9] ~= "" then
    redis.call("HSET", KEYS[1], "want:" .. ARGV[3], ARGV[9])
  end
  if ARGV[4] == "add" then
    redis.call("HSET", KEYS[2], ARGV[5], ARGV[6])
  elseif ARGV[4] == "remove" then
    redis.call("HDEL", KEYS[2], ARGV[5])
  end
  -- The holds index names every held target (the console lists holds without a scan).
  if ARGV[4] ~= "none" and redis.call("EXISTS", KEYS[2]) == 1 then
    redis.call("ZADD", KEYS[3], "NX", now_ms(), KEYS[2])
  elseif ARGV[4] ~= "none" then
    redis.call("ZREM", KEYS[3], KEYS[2])
  end
end
if redis.call("HGET", KEYS[1], "lease") == ARGV[1] then
  redis.call("HDEL", KEYS[1], "lease", "lease_until")
end
return {verdict, redis.call("HKEYS", KEYS[2])}
