-- wrk script: GET /api/v1/users/{id}/ as that user (their own token), ids drawn from a
-- Zipf distribution over every seeded user (BENCH_USERS_FILE lines: "<id> <token>",
-- already shuffled, so rank says nothing about the id). BENCH_ZIPF_S is the exponent.

local ids, tokens, cdf = {}, {}, {}
local n = 0
local thread_seed = 1
local threads = {}

function setup(thread)
  thread:set("seed", thread_seed)
  thread_seed = thread_seed + 1
  table.insert(threads, thread)
end

function init(args)
  local s = tonumber(os.getenv("BENCH_ZIPF_S") or "1.1")
  for line in io.lines(os.getenv("BENCH_USERS_FILE")) do
    local id, token = line:match("^(%S+) (%S+)$")
    if id then
      n = n + 1
      ids[n] = id
      tokens[n] = token
    end
  end
  local total = 0
  for k = 1, n do
    total = total + 1 / (k ^ s)
    cdf[k] = total
  end
  for k = 1, n do cdf[k] = cdf[k] / total end
  math.randomseed(seed * 7919 + os.time())
end

local function rank()
  local u = math.random()
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo
end

function request()
  local k = rank()
  return wrk.format("GET", "/api/v1/users/" .. ids[k] .. "/", {
    ["Authorization"] = "Bearer " .. tokens[k],
    ["Host"] = "127.0.0.1",
  })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout + e.status, e.status))
end
