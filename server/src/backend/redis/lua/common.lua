-- Shared helpers, prepended to every room script. Every script returns a
-- table {status, published, ...}.
--
-- KEYS[1] is the room's peer hash `sb:{ROOM}:peers`; every other key of the
-- room is derived from it, so all of them share the room's hash slot.
-- (signal.lua takes one such key per sender and points PEERS and PREFIX at
-- each in turn.)
-- Per-peer keys: `p:<peer>` (hash: node, att, seq, secret, away, reason,
-- written) and `q:<peer>` (stream of events, entry id `<seq>-1`).
-- A delivery assigns the recipient's next seq, appends to its stream (bounded)
-- and publishes one message per node that holds recipients, on the channel
-- `sb:{ROOM}:node:<node>`:
--   "E <kind> <peer>=<seq>,<peer>=<seq>...\n<body>"
-- signal.lua delivers a batch and then sends each room's node one message
-- with all of its events, each with its byte length:
--   "M\n" then, per event, "<kind> <peer>=<seq> <length>\n<body>"

local PEERS = KEYS[1]
local PREFIX = string.sub(PEERS, 1, -6)
local PUBLISH = 'PUBLISH'
local MAXLEN = 512
local TTL = 3600000
-- Messages published by this script run, returned for metrics.
local PUBLISHED = 0

local function configure(publish_cmd, maxlen, ttl)
  PUBLISH = publish_cmd
  MAXLEN = tonumber(maxlen)
  TTL = tonumber(ttl)
end

local function meta_key(peer) return PREFIX .. 'p:' .. peer end
-- Set when a peer whose node was declared dead is expired: its attachment id.
-- That node may still be alive (a partition) and must not re-create the peer
-- the room was told had left; reattach.lua answers GONE instead.
local function gone_key(peer) return PREFIX .. 'gone:' .. peer end
local function queue_key(peer) return PREFIX .. 'q:' .. peer end
local function state_key() return PREFIX .. 'state' end
local function channel(node) return PREFIX .. 'node:' .. node end

-- Assigns the peer's next seq and appends the event to its stream.
local function record(peer, kind, body)
  local seq = redis.call('HINCRBY', meta_key(peer), 'seq', 1)
  -- Approximate trimming is much cheaper than exact; resume.lua enforces
  -- the exact bound of MAXLEN recoverable events.
  redis.call('XADD', queue_key(peer), 'MAXLEN', '~', MAXLEN, seq .. '-1', 'k', kind, 'b', body)
  return seq
end

local function deliver(recipients, kind, body)
  local routes = {}
  for _, peer in ipairs(recipients) do
    local seq = record(peer, kind, body)
    redis.call('PEXPIRE', queue_key(peer), TTL)
    local node = redis.call('HGET', meta_key(peer), 'node')
    if node and node ~= '' then
      local entry = peer .. '=' .. seq
      if routes[node] then routes[node] = routes[node] .. ',' .. entry else routes[node] = entry end
    end
  end
  for node, list in pairs(routes) do
    redis.call(PUBLISH, channel(node), 'E ' .. kind .. ' ' .. list .. '\n' .. body)
    PUBLISHED = PUBLISHED + 1
  end
end

local function others(me)
  local list = {}
  for _, peer in ipairs(redis.call('HKEYS', PEERS)) do
    if peer ~= me then table.insert(list, peer) end
  end
  return list
end

local function current(peer, att)
  return redis.call('HGET', meta_key(peer), 'att') == att
end

local function state()
  local s = redis.call('HMGET', state_key(), 'v', 'd')
  return s[1] or '0', s[2] or '{}'
end

local function touch(peer)
  redis.call('PEXPIRE', PEERS, TTL)
  redis.call('PEXPIRE', state_key(), TTL)
  if peer then redis.call('PEXPIRE', meta_key(peer), TTL) end
end

local function remove(peer, reason, body)
  redis.call('HDEL', PEERS, peer)
  redis.call('DEL', meta_key(peer), queue_key(peer))
  deliver(others(peer), 'peer_left', body)
  if redis.call('HLEN', PEERS) == 0 then
    redis.call('DEL', state_key())
  end
end
