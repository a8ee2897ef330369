-- Argo CD health for barelb's AddressPool, LoadBalancerPolicy and BGPPeer
-- (one script for the three kinds: each has observedGeneration and a Ready
-- condition written by barelb-operator).
local hs = {}
local st = obj.status
if st == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for barelb-operator to report status"
  return hs
end
local gen = obj.metadata.generation
if gen ~= nil and (st.observedGeneration == nil or st.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "Waiting for barelb-operator to observe generation " .. gen
  return hs
end
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type == "Ready" then
      if c.status == "True" then
        hs.status = "Healthy"
        hs.message = c.message
        return hs
      elseif c.status == "False" then
        hs.status = "Degraded"
        hs.message = c.message
        return hs
      end
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
