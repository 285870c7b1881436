-- wrk script for every scenario of bench/run.py; BENCH_MODE picks the requests:
--   get     GET /api/v1/users/{id}/, ids Zipf-distributed over every seeded user
--   patch   PATCH /api/v1/users/{id}/ (a new display_name), same ids
--   mix     get, except a BENCH_WRITE_SHARE of requests (0.05) are patch
--   path    GET BENCH_PATH as staff (the staff list pages)
--   signup  POST /api/v1/users/ anonymously with a fresh email (an Argon2 hash each)
-- BENCH_USERS_FILE lines, one per Zipf rank: "<id> <token>", or "<id> -" for a user
-- outside the hot set, read and changed with the staff token (BENCH_STAFF_TOKEN).
-- BENCH_ZIPF_S is the exponent. `done` prints one RESULT line for bench/load.py.

local mode, write_share, staff, path
local ids, tokens, cdf = {}, {}, {}
local n = 0
local counter = 0
local thread_seed = 1

function setup(thread)
  thread:set("seed", thread_seed)
  thread_seed = thread_seed + 1
end

local function load_users()
  local s = tonumber(os.getenv("BENCH_ZIPF_S") or "1.1")
  -- One read and one gmatch: about twice as fast as io.lines for a million lines.
  local file = assert(io.open(os.getenv("BENCH_USERS_FILE")))
  local text = file:read("*a")
  file:close()
  for id, token in text:gmatch("(%S+) (%S+)\n") do
    n = n + 1
    ids[n] = id
    tokens[n] = token ~= "-" and token or staff
  end
  local total = 0
  for k = 1, n do
    total = total + 1 / (k ^ s)
    cdf[k] = total
  end
  for k = 1, n do cdf[k] = cdf[k] / total end
end

function init(args)
  mode = os.getenv("BENCH_MODE") or "get"
  write_share = tonumber(os.getenv("BENCH_WRITE_SHARE") or "0.05")
  staff = os.getenv("BENCH_STAFF_TOKEN")
  path = os.getenv("BENCH_PATH")
  math.randomseed(seed * 7919 + os.time())
  if mode == "get" or mode == "patch" or mode == "mix" then load_users() end
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

local function user_request(method)
  local k = rank()
  local headers = { ["Authorization"] = "Bearer " .. tokens[k], ["Host"] = "127.0.0.1" }
  local body = nil
  if method == "PATCH" then
    headers["Content-Type"] = "application/json"
    body = string.format('{"display_name": "Bench %d"}', math.random(1, 1000000000))
  end
  return wrk.format(method, "/api/v1/users/" .. ids[k] .. "/", headers, body)
end

function request()
  if mode == "get" then return user_request("GET") end
  if mode == "patch" then return user_request("PATCH") end
  if mode == "mix" then
    return user_request(math.random() < write_share and "PATCH" or "GET")
  end
  if mode == "path" then
    return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. staff, ["Host"] = "127.0.0.1" })
  end
  counter = counter + 1
  local body = string.format(
    '{"email": "signup-%d-%d-%d@example.com", "password": "violet-harbour-lantern-42", '
      .. '"display_name": "Signup %d"}',
    os.time(), seed, counter, counter)
  return wrk.format("POST", "/api/v1/users/",
    { ["Content-Type"] = "application/json", ["Host"] = "127.0.0.1" }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d"
      .. " connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout + e.status, e.status,
    e.connect, e.read, e.write, e.timeout))
end
