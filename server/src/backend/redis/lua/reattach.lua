-- After Redis lost data (restart without persistence), a node re-registers a
-- live local peer. ARGV: publish, maxlen, ttl, peer, info, node, att, secret,
-- seq. Status: CREATED, KEPT or MOVED (another attachment owns it now).
configure(ARGV[1], ARGV[2], ARGV[3])
local meta = meta_key(ARGV[4])
local att = redis.call('HGET', meta, 'att')
if att and att ~= ARGV[7] then return {'MOVED', PUBLISHED} end
if att then
  redis.call('HSET', meta, 'node', ARGV[6], 'away', 0)
  touch(ARGV[4])
  return {'KEPT', PUBLISHED}
end
redis.call('HSET', PEERS, ARGV[4], ARGV[5])
redis.call('HSET', meta, 'node', ARGV[6], 'att', ARGV[7], 'seq', ARGV[9],
  'secret', ARGV[8], 'away', 0, 'reason', '', 'written', 0)
touch(ARGV[4])
return {'CREATED', PUBLISHED}
