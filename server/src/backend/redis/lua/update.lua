-- ARGV: publish, maxlen, ttl, peer, att, info, peer_updated body, history spec.
-- Status: OK or STALE.
configure(ARGV[1], ARGV[2], ARGV[3])
configure_history(ARGV[8])
if not current(ARGV[4], ARGV[5]) then return {'STALE', PUBLISHED} end
redis.call('HSET', PEERS, ARGV[4], ARGV[6])
deliver(others(ARGV[4]), 'peer_updated', ARGV[7])
history('peer_updated', '{"peer":' .. ARGV[6] .. '}')
return {'OK', PUBLISHED}
