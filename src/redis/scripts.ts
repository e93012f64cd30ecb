import { createHash } from "node:crypto";

/**
 * The Lua scripts that make a pair's read-then-write steps atomic in Redis.
 * Each touches only an entry and its lease, which share a slot (see
 * keys.ts): on a Cluster each runs whole on the node that holds the pair.
 * They run by digest (EVALSHA), and are sent whole once a node says it
 * does not know them (after a restart or a failover).
 */
export interface Script {
  source: string;
  sha1: string;
}

function script(source: string): Script {
  return { source, sha1: createHash("sha1").update(source).digest("hex") };
}

/**
 * A lookup that may take a lease. KEYS: entry, lease. ARGV: token, leaseMs,
 * skip the read ("1": the lookup bypasses the cache). Returns {1, value,
 * pttl} for a hit (the entry's pttl, for a near cache), {2} when the lease
 * is granted, {3, pttl} when another holds it (for pttl ms more).
 */
export const LOOKUP_OR_LEASE = script(`
if ARGV[3] ~= '1' then
  local value = redis.call('GET', KEYS[1])
  if value then return {1, value, redis.call('PTTL', KEYS[1])} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {3, redis.call('PTTL', KEYS[2])}
`);

/**
 * An update through the pair's lease, LeaseTable.fill's rules in Redis.
 * KEYS: entry, lease. ARGV: value, ttl in ms ("" for none), only if absent
 * ("1"), lease token ("" for none), store nothing ("1"), the channel.
 *
 * With no token, or the current one, it stores; with a stale one, only if
 * the pair holds nothing and no lease is out. A lease ends when its holder
 * is done, or when anyone stores the pair; its end is published so that
 * every replica's waiters look again. Returns -1 for a refused stale fill,
 * else 1 if stored, plus 2 if the token was the current lease's.
 */
export const UPDATE_THROUGH_LEASE = script(`
local lease = redis.call('GET', KEYS[2])
local token = ARGV[4]
local current = token ~= '' and lease == token
if token ~= '' and not current and (lease or redis.call('EXISTS', KEYS[1]) == 1) then return -1 end
local stored = 0
if ARGV[5] ~= '1' then
  local set = {'SET', KEYS[1], ARGV[1]}
  if ARGV[2] ~= '' then set[#set + 1] = 'PX'; set[#set + 1] = ARGV[2] end
  if ARGV[3] == '1' then set[#set + 1] = 'NX' end
  if redis.call(unpack(set)) then stored = 1 end
end
if lease and (current or stored == 1) then
  redis.call('DEL', KEYS[2])
  redis.call('PUBLISH', ARGV[6], KEYS[2])
end
if current then return stored + 2 end
return stored
`);

/** Gives up a lease. KEYS: lease. ARGV: token, the channel. Returns 1 if the token was the lease's. */
export const RELEASE_LEASE = script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], KEYS[1])
  return 1
end
return 0
`);
