-- Delivers the signals of one or more senders, each sender's in the order
-- sent. KEYS[j] is the peer hash of sender j's room (a room may repeat; on a
-- Redis Cluster every key of one call is of the same room).
-- ARGV: publish, maxlen, ttl, then per sender j: from, att, n, and n pairs
-- (to, body).
-- Reply: {'OK', published, then per sender: 'OK' or 'STALE' (no longer
-- attached; nothing sent), then n integers: 1 delivered, 0 recipient not in
-- the room (all 0 when STALE)}.
configure(ARGV[1], ARGV[2], ARGV[3])
-- begin() pointed PEERS at KEYS[1]; the loop below moves it room by room.
PEERS = ''
local reply = {'OK', 0}
-- Per channel: the events for that room's node, in order.
local batches = {}
local order = {}
local arg = 4
for j = 1, #KEYS do
  if KEYS[j] ~= PEERS then
    -- Another room: write back what was recorded in the last one first.
    settle()
    PEERS = KEYS[j]
    PREFIX = string.sub(PEERS, 1, -6)
  end
  local from, att, n = ARGV[arg], ARGV[arg + 1], tonumber(ARGV[arg + 2])
  arg = arg + 3
  if not current(from, att) then
    table.insert(reply, 'STALE')
    for _ = 1, n do table.insert(reply, 0) end
  else
    table.insert(reply, 'OK')
    for i = arg, arg + 2 * n - 1, 2 do
      local to, body = ARGV[i], ARGV[i + 1]
      local s = peer_state(meta_key(to))
      if s.node == nil and not s.checked then
        -- No peer hash (or no node in it): in the room only if the room
        -- lists it, then as detached. (A peer hash outlives no room entry:
        -- both go together, and the room's TTL is refreshed with every
        -- peer's.)
        s.checked = true
        if redis.call('HEXISTS', PEERS, to) == 1 then s.node = '' end
      end
      if s.node then
        local seq = record(to, 'signal', body, nil, s)
        if s.node ~= '' then
          local ch = channel(s.node)
          local batch = batches[ch]
          if not batch then
            batch = {}
            batches[ch] = batch
            table.insert(order, ch)
          end
          -- Flat: route, body, route, body... (no table per event).
          batch[#batch + 1] = to .. '=' .. seq
          batch[#batch + 1] = body
        end
        table.insert(reply, 1)
      else
        table.insert(reply, 0)
      end
    end
  end
  arg = arg + 2 * n
end
settle()
for _, ch in ipairs(order) do
  local batch = batches[ch]
  local message
  if #batch == 2 then
    message = 'E signal ' .. batch[1] .. '\n' .. batch[2]
  else
    local parts = {'M\n'}
    for i = 1, #batch, 2 do
      parts[#parts + 1] = 'signal ' .. batch[i] .. ' ' .. #batch[i + 1] .. '\n'
      parts[#parts + 1] = batch[i + 1]
    end
    message = table.concat(parts)
  end
  redis.call(PUBLISH, ch, message)
  PUBLISHED = PUBLISHED + 1
end
reply[2] = PUBLISHED
return reply
