-- A fresh join. ARGV: publish, maxlen, ttl, peer, info, node, att, secret,
-- max_peers, peer_joined body, history spec.
-- Returns {'OK', published, peers-hash-flat, version, data} | {'TAKEN'} | {'FULL'}.
configure(ARGV[1], ARGV[2], ARGV[3])
local peer = ARGV[4]
if redis.call('HEXISTS', PEERS, peer) == 1 then return {'TAKEN', PUBLISHED} end
local size = redis.call('HLEN', PEERS)
if size >= tonumber(ARGV[9]) then return {'FULL', PUBLISHED} end
configure_history(ARGV[11])
if size == 0 then history('room_started', '{}') end
history('peer_joined', '{"peer":' .. ARGV[5] .. '}')
deliver(others(peer), 'peer_joined', ARGV[10])
redis.call('HSET', PEERS, peer, ARGV[5])
redis.call('HSET', meta_key(peer), 'node', ARGV[6], 'att', ARGV[7], 'seq', 0,
  'secret', ARGV[8], 'away', 0, 'reason', '', 'written', 0)
touch(peer)
local v, d = state()
return {'OK', PUBLISHED, redis.call('HGETALL', PEERS), v, d}
