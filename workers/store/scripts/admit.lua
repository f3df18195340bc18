-- Admit one command from the commands stream, atomically:
--   new id          -> record it, publish `accepted`, enqueue the Dramatiq message, XACK
--   same id, same fingerprint, finished -> publish `duplicate` repeating the stored outcome, XACK
--   same id, same fingerprint, running  -> publish `in_flight`, XACK
--   same id, other fingerprint          -> publish `conflict`, XACK
-- and in every case the stream entry is deleted once acknowledged.
--
-- KEYS: 1 command record, 2 events stream, 3 commands stream, 4 dramatiq queue list,
--       5 dramatiq queue messages hash, 6 reply_to stream (or ""), 7 the queue's doorbell list,
--       8 index of every id, 9-12 indexes by target, backend, producer, batch (or ""), 13 batch index (or "")
-- ARGV: 1 fingerprint, 2 stream entry id, 3 now (ms), 4 record ttl (s), 5 events maxlen,
--       6 group, 7 base event JSON (no status), 8 dramatiq redis message id,
--       9 dramatiq message data (it carries the command), 10 queue name, 11 batch id (or "")
local rec = redis.call("HMGET", KEYS[1], "fp", "status", "outcome")
local base = cjson.decode(ARGV[7])
local function announce(ev)
  publish(KEYS[2], KEYS[6], ARGV[5], cjson.encode(ev))
end

local verdict
if not rec[1] then
  -- Short fields only: Redis keeps such a hash as one compact listpack (the command itself
  -- travels in the Dramatiq message). Absent attempts and gen mean 0 and 1.
  redis.call("HSET", KEYS[1], "fp", ARGV[1], "status", "queued", "created", ARGV[3])
  redis.call("EXPIRE", KEYS[1], ARGV[4])
  enqueue(KEYS[4], KEYS[5], KEYS[7], ARGV[8], ARGV[9])
  base["status"] = "accepted"
  announce(base)
  verdict = "accepted"
  -- The console's indexes (KEYS 8-12; "" = none): one ZADD each. Trimming them to the record TTL
  -- is amortised over the commands whose fingerprint starts 00-03 (one in 64); the per-target and
  -- per-batch sets also expire with their last record.
  local trim = string.sub(ARGV[1], 1, 2) < "04"
  local horizon = tonumber(ARGV[3]) - tonumber(ARGV[4]) * 1000
  for i = 8, 12 do
    if KEYS[i] ~= "" then
      redis.call("ZADD", KEYS[i], ARGV[3], base["id"])
      if i == 9 or i == 12 then
        redis.call("EXPIRE", KEYS[i], ARGV[4])
      end
      if trim then
        redis.call("ZREMRANGEBYSCORE", KEYS[i], "-inf", horizon)
      end
    end
  end
  if KEYS[13] ~= "" then
    redis.call("ZADD", KEYS[13], "NX", ARGV[3], ARGV[11])
    if trim then
      redis.call("ZREMRANGEBYSCORE", KEYS[13], "-inf", horizon)
    end
  end
elseif string.sub(rec[1], 1, #ARGV[1]) ~= ARGV[1] then  -- older records hold a longer fingerprint
  base["status"] = "conflict"
  base["terminal"] = true
  base["error"] = {kind = "conflict", message = string.format(CONFLICT_TEXT, base["id"])}
  announce(base)
  verdict = "conflict"
elseif rec[3] then
  local stored = cjson.decode(rec[3])
  base["status"] = "duplicate"
  base["terminal"] = true
  base["details"] = {original = stored}
  base["backend"] = stored["backend"]
  announce(base)
  verdict = "duplicate"
else
  base["status"] = "in_flight"
  base["terminal"] = true
  base["details"] = {state = rec[2]}
  announce(base)
  verdict = "in_flight"
end
redis.call("XACK", KEYS[3], ARGV[6], ARGV[2])
-- The entry has done its job: its command lives in the Dramatiq message. Deleting it frees the stream's
-- memory and means a secret the producer sent in plain text never rests in the stream.
redis.call("XDEL", KEYS[3], ARGV[2])
return verdict
