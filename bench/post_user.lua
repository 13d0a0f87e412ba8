-- POST /user updating a random one of the 10,000 seeded users (two fields change).
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
function request()
  local n = math.random(1, 10000)
  local body = string.format(
    '{"user_id":"00000000-0000-4000-8000-%012d","first_name":"Name%d","phone_number":"+1 555 %04d"}',
    n, math.random(1, 1000000), math.random(0, 9999))
  return wrk.format("POST", "/user", {["Content-Type"] = "application/json"}, body)
end
