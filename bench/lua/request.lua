-- wrk script: one endpoint per run, configured from the environment by bench/run.py.
-- BENCH_METHOD, BENCH_PATH, BENCH_TOKEN (bearer, optional), BENCH_BODY (optional; "{n}" is
-- replaced by a value unique per request, for creates). Prints one BENCHJSON line at the end.

local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local token = os.getenv("BENCH_TOKEN")
local body = os.getenv("BENCH_BODY")
if token == "" then token = nil end
if body == "" then body = nil end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local counter = 0
local headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
if token then headers["Authorization"] = "Bearer " .. token end
-- Screens (bench/screens.py): a session cookie and an HTML Accept instead of a bearer token.
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then headers["Cookie"] = cookie end
local accept = os.getenv("BENCH_ACCEPT")
if accept and accept ~= "" then headers["Accept"] = accept end

function init(args)
  math.randomseed(os.time() + (tid or 0) * 7919)
  if not body then
    fixed = wrk.format(method, path, headers, nil)
  end
end

function request()
  if fixed then return fixed end
  counter = counter + 1
  local unique = string.format("%d-%d-%d-%d", os.time(), tid or 0, counter, math.random(1, 1000000000))
  local b = body:gsub("{n}", unique)
  return wrk.format(method, path, headers, b)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
