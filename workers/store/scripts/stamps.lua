-- Helpers of the ordering scripts (order_*.lua), put before each script that calls them by
-- workers.store.lua.lua_script.

-- Order stamps (workers.attempt.ordering.OrderStamp): "issued|seq|entry ms|entry seq|command id".
local function parse(s)
  local a, b, c, d, id = string.match(s, "^(%d+)|(%d+)|(%d+)|(%d+)|(.*)$")
  return {tonumber(a), tonumber(b), tonumber(c), tonumber(d), id}
end

-- Whether stamp `x` is ordered before stamp `y`.
local function older(x, y)
  local p, q = parse(x), parse(y)
  for i = 1, 4 do
    if p[i] ~= q[i] then return p[i] < q[i] end
  end
  return p[5] < q[5]
end

-- The Redis server's clock, in milliseconds.
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
