-- Argo CD health of an edgeplane.io EdgeTarget (an edge location), from its Ready
-- condition. Healthy: the agent answers. Degraded: any Ready=False, e.g. it does not
-- answer (Unreachable), its credentials Secret is missing (CredentialsNotFound) or in a
-- namespace the operator does not read (CredentialsNotAllowed), or its endpoint is plain
-- http to another machine (InsecureEndpoint). Progressing: not checked yet.
local hs = {}
local status = obj.status
local generation = obj.metadata.generation
local ready = nil
if status ~= nil and status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if status == nil or ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the first health check"
  return hs
end
if generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
hs.message = ready.reason
if ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.reason .. ": " .. ready.message
end
if ready.status == "True" then
  hs.status = "Healthy"
else
  hs.status = "Degraded"
end
return hs
