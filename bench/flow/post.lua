-- wrk: POST the same Flows ping request body (FLOW_BODY names the file).
local f = assert(io.open(os.getenv("FLOW_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a"):gsub("\n$", "")
wrk.headers["Content-Type"] = "application/json"
f:close()

function response(status, headers, body)
  if status ~= 200 then
    error("unexpected HTTP status " .. status)
  end
end
