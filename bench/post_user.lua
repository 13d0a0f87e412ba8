-- POST /user updating a random one of the seeded users (ids ...-000000000001 up to
-- the script's argument, default 10000): two fields change.
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
  users = tonumber(args[1]) or 10000
end
function request()
  local n = math.random(1, users)
  local body = string.format(
    '{"user_id":"00000000-0000-4000-8000-%012d","first_name":"Name%d","phone_number":"+1 555 %04d"}',
    n, math.random(1, 1000000), math.random(0, 9999))
  return wrk.format("POST", "/user", {["Content-Type"] = "application/json"}, body)
end
