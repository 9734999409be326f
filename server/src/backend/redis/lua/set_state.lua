-- Compare-and-set of the room state. ARGV: publish, maxlen, ttl, peer, att,
-- expected_version, new_data, state event body (with the new version),
-- state_changed history data, history spec.
-- Returns {'OK', published, version} | {'CONFLICT', published, version} | {'STALE'}.
configure(ARGV[1], ARGV[2], ARGV[3])
if not current(ARGV[4], ARGV[5]) then return {'STALE', PUBLISHED} end
local v = tonumber(redis.call('HGET', state_key(), 'v') or '0')
if v ~= tonumber(ARGV[6]) then return {'CONFLICT', PUBLISHED, v} end
redis.call('HSET', state_key(), 'v', v + 1, 'd', ARGV[7])
redis.call('PEXPIRE', state_key(), TTL)
deliver(redis.call('HKEYS', PEERS), 'state', ARGV[8])
configure_history(ARGV[10])
history('state_changed', ARGV[9])
return {'OK', PUBLISHED, v + 1}
