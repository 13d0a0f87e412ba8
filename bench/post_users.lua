-- wrk script: POST /users with SPEC's README example; prints answers by status.
-- Usage: wrk -t2 -c32 -d10s -s bench/post_users.lua http://127.0.0.1:8000

wrk.method = "POST"
wrk.path = "/users"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[{"userId":"12345","username":"testuser","email":"testuser@example.com","age":30,"address":{"street":"123 Main St","city":"Anytown","state":"CA","zip_code":"12345"},"signupTs":"2023-01-01T12:00:00Z"}]]

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    io.write(string.format("status %d: %d\n", status, count))
  end
end
