-- Reads a room for the Server API, in one consistent snapshot. ARGV:
-- publish, limits, ttl, mode. Mode 'full' returns {'OK', 0,
-- peers-hash-flat, version, data, created_at, per peer: peer, node, away};
-- mode 'summary' (a listing) {'OK', 0, peer count, version, created_at};
-- either {'NO_ROOM', 0} when the room has no peers.
-- created_at is '' when the room was re-created by re-registration after
-- Redis lost it (the caller then uses its oldest peer's joined_at).
configure(ARGV[1], ARGV[2], ARGV[3])
local created = redis.call('HGET', state_key(), 'c') or ''
if ARGV[4] == 'summary' then
  local n = redis.call('HLEN', PEERS)
  if n == 0 then return {'NO_ROOM', PUBLISHED} end
  local v = redis.call('HGET', state_key(), 'v') or '0'
  return {'OK', PUBLISHED, n, v, created}
end
local flat = redis.call('HGETALL', PEERS)
if #flat == 0 then return {'NO_ROOM', PUBLISHED} end
local v, d = state()
local where = {}
for i = 1, #flat, 2 do
  local m = redis.call('HMGET', meta_key(flat[i]), 'node', 'away')
  table.insert(where, flat[i])
  table.insert(where, m[1] or '')
  table.insert(where, m[2] or '0')
end
return {'OK', PUBLISHED, flat, v, d, created, where}
