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

# Lease clocks are Redis's own (TIME), never a driver's: drivers on hosts whose clocks
# disagree still agree on when a lease runs out.
NOW = """
local clock = redis.call("TIME")
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_s = clock[1] .. "." .. string.format("%06d", tonumber(clock[2]))
"""

# A claim's fencing token is "<driver id>#<claim number>": each claim of a job gets a
# new one, kept in the job's "lease" field until the claim ends (finished, handed back
# or reaped). Every write a driver makes for a job shows its token; a driver that lost
# its lease (paused past it, cut off) finds its writes refused.

# KEYS: the three queues (high first), processing
# ARGV: lease (ms), driver id, job key prefix
CLAIM = (
    NOW
    + """
for i = 1, 3 do
  while true do
    local id = redis.call("RPOP", KEYS[i])
    if not id then break end
    local job = ARGV[3] .. id
    if redis.call("HGET", job, "state") == "queued" then
      local token = ARGV[2] .. "#" .. redis.call("HINCRBY", job, "claims", 1)
      redis.call("ZADD", KEYS[4], now_ms + tonumber(ARGV[1]), id)
      redis.call("HSET", job, "state", "running", "driver", ARGV[2], "started_at", now_s,
        "lease", token)
      redis.call("HINCRBY", job, "attempts", 1)
      return {id, token}
    end
  end
end
return false
"""
)

# KEYS: processing, job. ARGV: job id, token, lease (ms)
RENEW = (
    NOW
    + """
if redis.call("ZSCORE", KEYS[1], ARGV[1]) and redis.call("HGET", KEYS[2], "lease") == ARGV[2] then
  redis.call("ZADD", KEYS[1], now_ms + tonumber(ARGV[3]), ARGV[1])
  return 1
end
return 0
"""
)

# KEYS: processing
# ARGV: max attempts, job key prefix, queue key prefix, retention (s)
REAP = (
    NOW
    + """
local expired = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now_ms)
local moved = {}
for _, id in ipairs(expired) do
  redis.call("ZREM", KEYS[1], id)
  local job = ARGV[2] .. id
  redis.call("HDEL", job, "lease")
  local state = redis.call("HGET", job, "state")
  local attempts = tonumber(redis.call("HGET", job, "attempts") or "0")
  if state == "cancelling" then
    redis.call("HSET", job, "state", "cancelled", "finished_at", now_s)
    redis.call("EXPIRE", job, ARGV[4])
  elseif state == "running" and attempts >= tonumber(ARGV[1]) then
    redis.call("HSET", job, "state", "failed", "finished_at", now_s, "error",
      "the driver running this job stopped (crashed, killed or lost) in each of its "
      .. attempts .. " attempts; see the driver logs, or resubmit with fewer or "
      .. "smaller trials if it ran out of memory")
    redis.call("EXPIRE", job, ARGV[4])
  elseif state == "running" then
    redis.call("HSET", job, "state", "queued")
    -- the claim end of its queue: a reclaimed job is next in line
    redis.call("RPUSH", ARGV[3] .. redis.call("HGET", job, "priority"), id)
  end
  moved[#moved + 1] = id
end
return moved
"""
)

# KEYS: job, its events. ARGV: token, events kept, fields...
# Progress of a running job (counts, best trial, objective, engine); 0 if refused.
UPDATE = """
if redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return 0 end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[2], "*", "type", "job", "data", "")
return 1
"""

# KEYS: job, its trials, the trial's history, the job's events
# ARGV: token ("" when not written by a driver), events kept, trial id, row JSON,
#       epoch ("" for none), epoch JSON
RECORD_TRIAL = """
if ARGV[1] ~= "" and redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[2], ARGV[3], ARGV[4])
if ARGV[5] ~= "" then redis.call("HSET", KEYS[3], ARGV[5], ARGV[6]) end
redis.call("XADD", KEYS[4], "MAXLEN", "~", ARGV[2], "*", "type", "trial", "data", ARGV[4])
return 1
"""

# KEYS: job, processing. ARGV: token, job id, end state, retention (s), fields...
FINISH = (
    NOW
    + """
if redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return 0 end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], "state", ARGV[3], "finished_at", now_s, "trials_running", "0",
  unpack(fields))
redis.call("HDEL", KEYS[1], "lease")
redis.call("ZREM", KEYS[2], ARGV[2])
redis.call("EXPIRE", KEYS[1], ARGV[4])
return 1
"""
)

# A driver that stops (SIGTERM: a deploy, `ray down`, Ctrl-C) hands its job back: next
# in line in its queue, without spending one of its attempts. A job being cancelled
# ends cancelled instead.
# KEYS: job, processing. ARGV: token, job id, queue key prefix, retention (s)
RELEASE = (
    NOW
    + """
if redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return "lost" end
redis.call("HDEL", KEYS[1], "lease")
redis.call("ZREM", KEYS[2], ARGV[2])
if redis.call("HGET", KEYS[1], "state") == "cancelling" then
  redis.call("HSET", KEYS[1], "state", "cancelled", "finished_at", now_s)
  redis.call("EXPIRE", KEYS[1], ARGV[4])
  return "cancelled"
end
redis.call("HSET", KEYS[1], "state", "queued")
redis.call("HINCRBY", KEYS[1], "attempts", -1)
redis.call("RPUSH", ARGV[3] .. redis.call("HGET", KEYS[1], "priority"), ARGV[2])
return "queued"
"""
)

# A model of a job, registered by the driver that holds the job.
# KEYS: job, model, models index. ARGV: token, model id, record JSON, created at (s)
REGISTER = """
if redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return 0 end
redis.call("SET", KEYS[2], ARGV[3])
redis.call("ZADD", KEYS[3], ARGV[4], ARGV[2])
return 1
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
