-- Take a target+aspect turn (workers.attempt.ordering.TargetGuard.take).
-- KEYS: 1 order record, 2 holds hash.  ARGV: 1 lease token, 2 stamp, 3 register field,
-- 4 lease ttl (ms), 5 recovering (1: may take over a lease of the same command's dead attempt),
-- 6 the command's desired state (fingerprint), 7 repeat window (ms, 0 = never collapse).
-- Returns {"ok", last stamp or "", reasons holding} | {"busy", holder} | {"superseded", last stamp}
-- | {"repeat", id of the command whose call set the same state after this one was admitted, within
-- the window} (no lease taken; the register moves to this stamp if it is newer, so an older
-- opposite command stays stale). A command admitted after that call ended is never a repeat: the
-- panel may have drifted since, so it is asked again.
local rec = redis.call("HMGET", KEYS[1], "lease", "lease_until", ARGV[3], "want:" .. ARGV[3])
local now = now_ms()
-- Tokens are "<command id>:<12 hex>". When the attempt is a recovery (ARGV[5] = "1": begin found
-- the previous attempt's worker dead), a lease held by that same command is taken over.
local function owner(token) return string.sub(token, 1, #token - 13) end
local recovering = ARGV[5] == "1" and rec[1] and owner(rec[1]) == owner(ARGV[1])
if rec[1] and not recovering and tonumber(rec[2] or "0") > now then
  return {"busy", rec[1]}
end
if tonumber(ARGV[7]) > 0 and rec[4] then
  local want, at, id = string.match(rec[4], "^([^|]*)|(%d+)|(.*)$")
  local admitted = parse(ARGV[2])[3]
  if want == ARGV[6] and admitted > 0 and tonumber(at) >= admitted and now - tonumber(at) <= tonumber(ARGV[7]) then
    if not rec[3] or older(rec[3], ARGV[2]) then redis.call("HSET", KEYS[1], ARGV[3], ARGV[2]) end
    return {"repeat", id}
  end
end
if rec[3] and older(ARGV[2], rec[3]) then
  return {"superseded", rec[3]}
end
redis.call("HSET", KEYS[1], "lease", ARGV[1], "lease_until", now + tonumber(ARGV[4]))
return {"ok", rec[3] or "", redis.call("HKEYS", KEYS[2])}
