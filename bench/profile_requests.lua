-- wrk: each request reads a random student's whole profile, by the identifiers in IDS_FILE
-- (one "name=value" per line), with the admin key in API_KEY. bench/bench_profile_api.py runs it.
-- With THINK_MS set, each connection waits a random time (exponential, THINK_MS on average)
-- before each request, as a dashboard's user does between pages: a paced load, not a saturating one.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local headers = {["Authorization"] = "Bearer " .. os.getenv("API_KEY")}
local think = tonumber(os.getenv("THINK_MS") or "0")

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed)
end

function request()
  return wrk.format("GET", "/v1/students/profile?" .. ids[math.random(#ids)], headers)
end

if think > 0 then
  function delay()
    return -math.log(1 - math.random()) * think
  end
end

function done(summary, latency, requests)
  local failed = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %d %d %.3f %.3f %.3f\n", summary.requests, failed,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
