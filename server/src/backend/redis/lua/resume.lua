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
local seq, written = tonumber(m[4] or '0'), tonumber(m[5] or '0')
redis.call('HSET', meta, 'node', ARGV[6], 'att', ARGV[7], 'away', 0, 'reason', '')
close_elsewhere(peer, old_node, old_att)
local from = tonumber(ARGV[8])
if from < 0 then from = written end
local recovered = 1
local events = {}
if from < seq and seq - from > MAXLEN then
  -- More was missed than the configured buffer holds (the list may keep a
  -- few more, trimmed in batches): not recoverable.
  recovered = 0
  from = seq
elseif from < seq then
  -- The list holds consecutive seqs ending at `seq`, unless events went
  -- elsewhere (a node of an earlier version) or were dropped: any gap, in
  -- front or inside, and the resume is not recoverable.
  local queue = queue_key(peer)
  local first = entry_seq(redis.call('LINDEX', queue, 0) or '')
  local entries = {}
  if first and first <= from + 1 then
    entries = redis.call('LRANGE', queue, from + 1 - first, -1)
  end
  local expect = from + 1
  for _, e in ipairs(entries) do
    local kind, _, id, body = entry_parts(e)
    if id then body = redis.call('HGET', replay_key(), 'b:' .. id) end
    -- A shared body that is gone (its key expired) is a gap too.
    if entry_seq(e) ~= expect or not kind or not body then
      expect = -1
      break
    end
    table.insert(events, tostring(expect))
    table.insert(events, kind)
    table.insert(events, body)
    expect = expect + 1
  end
  if expect ~= seq + 1 then
    -- Trimmed, or dropped for the room budget (see settle in common.lua).
    recovered = 0
    from = seq
    events = {}
  end
else
  from = seq
end
touch(peer)
local v, d = state()
return {'OK', PUBLISHED, redis.call('HGETALL', PEERS), v, d, recovered, from, events}
