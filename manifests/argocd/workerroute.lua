-- Argo CD health of an edgeplane.io WorkerRoute, from its Ready condition.
-- Healthy: routed, or (a route without a Worker) excluded at every location. Degraded: a
-- newer route with a pattern an older one holds, a host no HostClaim grants the namespace,
-- a split naming a version that is not retained, or a location refusing the exclusion.
-- Progressing: the operator has not seen this generation yet, the Worker it names does not
-- exist (yet: it may be in the same sync), or an exclusion is still on its way to some
-- locations.
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
if status == nil or status.observedGeneration == nil or ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the edgeplane operator"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local message = ready.reason
if ready.message ~= nil and ready.message ~= "" then
  message = ready.reason .. ": " .. ready.message
end
hs.message = message
if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.reason == "RouteConflict" or ready.reason == "VersionNotFound"
    or ready.reason == "ExclusionRefused" or ready.reason == "HostNotClaimed" then
  hs.status = "Degraded"
else
  hs.status = "Progressing"
end
return hs
