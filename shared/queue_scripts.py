"""The Lua scripts behind JobStore: each queue transition is one atomic step in Redis.

Key names come from shared.redis_keys: per-job keys through KEYS, the queue's prefixes baked
into the scripts' text below (QUEUE_LIB); no key name is spelled here.
"""

from __future__ import annotations

from shared import redis_keys
from shared.vocabulary import DEFAULT_TENANT, PRIORITIES

_PRIORITIES = ", ".join(f'"{p}"' for p in PRIORITIES)

# Every queued job waits in its tenant's line of its priority. line_up puts a job at the
# back of its line (a new job) or the front (one handed back or reclaimed). A tenant
# joins its priority's round (or comes back to it, its line having emptied) just after
# the tenant next in turn: next but one, not first. Joining at the front let a tenant
# that submits each job just as its last is claimed win every claim.
QUEUE_LIB = f"""
local PRIORITIES = {{{_PRIORITIES}}}
local JOB = "{redis_keys.job("")}"
local QUEUE = "{redis_keys.QUEUE_PREFIX}"
local TENANTS = "{redis_keys.QUEUE_TENANTS_PREFIX}"

local function tenant_of(id)
  return redis.call("HGET", JOB .. id, "tenant") or "{DEFAULT_TENANT}"
end

local function line_up(id, priority, tenant, front)
  local line = QUEUE .. priority .. ":" .. tenant
  if front then redis.call("RPUSH", line, id) else redis.call("LPUSH", line, id) end
  local round = TENANTS .. priority
  if not redis.call("ZSCORE", round, tenant) then
    local next_in_turn = redis.call("ZRANGE", round, 0, 0, "WITHSCORES")
    local turn = 0
    if next_in_turn[2] then turn = tonumber(next_in_turn[2]) + 0.5 end
    redis.call("ZADD", round, turn, tenant)
  end
end

-- A job back in the queue (reclaimed, handed back) waits afresh before it ages up.
local function requeue(id, now)
  redis.call("HSET", JOB .. id, "queued_since", now)
  line_up(id, redis.call("HGET", JOB .. id, "priority"), tenant_of(id), true)
end

local function unqueue(id)
  local line = QUEUE .. redis.call("HGET", JOB .. id, "priority") .. ":" .. tenant_of(id)
  redis.call("LREM", line, 0, id)
end

-- Queued jobs per priority: {{high, normal, low}}.
local function depths()
  local found = {{}}
  for level, p in ipairs(PRIORITIES) do
    found[level] = 0
    for _, tenant in ipairs(redis.call("ZRANGE", TENANTS .. p, 0, -1)) do
      found[level] = found[level] + redis.call("LLEN", QUEUE .. p .. ":" .. tenant)
    end
  end
  return found
end

-- Jobs queued before lines were per tenant (one list per priority): into their
-- tenants' lines, oldest first, before anything else touches the queue.
local function migrate()
  for _, p in ipairs(PRIORITIES) do
    while true do
      local id = redis.call("RPOP", QUEUE .. p)
      if not id then break end
      line_up(id, p, tenant_of(id), false)
    end
  end
end
"""


def _lua_key(key: str) -> str:
    """A Lua expression for a key made with "\0" for the Lua variable ``id`` (a job id)
    and "\1" for ``trial`` (a trial id)."""
    quoted = '"' + key.replace("\0", '" .. id .. "').replace("\1", '" .. trial .. "') + '"'
    return quoted.removeprefix('"" .. ').removesuffix(' .. ""')


# A job that ended lets its record, trials, their histories and its events go after the
# retention, in the same script that ends it: set in a step after, a lost reply would
# leave them forever.
_JOB_KEY = _lua_key(redis_keys.job("\0"))
_TRIALS_KEY = _lua_key(redis_keys.job_trials("\0"))
_EVENTS_KEY = _lua_key(redis_keys.job_events("\0"))
_HISTORY_KEY = _lua_key(redis_keys.trial_history("\0", "\1"))
EXPIRE_LIB = f"""
local function expire_job(id, retention)
  local trials = {_TRIALS_KEY}
  redis.call("EXPIRE", {_JOB_KEY}, retention)
  redis.call("EXPIRE", {_EVENTS_KEY}, retention)
  for _, trial in ipairs(redis.call("HKEYS", trials)) do
    redis.call("EXPIRE", {_HISTORY_KEY}, retention)
  end
  redis.call("EXPIRE", trials, retention)
end
"""

# Upper bounds of the histograms' buckets, in seconds (Prometheus's "le").
DURATION_BUCKETS_S = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
_BUCKETS = ", ".join(str(b) for b in DURATION_BUCKETS_S)

# Counters for /metrics, updated in the same script as what they count.
STATS_LIB = f"""
local STATS = "{redis_keys.STATS}"
local BUCKETS = {{{_BUCKETS}}}

local function count(name)
  redis.call("HINCRBY", STATS, name, 1)
end

local function observe(name, seconds)
  for _, le in ipairs(BUCKETS) do
    if seconds <= le then redis.call("HINCRBY", STATS, name .. ":le:" .. le, 1) end
  end
  redis.call("HINCRBY", STATS, name .. ":count", 1)
  redis.call("HINCRBYFLOAT", STATS, name .. ":sum", seconds)
end

-- A job reached an end state at now_s (seconds, a string): counted, and the run of its
-- last attempt observed.
local function ended(job, state, now_text)
  count("jobs_ended:" .. state)
  local started = redis.call("HGET", job, "started_at")
  if started then
    observe("job_duration_seconds", math.max(0, tonumber(now_text) - tonumber(started)))
  end
end
"""

# KEYS: job, jobs index, idempotency key, the tenant's jobs index, the tenant's active set
# ARGV: job id, now (s), max queued, idempotency TTL (s, "0" for none), the tenant's
#       most active jobs, priority, tenant, fields...
ENQUEUE = (
    STATS_LIB
    + QUEUE_LIB
    + """
if ARGV[4] ~= "0" then
  local existing = redis.call("GET", KEYS[3])
  if existing then return {"existing", existing} end
end
migrate()
local depth = 0
for _, d in ipairs(depths()) do depth = depth + d end
if depth >= tonumber(ARGV[3]) then return {"full", tostring(depth)} end
local active = 0
for _, id in ipairs(redis.call("SMEMBERS", KEYS[5])) do
  local state = redis.call("HGET", JOB .. id, "state")
  if state == "queued" or state == "running" or state == "cancelling" then
    active = active + 1
  else
    redis.call("SREM", KEYS[5], id)
  end
end
if active >= tonumber(ARGV[5]) then return {"tenant_full", tostring(active)} end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[1])
redis.call("ZADD", KEYS[4], ARGV[2], ARGV[1])
redis.call("SADD", KEYS[5], ARGV[1])
line_up(ARGV[1], ARGV[6], ARGV[7], false)
count("jobs_submitted")
if ARGV[4] ~= "0" then redis.call("SET", KEYS[3], ARGV[1], "EX", ARGV[4]) end
return {"created", ARGV[1]}
"""
)

# Queued jobs per priority, high first.
DEPTHS = (
    QUEUE_LIB
    + """
migrate()
return depths()
"""
)

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

# A job that waited aging_s in its priority moves up one (low -> normal -> high), at
# the front of its tenant's line there: no job waits forever behind higher ones.
AGE = """
local function age(aging_s, now)
  for level = 2, #PRIORITIES do
    local p, up = PRIORITIES[level], PRIORITIES[level - 1]
    for _, tenant in ipairs(redis.call("ZRANGE", TENANTS .. p, 0, -1)) do
      local line = QUEUE .. p .. ":" .. tenant
      while true do
        local id = redis.call("LINDEX", line, -1)
        if not id then break end
        local job = JOB .. id
        local since = redis.call("HGET", job, "queued_since")
          or redis.call("HGET", job, "submitted_at") or now
        if redis.call("HGET", job, "state") ~= "queued" then
          redis.call("RPOP", line)
        elseif now - tonumber(since) >= aging_s then
          redis.call("RPOP", line)
          redis.call("HSET", job, "priority", up, "queued_since", tostring(now))
          line_up(id, up, tenant, true)
        else
          break
        end
      end
    end
  end
end
"""

# Highest priority first; within one, the tenants in turn (the one served longest ago
# first), skipping tenants that already run their most jobs at once; each tenant's
# line is first in, first out.
# KEYS: processing. ARGV: lease (ms), driver id, most running jobs per tenant (0: no
# limit), aging (s; 0: none)
CLAIM = (
    STATS_LIB
    + QUEUE_LIB
    + NOW
    + AGE
    + """
migrate()
if tonumber(ARGV[4]) > 0 then age(tonumber(ARGV[4]), tonumber(now_s)) end
local most = tonumber(ARGV[3])
local running = {}
if most > 0 then
  for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do
    local tenant = tenant_of(id)
    running[tenant] = (running[tenant] or 0) + 1
  end
end
for _, p in ipairs(PRIORITIES) do
  local round = TENANTS .. p
  for _, tenant in ipairs(redis.call("ZRANGE", round, 0, -1)) do
    if most <= 0 or (running[tenant] or 0) < most then
      local line = QUEUE .. p .. ":" .. tenant
      local id = nil
      while not id do
        local next_id = redis.call("RPOP", line)
        if not next_id then break end
        if redis.call("HGET", JOB .. next_id, "state") == "queued" then id = next_id end
      end
      if redis.call("LLEN", line) == 0 then
        redis.call("ZREM", round, tenant)
      elseif id then
        -- the back of the round: one turn after the tenant served last (a count, not a
        -- clock: two claims in one millisecond must not tie)
        local last = redis.call("ZRANGE", round, -1, -1, "WITHSCORES")
        redis.call("ZADD", round, tonumber(last[2]) + 1, tenant)
      end
      if id then
        local job = JOB .. id
        local token = ARGV[2] .. "#" .. redis.call("HINCRBY", job, "claims", 1)
        redis.call("ZADD", KEYS[1], now_ms + tonumber(ARGV[1]), id)
        redis.call("HSET", job, "state", "running", "driver", ARGV[2], "started_at", now_s,
          "lease", token)
        if redis.call("HINCRBY", job, "attempts", 1) == 1 then
          local submitted = tonumber(redis.call("HGET", job, "submitted_at") or now_s)
          observe("submit_to_start_seconds", math.max(0, tonumber(now_s) - submitted))
        end
        return {id, token}
      end
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
# ARGV: max attempts, retention (s)
REAP = (
    STATS_LIB
    + EXPIRE_LIB
    + QUEUE_LIB
    + NOW
    + """
local expired = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now_ms)
local moved = {}
for _, id in ipairs(expired) do
  redis.call("ZREM", KEYS[1], id)
  local job = JOB .. id
  redis.call("HDEL", job, "lease")
  local state = redis.call("HGET", job, "state")
  local attempts = tonumber(redis.call("HGET", job, "attempts") or "0")
  if state == "cancelling" then
    redis.call("HSET", job, "state", "cancelled", "finished_at", now_s)
    ended(job, "cancelled", now_s)
    expire_job(id, ARGV[2])
  elseif state == "running" and attempts >= tonumber(ARGV[1]) then
    redis.call("HSET", job, "state", "failed", "finished_at", now_s, "error",
      "the driver running this job stopped (crashed, killed or lost) in each of its "
      .. attempts .. " attempts; see the driver logs, or resubmit with fewer or "
      .. "smaller trials if it ran out of memory")
    ended(job, "failed", now_s)
    expire_job(id, ARGV[2])
  elseif state == "running" then
    redis.call("HSET", job, "state", "queued")
    requeue(id, now_s)  -- the front of its tenant's line: next when the tenant's turn comes
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
RECORD_TRIAL = (
    STATS_LIB
    + """
if ARGV[1] ~= "" and redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return 0 end
redis.call("HSET", KEYS[2], ARGV[3], ARGV[4])
if ARGV[5] ~= "" then
  redis.call("HSET", KEYS[3], ARGV[5], ARGV[6])
  count("epochs")
end
redis.call("XADD", KEYS[4], "MAXLEN", "~", ARGV[2], "*", "type", "trial", "data", ARGV[4])
return 1
"""
)

# KEYS: job, processing. ARGV: token, job id, end state, retention (s), fields...
FINISH = (
    STATS_LIB
    + EXPIRE_LIB
    + NOW
    + """
if redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return 0 end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], "state", ARGV[3], "finished_at", now_s, "trials_running", "0",
  unpack(fields))
ended(KEYS[1], ARGV[3], now_s)
redis.call("HDEL", KEYS[1], "lease")
redis.call("ZREM", KEYS[2], ARGV[2])
expire_job(ARGV[2], ARGV[4])
return 1
"""
)

# A driver that stops (SIGTERM: a deploy, `ray down`, Ctrl-C) hands its job back: next
# in its tenant's line, without spending one of its attempts. A job being cancelled
# ends cancelled instead.
# KEYS: job, processing. ARGV: token, job id, retention (s)
RELEASE = (
    STATS_LIB
    + EXPIRE_LIB
    + QUEUE_LIB
    + NOW
    + """
if redis.call("HGET", KEYS[1], "lease") ~= ARGV[1] then return "lost" end
redis.call("HDEL", KEYS[1], "lease")
redis.call("ZREM", KEYS[2], ARGV[2])
if redis.call("HGET", KEYS[1], "state") == "cancelling" then
  redis.call("HSET", KEYS[1], "state", "cancelled", "finished_at", now_s)
  ended(KEYS[1], "cancelled", now_s)
  expire_job(ARGV[2], ARGV[3])
  return "cancelled"
end
redis.call("HSET", KEYS[1], "state", "queued")
redis.call("HINCRBY", KEYS[1], "attempts", -1)
requeue(ARGV[2], now_s)
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

# KEYS: job. ARGV: job id, retention (s)
CANCEL = (
    STATS_LIB
    + EXPIRE_LIB
    + QUEUE_LIB
    + NOW
    + """
local state = redis.call("HGET", KEYS[1], "state")
if not state then return "missing" end
if state == "queued" then
  migrate()
  unqueue(ARGV[1])
  redis.call("HSET", KEYS[1], "state", "cancelled", "finished_at", now_s)
  ended(KEYS[1], "cancelled", now_s)
  expire_job(ARGV[1], ARGV[2])
  return "cancelled"
end
if state == "running" then
  redis.call("HSET", KEYS[1], "state", "cancelling")
  return "cancelling"
end
if state == "cancelling" then return "cancelling" end
return "ended:" .. state
"""
)

# KEYS: job. ARGV: job id, spec (JSON), trials total, priority ("" to keep the job's),
# the edit count the spec was read at, "1" if the edit applies to a queued job only.
# Refused ("stale") when another edit came after that read. A queued job's new priority
# moves it to the back of that priority's line.
EDIT = (
    QUEUE_LIB
    + NOW
    + """
local state = redis.call("HGET", KEYS[1], "state")
if not state then return "missing" end
if state ~= "queued" and state ~= "running" then return "ended:" .. state end
if (redis.call("HGET", KEYS[1], "edits") or "0") ~= ARGV[5] then return "stale" end
if ARGV[6] == "1" and state ~= "queued" then return "not_queued:" .. state end
if ARGV[4] ~= "" and redis.call("HGET", KEYS[1], "priority") ~= ARGV[4] then
  if state == "queued" then
    migrate()
    unqueue(ARGV[1])
    redis.call("HSET", KEYS[1], "priority", ARGV[4], "queued_since", now_s)
    line_up(ARGV[1], ARGV[4], tenant_of(ARGV[1]), false)
  else
    redis.call("HSET", KEYS[1], "priority", ARGV[4])
  end
end
redis.call("HSET", KEYS[1], "spec", ARGV[2], "trials_total", ARGV[3])
redis.call("HINCRBY", KEYS[1], "edits", 1)
return state
"""
)
