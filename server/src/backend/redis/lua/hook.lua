-- Webhook delivery of the room's history (see history() in common.lua):
-- the lease that makes one node the room's sender, and the cursor.
-- ARGV: publish, limits, ttl, op, node, lease_ms, then by op:
--   next   count          -> {'OK', 0, cseq, entries} | {'BUSY', 0}
--                            takes or renews the lease; the entries after
--                            the cursor (at most count)
--   ack    offset, seq, keep_ms -> {'OK', 0} | {'LOST', 0}
--                            moves the cursor; renews the lease
--   renew                 -> {'OK', 0} | {'LOST', 0}
--   release               -> {'OK', 0}  drops the lease if it is ours
configure(ARGV[1], ARGV[2], ARGV[3])
local op, node, lease_ms = ARGV[4], ARGV[5], ARGV[6]
local lease, hook = PREFIX .. 'hook:lease', PREFIX .. 'hook'
local holder = redis.call('GET', lease)
if op == 'release' then
  if holder == node then redis.call('DEL', lease) end
  return {'OK', 0}
end
if op == 'next' then
  if holder and holder ~= node then return {'BUSY', 0} end
  redis.call('SET', lease, node, 'PX', lease_ms)
  local h = redis.call('HMGET', hook, 'cursor', 'cseq')
  local from = '-'
  if h[1] then from = '(' .. h[1] end
  local entries = redis.call('XRANGE', PREFIX .. 'history', from, '+', 'COUNT', ARGV[7])
  return {'OK', 0, h[2] or '0', entries}
end
if holder ~= node then return {'LOST', 0} end
redis.call('PEXPIRE', lease, lease_ms)
if op == 'ack' then
  redis.call('HSET', hook, 'cursor', ARGV[7], 'cseq', ARGV[8])
  redis.call('PEXPIRE', hook, ARGV[9])
end
return {'OK', 0}
