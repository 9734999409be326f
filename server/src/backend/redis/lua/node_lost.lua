-- Marks every peer of the room held by a dead node as away (reason node_lost).
-- ARGV: publish, maxlen, ttl, dead_node, deadline_ms.
-- Returns {'OK', published, flat list peer, att of the peers marked}.
configure(ARGV[1], ARGV[2], ARGV[3])
local marked = {}
for _, peer in ipairs(redis.call('HKEYS', PEERS)) do
  local meta = meta_key(peer)
  local m = redis.call('HMGET', meta, 'node', 'att')
  if m[1] == ARGV[4] then
    redis.call('HSET', meta, 'node', '', 'away', ARGV[5], 'reason', 'node_lost')
    table.insert(marked, peer)
    table.insert(marked, m[2])
  end
end
return {'OK', PUBLISHED, marked}
