-- Put before every script in this folder by workers.lua.lua_script (so its SHA covers it);
-- DOORBELL_TOKENS and DOORBELL_TTL_MS are filled in from workers.constants.

-- Ring a queue's doorbell: wake one idle consumer of the queue (workers.broker.WakingConsumer).
-- A few tokens are enough; they expire with nobody waiting.
local function ring(bell)
  redis.call("RPUSH", bell, "1")
  redis.call("LTRIM", bell, -DOORBELL_TOKENS, -1)
  redis.call("PEXPIRE", bell, DOORBELL_TTL_MS)
end

