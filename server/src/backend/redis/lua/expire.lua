-- Removes an away peer whose resume window passed.
-- ARGV: publish, maxlen, ttl, peer, att, now_ms, peer_left bodies by reason
-- (disconnected, timeout, node_lost). Returns {'REMOVED'|'KEPT', published}.
configure(ARGV[1], ARGV[2], ARGV[3])
local m = redis.call('HMGET', meta_key(ARGV[4]), 'att', 'away', 'reason')
if m[1] ~= ARGV[5] then return {'KEPT', PUBLISHED} end
local away = tonumber(m[2] or '0')
if away == 0 or away > tonumber(ARGV[6]) then return {'KEPT', PUBLISHED} end
local bodies = {disconnected = ARGV[7], timeout = ARGV[8], node_lost = ARGV[9]}
remove(ARGV[4], m[3], bodies[m[3]] or ARGV[7])
return {'REMOVED', PUBLISHED}
