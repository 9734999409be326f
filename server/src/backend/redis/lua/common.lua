-- Shared helpers of every room script. The scripts are the functions of one
-- Redis Functions library (client.rs builds it: this file, then each script's
-- body as a function of KEYS and ARGV), loaded once per Redis server, so this
-- file runs once per load, not once per call: the state below is reset by
-- begin() at the start of every call. At load time only `redis` exists (no
-- `string`, `math`, ...), so top-level code here must not touch them.
-- Every script returns a table {status, published, ...}.
--
-- KEYS[1] is the room's peer hash `sb:{ROOM}:peers`; every other key of the
-- room is derived from it, so all of them share the room's hash slot.
-- (signal.lua takes one such key per sender and points PEERS and PREFIX at
-- each in turn.)
-- Per-peer keys: `p:<peer>` (hash: node, att, seq, secret, away, reason,
-- written, qb) and `e:<peer>` (list of events, oldest first, created by the
-- first event).
-- A delivery assigns the recipient's next seq, appends to its list (bounded)
-- and publishes one message per node that holds recipients, on the channel
-- `sb:{ROOM}:node:<node>`:
--   "E <kind> <peer>=<seq>,<peer>=<seq>...\n<body>"
-- signal.lua delivers a batch and then sends each room's node one message
-- with all of its events, each with its byte length:
--   "M\n" then, per event, "<kind> <peer>=<seq> <length>\n<body>"
--
-- Replay budgets (server/src/backend/budget.rs says what is counted):
-- - per peer: its list keeps the newest events within MAXLEN events and
--   PEER_BYTES bytes of bodies; `p:<peer>` tracks `qb` (body bytes held).
--   A list entry is one string: "<seq> <type> <body>", or for a shared body
--   "<seq> *<type> <body length> <id>" (see entry_parts). The seqs of a list
--   are consecutive and its last is the peer's `seq`; resume.lua checks both.
--   A list, not a stream: a stream preallocates a 4 KiB node with its first
--   entry, a list grows with what it holds.
-- - per room: `replay` (hash) stores each body sent to several peers once,
--   `b:<id>` with `r:<id>` the number of list entries that refer to it,
--   `last` the last id, and `bytes`: everything the room keeps for replay
--   (bodies once, plus OVERHEAD per body and per list entry). Beyond
--   ROOM_BYTES whole lists are dropped, largest first; their peers' resumes
--   from before then answer recovered=0 (resume.lua finds the gap).
-- Streams `q:<peer>` of earlier versions are no longer read; they expire on
-- their own, and their resumes answer recovered=0.

local PEERS = ''
local PREFIX = ''
local PUBLISH = 'PUBLISH'
local MAXLEN = 512
local PEER_BYTES = 1 / 0
local ROOM_BYTES = 1 / 0
local TTL = 3600000
-- The arguments configure() parsed last: every call passes the same ones, so
-- parsing them once per load is enough.
local LIMITS = nil
local TTL_ARG = nil
-- Bytes counted per stored body and per list entry besides the body
-- (ENTRY_OVERHEAD and BODY_OVERHEAD in budget.rs).
local OVERHEAD = 64
-- A list is trimmed back to MAXLEN events once it holds MAXLEN + SLACK, so it
-- may hold up to SLACK - 1 more: trimming a batch at a time is much cheaper
-- than one entry per event. resume.lua enforces the exact bound of MAXLEN
-- recoverable events.
local SLACK = 64
-- Messages published by this script run, returned for metrics.
local PUBLISHED = 0
-- Change of the current room's replay bytes not yet written (see settle).
local DELTA = 0
-- `node`, `seq` and `qb` of the peers this run looked up or recorded events
-- for, by peer hash key; settle() writes back those it recorded for: a burst
-- of events to one peer then costs two commands, not two per event.
local PEER_CACHE = {}
-- The room history's bounds for this call (see configure_history): a script
-- that does not configure them records nothing.
local HISTORY_MAX = 0
local HISTORY_AGE = 0

-- Starts a call: the room of KEYS[1], and nothing left of the last call
-- (which may have failed halfway).
local function begin(keys)
  PEERS = keys[1] or ''
  PREFIX = string.sub(PEERS, 1, -6)
  PUBLISHED = 0
  DELTA = 0
  PEER_CACHE = {}
  HISTORY_MAX = 0
  HISTORY_AGE = 0
end

-- ARGV prefix of every script: the publish command, the replay limits
-- `EVENTS:PEER_BYTES:ROOM_BYTES` (or only EVENTS: no byte budgets), the TTL.
local function configure(publish_cmd, limits, ttl)
  PUBLISH = publish_cmd
  if limits ~= LIMITS then
    local events, peer_bytes, room_bytes = string.match(limits, '^(%d+):(%d+):(%d+)$')
    if events then
      MAXLEN = tonumber(events)
      PEER_BYTES = tonumber(peer_bytes)
      ROOM_BYTES = tonumber(room_bytes)
    else
      MAXLEN = tonumber(limits)
      PEER_BYTES = math.huge
      ROOM_BYTES = math.huge
    end
    LIMITS = limits
  end
  if ttl ~= TTL_ARG then
    TTL = tonumber(ttl)
    TTL_ARG = ttl
  end
end

local function meta_key(peer) return PREFIX .. 'p:' .. peer end
-- Set when a peer whose node was declared dead is expired: its attachment id.
-- That node may still be alive (a partition) and must not re-create the peer
-- the room was told had left; reattach.lua answers GONE instead.
local function gone_key(peer) return PREFIX .. 'gone:' .. peer end
local function queue_key(peer) return PREFIX .. 'e:' .. peer end
local function state_key() return PREFIX .. 'state' end
local function replay_key() return PREFIX .. 'replay' end
local function channel(node) return PREFIX .. 'node:' .. node end

-- The seq of a list entry (nil if it has none).
local function entry_seq(entry)
  local seq = string.match(entry, '^%d+')
  return seq and tonumber(seq)
end

-- The type, body length, shared body id (nil if inline) and inline body
-- (nil if shared) of a list entry ("<seq> <type> <body>" or
-- "<seq> *<type> <length> <id>").
local function entry_parts(entry)
  local a = string.find(entry, ' ', 1, true)
  local b = a and string.find(entry, ' ', a + 1, true)
  if not b then return nil, 0, nil, nil end
  if string.byte(entry, a + 1) == 42 then -- '*'
    local n, id = string.match(entry, '^(%d+) (%d+)$', b + 1)
    return string.sub(entry, a + 2, b - 1), tonumber(n) or 0, id, nil
  end
  return string.sub(entry, a + 1, b - 1), #entry - b, nil, string.sub(entry, b + 1)
end

-- The body length and shared body id (nil if inline) of a list entry, without
-- copying its body (trimming reads every dropped entry).
local function entry_size(entry)
  local a = string.find(entry, ' ', 1, true)
  local b = a and string.find(entry, ' ', a + 1, true)
  if not b then return 0, nil end
  if string.byte(entry, a + 1) == 42 then -- '*'
    local n, id = string.match(entry, '^(%d+) (%d+)$', b + 1)
    return tonumber(n) or 0, id
  end
  return #entry - b, nil
end

-- One list entry less refers to shared body `id`; frees it with the last.
local function release_body(id)
  local key = replay_key()
  if redis.call('HINCRBY', key, 'r:' .. id, -1) <= 0 then
    DELTA = DELTA - OVERHEAD - redis.call('HSTRLEN', key, 'b:' .. id)
    redis.call('HDEL', key, 'r:' .. id, 'b:' .. id)
  end
end

-- Accounts for a list entry that is gone; returns its body length.
local function release_entry(entry)
  local n, id = entry_size(entry)
  DELTA = DELTA - OVERHEAD
  if id then release_body(id) else DELTA = DELTA - n end
  return n
end

-- Drops the oldest events of a peer's list while it holds more than
-- PEER_BYTES bytes of bodies (`held`); returns the bytes then held.
local function trim_bytes(queue, held)
  while held > PEER_BYTES do
    local batch = redis.call('LRANGE', queue, 0, 7)
    -- An empty list (expired on its own) holds nothing.
    if #batch == 0 then return 0 end
    local dropped = 0
    for _, e in ipairs(batch) do
      if held <= PEER_BYTES then break end
      held = held - release_entry(e)
      dropped = dropped + 1
    end
    redis.call('LTRIM', queue, dropped, -1)
  end
  return held
end

-- The cached `node` (nil when the peer hash or its field is missing), `seq`
-- and `qb` of a peer (see PEER_CACHE).
local function peer_state(meta)
  local s = PEER_CACHE[meta]
  if not s then
    local m = redis.call('HMGET', meta, 'node', 'seq', 'qb')
    -- A missing field is `false` here; nil keeps `node` simple to test.
    s = {node = m[1] or nil, seq = tonumber(m[2] or '0'), held = tonumber(m[3] or '0'), dirty = false}
    PEER_CACHE[meta] = s
  end
  return s
end

-- Writes back the cached peer states that recorded events.
local function flush_peers()
  for meta, s in pairs(PEER_CACHE) do
    if s.dirty then
      redis.call('HSET', meta, 'seq', s.text, 'qb', math.max(s.held, 0))
    end
  end
  PEER_CACHE = {}
end

-- Assigns the peer's next seq and appends the event to its list: the body
-- itself, or with `shared` the id of the room's copy of it. A list gets its
-- TTL when it is created (the periodic touch refreshes it). Once it holds
-- MAXLEN + SLACK events it goes back to MAXLEN; whenever it holds more than
-- PEER_BYTES, the oldest ones go at once. settle() must follow before the
-- script ends (it writes the seq back). `state` is the peer's peer_state()
-- when the caller has it at hand. Returns the seq as a string: Lua
-- formats a number with sprintf, a cost worth paying once per event, not
-- three times.
local function record(peer, kind, body, shared, state)
  local queue = queue_key(peer)
  local s = state or peer_state(meta_key(peer))
  s.seq = s.seq + 1
  local seq = tostring(s.seq)
  s.text = seq
  s.dirty = true
  local n = #body
  local len
  if shared then
    len = redis.call('RPUSH', queue, seq .. ' *' .. kind .. ' ' .. n .. ' ' .. shared)
    DELTA = DELTA + OVERHEAD
  else
    len = redis.call('RPUSH', queue, seq .. ' ' .. kind .. ' ' .. body)
    DELTA = DELTA + OVERHEAD + n
  end
  if len == 1 then redis.call('PEXPIRE', queue, TTL) end
  s.held = s.held + n
  if len >= MAXLEN + SLACK then
    local cut = len - MAXLEN
    for _, e in ipairs(redis.call('LRANGE', queue, 0, cut - 1)) do
      s.held = s.held - release_entry(e)
    end
    redis.call('LTRIM', queue, cut, -1)
  end
  if s.held > PEER_BYTES then s.held = trim_bytes(queue, s.held) end
  return seq
end

-- Forgets everything kept for the peer's replay: a resume from before now
-- answers recovered=0, one from now on recovers.
local function forget(peer)
  local meta, queue = meta_key(peer), queue_key(peer)
  PEER_CACHE[meta] = nil
  for _, e in ipairs(redis.call('LRANGE', queue, 0, -1)) do
    release_entry(e)
  end
  redis.call('DEL', queue)
  if redis.call('HEXISTS', meta, 'qb') == 1 then redis.call('HSET', meta, 'qb', 0) end
end

-- Writes the recipients' seqs and the room's change of replay bytes; beyond
-- ROOM_BYTES, drops whole lists, largest first, until the room is within
-- it. Called before the script moves on to another room (signal.lua) and at
-- the end of deliver.
local function settle()
  flush_peers()
  if DELTA == 0 then return end
  local key = replay_key()
  local bytes = redis.call('HINCRBY', key, 'bytes', DELTA)
  -- The key was (probably) just created: give it its TTL. Existing keys are
  -- kept alive by touch(), like the room's other keys.
  local fresh = bytes == DELTA
  DELTA = 0
  if bytes > ROOM_BYTES then
    local sizes = {}
    for _, peer in ipairs(redis.call('HKEYS', PEERS)) do
      local held = tonumber(redis.call('HGET', meta_key(peer), 'qb') or '0')
      if held > 0 then table.insert(sizes, {peer, held}) end
    end
    table.sort(sizes, function(a, b) return a[2] > b[2] end)
    for _, s in ipairs(sizes) do
      forget(s[1])
      bytes = bytes + DELTA
      DELTA = 0
      if bytes <= ROOM_BYTES then break end
    end
    if bytes > ROOM_BYTES then
      -- Every list with counted bytes is gone, so the count drifted (keys
      -- that expired on their own, entries written before budgets): start
      -- again from nothing, but never reuse a body id (a stale reference
      -- then finds no body, and its resume answers recovered=0).
      local last = redis.call('HGET', key, 'last')
      redis.call('DEL', key)
      if last then redis.call('HSET', key, 'last', last) end
      bytes = 0
      fresh = true
    end
    redis.call('HSET', key, 'bytes', math.max(bytes, 0))
  elseif bytes < 0 then
    redis.call('HSET', key, 'bytes', 0)
  end
  if fresh then redis.call('PEXPIRE', key, TTL) end
end

local function deliver(recipients, kind, body)
  local shared = nil
  if #recipients > 1 then
    -- One copy for every recipient's list.
    local key = replay_key()
    shared = redis.call('HINCRBY', key, 'last', 1)
    redis.call('HSET', key, 'b:' .. shared, body, 'r:' .. shared, #recipients)
    DELTA = DELTA + OVERHEAD + #body
  end
  local routes = {}
  for _, peer in ipairs(recipients) do
    local seq = record(peer, kind, body, shared)
    local node = peer_state(meta_key(peer)).node
    if node and node ~= '' then
      local entry = peer .. '=' .. seq
      if routes[node] then routes[node] = routes[node] .. ',' .. entry else routes[node] = entry end
    end
  end
  settle()
  for node, list in pairs(routes) do
    redis.call(PUBLISH, channel(node), 'E ' .. kind .. ' ' .. list .. '\n' .. body)
    PUBLISHED = PUBLISHED + 1
  end
end

-- Tells the node holding a peer's connection (`node`, attachment `att`) to
-- close it: "K <peer> <att>" closes with 4000 (the session went on
-- elsewhere), "K <peer> <att> <code> <reason>" with that code (the node reads
-- 4003 and the reason `kicked` or `closed`; local.rs parses both forms). A
-- peer that holds no connection (node '' or missing, detached or never
-- attached) has nothing to close.
local function close_elsewhere(peer, node, att, code, reason)
  if not node or node == '' or not att then return end
  local message = 'K ' .. peer .. ' ' .. att
  if code then message = message .. ' ' .. code .. ' ' .. reason end
  redis.call(PUBLISH, channel(node), message)
  PUBLISHED = PUBLISHED + 1
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
  redis.call('PEXPIRE', replay_key(), TTL)
  if peer then redis.call('PEXPIRE', meta_key(peer), TTL) end
end

-- Room history (docs/redis.md, "Room history"): every membership and state
-- change of the room, in `history` (a stream; entry fields `t` type, `n` the
-- room's event number, `d` data JSON; the entry id is the offset, its
-- milliseconds the time). `hook` (hash) holds `seq`, the last event number,
-- and the webhook cursor (`cursor` offset, `cseq` event number); `hook:lease`
-- names the node delivering the room's webhooks. Recorded by the script that
-- makes the change, so the history is in the order of the changes. Bounded to
-- HISTORY_MAX events and HISTORY_AGE ms (declared at the top, reset by
-- begin()); HISTORY_MAX 0 records nothing.

-- ARGV of the scripts that record: `MAX:AGE_MS`.
local function configure_history(spec)
  local n, age = string.match(spec or '', '^(%d+):(%d+)$')
  if n then
    HISTORY_MAX = tonumber(n)
    HISTORY_AGE = tonumber(age)
  end
end

local function history(kind, data)
  if HISTORY_MAX == 0 then return end
  local key, hook = PREFIX .. 'history', PREFIX .. 'hook'
  local n = redis.call('HINCRBY', hook, 'seq', 1)
  local id = redis.call('XADD', key, 'MAXLEN', HISTORY_MAX, '*', 't', kind, 'n', n, 'd', data)
  local ms = tonumber(string.match(id, '^(%d+)-'))
  if ms > HISTORY_AGE then
    redis.call('XTRIM', key, 'MINID', (ms - HISTORY_AGE) .. '-0')
  end
  redis.call('PEXPIRE', key, HISTORY_AGE)
  redis.call('PEXPIRE', hook, HISTORY_AGE)
end

-- Removes a peer and tells the others (`body`: their peer_left). The last
-- peer out takes the room's state and replay store with it, unless
-- `keep_room` (a takeover: the replacing peer joins in the same script).
local function remove(peer, reason, body, keep_room)
  redis.call('HDEL', PEERS, peer)
  forget(peer)
  redis.call('DEL', meta_key(peer), queue_key(peer))
  deliver(others(peer), 'peer_left', body)
  history('peer_left', '{"peer":' .. cjson.encode(peer) .. ',"reason":' .. cjson.encode(reason) .. '}')
  if not keep_room and redis.call('HLEN', PEERS) == 0 then
    redis.call('DEL', state_key(), replay_key())
    history('room_finished', '{}')
  end
end
