-- Delivers the signals of one or more senders, each sender's in the order
-- sent. KEYS[j] is the peer hash of sender j's room (a room may repeat; on a
-- Redis Cluster every key of one call is of the same room).
-- ARGV: publish, maxlen, ttl, the node channel prefix (empty on a Redis
-- Cluster), then per sender j: from, att, n, and n pairs (to, body).
-- On a single Redis each recipient node gets one message per call on its own
-- channel (prefix .. node): "N\n" then, per event,
-- "<room> signal <peer>=<seq> <length>\n<body>". On a Redis Cluster a message
-- must stay in its room's slot: one per room and node on the room's channel
-- ("E ..." for one event, "M\n..." for several; see common.lua). So do nodes
-- of earlier builds, which read no node channel: only an incarnation ending
-- in "~c" and hex digits reads one (a rolling upgrade loses nothing).
-- Reply: {'OK', published, then per sender: 'OK' or 'STALE' (no longer
-- attached; nothing sent), then n integers: 1 delivered, 0 recipient not in
-- the room (all 0 when STALE)}.
configure(ARGV[1], ARGV[2], ARGV[3])
local node_prefix = ARGV[4]
-- begin() pointed PEERS at KEYS[1]; the loop below moves it room by room.
PEERS = ''
local reply = {'OK', 0}
-- Per channel: the events for that node, in order.
local batches = {}
local order = {}
-- The channels that are node channels (the others are room channels).
local node_channels = {}
-- The room of the current sender (node channel messages name it).
local room = ''
local arg = 5
for j = 1, #KEYS do
  if KEYS[j] ~= PEERS then
    -- Another room: write back what was recorded in the last one first.
    settle()
    PEERS = KEYS[j]
    PREFIX = string.sub(PEERS, 1, -6)
    -- PREFIX is "sb:{ROOM}:".
    room = string.sub(PREFIX, 5, -3)
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
          local ch
          local by_node = node_prefix ~= '' and string.find(s.node, '~c%x+$') ~= nil
          if by_node then ch = node_prefix .. s.node else ch = channel(s.node) end
          local batch = batches[ch]
          if not batch then
            batch = {}
            batches[ch] = batch
            node_channels[ch] = by_node
            table.insert(order, ch)
          end
          -- Flat: room, route, body, room, route, body... (no table per event).
          batch[#batch + 1] = room
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
  if node_channels[ch] then
    local parts = {'N\n'}
    for i = 1, #batch, 3 do
      parts[#parts + 1] = batch[i] .. ' signal ' .. batch[i + 1] .. ' ' .. #batch[i + 2] .. '\n'
      parts[#parts + 1] = batch[i + 2]
    end
    message = table.concat(parts)
  elseif #batch == 3 then
    message = 'E signal ' .. batch[2] .. '\n' .. batch[3]
  else
    local parts = {'M\n'}
    for i = 1, #batch, 3 do
      parts[#parts + 1] = 'signal ' .. batch[i + 1] .. ' ' .. #batch[i + 2] .. '\n'
      parts[#parts + 1] = batch[i + 2]
    end
    message = table.concat(parts)
  end
  redis.call(PUBLISH, ch, message)
  PUBLISHED = PUBLISHED + 1
end
reply[2] = PUBLISHED
return reply
