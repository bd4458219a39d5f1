-- wrk script: POST a distinct, pre-signed webhook body per request.
-- Arguments (after --): <bodies file> <number of wrk threads>
-- Each line of the file is "<X-Hub-Signature-256 value> <JSON body>". Thread i sends lines
-- i, i+n, i+2n, ... in order, so no body is sent twice while the file lasts; when a thread runs
-- out it starts again from its first line and counts the repeats as "wrapped".
-- done() prints one line: "BENCH_RESULT {json}" with counts and latency percentiles (us).

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2])
  prepared = {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % nthreads == id then
      local space = string.find(line, " ", 1, true)
      local signature = string.sub(line, 1, space - 1)
      local body = string.sub(line, space + 1)
      prepared[#prepared + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Hub-Signature-256"] = signature,
      }, body)
    end
    line_no = line_no + 1
  end
  cursor = 0
  looped = false
  wrapped = 0
  non2xx = 0
end

function request()
  cursor = cursor + 1
  if cursor > #prepared then
    cursor = 1
    looped = true
  end
  if looped then
    wrapped = wrapped + 1
  end
  return prepared[cursor]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local non = 0
  local wraps = 0
  for _, thread in ipairs(threads) do
    non = non + (thread:get("non2xx") or 0)
    wraps = wraps + (thread:get("wrapped") or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "wrapped": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, non, wraps,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
