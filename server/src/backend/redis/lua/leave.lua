-- ARGV: publish, maxlen, ttl, peer, att, peer_left body, history spec.
-- Status: OK or STALE.
configure(ARGV[1], ARGV[2], ARGV[3])
configure_history(ARGV[7])
if not current(ARGV[4], ARGV[5]) then return {'STALE', PUBLISHED} end
remove(ARGV[4], 'left', ARGV[6])
return {'OK', PUBLISHED}
