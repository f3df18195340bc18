-- Helpers of the command record scripts (admit, begin, retry, finish, replay), put before each
-- script that calls them by workers.store.lua.lua_script: each Redis write they share is spelled here once.

-- Publish an event body on the events stream and, when the command named one, on its reply_to
-- stream (`reply_to` = "": none), both capped near `maxlen`.
local function publish(events, reply_to, maxlen, body)
  redis.call("XADD", events, "MAXLEN", "~", maxlen, "*", "body", body)
  if reply_to ~= "" then
    redis.call("XADD", reply_to, "MAXLEN", "~", maxlen, "*", "body", body)
  end
end

-- Append an entry to a command's attempt history, keeping its last `most` entries for `ttl` seconds.
local function add_history(history, entry, most, ttl)
  redis.call("RPUSH", history, entry)
  redis.call("LTRIM", history, -tonumber(most), -1)
  redis.call("EXPIRE", history, ttl)
end

-- Enqueue a Dramatiq message the way Dramatiq's dispatch.lua does (its data in the queue's
-- messages hash, its id at the tail of the queue list), and ring the queue's doorbell.
local function enqueue(queue, messages, bell, id, data)
  redis.call("HSET", messages, id, data)
  redis.call("RPUSH", queue, id)
  ring(bell)
end
