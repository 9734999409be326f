-- ARGV: publish, maxlen, ttl, from, att, to, body.
-- Status: OK, STALE (sender no longer attached) or NOT_FOUND.
configure(ARGV[1], ARGV[2], ARGV[3])
if not current(ARGV[4], ARGV[5]) then return {'STALE', PUBLISHED} end
if redis.call('HEXISTS', PEERS, ARGV[6]) == 0 then return {'NOT_FOUND', PUBLISHED} end
deliver({ARGV[6]}, 'signal', ARGV[7])
return {'OK', PUBLISHED}
