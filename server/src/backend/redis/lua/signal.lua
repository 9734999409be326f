-- ARGV: publish, maxlen, ttl, from, att, then one (to, body) pair per signal,
-- in the order the sender sent them.
-- Status: STALE (sender no longer attached), or OK followed by one integer per
-- signal: 1 delivered, 0 recipient not in the room.
configure(ARGV[1], ARGV[2], ARGV[3])
if not current(ARGV[4], ARGV[5]) then return {'STALE', PUBLISHED} end
local reply = {'OK', 0}
-- Per recipient: its node ('' while detached), or false when not in the room.
local node_of = {}
local touched = {}
-- Per node: the events for it, in order.
local batches = {}
local order = {}
for i = 6, #ARGV - 1, 2 do
  local to, body = ARGV[i], ARGV[i + 1]
  local node = node_of[to]
  if node == nil then
    node = false
    if redis.call('HEXISTS', PEERS, to) == 1 then
      node = redis.call('HGET', meta_key(to), 'node') or ''
      table.insert(touched, to)
    end
    node_of[to] = node
  end
  if node then
    local seq = record(to, 'signal', body)
    if node ~= '' then
      local batch = batches[node]
      if not batch then
        batch = {}
        batches[node] = batch
        table.insert(order, node)
      end
      table.insert(batch, {to .. '=' .. seq, body})
    end
    table.insert(reply, 1)
  else
    table.insert(reply, 0)
  end
end
for _, peer in ipairs(touched) do
  redis.call('PEXPIRE', queue_key(peer), TTL)
end
for _, node in ipairs(order) do
  local batch = batches[node]
  local message
  if #batch == 1 then
    message = 'E signal ' .. batch[1][1] .. '\n' .. batch[1][2]
  else
    local parts = {'M\n'}
    for _, event in ipairs(batch) do
      table.insert(parts, 'signal ' .. event[1] .. ' ' .. #event[2] .. '\n')
      table.insert(parts, event[2])
    end
    message = table.concat(parts)
  end
  redis.call(PUBLISH, channel(node), message)
  PUBLISHED = PUBLISHED + 1
end
reply[2] = PUBLISHED
return reply
