"""The Lua scripts behind JobStore: each queue transition is one atomic step in Redis.

Key names come in through KEYS and ARGV (prefixes from shared.keys); no key name is
spelled here.
"""

from __future__ import annotations

# KEYS: job, jobs index, its priority queue, idempotency key, the three queues,
#       the tenant's jobs index, the tenant's active set
# ARGV: job id, now (s), max queued, idempotency TTL (s, "0" for none), retention,
#       the tenant's most active jobs, job key prefix, fields...
ENQUEUE = """
if ARGV[4] ~= "0" then
  local existing = redis.call("GET", KEYS[4])
  if existing then return {"existing", existing} end
end
local depth = redis.call("LLEN", KEYS[5]) + redis.call("LLEN", KEYS[6])
  + redis.call("LLEN", KEYS[7])
if depth >= tonumber(ARGV[3]) then return {"full", tostring(depth)} end
local active = 0
for _, id in ipairs(redis.call("SMEMBERS", KEYS[9])) do
  local state = redis.call("HGET", ARGV[7] .. id, "state")
  if state == "queued" or state == "running" or state == "cancelling" then
    active = active + 1
  else
    redis.call("SREM", KEYS[9], id)
  end
end
if active >= tonumber(ARGV[6]) then return {"tenant_full", tostring(active)} end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[1])
redis.call("ZADD", KEYS[8], ARGV[2], ARGV[1])
redis.call("SADD", KEYS[9], ARGV[1])
redis.call("LPUSH", KEYS[3], ARGV[1])
if ARGV[4] ~= "0" then redis.call("SET", KEYS[4], ARGV[1], "EX", ARGV[4]) end
return {"created", ARGV[1]}
"""

# KEYS: the three queues (high first), processing
# ARGV: lease deadline (ms), driver id, now (s), job key prefix
CLAIM = """
for i = 1, 3 do
  while true do
    local id = redis.call("RPOP", KEYS[i])
    if not id then break end
    local job = ARGV[4] .. id
    if redis.call("HGET", job, "state") == "queued" then
      redis.call("ZADD", KEYS[4], ARGV[1], id)
      redis.call("HSET", job, "state", "running", "driver", ARGV[2], "started_at", ARGV[3])
      redis.call("HINCRBY", job, "attempts", 1)
      return id
    end
  end
end
return false
"""

# KEYS: processing, job. ARGV: job id, driver id, new deadline (ms)
RENEW = """
if redis.call("ZSCORE", KEYS[1], ARGV[1]) and redis.call("HGET", KEYS[2], "driver") == ARGV[2] then
  redis.call("ZADD", KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""

# KEYS: processing
# ARGV: now (ms), max attempts, job key prefix, queue key prefix, now (s), retention (s)
REAP = """
local expired = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1])
local moved = {}
for _, id in ipairs(expired) do
  redis.call("ZREM", KEYS[1], id)
  local job = ARGV[3] .. id
  local state = redis.call("HGET", job, "state")
  local attempts = tonumber(redis.call("HGET", job, "attempts") or "0")
  if state == "cancelling" then
    redis.call("HSET", job, "state", "cancelled", "finished_at", ARGV[5])
    redis.call("EXPIRE", job, ARGV[6])
  elseif state == "running" and attempts >= tonumber(ARGV[2]) then
    redis.call("HSET", job, "state", "failed", "finished_at", ARGV[5], "error",
      "the driver running this job stopped (crashed, killed or lost) in each of its "
      .. attempts .. " attempts; see the driver logs, or resubmit with fewer or "
      .. "smaller trials if it ran out of memory")
    redis.call("EXPIRE", job, ARGV[6])
  elseif state == "running" then
    redis.call("HSET", job, "state", "queued")
    -- the claim end of its queue: a reclaimed job is next in line
    redis.call("RPUSH", ARGV[4] .. redis.call("HGET", job, "priority"), id)
  end
  moved[#moved + 1] = id
end
return moved
"""

# KEYS: job. ARGV: job id, queue key prefix, now (s), retention (s)
CANCEL = """
local state = redis.call("HGET", KEYS[1], "state")
if not state then return "missing" end
if state == "queued" then
  redis.call("LREM", ARGV[2] .. redis.call("HGET", KEYS[1], "priority"), 0, ARGV[1])
  redis.call("HSET", KEYS[1], "state", "cancelled", "finished_at", ARGV[3])
  redis.call("EXPIRE", KEYS[1], ARGV[4])
  return "cancelled"
end
if state == "running" then
  redis.call("HSET", KEYS[1], "state", "cancelling")
  return "cancelling"
end
if state == "cancelling" then return "cancelling" end
return "ended:" .. state
"""
