-- Refreshes the TTL of every key of the room. ARGV: publish, maxlen, ttl.
configure(ARGV[1], ARGV[2], ARGV[3])
touch(nil)
for _, peer in ipairs(redis.call('HKEYS', PEERS)) do
  redis.call('PEXPIRE', meta_key(peer), TTL)
  redis.call('PEXPIRE', queue_key(peer), TTL)
end
return {'OK', PUBLISHED}
