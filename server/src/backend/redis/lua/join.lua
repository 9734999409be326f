-- A fresh join. ARGV: publish, maxlen, ttl, peer, info, node, att, secret,
-- max_peers, peer_joined body, takeover (1/0), peer_left{replaced} body,
-- history spec.
-- With takeover, a peer of that id already in the room is replaced: its
-- connection's node is told to close it (4000), its session and stream go,
-- the others get peer_left then peer_joined; the room's state stays.
-- Returns {'OK', published, peers-hash-flat, version, data} | {'TAKEN'} | {'FULL'}.
configure(ARGV[1], ARGV[2], ARGV[3])
local peer = ARGV[4]
-- Decided before a takeover, which may empty the room only for a moment.
local starts = redis.call('HLEN', PEERS) == 0
if redis.call('HEXISTS', PEERS, peer) == 1 then
  if ARGV[11] ~= '1' then return {'TAKEN', PUBLISHED} end
  configure_history(ARGV[13])
  local old = redis.call('HMGET', meta_key(peer), 'node', 'att')
  close_elsewhere(peer, old[1], old[2])
  remove(peer, 'replaced', ARGV[12], true)
end
if redis.call('HLEN', PEERS) >= tonumber(ARGV[9]) then return {'FULL', PUBLISHED} end
if starts then
  -- The room starts: remember when, for the Server API's `created_at`.
  local t = redis.call('TIME')
  redis.call('HSET', state_key(), 'c', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
configure_history(ARGV[13])
if starts then history('room_started', '{}') end
history('peer_joined', '{"peer":' .. ARGV[5] .. '}')
deliver(others(peer), 'peer_joined', ARGV[10])
redis.call('HSET', PEERS, peer, ARGV[5])
redis.call('HSET', meta_key(peer), 'node', ARGV[6], 'att', ARGV[7], 'seq', 0,
  'secret', ARGV[8], 'away', 0, 'reason', '', 'written', 0)
touch(peer)
local v, d = state()
return {'OK', PUBLISHED, redis.call('HGETALL', PEERS), v, d}
