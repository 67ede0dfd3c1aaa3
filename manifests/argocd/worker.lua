-- Argo CD health of an edgeplane.io Worker, from its kstatus conditions.
-- Healthy: Ready=True for the current generation. Degraded: Stalled=True (nothing changes
-- until the Worker or its sources do, e.g. ScriptInvalid, RolledBack, Quarantined).
-- Suspended: a rollout step paused until promoted (Ready reason Paused).
-- Progressing: anything else (deploying, a location unreachable and retried, a service
-- binding's Worker not at a location yet (ServiceMissing), or the operator has not seen
-- this generation yet).
local hs = {}
local function condition(status, type_)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end
local function describe(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the edgeplane operator"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local stalled = condition(status, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local ready = condition(status, "Ready")
-- A step's `pause: {}`: waiting for a person (edgeplane rollout promote or abort), as Argo
-- CD shows a paused Argo Rollout.
if ready ~= nil and ready.status == "False" and ready.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = describe(ready)
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end
hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
