-- Removes a peer for the application (Server API), connected or away.
-- ARGV: publish, limits, ttl, peer, peer_left body (reason kicked), history
-- spec.
-- Returns {'OK', published} | {'NO_ROOM', 0} | {'NO_PEER', 0}.
-- The removal is remove()'s, as for every other one. The node holding the
-- connection gets `K <peer> <att> 4003 kicked` (close_elsewhere) and closes
-- it with 4003. The tombstone keeps that node from re-creating the peer
-- should it re-register it before the message arrives (reattach.lua answers
-- GONE). With the peer's records gone, its session token resumes nothing: a
-- resume is a fresh join.
configure(ARGV[1], ARGV[2], ARGV[3])
configure_history(ARGV[6])
local peer = ARGV[4]
if redis.call('HLEN', PEERS) == 0 then return {'NO_ROOM', PUBLISHED} end
if redis.call('HEXISTS', PEERS, peer) == 0 then return {'NO_PEER', PUBLISHED} end
local m = redis.call('HMGET', meta_key(peer), 'node', 'att')
remove(peer, 'kicked', ARGV[5])
if m[2] then redis.call('SET', gone_key(peer), m[2], 'PX', TTL) end
close_elsewhere(peer, m[1], m[2], '4003', 'kicked')
return {'OK', PUBLISHED}
