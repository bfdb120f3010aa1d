-- wrk script for the GET benchmark: the same request to paymux and to trivial-server.
--   wrk -s bench/get.lua URL [-- TOKEN]    (TOKEN: a bearer token sent as Authorization)
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local report = require("report")

function init(args)
  if args[1] and args[1] ~= "" then wrk.headers["Authorization"] = "Bearer " .. args[1] end
end

done = report.done
