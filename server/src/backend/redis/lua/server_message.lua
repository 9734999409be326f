-- A `server` event from the application backend (Server API) to one peer
-- or every peer of the room, away peers included (kept for their resume).
-- ARGV: publish, limits, ttl, to ('' = every peer), body.
-- Returns {'OK', published, recipients} | {'NO_ROOM', 0} | {'NO_PEER', 0}.
configure(ARGV[1], ARGV[2], ARGV[3])
if redis.call('HLEN', PEERS) == 0 then return {'NO_ROOM', PUBLISHED} end
local recipients
if ARGV[4] ~= '' then
  if redis.call('HEXISTS', PEERS, ARGV[4]) == 0 then return {'NO_PEER', PUBLISHED} end
  recipients = {ARGV[4]}
else
  recipients = redis.call('HKEYS', PEERS)
end
deliver(recipients, 'server', ARGV[5])
return {'OK', PUBLISHED, #recipients}
