import { newCounters, type Counter, type Counters, type LeaseEvent } from "../engine/stats.js";
import { namespaceFromHex, namespaceHex, STATS_KEY } from "./keys.js";
import type { RedisConnection } from "./redis-connection.js";

/** What a replica counts itself; Redis counts entries, memory, evictions and expiries. */
type CountedHere = Exclude<Counter, "evictedSize" | "evictedBytes" | "evictedTtl" | "expirations">;
const COUNTED_HERE: CountedHere[] = ["hits", "misses", "bypasses", "updatesNotStored"];

/**
 * Counters that every replica adds to, kept in one Redis hash (field
 * "counter:namespace-in-hex"). A replica counts in its memory and adds its
 * counts to the hash every `flushMs`, a few HINCRBYs at a time, never one
 * write per lookup; what it has not sent yet is added when it reads. So a
 * replica's statistics lag the others' by up to `flushMs`, and counts not
 * yet sent when a replica dies are lost.
 */
export class SharedCounters {
  readonly #connection: RedisConnection;
  /** Counted since the last flush, by namespace. */
  #pending = new Map<string, Counters>();
  /** Counted by this replica since it started: its metrics. */
  readonly #sinceStart = newCounters();
  readonly #timer: NodeJS.Timeout;
  #flushing: Promise<void> | undefined;

  constructor(connection: RedisConnection, flushMs: number, onError: (error: unknown) => void) {
    this.#connection = connection;
    this.#timer = setInterval(() => void this.flush().catch(onError), flushMs);
    this.#timer.unref();
  }

  count(namespace: string, counter: CountedHere): void {
    this.#of(namespace)[counter]++;
    this.#sinceStart[counter]++;
  }

  countLease(namespace: string, event: LeaseEvent): void {
    this.#of(namespace).leases[event]++;
    this.#sinceStart.leases[event]++;
  }

  /** This replica's counts since it started. */
  get sinceStart(): Counters {
    return this.#sinceStart;
  }

  /** Adds what was counted here to the shared hash; on failure the counts are kept for the next flush. */
  flush(): Promise<void> {
    this.#flushing ??= this.#send().finally(() => (this.#flushing = undefined));
    return this.#flushing;
  }

  /** Every replica's counts, by namespace (those sent, and this replica's not yet sent). */
  async read(): Promise<Map<string, Counters>> {
    const pairs = flatPairs(await this.#connection.sendToKey(STATS_KEY, true, ["HGETALL", STATS_KEY]));
    const totals = new Map<string, Counters>();
    for (let i = 0; i + 1 < pairs.length; i += 2) {
      const [name, hex] = String(pairs[i]).split(":");
      const counters = totals.get(namespaceFromHex(hex ?? "")) ?? newCounters();
      totals.set(namespaceFromHex(hex ?? ""), counters);
      add(counters, name!, Number(String(pairs[i + 1])));
    }
    for (const [namespace, counts] of this.#pending) {
      const counters = totals.get(namespace) ?? newCounters();
      totals.set(namespace, counters);
      for (const [name, value] of fields(counts)) add(counters, name, value);
    }
    return totals;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush().catch(() => {});
  }

  async #send(): Promise<void> {
    const sending = this.#pending;
    if (sending.size === 0) return;
    this.#pending = new Map();
    const increments: Promise<unknown>[] = [];
    for (const [namespace, counts] of sending) {
      for (const [name, value] of fields(counts)) {
        increments.push(this.#connection.sendToKey(STATS_KEY, false, ["HINCRBY", STATS_KEY, `${name}:${namespaceHex(namespace)}`, String(value)]));
      }
    }
    const results = await Promise.allSettled(increments);
    const failed = results.find((result) => result.status === "rejected");
    // All or nothing is not to be had without MULTI; a partial failure is rare
    // (Redis went away mid-flush) and re-sending all would count some twice.
    if (failed && results.every((result) => result.status === "rejected")) {
      for (const [namespace, counts] of sending) {
        const kept = this.#of(namespace);
        for (const [name, value] of fields(counts)) add(kept, name, value);
      }
    }
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  #of(namespace: string): Counters {
    let counters = this.#pending.get(namespace);
    if (!counters) this.#pending.set(namespace, (counters = newCounters()));
    return counters;
  }
}

/** The non-zero counts, as "hits" or "leases.granted". */
function* fields(counters: Counters): Generator<[string, number]> {
  for (const name of COUNTED_HERE) if (counters[name] > 0) yield [name, counters[name]];
  for (const [event, value] of Object.entries(counters.leases)) if (value > 0) yield [`leases.${event}`, value];
}

function add(counters: Counters, name: string, value: number): void {
  if (name.startsWith("leases.")) {
    const event = name.slice("leases.".length) as LeaseEvent;
    if (event in counters.leases) counters.leases[event] += value;
  } else if ((COUNTED_HERE as string[]).includes(name)) counters[name as CountedHere] += value;
}

/** Adds what a replica counts of `from` into `into`. */
export function addCounters(into: Counters, from: Counters): void {
  for (const name of COUNTED_HERE) into[name] += from[name];
  for (const event of Object.keys(into.leases) as LeaseEvent[]) into.leases[event] += from.leases[event];
}

/** A hash's fields and values, one after the other: a RESP2 array, or a RESP3 map as node-redis gives it (Map or object). */
function flatPairs(reply: unknown): unknown[] {
  if (Array.isArray(reply)) return reply;
  if (reply instanceof Map) return [...reply].flat();
  return Object.entries(reply as Record<string, unknown>).flat();
}
