-- Re-attaches a peer with a valid session secret. ARGV: publish, limits, ttl,
-- peer, secret, node, att, last_seq (-1 = use the written seq).
-- Returns {'OK', published, peers-hash-flat, version, data, recovered, from, events}
-- where events is a flat list seq, kind, body; or {'INVALID'}.
configure(ARGV[1], ARGV[2], ARGV[3])
local peer = ARGV[4]
local meta = meta_key(peer)
local m = redis.call('HMGET', meta, 'secret', 'node', 'att', 'seq', 'written')
if not m[1] or m[1] ~= ARGV[5] then return {'INVALID', PUBLISHED} end
local old_node, old_att = m[2], m[3]
local seq, written = tonumber(m[4]), tonumber(m[5])
redis.call('HSET', meta, 'node', ARGV[6], 'att', ARGV[7], 'away', 0, 'reason', '')
if old_node and old_node ~= '' then
  redis.call(PUBLISH, channel(old_node), 'K ' .. peer .. ' ' .. old_att)
  PUBLISHED = PUBLISHED + 1
end
local from = tonumber(ARGV[8])
if from < 0 then from = written end
local recovered = 1
local events = {}
if from < seq and seq - from > MAXLEN then
  -- More was missed than the configured buffer holds (the stream may keep a
  -- few more, trimmed approximately): not recoverable.
  recovered = 0
  from = seq
elseif from < seq then
  local entries = redis.call('XRANGE', queue_key(peer), (from + 1) .. '-0', '+')
  local first = entries[1] and tonumber(string.match(entries[1][1], '^(%d+)-'))
  if first ~= from + 1 then
    -- Trimmed, or dropped for the room budget (see settle in common.lua).
    recovered = 0
    from = seq
  else
    for _, e in ipairs(entries) do
      local kind, _, id, body = entry_parts(e)
      if id then body = redis.call('HGET', replay_key(), 'b:' .. id) end
      if not body then
        -- A shared body is gone (its key expired): nothing rather than a gap.
        recovered = 0
        from = seq
        events = {}
        break
      end
      table.insert(events, string.match(e[1], '^(%d+)-'))
      table.insert(events, kind)
      table.insert(events, body)
    end
  end
else
  from = seq
end
touch(peer)
local v, d = state()
return {'OK', PUBLISHED, redis.call('HGETALL', PEERS), v, d, recovered, from, events}
