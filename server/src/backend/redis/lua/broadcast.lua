-- ARGV: publish, maxlen, ttl, from, att, body. Status: OK or STALE.
configure(ARGV[1], ARGV[2], ARGV[3])
if not current(ARGV[4], ARGV[5]) then return {'STALE', PUBLISHED} end
deliver(others(ARGV[4]), 'broadcast', ARGV[6])
return {'OK', PUBLISHED}
