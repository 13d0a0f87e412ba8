-- GET /user of a random one of the 10,000 seeded users (ids ...-000000000001 to 10000).
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
function request()
  local id = string.format("00000000-0000-4000-8000-%012d", math.random(1, 10000))
  return wrk.format("GET", "/user?user_id=" .. id)
end
