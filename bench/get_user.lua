-- GET /user of a random one of the seeded users (ids ...-000000000001 up to the
-- script's argument, default 10000).
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
  local id = string.format("00000000-0000-4000-8000-%012d", math.random(1, users))
  return wrk.format("GET", "/user?user_id=" .. id)
end
