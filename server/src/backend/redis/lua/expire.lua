-- Removes an away peer whose resume window passed.
-- ARGV: publish, maxlen, ttl, peer, att, now_ms, peer_left bodies by reason
-- (disconnected, timeout, node_lost), history spec.
-- Returns {'REMOVED'|'KEPT', published}.
configure(ARGV[1], ARGV[2], ARGV[3])
configure_history(ARGV[10])
local m = redis.call('HMGET', meta_key(ARGV[4]), 'att', 'away', 'reason')
if m[1] ~= ARGV[5] then return {'KEPT', PUBLISHED} end
local away = tonumber(m[2] or '0')
if away == 0 or away > tonumber(ARGV[6]) then return {'KEPT', PUBLISHED} end
local bodies = {disconnected = ARGV[7], timeout = ARGV[8], node_lost = ARGV[9]}
remove(ARGV[4], m[3], bodies[m[3]] or ARGV[7])
if m[3] == 'node_lost' then
  -- The node that held this peer may still be alive behind a partition and
  -- still have the connection: when it comes back it must close it (4001),
  -- not re-create a peer the room was told had left.
  redis.call('SET', gone_key(ARGV[4]), ARGV[5], 'PX', TTL)
end
return {'REMOVED', PUBLISHED}
