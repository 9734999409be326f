-- Compare-and-set of the room state by the application (Server API), so
-- with no member to check. ARGV: publish, limits, ttl, expected_version,
-- new_data, state event body (with the new version and `by: null`),
-- state_changed history data, history spec.
-- Returns {'OK', published, version} | {'CONFLICT', 0, version} | {'NO_ROOM', 0}.
configure(ARGV[1], ARGV[2], ARGV[3])
if redis.call('HLEN', PEERS) == 0 then return {'NO_ROOM', PUBLISHED} end
local v = tonumber(redis.call('HGET', state_key(), 'v') or '0')
if v ~= tonumber(ARGV[4]) then return {'CONFLICT', PUBLISHED, v} end
redis.call('HSET', state_key(), 'v', v + 1, 'd', ARGV[5])
redis.call('PEXPIRE', state_key(), TTL)
deliver(redis.call('HKEYS', PEERS), 'state', ARGV[6])
configure_history(ARGV[8])
history('state_changed', ARGV[7])
return {'OK', PUBLISHED, v + 1}
