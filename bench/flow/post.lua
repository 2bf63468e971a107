-- wrk: POST the same Flows ping request body (FLOW_BODY names the file).
local f = assert(io.open(os.getenv("FLOW_BODY"), "r"))
wrk.method = "POST"
wrk.body = f:read("*a"):gsub("\n$", "")
wrk.headers["Content-Type"] = "application/json"
-- FLOW_SIGNATURE: the body's X-Hub-Signature-256, when serve checks one.
if os.getenv("FLOW_SIGNATURE") then
  wrk.headers["X-Hub-Signature-256"] = os.getenv("FLOW_SIGNATURE")
end
f:close()

function response(status, headers, body)
  if status ~= 200 then
    error("unexpected HTTP status " .. status)
  end
end
