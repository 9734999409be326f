-- Closes a room for the application (Server API): every connection is closed
-- with 4003 on its node and every key of the room is deleted, the history
-- (`sb:{ROOM}:history`) included. ARGV: publish, limits, ttl.
-- Returns {'OK', published} | {'NO_ROOM', 0}.
-- The peers are not told `peer_left` one by one (each of them is closed),
-- and nothing is recorded: the room's history is deleted with it.
configure(ARGV[1], ARGV[2], ARGV[3])
local peers = redis.call('HKEYS', PEERS)
if #peers == 0 then return {'NO_ROOM', PUBLISHED} end
for _, peer in ipairs(peers) do
  local m = redis.call('HMGET', meta_key(peer), 'node', 'att')
  redis.call('DEL', meta_key(peer), queue_key(peer))
  -- As for a kick: the holding node must not re-create the peer.
  if m[2] then redis.call('SET', gone_key(peer), m[2], 'PX', TTL) end
  close_elsewhere(peer, m[1], m[2], '4003', 'closed')
end
-- The history goes with its webhook counter, cursor and lease: a delivery
-- in progress finds nothing more to send.
redis.call('DEL', PEERS, state_key(), replay_key(), PREFIX .. 'history', PREFIX .. 'hook',
  PREFIX .. 'hook:lease')
return {'OK', PUBLISHED}
