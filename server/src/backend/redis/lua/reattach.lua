-- A node re-registers a live local peer that Redis no longer holds as it
-- should: after Redis lost data (restart without persistence), after this
-- node was out of touch long enough to be declared dead, or when a script
-- answered STALE for a connection the node still holds.
-- ARGV: publish, maxlen, ttl, peer, info, node, att, secret, seq.
-- Status: CREATED (re-created), KEPT (still ours; routed to this node again),
-- MOVED (its session was resumed on another connection) or GONE (the room saw
-- it leave: expired after its node was declared dead, or its id now belongs to
-- a new session).
configure(ARGV[1], ARGV[2], ARGV[3])
local meta = meta_key(ARGV[4])
local m = redis.call('HMGET', meta, 'att', 'secret')
local att = m[1]
if att and att ~= ARGV[7] then
  -- The same session elsewhere (resumed), or a new peer that took the id.
  if m[2] == ARGV[8] then return {'MOVED', PUBLISHED} end
  return {'GONE', PUBLISHED}
end
if att then
  redis.call('HSET', meta, 'node', ARGV[6], 'away', 0, 'reason', '')
  touch(ARGV[4])
  return {'KEPT', PUBLISHED}
end
if redis.call('GET', gone_key(ARGV[4])) == ARGV[7] then return {'GONE', PUBLISHED} end
redis.call('HSET', PEERS, ARGV[4], ARGV[5])
redis.call('HSET', meta, 'node', ARGV[6], 'att', ARGV[7], 'seq', ARGV[9],
  'secret', ARGV[8], 'away', 0, 'reason', '', 'written', 0)
touch(ARGV[4])
return {'CREATED', PUBLISHED}
