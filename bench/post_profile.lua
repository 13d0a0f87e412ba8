-- POST /users with SPEC's README example, a different userId on every request
-- ("<thread>-<n>"), so that the enricher's coalescing never merges two requests
-- and every point measures the enricher, not its coalescing. No response
-- callback, so wrk itself stays cheap enough to measure the stub's ceiling too.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end
function init(args)
  sent = 0
end
local headers = {["Content-Type"] = "application/json"}
local template = '{"userId":"%d-%d","username":"testuser","email":"testuser@example.com","age":30,'
  .. '"address":{"street":"123 Main St","city":"Anytown","state":"CA","zip_code":"12345"},'
  .. '"signupTs":"2023-01-01T12:00:00Z"}'
function request()
  sent = sent + 1
  return wrk.format("POST", "/users", headers, string.format(template, thread_id, sent))
end
