-- The peer's socket closed: keep it, away, until ARGV deadline.
-- ARGV: publish, maxlen, ttl, peer, att, deadline_ms, reason, written.
-- Status: OK or STALE.
configure(ARGV[1], ARGV[2], ARGV[3])
if not current(ARGV[4], ARGV[5]) then return {'STALE', PUBLISHED} end
redis.call('HSET', meta_key(ARGV[4]), 'node', '', 'away', ARGV[6], 'reason', ARGV[7],
  'written', ARGV[8])
touch(ARGV[4])
return {'OK', PUBLISHED}
