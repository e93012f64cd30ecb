import { ExpiringLru, type LruEntry } from "../expiring-lru.js";
import type { Generation } from "../generation.js";
import { readLookupResponse } from "../rpc/codec/lookup.js";

/**
 * Hits kept in the client's own memory, answered again without a call
 * (CacheClientOptions.nearCache): Redis's client-side caching, one step
 * nearer than a replica's near cache. The server grants each hit it may
 * keep (NearGrant) on a stream that watches, and tells that stream of every
 * change after (Invalidation); an entry is dropped when its change is
 * heard of, when its time is up, and everything is dropped when a stream
 * that granted is lost, for changes may go unheard then.
 *
 * A grant can be overtaken: a change heard of, by the server or by this
 * client (its own update or clear), after the lookup was sent but before
 * its grant arrives. A lookup therefore takes a ticket when it is sent,
 * and its grant is kept only if no change to its key (or to everything)
 * came since. The changes are logged only while a lookup is out.
 *
 * Values are kept as the reply's bytes and read anew at every hit, so no
 * caller shares, or can change, another's generations.
 */
export class ClientNearCache {
  /** By local key (see localKey). */
  readonly #entries: ExpiringLru<NearEntry>;
  /** The local key of each server key (NearGrant.key) kept. */
  readonly #byServerKey = new Map<string, string>();
  /** Counts changes heard of: tickets and the change logs hold its values. */
  #sequence = 0;
  /** When everything last changed, or the logs were given up (see #logChange): no lookup sent before keeps its grant. */
  #allChangedAt = 0;
  /** While lookups are out: when each key last changed, as the server names it and as this client does. */
  readonly #serverKeyChangedAt = new Map<string, number>();
  readonly #localKeyChangedAt = new Map<string, number>();
  /** Lookups out, each with its ticket. */
  readonly #tickets = new Set<Ticket>();
  /** The change logs are pruned when they pass this size (see #logChange). */
  #pruneAt = PRUNE_LOGS_AT;
  #hits = 0;
  #invalidations = 0;

  /** `now`: a clock in ms that never goes back. */
  constructor(maxBytes: number, readonly now: () => number = () => performance.now()) {
    this.#entries = new ExpiringLru(maxBytes, now, (key, entry) => {
      if (this.#byServerKey.get(entry.serverKey) === key) this.#byServerKey.delete(entry.serverKey);
    });
  }

  /** What is kept and what it has done, since the client was made. */
  get stats(): NearCacheStats {
    return { entries: this.#entries.size, bytes: this.#entries.bytes, hits: this.#hits, invalidations: this.#invalidations };
  }

  /** How many changes are logged for the lookups out (for tests: the logs must stay bounded). */
  get changesLogged(): number {
    return this.#serverKeyChangedAt.size + this.#localKeyChangedAt.size;
  }

  /** The generations kept for the key, read anew; undefined when none are (or their time is up). */
  get(key: string): Generation[] | undefined {
    const entry = this.#entries.use(key);
    if (entry === undefined) return undefined;
    this.#hits++;
    return readLookupResponse(entry.response, 0, entry.response.length) ?? [];
  }

  /** A lookup of `key` is about to be sent: call done() on the ticket with its grant, if any, when it settles (or fails). */
  beginLookup(key: string): Ticket {
    const ticket: Ticket = { key, sequence: this.#sequence, sentAt: this.now(), done: (grant) => this.#endLookup(ticket, grant) };
    this.#tickets.add(ticket);
    return ticket;
  }

  /** The server says these keys (NearGrant.key) changed, or everything did. */
  invalidate(serverKeys: readonly string[], all: boolean): void {
    this.#invalidations++;
    if (all) {
      this.forgetAll();
      return;
    }
    for (const serverKey of serverKeys) {
      if (this.#tickets.size > 0) this.#logChange(this.#serverKeyChangedAt, serverKey);
      const key = this.#byServerKey.get(serverKey);
      if (key !== undefined) this.#entries.delete(key);
    }
  }

  /** This client changes the key (an update): what it kept is stale from now, whatever the server grants for lookups sent before. */
  forget(key: string): void {
    if (this.#tickets.size > 0) this.#logChange(this.#localKeyChangedAt, key);
    this.#entries.delete(key);
  }

  /** Everything may have changed (a clear), or changes may go unheard (a stream that granted was lost). */
  forgetAll(): void {
    this.#allChangedAt = ++this.#sequence;
    this.#entries.clear();
    this.#byServerKey.clear();
  }

  /**
   * Logs a change for the lookups out. Under steady load some lookup is
   * always out, so the logs are never emptied at once: what no ticket out
   * is older than is pruned instead, whenever a log has doubled since. A
   * lookup out for long (a lease's wait may last an hour) would pin them:
   * past MAX_LOGGED_CHANGES they are given up, and no lookup out keeps its
   * grant, as if everything had changed (nothing kept is dropped).
   */
  #logChange(log: Map<string, number>, key: string): void {
    log.delete(key); // Map order is then the order of the changes.
    log.set(key, ++this.#sequence);
    if (log.size < this.#pruneAt) return;
    let oldestOut = Infinity;
    for (const ticket of this.#tickets) oldestOut = Math.min(oldestOut, ticket.sequence);
    for (const [logged, sequence] of log) {
      if (sequence > oldestOut) break;
      log.delete(logged);
    }
    if (log.size >= MAX_LOGGED_CHANGES) {
      this.#allChangedAt = ++this.#sequence;
      this.#serverKeyChangedAt.clear();
      this.#localKeyChangedAt.clear();
    }
    this.#pruneAt = Math.max(PRUNE_LOGS_AT, log.size * 2);
  }

  #endLookup(ticket: Ticket, grant: Grant | undefined): void {
    if (!this.#tickets.delete(ticket)) return;
    if (grant && !this.#changedSince(ticket)) this.#keep(ticket, grant);
    if (this.#tickets.size === 0) {
      this.#serverKeyChangedAt.clear();
      this.#localKeyChangedAt.clear();
      this.#pruneAt = PRUNE_LOGS_AT;
    }
  }

  #changedSince({ key, sequence }: Ticket, serverKey?: string): boolean {
    return (
      this.#allChangedAt > sequence ||
      (this.#localKeyChangedAt.get(key) ?? 0) > sequence ||
      (serverKey !== undefined && (this.#serverKeyChangedAt.get(serverKey) ?? 0) > sequence)
    );
  }

  #keep(ticket: Ticket, { serverKey, ttlMs, response }: Grant): void {
    if (this.#changedSince(ticket, serverKey)) return;
    const otherKey = this.#byServerKey.get(serverKey);
    if (otherKey !== undefined) this.#entries.delete(otherKey);
    const cost = ticket.key.length * 2 + serverKey.length + response.length + ENTRY_OVERHEAD_BYTES;
    // The time left counts from when the lookup was sent: the server measured it later, so the entry never outlives it here.
    const expiresAt = ttlMs === 0 ? Infinity : ticket.sentAt + ttlMs;
    if (this.#entries.set(ticket.key, { serverKey, response, expiresAt, cost })) this.#byServerKey.set(serverKey, ticket.key);
  }
}

/** The key a pair is kept under here: the three strings, none of which can run into the next. */
export function localKey(namespace: string, prompt: string, llmString: string): string {
  return `${namespace.length}:${namespace}${prompt.length}:${prompt}${llmString}`;
}

export interface NearCacheStats {
  /** Hits kept now, and what they cost (their keys and replies, and an estimate of the rest). */
  entries: number;
  bytes: number;
  /** Lookups answered here since the client was made, with no call. */
  hits: number;
  /** Invalidations heard from the server. */
  invalidations: number;
}

/** A hit the server lets the client keep: its name in Invalidations, its time left (0: none), and the reply's bytes. */
export interface Grant {
  serverKey: string;
  ttlMs: number;
  response: Buffer;
}

export interface Ticket {
  readonly key: string;
  /** The change count when the lookup was sent. */
  readonly sequence: number;
  readonly sentAt: number;
  done(grant: Grant | undefined): void;
}

interface NearEntry extends LruEntry {
  serverKey: string;
  response: Buffer;
}

/** How many changes a log holds before it is first pruned. */
const PRUNE_LOGS_AT = 1_024;
/** How many changes a log may hold for the lookups out before it is given up (see #logChange). */
const MAX_LOGGED_CHANGES = 65_536;

/** An estimate of what the Map slots, the entry object and the Buffer take besides the bytes counted. */
const ENTRY_OVERHEAD_BYTES = 200;
