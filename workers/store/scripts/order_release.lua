-- Free a target+aspect lease after a failed call, without committing (workers.attempt.ordering.TargetGuard.release).
-- KEYS: 1 order record.  ARGV: 1 lease token.  Frees the lease if this token still holds it.
if redis.call("HGET", KEYS[1], "lease") == ARGV[1] then
  redis.call("HDEL", KEYS[1], "lease", "lease_until")
  return 1
end
return 0
